"""What a connection's loss recovery did, as typed events (frozen, past tense, one class each).

Why typed: `lab demo -v`, the notebooks and the tests explain recovery from these values, and
format them for people at the top (`describe`), instead of parsing trace text back. A
`Connection` hands each one to its `event_listener`, when one is set, at the moment it happens;
with none set the hook costs one attribute test.

Times are the connection's clock (integer microseconds); sequence numbers are absolute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LossSignal = Literal["dupacks", "sack", "rack"]
CwndChange = Literal["fast recovery", "partial ACK", "timeout", "recovery done"]


@dataclass(frozen=True, slots=True)
class LossDetected:
    """Segments presumed lost, and what showed it: three duplicate ACKs (RFC 5681 3.2), the
    SACK scoreboard (RFC 6675 4, IsLost), or a later segment SACKed first (RFC 8985, RACK)."""

    time: int
    seq: int  # the first segment presumed lost
    segments: int
    by: LossSignal


@dataclass(frozen=True, slots=True)
class FastRetransmitted:
    """The first lost segment resent without waiting for the timer (RFC 5681 3.2, RFC 6582 3.2
    step 5 when `partial_ack`)."""

    time: int
    seq: int
    length: int
    partial_ack: bool = False


@dataclass(frozen=True, slots=True)
class RtoFired:
    """The retransmission timer expired (RFC 6298 5.4-5.6): the oldest segment resent, and the
    timer backed off from `rto` to `next_rto`."""

    time: int
    seq: int
    rto: int
    next_rto: int
    retries: int


@dataclass(frozen=True, slots=True)
class TailLossProbeSent:
    """RFC 8985 7.3: a probe after 2 SRTT without an ACK, new data or the last segment again."""

    time: int
    seq: int
    length: int
    new_data: bool


@dataclass(frozen=True, slots=True)
class ZeroWindowProbed:
    """RFC 9293 3.8.6.1: one byte sent into a closed window to learn when it opens."""

    time: int
    seq: int
    interval: int  # until the next probe, backing off


@dataclass(frozen=True, slots=True)
class CongestionWindowChanged:
    """The congestion window was cut or restored, or ssthresh moved (RFC 5681, RFC 6582); the
    growth of every ACK is not an event, or each ACK would be one."""

    time: int
    cwnd: int
    ssthresh: int
    why: CwndChange


RecoveryEvent = (
    LossDetected
    | FastRetransmitted
    | RtoFired
    | TailLossProbeSent
    | ZeroWindowProbed
    | CongestionWindowChanged
)

# The name of each kind, as totals and JSON count them.
KIND: dict[type, str] = {
    LossDetected: "loss_detected",
    FastRetransmitted: "fast_retransmits",
    RtoFired: "rtos",
    TailLossProbeSent: "tail_loss_probes",
    ZeroWindowProbed: "zero_window_probes",
    CongestionWindowChanged: "cwnd_changes",
}

_SIGNAL = {
    "dupacks": "three duplicate ACKs",
    "sack": "the SACK scoreboard",
    "rack": "RACK (a later segment SACKed first)",
}


def describe(event: RecoveryEvent, isn: int = 0) -> str:
    """One line for people; sequence numbers relative to `isn` + 1 (the first data byte)."""

    def rel(seq: int) -> int:
        return (seq - isn - 1) % 2**32

    match event:
        case LossDetected(_, seq, segments, by):
            return f"loss detected by {_SIGNAL[by]}: {segments} segment(s) from {rel(seq)}"
        case FastRetransmitted(_, seq, length, partial):
            why = " (partial ACK)" if partial else ""
            return f"fast retransmit{why}: {rel(seq)}..{rel(seq) + length}"
        case RtoFired(_, seq, rto, next_rto, retries):
            return (
                f"RTO after {rto / 1000:g} ms: resend {rel(seq)}, timer backed off to "
                f"{next_rto / 1000:g} ms (retry {retries})"
            )
        case TailLossProbeSent(_, seq, length, new_data):
            what = "new data" if new_data else "the last segment again"
            return f"tail-loss probe: {what}, {rel(seq)}..{rel(seq) + length}"
        case ZeroWindowProbed(_, seq, interval):
            return f"zero window: 1-byte probe at {rel(seq)}, next in {interval / 1000:g} ms"
        case CongestionWindowChanged(_, cwnd, ssthresh, why):
            return f"cwnd {cwnd} bytes, ssthresh {ssthresh} ({why})"
    raise TypeError(f"not a recovery event: {event!r}")
