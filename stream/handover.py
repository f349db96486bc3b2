"""Which work a hand-over may abandon at once.

When the group takes partitions away, their next owner starts from our last commit, so everything of
them we started and did not finish is done again. That costs nothing for work that is only waiting:
for a rate-limit token (its current request has not been sent), or for the commit that records it. It
costs a repeat for work with a request out: Zendesk may have applied it, and a repeated Sunshine event
is a duplicate. So a revocation abandons the waiting work at once and lets only the rest finish.

The engine gives each piece of work an `Interruptible` (`begin`, in the work's own task); the code that
waits marks the wait (`with interruptible():`). Tasks started from inside the work (a bulk batch, a
job poller) run in a fresh context, so their waits are not counted against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Interruptible", "begin", "interruptible"]


class Interruptible:
    """How many waits of one piece of work are under way right now: more than none, and the work may be
    cancelled with nothing of its current step sent."""

    __slots__ = ("waiting",)

    def __init__(self) -> None:
        self.waiting = 0

    @property
    def now(self) -> bool:
        return self.waiting > 0


_current: ContextVar[Interruptible | None] = ContextVar("zendesk_stream_interruptible", default=None)


def begin() -> Interruptible:
    """The current task's work starts: its waits are counted from here on."""
    state = Interruptible()
    _current.set(state)
    return state


@contextmanager
def interruptible() -> Iterator[None]:
    """A wait that may be abandoned at a hand-over without anything of it having reached Zendesk."""
    state = _current.get()
    if state is None:
        yield
        return
    state.waiting += 1
    try:
        yield
    finally:
        state.waiting -= 1
