"""The discrete-event driver: two sans-IO parties, a memory wire, and a clock that jumps.

Nothing happens between events, so the clock does not tick: it jumps to the next packet arrival or
the next timer deadline, whichever is first. Minutes of TCP time (RTO back-offs, TIME-WAIT) run in
milliseconds of wall time, and a run is a pure function of the parties, the wire and the seeds.

Two granularities, one driver: `step()` processes one instant (every packet arriving then, then
the timers due), which is what `lab demo` and the tests run; `step_segment()` hands over exactly
one segment, which is what a notebook shows one cell at a time (`lab.notebook.WireStepper`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from lab.sim.wire import MemoryWire, Side
from lab.wire.segment import AddressedSegment


class Party(Protocol):
    """Anything the simulation can drive: `TcpEndpoint` is one."""

    def receive(self, packet: AddressedSegment, now: int) -> None: ...

    def packets_to_send(self, now: int) -> list[AddressedSegment]: ...

    def on_timer(self, now: int) -> None: ...

    def next_deadline(self) -> int | None: ...


class SimulationStalledError(RuntimeError):
    """The parties keep asking for the same instant without making progress (a timer bug)."""


# (time, event, side, packet): event is "send" (side put it on the wire), then one event per fault
# the wire applied to it ("loss", "corrupt", "reorder", "duplicate"), or "deliver" (side got it)
Observer = Callable[[int, str, Side, AddressedSegment], None]

_MAX_STEPS_AT_ONE_INSTANT = 10_000


class VirtualClock:
    """Integer microseconds that only move forward, and only when told to."""

    def __init__(self, start: int = 0) -> None:
        self.now = start

    def advance_to(self, t: int) -> None:
        if t < self.now:
            raise ValueError(f"the clock cannot go back from {self.now} to {t}")
        self.now = t


class Simulation:
    """Runs party `a` and party `b` over `wire` under a virtual clock."""

    def __init__(
        self,
        a: Party,
        b: Party,
        wire: MemoryWire,
        *,
        start: int = 0,
        observer: Observer | None = None,
    ) -> None:
        self.parties: dict[Side, Party] = {"a": a, "b": b}
        self.wire = wire
        self.clock = VirtualClock(start)
        self.observer = observer
        self.steps = 0
        self._steps_at_now = 0
        self._arrived: deque[tuple[Side, AddressedSegment]] = deque()  # for step_segment

    @property
    def now(self) -> int:
        return self.clock.now

    def flush(self) -> None:
        """Move everything both parties want to send onto the wire."""
        now = self.clock.now
        for side, party in self.parties.items():
            for packet in party.packets_to_send(now):
                if self.observer is not None:
                    self.observer(now, "send", side, packet)
                faults = self.wire.send(side, packet, now)
                if self.observer is not None:
                    for fault in faults:
                        self.observer(now, fault, side, packet)

    def next_event(self) -> int | None:
        """The next instant anything happens: an arrival or a deadline (never before now)."""
        times = [self.wire.next_arrival()]
        times += [p.next_deadline() for p in self.parties.values()]
        known = [t for t in times if t is not None]
        return max(self.clock.now, min(known)) if known else None

    def step(self, limit: int | None = None) -> bool:
        """Jump to the next event and process it; False if there is none (or it is past `limit`)."""
        self.flush()
        t = self.next_event()
        if t is None or (limit is not None and t > limit):
            return False
        if t == self.clock.now:
            self._steps_at_now += 1
            if self._steps_at_now > _MAX_STEPS_AT_ONE_INSTANT:
                raise SimulationStalledError(f"no progress at t={t} us")
        else:
            self._steps_at_now = 0
        self.clock.advance_to(t)
        self.steps += 1
        for side, packet in self.wire.deliver(t):
            if self.observer is not None:
                self.observer(t, "deliver", side, packet)
            self.parties[side].receive(packet, t)
        for party in self.parties.values():
            deadline = party.next_deadline()
            if deadline is not None and deadline <= t:
                party.on_timer(t)
        self.flush()
        return True

    def fire_timers(self) -> None:
        """Call `on_timer` on each party whose deadline has come."""
        now = self.clock.now
        for party in self.parties.values():
            deadline = party.next_deadline()
            if deadline is not None and deadline <= now:
                party.on_timer(now)

    def pending_segment(self, limit: int | None = None) -> tuple[Side, AddressedSegment] | None:
        """Move time on (firing timers due on the way) until a segment has arrived, and return
        it with the side it is for, without handing it over yet (`deliver_pending` does); None
        if nothing is left to happen, or not before `limit` (absolute us).

        Unlike `step`, timers due at an instant fire before that instant's arrivals are handed
        over, one by one, so a notebook can show each segment with what it alone caused."""
        while True:
            self.flush()
            if self._arrived:
                return self._arrived[0]
            t = self.next_event()
            if t is None or (limit is not None and t > limit):
                return None
            self.clock.advance_to(t)
            self.steps += 1
            self.fire_timers()
            self.flush()
            self._arrived.extend(self.wire.deliver(t))

    def deliver_pending(self) -> tuple[Side, AddressedSegment]:
        """Hand the segment `pending_segment` returned to its party."""
        side, packet = self._arrived.popleft()
        if self.observer is not None:
            self.observer(self.clock.now, "deliver", side, packet)
        self.parties[side].receive(packet, self.clock.now)
        return side, packet

    def step_segment(self, limit: int | None = None) -> tuple[Side, AddressedSegment] | None:
        """Hand over exactly one segment (see `pending_segment`); None when there is none."""
        if self.pending_segment(limit) is None:
            return None
        return self.deliver_pending()

    def run_until(self, predicate: Callable[[], bool], limit: int) -> bool:
        """Run until `predicate()` holds or the clock would pass `limit` (absolute, us).

        Returns whether the predicate holds. When no event is left before `limit`, the clock
        stays at the last event: idle time is not invented.
        """
        self.flush()
        while not predicate():
            if not self.step(limit):
                return predicate()
        return True

    def run_for(self, duration: int) -> None:
        """Process every event in the next `duration` us, then set the clock to its end."""
        end = self.clock.now + duration
        while self.step(end):
            pass
        self.clock.advance_to(end)
