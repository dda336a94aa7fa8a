"""What a connection records and does, as typed values (aioquic's `quic/events.py` habit).

A flat list of frozen, slotted dataclasses named in the past tense, one per event; new events are
appended here as new classes. The core never formats these for people and nobody parses them:
the runtime, the capture tap, the notebooks and the CLI read the fields (`StateChanged.old`,
`.new`; `SegmentDropped.reason`) and write whatever text they need.

Two families:
- trace events (`StateChanged`, `SegmentDropped`): every one has `time` (integer microseconds)
  and a `kind` word, so a trace can be listed generically; `detail` renders its fields in the
  words `TraceEntry` used before, for listings;
- recovery events (`LossDetected` ... `CongestionWindowChanged`): what loss recovery did;
  `Resent` is every retransmission with its reason, so the reasons add up to the count. `lab
  demo -v`, the notebooks and the tests explain recovery from these values, formatted for people
  at the top (`describe`). A `Connection` hands each one to its `event_listener`, when one is set,
  at the moment it happens; with none set the hook costs one attribute test. Sequence numbers are
  absolute.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Mapping

    from lab.tcp.connection import State


class DropReason(enum.Enum):
    """Why an inbound segment (or part of it) was not taken; values are the words shown.

    `{}` in a value is filled with the drop's `detail` (a state, a byte count, a cause)."""

    CLOSED = "segment for a closed connection"
    RST_IN_LISTEN = "RST in LISTEN"
    ACK_IN_LISTEN = "ACK in LISTEN"
    NO_SYN_IN_LISTEN = "no SYN in LISTEN"
    DATA_ON_SYN = "data on SYN not queued"
    UNACCEPTABLE_ACK_IN_SYN_SENT = "unacceptable ACK in SYN-SENT"
    RST_WITHOUT_ACK_IN_SYN_SENT = "RST without acceptable ACK in SYN-SENT"
    NO_SYN_OR_RST_IN_SYN_SENT = "neither SYN nor RST in SYN-SENT"
    DUPLICATE_SYN_IN_SYN_RECEIVED = "duplicate SYN in SYN-RECEIVED"
    SYN_IN_SYNCHRONIZED_STATE = "SYN in synchronized state"
    RST_OUT_OF_WINDOW = "RST out of window"
    DATA_BEYOND_ZERO_WINDOW = "data beyond a zero window (probe)"
    SEQUENCE_NOT_ACCEPTABLE = "sequence number not acceptable"
    RST_NOT_AT_RCV_NXT = "RST in window but not at RCV.NXT"
    NO_ACK_BIT = "no ACK bit"
    UNACCEPTABLE_ACK_IN_SYN_RECEIVED = "unacceptable ACK in SYN-RECEIVED"
    CHALLENGE_ACK_RATE_LIMITED = "challenge ACK for {} rate-limited"
    ACK_FOR_UNSENT_DATA = "ACK for data not yet sent"
    ACK_TOO_OLD = "ACK too old (RFC 5961 5.2)"
    TEXT_AFTER_FIN = "text after FIN in {}"
    BEYOND_WINDOW = "{} bytes beyond the window"
    SYN_FIN_IN_LISTEN = "SYN+FIN in LISTEN"
    PAWS = "PAWS: timestamp older than TS.Recent"
    INVALID_ACK_RATE_LIMITED = "duplicate ACK for an invalid segment rate-limited"


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The connection moved from `old` to `new` (RFC 9293 3.3.2); recorded by `_set_state`."""

    kind: ClassVar[str] = "state"
    time: int
    old: State
    new: State

    @property
    def detail(self) -> str:
        return f"{self.old.value} -> {self.new.value}"


@dataclass(frozen=True, slots=True)
class SegmentDropped:
    """An inbound segment, or the part of it named by `reason`, was not taken."""

    kind: ClassVar[str] = "drop"
    time: int
    reason: DropReason
    detail_value: str = ""  # fills the `{}` of the reason, when it has one

    @property
    def detail(self) -> str:
        text = self.reason.value
        return text.format(self.detail_value) if "{}" in text else text


LossSignal = Literal["dupacks", "sack", "rack"]
ResendReason = Literal[
    "fast_retransmit", "rto", "tail_loss_probe", "presumed_lost", "window_probe", "duplicate_syn"
]
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
class Resent:
    """A segment sent again, and why. Every retransmission is one, so that counting them by
    `why` accounts for all of `ConnectionStats.retransmissions`: those the events above announce
    (a fast retransmit, an RTO, a tail-loss probe of the last segment, a window probe again), and
    those nothing else names: the other segments presumed lost, resent oldest first as cwnd
    allows after a timeout or once SACK or RACK marks them (RFC 6675 NextSeg, RFC 5681 3.1), and
    a SYN,ACK resent for the peer's duplicate SYN."""

    time: int
    seq: int
    length: int
    why: ResendReason


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
    | Resent
    | CongestionWindowChanged
)

