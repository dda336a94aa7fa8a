"""Links move frames: `send(frame)` and `receive(timeout)`, nothing about what the bytes mean.

`lab.link.packet` (AF_PACKET with a BPF filter; `lab.link.ring` its TPACKET_V2 receive ring),
`lab.link.tap` (a pcapng tap around any link), `lab.link.impair` (seeded faults on a live link),
`lab.link.sniffer` (every frame of an interface to pcapng, for graders), `lab.link.socketpair`
(a test wire with file descriptors). The protocols below are the one declaration of what a link
is, used by the runtime, the tap, the impairment wrapper and the notebooks' live stepper.
"""

from __future__ import annotations

from typing import Protocol


class Link(Protocol):
    """Anything that moves whole frames (a tap, a stepper and the tests need no more)."""

    def send(self, frame: bytes) -> object: ...

    def receive(self, timeout: float) -> bytes | None: ...


class SelectableLink(Link, Protocol):
    """A link a selector can wait on: what the runtime's loop and `ImpairedLink` need."""

    def fileno(self) -> int: ...


class Annotatable(Protocol):
    """Something that can put a comment on the next frame it records (the pcapng tap): the
    runtime writes TCP state changes there, the impaired link what it did to a frame."""

    def annotate(self, text: str) -> None: ...
