"""The in-memory simulation: two sans-IO parties on a seeded, lossy wire under a virtual clock.

- `lab.sim.wire`: `MemoryWire`, carrying `AddressedSegment` values between side "a" and side "b"
  through an `Impairment` per direction (loss, duplication, reordering, corruption, delay, rate);
- `lab.sim.simulation`: `Simulation`, the one driver: `step()` processes the next instant (every
  arrival and due timer), `step_segment()` hands over exactly one segment (notebooks), and the
  clock jumps from event to event, so minutes of TCP time cost milliseconds;
- `lab.sim.transfer`: `Transfer`, two endpoints moving bytes each way and closing (`lab demo`).

A driver beside `lab.runtime` (live) and `lab.replay` (captures): it imports the protocol cores
and `lab.link.impairment`, never the command line.
"""
