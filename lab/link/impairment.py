"""The fault schedule of one direction of a link: loss, duplication, reordering, corruption,
delay, jitter and a rate limit, with the seed that makes it repeatable.

One value for both places faults are applied: `lab.link.impair.ImpairedLink` on real frames and
`lab.sim.wire.MemoryWire` in the simulation. The command line builds it (`lab.cli.impairment`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Impairment:
    """The fault schedule of one direction of the wire. Times in microseconds.

    `reorder` holds a packet back by `reorder_delay` so later packets overtake it; `jitter` adds a
    uniform [0, jitter] delay to every packet (which also reorders when it exceeds the spacing);
    `rate_bps` serialises packets (IP header + TCP header + payload) one after another.
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay: int = 0
    jitter: int = 0
    reorder_delay: int = 10_000
    rate_bps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability, got {value}")
        for name in ("delay", "jitter", "reorder_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise ValueError(f"rate_bps must be positive, got {self.rate_bps}")
