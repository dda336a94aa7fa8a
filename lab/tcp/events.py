"""What a connection records in its trace, as typed values (aioquic's `quic/events.py` habit).

A flat list of frozen, slotted dataclasses named in the past tense, one per event; new events are
appended here as new classes. The core never formats these for people and nobody parses them:
the runtime, the capture tap, the notebooks and the CLI read the fields (`StateChanged.old`,
`.new`; `SegmentDropped.reason`) and write whatever text they need.

Every trace event has `time` (integer microseconds) and a `kind` word, so a trace can be listed
generically; `detail` renders its fields in the words `TraceEntry` used before, for listings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
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
