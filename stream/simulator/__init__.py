"""A Zendesk simulator: a real HTTP server on loopback that behaves like the slice of Zendesk we use.

Facts come from ``docs/zendesk-api.md``; every inferred behaviour is a switch in
:mod:`stream.simulator.options`.
"""

from stream.simulator.options import SimulatorOptions

__all__ = ["SimulatorOptions"]
