"""`Secret`: a configuration value (token, password) that never shows itself.

One wrapper for every secret the service holds: the Zendesk credentials (`stream.zendesk.connection`)
and the librdkafka values whose key looks secret (`stream.kafka.config`). Only the seam that hands the
value to its library calls `reveal()`.
"""

from __future__ import annotations


class Secret:
    """A string that never shows itself: `repr` and `str` are `Secret('***')`; `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:
        raise TypeError("a Secret cannot be pickled")