# The name of each kind, as totals and JSON count them.
KIND: dict[type, str] = {
    LossDetected: "loss_detected",
    FastRetransmitted: "fast_retransmits",
    RtoFired: "rtos",
    TailLossProbeSent: "tail_loss_probes",
    ZeroWindowProbed: "zero_window_probes",
    Resent: "resent",
    CongestionWindowChanged: "cwnd_changes",
}

# Each reason for a resend in words: (one, several), as "13 fast retransmits" reads.
RESEND_WORDS: dict[ResendReason, tuple[str, str]] = {
    "fast_retransmit": ("fast retransmit", "fast retransmits"),
    "rto": ("after an RTO", "after RTOs"),
    "tail_loss_probe": (
        "tail-loss probe of the last segment",
        "tail-loss probes of the last segment",
    ),
    "presumed_lost": ("resend of a segment presumed lost", "resends of segments presumed lost"),
    "window_probe": ("zero-window probe again", "zero-window probes again"),
    "duplicate_syn": ("SYN,ACK again for a duplicate SYN", "SYN,ACKs again for duplicate SYNs"),
}
# Why, after "resend 10136..11584: ", in `describe`.
_RESEND_WHY: dict[ResendReason, str] = {
    "fast_retransmit": "fast retransmit",
    "rto": "the retransmission timer expired",
    "tail_loss_probe": "tail-loss probe",
    "presumed_lost": "presumed lost",
    "window_probe": "zero-window probe",
    "duplicate_syn": "the peer sent its SYN again",
}
# The reasons another event already narrates at the same moment (`lab demo -v` shows that one).
ANNOUNCED: frozenset[ResendReason] = frozenset(
    {"fast_retransmit", "rto", "tail_loss_probe", "window_probe"}
)


_Key = TypeVar("_Key", bound=str)


def describe_counts(counts: Mapping[str, int], words: Mapping[_Key, tuple[str, str]]) -> str:
    """ "13 fast retransmits, 1 RTO" for the keys of `words` that happened, in its order, each
    in the word for one or for several."""
    parts = []
    for key, (one, several) in words.items():
        n = counts.get(key, 0)
        if n:
            parts.append(f"{n} {one if n == 1 else several}")
    return ", ".join(parts)


def describe_resends(counts: dict[str, int]) -> str:
    """ "13 fast retransmits, 1 after an RTO, 4 resends of segments presumed lost" for the
    reasons that happened (keys: `ResendReason`), in `RESEND_WORDS` order."""
    return describe_counts(counts, RESEND_WORDS)


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
        case Resent(_, seq, length, why):
            return f"resend {rel(seq)}..{rel(seq) + length}: {_RESEND_WHY[why]}"
        case CongestionWindowChanged(_, cwnd, ssthresh, why):
            return f"cwnd {cwnd} bytes, ssthresh {ssthresh} ({why})"
    raise TypeError(f"not a recovery event: {event!r}")
