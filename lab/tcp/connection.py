"""One TCP connection as a sans-IO state machine (RFC 9293), with the extensions a modern peer
expects: window scaling and timestamps (RFC 7323), SACK (RFC 2018), RTO (RFC 6298), congestion
control (RFC 5681, NewReno RFC 6582) and the blind-attack defences of RFC 5961.

Shape, and why:

* **Nothing here does I/O or reads a clock.** Every method that can change timing takes `now`
  (integer microseconds). Outgoing segments are queued and pulled with `segments_to_send(now)`;
  `next_deadline()` says when `on_timer(now)` wants to run. The same object therefore runs live,
  in memory under a seeded fault schedule, and one step at a time in a notebook.
* **One place changes state**: `_set_state`, which records a typed `StateChanged(old, new)` in
  `trace` (`lab.tcp.events`). Dropped inbound segments never raise: they are traced as
  `SegmentDropped` with a `DropReason` and counted in `stats.drops`.
  Misuse of the API raises `ConnectionStateError`.
* **The receive path is the shared `Reassembler`**: RCV.NXT, out-of-order data, the FIN position
  and SACK blocks all come from it, so replay and live reception cannot disagree.
* **The send path is a retransmission queue of segments** (`_Sent`), each remembering its
  transmissions (Karn's rule), whether the peer SACKed it and whether it is presumed lost. After a
  timeout every outstanding segment is presumed lost and only the oldest is resent at once (cwnd
  is one segment); the others follow, oldest first, as ACKs open the window again, which is the
  go-back behaviour of RFC 5681 3.1 without re-sending what SACK says arrived before the timeout.
  During NewReno fast recovery FlightSize is SND.NXT - SND.UNA, as RFC 6582 expects.
* **Options are used only when both SYNs carried them** (RFC 7323 2.2 and 3.2, RFC 2018 2). SACK
  blocks go on pure ACKs only: data segments are sized to the peer's MSS minus the timestamp
  option, and a duplicate ACK must carry no data for the peer to count it (RFC 5681 2).

Deliberate simplifications and deviations, each marked where it happens:

* no urgent data; no keepalive sending (probes are answered); data on a SYN is not queued (the
  peer sends it again after the handshake);
* a SYN in SYN-RECEIVED (other than a duplicate of the peer's SYN) gets a challenge ACK (RFC 5961
  4) rather than returning to LISTEN; in TIME-WAIT too, unless its ISN or timestamp is newer
  (RFC 6191, Linux): then the endpoint ends the TIME-WAIT and its listener takes the SYN;
* an exact RST in CLOSING, LAST-ACK or TIME-WAIT reports `Closed`, elsewhere `Reset`;
* a bare FIN at RCV.NXT is accepted even when the window is zero (as Linux does);
* a TSecr older than the last transmission of the segment it acknowledges is not used as an RTT
  sample (it echoes a stale TS.Recent and would count our backed-off timeouts as path delay);
* as Linux: a peer MSS below 48 is raised to 48 (CVE-2019-11479); SYN+FIN to LISTEN is dropped;
  duplicate ACKs answering invalid segments without data are rate-limited (tcp_invalid_ratelimit);
* PAWS (RFC 7323 5.3) drops, with an ACK, a non-RST segment whose TSval is older than TS.Recent;
  TS.Recent is no longer trusted after 24 days idle (RFC 7323 5.5);
* a window shrunk to zero with data outstanding is probed like a zero window (persist timer),
  never timing out while the probes are answered (RFC 1122 4.2.2.17);
* after a lost SYN, data starts with one segment of cwnd (RFC 5681 3.1) and, without an RTT
  sample, a 3 s RTO (RFC 6298 5.7); after more than an RTO idle cwnd restarts (RFC 5681 4.1).
"""

from __future__ import annotations

import enum
import functools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.tcp import events as ev
from lab.tcp.congestion import DUP_ACK_THRESHOLD, NewRenoCongestion
from lab.tcp.events import DropReason, SegmentDropped, StateChanged
from lab.tcp.reassembly import Reassembler
from lab.tcp.recvbuf import Chunk, ReceiveBuffer
from lab.tcp.rtt import RttEstimator
from lab.wire.options import (
    MAX_WINDOW_SHIFT,
    MaxSegmentSize,
    NoOperation,
    SackBlocks,
    SackPermitted,
    TcpOption,
    Timestamps,
    WindowScale,
)
from lab.wire.segment import Flags, Segment
from lab.wire.seq import (
    HALF,
    MASK,
    seq_add,
    seq_between,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_in_window,
    seq_le,
    seq_lt,
    seq_max,
    seq_min,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from lab.tcp.isn import IsnGenerator

SYN_LOSS_RTO = 3_000_000  # RFC 6298 5.7: the RTO once data starts after a lost SYN
DEFAULT_MSS = 536  # RFC 9293 3.7.1: the send MSS when the peer sent no MSS option
TIMESTAMP_OPTION_SPACE = 12  # NOP, NOP, kind 8 (RFC 7323 appendix A layout)
MAX_WINDOW_FIELD = 0xFFFF


class State(enum.Enum):
    """The eleven states of RFC 9293 3.3.2, valued by their RFC names."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


# RFC 9293 3.10.7.4 groups these as "synchronized" states.
SYNCHRONIZED = frozenset(
    {
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.CLOSE_WAIT,
        State.CLOSING,
        State.LAST_ACK,
        State.TIME_WAIT,
    }
)
_NOP = NoOperation()  # a value: one instance serves every segment
_RECEIVES_TEXT = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
# States that may still send queued data (and then the FIN): CLOSING is reached when the peer's
# FIN arrives while ours still waits behind queued data.
MIN_PATH_MSS = 536  # RFC 9293 3.7.1: every host accepts 576-byte datagrams, 536 bytes of data
# Linux's tcp_min_snd_mss (since CVE-2019-11479, "SACK slowness"): a peer announcing a tiny MSS
# would make us cut the stream into tens of thousands of segments; its MSS is raised to this.
MIN_PEER_MSS = 48
MAX_RECV_BUFFER = 1 << 30  # RFC 7323 2.3: the largest window, 65535 << 14, rounded up
# RFC 7323 5.5: TS.Recent is no longer valid after 24 days of idleness (the sender's clock may
# have wrapped half its 32-bit space at 1 ms per tick); PAWS then takes the next TSval as is.
PAWS_IDLE_LIMIT = 24 * 86_400 * 1_000_000
_SENDS_DATA = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK}
)


@dataclass(frozen=True, slots=True)
class TcpConfig:
    """Per-connection settings. Times are microseconds."""

    mss: int = 1460  # what we announce and the most we send
    # Our receive window (bytes); the window scale is derived from it. 1 MiB, like the middle of
    # Linux's autotuning range, so that a user-space reader keeps up without the window filling.
    recv_buffer: int = 1 << 20
    send_buffer: int = 262144  # most unsent + unacked bytes `send` accepts
    window_scaling: bool = True
    sack: bool = True
    timestamps: bool = True
    initial_rto: int = 1_000_000
    # RFC 6298 2.4: RTO is at least 1 s. Linux's 200 ms floor is added to SRTT rather than used
    # as a floor; a plain 200 ms floor would fire just before a 200 ms delayed ACK arrives.
    min_rto: int = 1_000_000
    max_rto: int = 60_000_000
    delayed_ack: int = 200_000  # 0 disables delayed ACK
    msl: int = 30_000_000  # TIME-WAIT lasts 2 * msl
    syn_retries: int = 6
    # RFC 1122 4.2.3.5: "R2 for a SYN segment MUST be set large enough to provide retransmission
    # of the segment for at least 3 minutes". An active open gives up only once both
    # `syn_retries` retransmissions were made and this much time has passed since the first SYN.
    syn_timeout: int = 180_000_000
    data_retries: int = 15
    nagle: bool = False
    initial_cwnd_segments: int | None = None  # None = RFC 5681 3.1 IW
    challenge_ack_limit: int = 10  # RFC 5961 7: at most this many challenge ACKs per second
    # Linux's tcp_invalid_ratelimit: at most one duplicate ACK per this interval answers
    # out-of-window segments without data (and PAWS rejects), so that two confused stacks
    # cannot feed each other an ACK storm. 0 disables the limit.
    invalid_ack_interval: int = 500_000
    # Receive-side ACK coalescing for a driver that hands the connection a burst of segments
    # before it pulls the output (the live host, with the frames it found waiting): the "every
    # second full-sized segment" ACK (RFC 5681 4.2) is held until the burst ends, unless this
    # many bytes are unacknowledged, and then one ACK covers the burst, as Linux does for a
    # socket backlog since 6.7 (tcp_backlog_ack_defer; lab.session.default_tcp_config).
    # Out-of-order data, duplicates and FINs are never held, and a held ACK goes out before
    # the ACK of an out-of-order segment, so the peer still counts one duplicate ACK per
    # segment after a hole. 0 (the default) = ACK as RFC 5681 says.
    ack_batch: int = 0

    def __post_init__(self) -> None:
        """Refuse settings the connection cannot honour, with the field named (not a failure
        deep inside the reassembler or the RTT estimator later)."""
        checks = (
            (
                MIN_PEER_MSS <= self.mss <= MAX_WINDOW_FIELD,
                f"mss must be in 48..65535, not {self.mss}",
            ),
            (
                0 < self.recv_buffer <= MAX_RECV_BUFFER,
                f"recv_buffer must be in 1..{MAX_RECV_BUFFER} (2**30, RFC 7323's largest window),"
                f" not {self.recv_buffer}",
            ),
            (self.send_buffer > 0, f"send_buffer must be positive, not {self.send_buffer}"),
            (self.initial_rto > 0, f"initial_rto must be positive, not {self.initial_rto}"),
            (
                0 < self.min_rto <= self.max_rto,
                f"min_rto must be in 1..max_rto ({self.max_rto}), not {self.min_rto}",
            ),
            (self.delayed_ack >= 0, f"delayed_ack must be >= 0, not {self.delayed_ack}"),
            (self.msl >= 0, f"msl must be >= 0, not {self.msl}"),
            (self.syn_retries >= 0, f"syn_retries must be >= 0, not {self.syn_retries}"),
            (self.syn_timeout >= 0, f"syn_timeout must be >= 0, not {self.syn_timeout}"),
            (self.data_retries >= 0, f"data_retries must be >= 0, not {self.data_retries}"),
            (
                self.initial_cwnd_segments is None or self.initial_cwnd_segments > 0,
                f"initial_cwnd_segments must be positive, not {self.initial_cwnd_segments}",
            ),
            (
                self.challenge_ack_limit >= 0,
                f"challenge_ack_limit must be >= 0, not {self.challenge_ack_limit}",
            ),
            (
                self.invalid_ack_interval >= 0,
                f"invalid_ack_interval must be >= 0, not {self.invalid_ack_interval}",
            ),
            (self.ack_batch >= 0, f"ack_batch must be >= 0, not {self.ack_batch}"),
        )
        for ok, message in checks:
            if not ok:
                raise TcpConfigError(f"TcpConfig: {message}")


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """The handshake completed: ESTABLISHED."""


@dataclass(frozen=True, slots=True)
class DataReceived:
    """`length` more in-order bytes are ready for `read`."""

    length: int


# Events are values, so equal ones may be shared: header prediction reports one DataReceived per
# segment, nearly always of the MSS, and a cached one costs a fifth of a new one (measured).
_data_received = functools.lru_cache(maxsize=64)(DataReceived)


@functools.lru_cache(maxsize=64)
def _timestamp_options(tsval: int, tsecr: int) -> tuple[TcpOption, ...]:
    """NOP, NOP, Timestamps: the options of every segment once timestamps are agreed. Shared
    like `_data_received`: the ACKs sent in one loop turn carry the same clock and echo."""
    return (_NOP, _NOP, Timestamps(tsval, tsecr))


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer's FIN arrived in sequence: it will send nothing more."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection reached CLOSED by an orderly close (or our own abort)."""


@dataclass(frozen=True, slots=True)
class Reset:
    """An acceptable RST ended the connection."""

    reason: str


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Retransmissions (of the SYN or of data) ran out."""


@dataclass(frozen=True, slots=True)
class ConnectionRefused:
    """The peer answered our SYN with a RST."""


Event = Connected | DataReceived | PeerClosed | Closed | Reset | TimedOut | ConnectionRefused


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One diagnostic line of the connection's story (kinds "rst", "option", "challenge-ack",
    "retransmit", "fast-retransmit", "sack-loss", "rto", "timeout", "tail-loss-probe",
    "persist", "rack", "cwnd", "time-wait"); state changes and drops are the typed
    `StateChanged` and `SegmentDropped`, recovery is told by lab.tcp.events' recovery events."""

    time: int
    kind: str
    detail: str


TraceEvent = StateChanged | SegmentDropped | TraceEntry


@dataclass(slots=True)
class ConnectionStats:
    """Counters for tests, notebooks and the demo."""

    segments_sent: int = 0
    segments_received: int = 0
    bytes_sent: int = 0  # new payload bytes, retransmissions not counted
    bytes_received: int = 0  # bytes delivered in order
    retransmissions: int = 0
    fast_retransmits: int = 0
    timeouts: int = 0
    dup_acks_received: int = 0
    challenge_acks: int = 0
    drops: int = 0
    rtt_samples: int = 0
    tail_loss_probes: int = 0


class TcpUsageError(Exception):
    """The caller used the connection API wrongly (not the peer's fault)."""


class TcpConfigError(TcpUsageError, ValueError):
    """A `TcpConfig` field is out of range (raised when the config is made)."""


class ConnectionStateError(TcpUsageError):
    """The operation is not allowed in the connection's current state."""


@dataclass(slots=True)
class _Sent:
    """One segment in the retransmission queue (RFC 9293 3.8.1)."""

    seq: int
    data: bytes
    syn: bool
    fin: bool
    first_sent: int
    transmissions: int = 1
    last_sent: int = 0
    sacked: bool = False  # RFC 2018: the peer holds it; do not resend during recovery
    lost: bool = False  # presumed lost after a timeout; resent oldest-first as cwnd allows

    @property
    def length(self) -> int:
        """Sequence space occupied (SYN and FIN count one each)."""
        return len(self.data) + int(self.syn) + int(self.fin)

    @property
    def end(self) -> int:
        return seq_add(self.seq, self.length)


def window_shift_for(buffer: int) -> int:
    """The smallest shift that lets a 16-bit field announce `buffer` (RFC 7323 2.3), max 14."""
    shift = 0
    while (buffer >> shift) > MAX_WINDOW_FIELD and shift < MAX_WINDOW_SHIFT:
        shift += 1
    return shift


class Connection:
    """The transmission control block and its state machine for one 4-tuple."""

    def __init__(
        self,
        local_ip: str,
        local_port: int,
        remote_ip: str,
        remote_port: int,
        *,
        config: TcpConfig = TcpConfig(),
        iss: int,
        rng_seed: int = 0,
    ) -> None:
        self.local_ip = local_ip
        self.local_port = local_port
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.config = config
        self.iss = iss & MASK
        self.trace: list[TraceEvent] = []
        self.stats = ConnectionStats()
        self._state = State.CLOSED
        self._used = False  # open/listen may happen once per object
        self._passive = False
        self._events: list[Event] = []
        self._out: list[Segment] = []
        rng = random.Random(rng_seed)
        self._ts_offset = rng.getrandbits(32)  # RFC 7323 5.4: a per-connection clock offset

        # Send sequence variables (RFC 9293 3.3.1).
        self._snd_una = self.iss
        self._snd_nxt = self.iss
        self._snd_wnd = 0
        self._snd_wl1 = 0
        self._snd_wl2 = 0
        self._max_snd_wnd = 0
        self._unsent = bytearray()
        self._rtx: list[_Sent] = []
        self._fin_queued = False
        self._fin_sent = False
        self._fin_acked = False
        self._fin_seq = 0

        # Negotiated options.
        self._offer_wscale = config.window_scaling
        self._offer_sack = config.sack
        self._offer_ts = config.timestamps
        self._wscale_ok = False
        self._sack_ok = False
        self._ts_ok = False
        self._peer_mss = DEFAULT_MSS
        self._path_mss: int | None = None  # RFC 1191: lowered by ICMP fragmentation-needed
        self._snd_wscale = 0
        self._rcv_wscale = 0
        self._our_shift = window_shift_for(config.recv_buffer) if config.window_scaling else 0
        self._ts_recent = 0
        self._ts_recent_time = 0  # when TS.Recent was last set, for PAWS's 24-day rule
        self._last_ack_sent = 0
        self._last_oow_ack: int | None = None  # last duplicate ACK for an invalid segment

        # Receive side (RFC 9293 3.3.1): RCV.NXT lives in the reassembler.
        self._irs = 0
        self._syn_received = False
        self._reasm = Reassembler(0, capacity=self._reasm_capacity())
        self._fin_received = False
        self._rcv_adv = 0  # right edge of the window we announced (never moves left)
        self._recv_buf = ReceiveBuffer()  # delivered payloads by reference (lab.tcp.recvbuf)
        self._rcv_mss_est = min(config.mss, DEFAULT_MSS)

        # ACK policy.
        self._ack_now = False
        self._unacked_bytes = 0

        # Timers (absolute deadlines, or None).
        self._rtx_deadline: int | None = None
        self._tlp_deadline: int | None = None  # RFC 8985 7: probe timeout
        self._tlp_done = False  # one probe per episode, until an ACK makes progress
        self._reorder_deadline: int | None = None  # RFC 8985 6.3: RACK reorder timer
        self._min_rtt: int | None = None  # RACK.min_RTT (RFC 8985 6.1)
        self._reo_wnd_mult = 1  # RACK.reo_wnd_mult: grows with each spurious retransmission
        self._reo_round_end: int | None = None  # at most one growth per round trip
        self._delack_deadline: int | None = None
        self._persist_deadline: int | None = None
        self._persist_backoff = 0
        self._tw_deadline: int | None = None
        self._retries = 0
        self._syn_retransmitted = False
        self._probes_unanswered = 0  # zero-window probes since the last ACK (RFC 1122 4.2.2.17)
        self._last_data_sent: int | None = None  # for the restart window (RFC 5681 4.1)

        self._rtt = RttEstimator(config.initial_rto, config.min_rto, config.max_rto)
        self._rtt_seq: int | None = None  # end of the segment being timed (no timestamps)
        self._rtt_time = 0
        self._cc = NewRenoCongestion(config.mss, self.iss, config.initial_cwnd_segments)
        self._challenge_window = 0
        self._challenge_count = 0
        # Recovery events (lab.tcp.events) go to this callable, when set: `lab demo -v`.
        self.event_listener: Callable[[ev.RecoveryEvent], None] | None = None
        self._cwnd_told = (self._cc.cwnd, self._cc.ssthresh)
        self._rack_marked = False  # set by _sack_lost when RACK, not IsLost, marked a segment

    # -- read-only view ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def snd_una(self) -> int:
        return self._snd_una

    @property
    def snd_nxt(self) -> int:
        return self._snd_nxt

    @property
    def snd_wnd(self) -> int:
        return self._snd_wnd

    @property
    def rcv_nxt(self) -> int:
        """RCV.NXT: the reassembler's next byte, plus one once the FIN is in."""
        if not self._syn_received:
            return 0
        return seq_add(self._reasm.next_seq, 1 if self._fin_received else 0)

    @property
    def rcv_wnd(self) -> int:
        """RCV.WND as announced: from RCV.NXT to the right edge we promised."""
        return max(0, seq_diff(self._rcv_adv, self.rcv_nxt))

    @property
    def cwnd(self) -> int:
        return self._cc.cwnd

    @property
    def ssthresh(self) -> int:
        return self._cc.ssthresh

    @property
    def rto(self) -> int:
        return self._rtt.rto

    @property
    def srtt(self) -> int | None:
        return self._rtt.srtt

    @property
    def reassembler(self) -> Reassembler:
        return self._reasm

    @property
    def send_buffered(self) -> int:
        """Bytes accepted by `send` and not yet acknowledged."""
        return len(self._unsent) + sum(len(e.data) for e in self._rtx)

    @property
    def ack_pending(self) -> bool:
        """An ACK is due at once (e.g. the window update a `read` made worth announcing)."""
        return self._ack_now

    @property
    def recv_buffered(self) -> int:
        """Delivered bytes waiting for `read`."""
        return len(self._recv_buf)

    @property
    def effective_mss(self) -> int:
        """Payload bytes per segment we send: RFC 9293 3.7.1, less the timestamp option."""
        mss = min(self._peer_mss, self.config.mss)
        if self._path_mss is not None:
            mss = min(mss, self._path_mss)
        return max(1, mss - (TIMESTAMP_OPTION_SPACE if self._ts_ok else 0))

    def set_path_mss(self, mss: int) -> None:
        """Path MTU discovery lowered the MSS towards the peer (RFC 1191 6.5, RFC 9293 3.7.1).

        New segments use the smaller size at once; segments already in the retransmission queue
        keep their size (a limitation: Linux re-segments them). Never raises the MSS.
        """
        mss = max(mss, MIN_PATH_MSS)
        if self._path_mss is None or mss < self._path_mss:
            self._path_mss = mss
            self._cc.smss = min(self._cc.smss, self.effective_mss)

    @property
    def window_scaling(self) -> tuple[int, int] | None:
        """(our shift, peer's shift) when both SYNs carried the option, else None."""
        return (self._rcv_wscale, self._snd_wscale) if self._wscale_ok else None

    @property
    def sack_enabled(self) -> bool:
        return self._sack_ok

    @property
    def timestamps_enabled(self) -> bool:
        return self._ts_ok

    def events(self) -> list[Event]:
        """Everything that happened since the last call, oldest first."""
        out, self._events = self._events, []
        return out

    # -- user calls (RFC 9293 3.10.1-3.10.6) ---------------------------------------------------

    def open(self, now: int) -> None:
        """Active OPEN (RFC 9293 3.10.1): send a SYN and wait in SYN-SENT."""
        if self._used or self._state is not State.CLOSED:
            raise ConnectionStateError(f"open: connection already used (state {self._state.value})")
        self._used = True
        self._set_state(State.SYN_SENT, now)
        self._send_syn(now)

    def listen(self, now: int) -> None:
        """Passive OPEN (RFC 9293 3.10.1): wait in LISTEN for a SYN on this 4-tuple."""
        if self._used or self._state is not State.CLOSED:
            raise ConnectionStateError(f"listen: connection already used ({self._state.value})")
        self._used = True
        self._passive = True
        self._set_state(State.LISTEN, now)

    def listen_accept_syn(self, syn: Segment, now: int) -> None:
        """Passive open from a `Listener`: LISTEN semantics applied to `syn` (RFC 9293 3.10.7.2)."""
        if self._state is State.CLOSED:
            self.listen(now)
        elif self._state is not State.LISTEN:
            raise ConnectionStateError(f"listen_accept_syn in {self._state.value}")
        self.receive_segment(syn, now)

    def send(self, data: bytes, now: int) -> int:
        """SEND (RFC 9293 3.10.2): queue as much of `data` as the send buffer holds."""
        if self._state in (State.CLOSED, State.LISTEN):
            raise ConnectionStateError(f"send: connection not open ({self._state.value})")
        if self._fin_queued or self._state not in (
            State.SYN_SENT,
            State.SYN_RECEIVED,
            State.ESTABLISHED,
            State.CLOSE_WAIT,
        ):
            raise ConnectionStateError(f"send: connection closing ({self._state.value})")
        room = max(0, self.config.send_buffer - self.send_buffered)
        taken = bytes(data[:room])
        self._unsent += taken
        return len(taken)

    def read(self, max_bytes: int = -1) -> bytes:
        """RECEIVE (RFC 9293 3.10.3): take delivered bytes; reading opens the receive window."""
        return self._opened_by_read(self._recv_buf.read(max_bytes))

    def read_some(self, max_bytes: int) -> bytes:
        """`read`, but it may return fewer bytes, stopping at a segment's boundary (as a kernel
        socket's recv may): a whole segment, however large, comes out with no copy."""
        return self._opened_by_read(self._recv_buf.read_some(max_bytes))

    def read_chunks(self, max_bytes: int) -> list[Chunk]:
        """`read_some`'s bytes as the segments' payloads themselves, in order, not joined: for
        an application that writes them with one writev(2)."""
        chunks = self._recv_buf.read_chunks(max_bytes)
        self._window_opened(len(chunks))
        return chunks

    def _opened_by_read(self, out: bytes) -> bytes:
        self._window_opened(len(out))
        return out

    def _window_opened(self, n: int) -> None:
        """After a read of `n` bytes or chunks (only whether any counts)."""
        if n and self._syn_received and not self._fin_received:
            # RFC 9293 3.8.6.2.2: announce the opened window once the opening is worth it,
            # in particular when the window was closed or nearly so.
            # The gain counts only what a window field can announce: behind a full unscaled
            # window (65535) a read frees buffer but moves no edge, and an "update" would only
            # repeat the last ACK, a duplicate ACK to the peer.
            before = self.rcv_wnd
            reachable = seq_add(self.rcv_nxt, MAX_WINDOW_FIELD << self._rcv_wscale)
            gain = seq_diff(seq_min(self._window_candidate(self.rcv_nxt), reachable), self._rcv_adv)
            if gain >= self._sws_threshold() and before < max(2 * self._rcv_mss_est, gain):
                self._ack_now = True

    def close(self, now: int) -> None:
        """CLOSE (RFC 9293 3.10.4): our FIN after every queued byte; we may still receive."""
        st = self._state
        if st is State.CLOSED:
            raise ConnectionStateError("close: connection does not exist")
        if st in (State.LISTEN, State.SYN_SENT):
            # "Delete the TCB": nothing was synchronized.
            self._enter_closed(now, Closed())
            return
        if self._fin_queued:
            raise ConnectionStateError(f"close: connection closing ({st.value})")
        self._fin_queued = True
        if st is State.SYN_RECEIVED:
            # RFC 9293 3.10.4: the FIN waits until ESTABLISHED; state changes then.
            return
        if st is State.ESTABLISHED:
            self._set_state(State.FIN_WAIT_1, now)
        elif st is State.CLOSE_WAIT:
            self._set_state(State.LAST_ACK, now)

    def abort(self, now: int) -> None:
        """ABORT (RFC 9293 3.10.5): RST in synchronized states, CLOSED at once."""
        st = self._state
        if st is State.CLOSED:
            raise ConnectionStateError("abort: connection does not exist")
        self._out.clear()
        if st in (
            State.SYN_RECEIVED,
            State.ESTABLISHED,
            State.FIN_WAIT_1,
            State.FIN_WAIT_2,
            State.CLOSE_WAIT,
        ):
            self._queue_rst(self._snd_nxt, now, "abort")
        self._enter_closed(now, Closed())

    # -- output --------------------------------------------------------------------------------

    def segments_to_send(self, now: int) -> list[Segment]:
        """Every segment due now: handshake, data, retransmissions, ACKs, RSTs."""
        self._output(now)
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> int | None:
        """The earliest timer (retransmit, delayed ACK, persist, TIME-WAIT), or None."""
        deadlines = [
            d
            for d in (
                self._rtx_deadline,
                self._tlp_deadline,
                self._reorder_deadline,
                self._delack_deadline,
                self._persist_deadline,
            )
            if d is not None
        ]
        if self._tw_deadline is not None:
            deadlines.append(self._tw_deadline)
        return min(deadlines) if deadlines else None

    def on_timer(self, now: int) -> None:
        """Fire every timer whose deadline has passed."""
        if self._tw_deadline is not None and now >= self._tw_deadline:
            # RFC 9293 3.10.8: TIME-WAIT timeout, delete the TCB.
            self._tw_deadline = None
            self._enter_closed(now, Closed())
            return
        if self._rtx_deadline is not None and now >= self._rtx_deadline:
            self._on_retransmit_timeout(now)
        if self._state is State.CLOSED:
            return
        if self._reorder_deadline is not None and now >= self._reorder_deadline:
            # RFC 8985 6.3: segments that were only possibly reordered are now lost.
            self._reorder_deadline = None
            if self._rtx and self._sack_ok:
                self._on_sack_news(self._snd_una, now)
        if self._tlp_deadline is not None and now >= self._tlp_deadline:
            self._on_probe_timeout(now)
        if self._persist_deadline is not None and now >= self._persist_deadline:
            self._on_persist_timeout(now)
        if self._delack_deadline is not None and now >= self._delack_deadline:
            self._delack_deadline = None
            self._ack_now = True

    # -- state ---------------------------------------------------------------------------------

    def _set_state(self, new: State, now: int) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self.trace.append(StateChanged(now, old, new))

    def _record(self, now: int, kind: str, detail: str) -> None:
        self.trace.append(TraceEntry(now, kind, detail))

    def _emit_event(self, event: ev.RecoveryEvent) -> None:
        """The one place recovery events leave the connection (see lab.tcp.events)."""
        if self.event_listener is not None:
            self.event_listener(event)

    def _tell_cwnd(self, now: int, why: ev.CwndChange, *, always: bool = False) -> None:
        """A CongestionWindowChanged for a decision (`always`), or when ssthresh moved or cwnd
        was cut since the last one; the growth of each ACK is not told."""
        cwnd, ssthresh = self._cc.cwnd, self._cc.ssthresh
        told_cwnd, told_ssthresh = self._cwnd_told
        if always or ssthresh != told_ssthresh or cwnd < told_cwnd:
            self._emit_event(ev.CongestionWindowChanged(now, cwnd, ssthresh, why))
        self._cwnd_told = (cwnd, ssthresh)

    def _drop(self, now: int, reason: DropReason, detail: str = "", *, count: bool = True) -> None:
        """Trace a drop; `count=False` for a part of a segment, or a reply not sent."""
        if count:
            self.stats.drops += 1
        self.trace.append(SegmentDropped(now, reason, detail))

    def _enter_closed(self, now: int, event: Event | None) -> None:
        self._set_state(State.CLOSED, now)
        self._rtx_deadline = self._delack_deadline = self._persist_deadline = None
        self._tlp_deadline = self._reorder_deadline = None
        self._tw_deadline = None
        self._ack_now = False
        self._unsent.clear()
        self._rtx.clear()
        if event is not None:
            self._events.append(event)

    def _establish(self, now: int) -> None:
        self._set_state(State.ESTABLISHED, now)
        self._cc.set_smss(self.effective_mss, self._syn_retransmitted)
        if self._syn_retransmitted and self._rtt.srtt is None:
            # RFC 6298 5.7: the timer expired during the handshake and no RTT sample came of
            # it: data transmission starts with an RTO of 3 s (Linux's TCP_TIMEOUT_FALLBACK).
            self._rtt.restart(SYN_LOSS_RTO)
            self._record(now, "rto", f"rto={self._rtt.rto} after a lost SYN (RFC 6298 5.7)")
        self._events.append(Connected())
        if self._fin_queued:
            self._set_state(State.FIN_WAIT_1, now)  # a CLOSE issued in SYN-RECEIVED

    def _enter_time_wait(self, now: int) -> None:
        self._set_state(State.TIME_WAIT, now)
        self._rtx_deadline = self._persist_deadline = None
        self._tw_deadline = now + 2 * self.config.msl  # RFC 9293 3.10.7.4: 2 MSL

    # -- input ---------------------------------------------------------------------------------

    def receive_segment(self, seg: Segment, now: int) -> None:
        """SEGMENT ARRIVES (RFC 9293 3.10.7). Never raises for a bad segment: drops it."""
        st = self._state
        if st is State.ESTABLISHED and self._receive_predicted(seg, now):
            return  # counted by `receive_predicted`
        self.stats.segments_received += 1
        if st is State.CLOSED:
            # RFC 9293 3.10.7.1: discard; answer anything but a RST with a RST.
            self._drop(now, DropReason.CLOSED)
            if not seg.rst:
                self._queue_reset_reply(seg, now)
        elif st is State.LISTEN:
            self._receive_in_listen(seg, now)
        elif st is State.SYN_SENT:
            self._receive_in_syn_sent(seg, now)
        else:
            self._receive_synchronized(seg, now)

    def _receive_predicted(self, seg: Segment, now: int) -> bool:
        """Header prediction for a decoded `Segment` (see `receive_predicted`): its options must
        be none at all, or exactly NOP, NOP, Timestamps, the layout every segment carries once
        timestamps are agreed."""
        options = seg.options
        tsval: int | None = None
        if options:
            ts = options[2] if len(options) == 3 else None
            if (
                type(ts) is not Timestamps
                or type(options[0]) is not NoOperation
                or type(options[1]) is not NoOperation
            ):
                return False
            tsval = ts.tsval
        return self.receive_predicted(
            seg.seq, seg.ack, int(seg.flags), seg.window, tsval, seg.payload, now
        )

    def receive_predicted(
        self,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        tsval: int | None,
        payload: Chunk,
        now: int,
    ) -> bool:
        """SEGMENT ARRIVES for the predicted segment, given as its header fields: the host's
        frame-level fast path (`lab.host.prediction`) reads them straight from the frame and
        makes no `Segment`. `tsval` is the TSval of options that are exactly NOP, NOP,
        Timestamps, or None for a segment without options (any other options: do not call).

        True: the segment was taken, with every effect `receive_segment` would have had.
        False: nothing happened (not even a count); hand the segment to `receive_segment`.

        Header prediction: the bulk receiver's common case in a few cheap tests.

        A teaching point (Van Jacobson's header prediction, 4.3BSD-Reno, 1990; Linux's
        `tcp_rcv_established` fast path): in ESTABLISHED nearly every segment is the next one
        expected, carries data, has only ACK (perhaps PSH) set, acknowledges nothing new and
        leaves the peer's window where it was. For such a segment every check of RFC 9293
        3.10.7.4 passes, and of their effects only three remain: append the text, advance
        RCV.NXT, schedule the ACK (and RFC 7323's TS.Recent). Anything else (a hole or held
        data, a new or old ACK, a window change, SACK blocks or other options, a FIN, a
        timestamp going back, persist mode, another state) answers False before changing
        anything, and the full path takes the segment and gives the same result.
        """
        if self._state is not State.ESTABLISHED:
            return False
        n = len(payload)
        if (flags != 0x10 and flags != 0x18) or not n or self._fin_received:
            return False
        # Sequence arithmetic is written out here (it runs for every segment of a transfer,
        # and a call costs more than the test): (a - b) & MASK >= HALF is seq_lt(a, b).
        rcv_wnd = (self._rcv_adv - seq) & MASK  # RCV.WND: SEG.SEQ is RCV.NXT here
        if (
            seq != self._reasm.next_seq
            or ack != self._snd_una
            or (window << self._snd_wscale) != self._snd_wnd
            or self._persist_deadline is not None
            or n > rcv_wnd
            or rcv_wnd >= HALF  # the window's right edge behind RCV.NXT
        ):
            return False
        if self._ts_ok:
            # RFC 7323 5.3 (PAWS): a TSval older than TS.Recent takes the full path.
            if tsval is None or (tsval - self._ts_recent) & MASK >= HALF:
                return False
        elif tsval is not None:
            return False  # timestamps were not agreed: the full path ignores the option
        if not self._reasm.take_in_order(payload):
            return False  # something held, a FIN known ahead, or too big: the full path
        # The effects of the full path for this segment, in its order (_process_ack: the
        # window fields; _update_ts_recent; _receive_text: text, then the ACK decision).
        if (self._snd_wl1 - seq) & MASK >= HALF:  # seq_lt(SND.WL1, SEG.SEQ)
            self._snd_wl1 = seq
            self._snd_wl2 = ack
        if tsval is not None:
            behind = (seq - self._last_ack_sent) & MASK  # seq_le(SEG.SEQ, Last.ACK.sent)
            if behind == 0 or behind >= HALF:
                self._ts_recent = tsval
                self._ts_recent_time = now
        if n > self._rcv_mss_est:  # the estimate never exceeds config.mss
            self._rcv_mss_est = min(self.config.mss, n)
        self._recv_buf.append(payload)
        self.stats.bytes_received += n
        self._events.append(_data_received(n))
        self.stats.segments_received += 1
        self._ack_in_order_data(n, now, sack=False)
        return True

    def _ack_in_order_data(self, n: int, now: int, *, sack: bool) -> None:
        """`n` bytes arrived in order: RFC 5681 4.2's ACK of at least every second full-sized
        segment (also within a burst), else the delayed-ACK timer. With `ack_batch`, the ACK
        owed goes out at the end of the burst (the next output pull) while fewer than
        `ack_batch` bytes are unacknowledged."""
        self._unacked_bytes += n
        if self._ack_owed():
            batch = self.config.ack_batch
            if batch and self._unacked_bytes < batch:
                self._ack_now = True
            else:
                self._emit(self._make_ack(now, sack=sack))
        elif self._delack_deadline is None:
            self._delack_deadline = now + self.config.delayed_ack

    def _ack_owed(self) -> bool:
        """RFC 5681 4.2 owes an ACK now: in-order data of at least two full-sized segments (or
        any, without delayed ACKs) is unacknowledged. Unless `ack_batch` holds it, it is sent."""
        n = self._unacked_bytes
        return n > 0 and (self.config.delayed_ack == 0 or n >= 2 * self._rcv_mss_est)

    def _queue_reset_reply(self, seg: Segment, now: int) -> None:
        """RFC 9293 3.10.7.1: the RST answering an unacceptable segment."""
        if seg.rst:
            return  # never answer a RST with a RST
        if seg.has_ack:
            self._queue_rst(seg.ack, now, "reply", ack=None)
        else:
            self._queue_rst(0, now, "reply", ack=seq_add(seg.seq, seg.seg_len))

    def _queue_rst(self, seq: int, now: int, why: str, ack: int | None = None) -> None:
        flags = Flags.RST | (Flags.ACK if ack is not None else Flags(0))
        rst = Segment(
            self.local_port, self.remote_port, seq & MASK, ack if ack is not None else 0, flags
        )
        self._record(now, "rst", f"{why}: seq={rst.seq}")
        self._emit(rst)

    def _receive_in_listen(self, seg: Segment, now: int) -> None:
        """RFC 9293 3.10.7.2."""
        if seg.rst:
            self._drop(now, DropReason.RST_IN_LISTEN)
            return
        if seg.has_ack:
            # "Any acknowledgment is bad if it arrives on a connection still in the LISTEN
            # state": <SEQ=SEG.ACK><CTL=RST>.
            self._drop(now, DropReason.ACK_IN_LISTEN)
            self._queue_reset_reply(seg, now)
            return
        if not seg.syn:
            self._drop(now, DropReason.NO_SYN_IN_LISTEN)
            return
        if seg.fin:
            # RFC 9293 leaves SYN+FIN to LISTEN undefined; Linux discards it (no SYN,ACK), and
            # so do we: no real stack sends it, scanners do.
            self._drop(now, DropReason.SYN_FIN_IN_LISTEN)
            return
        self._offer_wscale = self.config.window_scaling and seg.option(WindowScale) is not None
        self._offer_sack = self.config.sack and seg.option(SackPermitted) is not None
        self._offer_ts = self.config.timestamps and seg.option(Timestamps) is not None
        self._take_syn(seg, now)
        if seg.payload:
            # Data on a SYN is legal but rare; the peer resends it after the handshake.
            self._drop(now, DropReason.DATA_ON_SYN, count=False)
        self._set_state(State.SYN_RECEIVED, now)
        self._send_syn(now)

    def _take_syn(self, seg: Segment, now: int) -> None:
        """Record IRS and the peer's SYN options (RFC 9293 3.10.7.2-3, RFC 7323, RFC 2018)."""
        self._irs = seg.seq
        self._syn_received = True
        self._reasm = Reassembler(seq_add(seg.seq, 1), capacity=self._reasm_capacity())
        mss = seg.option(MaxSegmentSize)
        self._peer_mss = mss.mss if isinstance(mss, MaxSegmentSize) and mss.mss > 0 else DEFAULT_MSS
        if self._peer_mss < MIN_PEER_MSS:
            # Deviation from RFC 9293 3.7.1, as Linux since CVE-2019-11479: a tiny MSS would
            # cut the stream into absurdly many segments (and SACK queues); send 48 at least.
            self._record(now, "option", f"peer MSS {self._peer_mss} raised to {MIN_PEER_MSS}")
            self._peer_mss = MIN_PEER_MSS
        ws = seg.option(WindowScale)
        self._wscale_ok = self._offer_wscale and isinstance(ws, WindowScale)
        if self._wscale_ok and isinstance(ws, WindowScale):
            # RFC 7323 2.3: a shift above 14 is used as 14 (and SHOULD be logged).
            if ws.shift > MAX_WINDOW_SHIFT:
                self._record(now, "option", f"window scale {ws.shift} used as 14")
            self._snd_wscale = min(ws.shift, MAX_WINDOW_SHIFT)
            self._rcv_wscale = self._our_shift
        else:
            self._snd_wscale = self._rcv_wscale = 0
        self._sack_ok = self._offer_sack and seg.option(SackPermitted) is not None
        ts = seg.option(Timestamps)
        self._ts_ok = self._offer_ts and isinstance(ts, Timestamps)
        if self._ts_ok and isinstance(ts, Timestamps):
            self._ts_recent = ts.tsval
            self._ts_recent_time = now
        # RFC 9293 3.10.7.3: the window in a SYN is never scaled (RFC 7323 2.2).
        self._snd_wnd = seg.window
        self._max_snd_wnd = max(self._max_snd_wnd, seg.window)
        self._snd_wl1 = seg.seq
        self._snd_wl2 = seg.ack
        # Our SYN announced an unscaled window; its right edge starts from IRS + 1.
        self._rcv_adv = seq_add(seg.seq, 1 + min(self.config.recv_buffer, MAX_WINDOW_FIELD))
        # What a full-sized segment from the peer carries, for the every-second-segment rule.
        ts_space = TIMESTAMP_OPTION_SPACE if self._ts_ok else 0
        self._rcv_mss_est = max(1, min(self.config.mss, self._peer_mss) - ts_space)

    def _receive_in_syn_sent(self, seg: Segment, now: int) -> None:
        """RFC 9293 3.10.7.3."""
        ack_ok = False
        if seg.has_ack:
            # First: check the ACK bit. SEG.ACK =< ISS or SEG.ACK > SND.NXT is unacceptable.
            if seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self._snd_nxt):
                self._drop(now, DropReason.UNACCEPTABLE_ACK_IN_SYN_SENT)
                if not seg.rst:
                    self._queue_rst(seg.ack, now, "bad ACK in SYN-SENT")
                return
            ack_ok = seq_between(self._snd_una, seg.ack, self._snd_nxt)
        if seg.rst:
            # Second: RST. RFC 5961 3.2: acceptable only if it acknowledges our SYN.
            if ack_ok:
                self._record(now, "rst", "connection refused")
                self._enter_closed(now, ConnectionRefused())
            else:
                self._drop(now, DropReason.RST_WITHOUT_ACK_IN_SYN_SENT)
            return
        if not seg.syn:
            self._drop(now, DropReason.NO_SYN_OR_RST_IN_SYN_SENT)
            return
        # Fourth: SYN.
        self._take_syn(seg, now)
        if ack_ok:
            self._ack_advanced(seg, now)
            self._snd_wl1 = seg.seq
            self._snd_wl2 = seg.ack
            self._snd_wnd = seg.window
            self._establish(now)
            self._ack_now = True
            if seg.payload or seg.fin:
                self._receive_text(seg, now, seq_add(seg.seq, 1))
        else:
            # Simultaneous open: SYN-RECEIVED, answer SYN,ACK (same SYN, now with ACK).
            self._set_state(State.SYN_RECEIVED, now)
            for e in self._rtx:
                if e.syn:
                    self._transmit(e, now)

    def accepts_new_syn_in_time_wait(self, seg: Segment, now: int) -> bool:
        """RFC 6191 and Linux (tcp_timewait_state_process): may this SYN end our TIME-WAIT and
        open a new incarnation of the 4-tuple?

        Yes for a plain SYN (no ACK, no RST) that PAWS does not reject and whose sequence
        number is beyond RCV.NXT or whose timestamp is newer than TS.Recent: old duplicates of
        the closed connection can be neither. The caller (the endpoint) ends the TIME-WAIT with
        `end_time_wait` and hands the SYN to its listener.
        """
        if self._state is not State.TIME_WAIT or not seg.syn or seg.has_ack or seg.rst:
            return False
        if self._paws_rejects(seg, now):
            return False
        ts = seg.option(Timestamps)
        newer_ts = (
            self._ts_ok
            and self._ts_recent_valid(now)
            and isinstance(ts, Timestamps)
            and seq_gt(ts.tsval, self._ts_recent)
        )
        return seq_gt(seg.seq, self.rcv_nxt) or newer_ts

    def end_time_wait(self, now: int) -> int:
        """Leave TIME-WAIT early for a new incarnation (see `accepts_new_syn_in_time_wait`).

        Returns the ISS the new incarnation should use: beyond anything this one sent, plus a
        maximal unscaled window, as Linux picks (tw_snd_nxt + 65535 + 2).
        """
        if self._state is not State.TIME_WAIT:
            raise ConnectionStateError(f"end_time_wait in {self._state.value}")
        self._record(now, "time-wait", "ended by a SYN for a new incarnation (RFC 6191)")
        self._enter_closed(now, Closed())
        return seq_add(self._snd_nxt, MAX_WINDOW_FIELD + 2)

    def _acceptable(self, seg: Segment) -> bool:
        """RFC 9293 3.10.7.4 first check: the four cases of segment length vs RCV.WND."""
        wnd = self.rcv_wnd
        nxt = self.rcv_nxt
        n = seg.seg_len
        if n == 0:
            if wnd == 0:
                return seg.seq == nxt
            return seq_in_window(seg.seq, nxt, wnd)
        if wnd == 0:
            # Deviation, as Linux does: a bare FIN at RCV.NXT takes no buffer space, so a
            # closed window does not make the peer retransmit it until its retries run out.
            return n == 1 and seg.fin and seg.seq == nxt
        return seq_in_window(seg.seq, nxt, wnd) or seq_in_window(seq_add(seg.seq, n - 1), nxt, wnd)

    def _receive_synchronized(self, seg: Segment, now: int) -> None:
        """RFC 9293 3.10.7.4 for SYN-RECEIVED and the synchronized states."""
        st = self._state
        if seg.syn and not seg.rst:
            if st is State.SYN_RECEIVED and seg.seq == self._irs and not seg.has_ack:
                # The peer did not get our SYN,ACK: its SYN again. Resend ours.
                self._drop(now, DropReason.DUPLICATE_SYN_IN_SYN_RECEIVED)
                for e in self._rtx:
                    if e.syn:
                        self._transmit(e, now, resend="duplicate_syn")
                return
            if (
                st is State.SYN_RECEIVED
                and seg.has_ack
                and seg.seq == self._irs
                and seq_between(seq_add(self._snd_una, 1), seg.ack, self._snd_nxt)
            ):
                # A SYN,ACK here (simultaneous open): its ACK completes our handshake. Only the
                # peer's own SYN (SEG.SEQ = IRS) qualifies; any other SYN gets a challenge ACK.
                # Its SYN is old (RCV.NXT = IRS + 1), so it is answered with an ACK, as in RFC
                # 9293's figure 8 (line 7) and Linux: the peer learns its SYN,ACK arrived.
                self._ack_advanced(seg, now)
                self._snd_wnd = seg.window
                self._snd_wl1 = seg.seq
                self._snd_wl2 = seg.ack
                self._establish(now)
                self._ack_now = True
                return
            # RFC 5961 4.2: any SYN in a synchronized state, in window or not: challenge ACK.
            self._drop(now, DropReason.SYN_IN_SYNCHRONIZED_STATE)
            self._challenge_ack(now, "SYN")
            return

        if self._paws_rejects(seg, now):
            # RFC 7323 5.3 R1: an old duplicate (TSval older than TS.Recent) is not acceptable:
            # "send an acknowledgment in reply ... and drop the segment"; its data is not used.
            self._drop(now, DropReason.PAWS)
            self._ack_invalid(seg, now)
            return

        # First: sequence number check.
        if not self._acceptable(seg):
            if seg.rst:
                # RFC 5961 3.2: an out-of-window RST is silently dropped.
                self._drop(now, DropReason.RST_OUT_OF_WINDOW)
                return
            if st is State.TIME_WAIT and seg.fin:
                # RFC 9293 3.10.7.4: a retransmitted FIN restarts the 2 MSL timeout.
                self._tw_deadline = now + 2 * self.config.msl
            if (
                seg.has_ack
                and self.rcv_wnd == 0
                and seg.seq == self.rcv_nxt
                and st is not State.SYN_RECEIVED
            ):
                # A zero window still processes valid ACKs (RFC 9293 3.10.7.4, "If the RCV.WND
                # is zero, no segments will be acceptable, but special allowance should be made
                # to accept valid ACKs"): typically the peer's zero-window probe.
                if not self._process_ack(seg, now):
                    return  # answered (rate-limited) or closed by `_process_ack`
                self._drop(now, DropReason.DATA_BEYOND_ZERO_WINDOW)
            else:
                self._drop(now, DropReason.SEQUENCE_NOT_ACCEPTABLE)
            # "An acknowledgment should be sent in reply (unless the RST bit is set)"; this also
            # answers keepalive probes (SEG.SEQ = RCV.NXT - 1).
            if self._state is not State.CLOSED:
                self._ack_invalid(seg, now)
            return

        # Second: RST (RFC 5961 3.2).
        if seg.rst:
            if seg.seq != self.rcv_nxt:
                self._drop(now, DropReason.RST_NOT_AT_RCV_NXT)
                self._challenge_ack(now, "RST")
                return
            self._accept_rst(now)
            return

        # Fifth: the ACK field.
        if not seg.has_ack:
            self._drop(now, DropReason.NO_ACK_BIT)
            return
        if st is State.SYN_RECEIVED:
            if not seq_between(seq_add(self._snd_una, 1), seg.ack, self._snd_nxt):
                # "If the segment acknowledgment is not acceptable, form a reset segment".
                self._drop(now, DropReason.UNACCEPTABLE_ACK_IN_SYN_RECEIVED)
                self._queue_rst(seg.ack, now, "bad ACK in SYN-RECEIVED")
                return
            self._ack_advanced(seg, now)
            self._snd_wnd = seg.window << self._snd_wscale
            self._max_snd_wnd = max(self._max_snd_wnd, self._snd_wnd)
            self._snd_wl1 = seg.seq
            self._snd_wl2 = seg.ack
            self._establish(now)
        elif not self._process_ack(seg, now):
            return
        if self._state is State.CLOSED:
            return

        self._update_ts_recent(seg, now)
        # Sixth/seventh/eighth: text and FIN.
        if seg.payload or seg.fin:
            self._receive_text(seg, now, seg.seq)

    def _accept_rst(self, now: int) -> None:
        """An exact RST (RFC 9293 3.10.7.4 second check, RFC 5961 3.2)."""
        st = self._state
        self._record(now, "rst", f"accepted in {st.value}")
        if st is State.SYN_RECEIVED and not self._passive:
            # Simultaneous open refused: "the connection was refused".
            self._enter_closed(now, ConnectionRefused())
        elif st is State.SYN_RECEIVED:
            # From a passive open the listener keeps listening; this connection is gone.
            self._enter_closed(now, Reset("reset in SYN-RECEIVED"))
        elif st in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
            self._enter_closed(now, Closed())
        else:
            self._enter_closed(now, Reset(f"connection reset in {st.value}"))

    def _challenge_ack(self, now: int, why: str) -> None:
        """RFC 5961 3.2/4.2 challenge ACK, rate-limited per second of `now` (RFC 5961 7)."""
        if now - self._challenge_window >= 1_000_000:
            self._challenge_window = now
            self._challenge_count = 0
        if self._challenge_count >= self.config.challenge_ack_limit:
            self._drop(now, DropReason.CHALLENGE_ACK_RATE_LIMITED, why, count=False)
            return
        self._challenge_count += 1
        self.stats.challenge_acks += 1
        self._record(now, "challenge-ack", why)
        self._emit(self._make_ack(now))

    def _ack_invalid(self, seg: Segment, now: int) -> None:
        """The duplicate ACK answering an unacceptable segment, rate-limited as Linux's
        tcp_oow_rate_limited: segments carrying data or a FIN always get one (the peer must
        learn what we hold), others at most one per `invalid_ack_interval`, so that two stacks
        that disagree about the window cannot ping-pong ACKs for ever."""
        interval = self.config.invalid_ack_interval
        if (seg.seg_len and not seg.syn) or interval == 0:
            self._ack_now = True  # data or a FIN (Linux: SEG.SEQ != SEG.END_SEQ, no SYN)
            return
        if self._last_oow_ack is not None and now - self._last_oow_ack < interval:
            self._drop(now, DropReason.INVALID_ACK_RATE_LIMITED, count=False)
            return
        self._last_oow_ack = now
        self._ack_now = True

    def _ts_recent_valid(self, now: int) -> bool:
        """RFC 7323 5.5: TS.Recent expires after 24 days without a segment updating it."""
        return now - self._ts_recent_time < PAWS_IDLE_LIMIT

    def _paws_rejects(self, seg: Segment, now: int) -> bool:
        """RFC 7323 5.3 R1: SEG.TSval < TS.Recent while TS.Recent is valid. RSTs are exempt
        (RFC 7323 5.3 and Linux: a RST is acceptable regardless of its timestamp)."""
        if not self._ts_ok or seg.rst or not self._ts_recent_valid(now):
            return False
        ts = seg.option(Timestamps)
        return isinstance(ts, Timestamps) and seq_lt(ts.tsval, self._ts_recent)

    def _update_ts_recent(self, seg: Segment, now: int) -> None:
        """RFC 7323 4.3: TS.Recent follows the segment that covers Last.ACK.sent. After 24 days
        idle (RFC 7323 5.5) even an older TSval replaces it, as Linux's tcp_paws_check allows."""
        if not self._ts_ok:
            return
        ts = seg.option(Timestamps)
        if (
            isinstance(ts, Timestamps)
            and seq_le(seg.seq, self._last_ack_sent)
            and (seq_ge(ts.tsval, self._ts_recent) or not self._ts_recent_valid(now))
        ):
            self._ts_recent = ts.tsval
            self._ts_recent_time = now

    def _process_ack(self, seg: Segment, now: int) -> bool:
        """Fifth check for synchronized states; False when the segment must be dropped."""
        ack = seg.ack
        # RFC 5961 5.2: SND.UNA - MAX.SND.WND =< SEG.ACK =< SND.NXT, else drop and ACK.
        if seq_gt(ack, self._snd_nxt):
            # RFC 5961 5.2 and 7: the answering ACK is a challenge ACK, rate-limited like the
            # others, so that a blind flood of bad ACKs cannot make us send as many segments.
            self._drop(now, DropReason.ACK_FOR_UNSENT_DATA)
            self._challenge_ack(now, "ACK of unsent data")
            return False
        if seq_lt(ack, seq_add(self._snd_una, -max(self._max_snd_wnd, 1))):
            self._drop(now, DropReason.ACK_TOO_OLD)
            self._challenge_ack(now, "ACK too old")
            return False
        sacked_news = self._sack_ok and self._take_sack_blocks(seg)
        new_wnd = seg.window << self._snd_wscale
        self._probes_unanswered = 0  # RFC 1122 4.2.2.17: the peer is alive and answering
        advanced = seq_gt(ack, self._snd_una)
        if advanced:
            self._ack_advanced(seg, now)
        elif (
            ack == self._snd_una
            and not seg.payload
            and not seg.syn
            and not seg.fin
            and (new_wnd == self._snd_wnd or sacked_news)
            and self._snd_una != self._snd_nxt
            and new_wnd != 0  # the answer to a zero-window probe, not a sign of loss
        ):
            # RFC 5681 2: a duplicate ACK. RFC 6675 2 also counts one whose window moved (the
            # receiver's application read meanwhile) when its SACK blocks report new data.
            self.stats.dup_acks_received += 1
            flight = seq_diff(self._snd_nxt, self._snd_una)
            if self._cc.on_duplicate_ack(ack, flight, self._snd_nxt) and self._rtx:
                self.stats.fast_retransmits += 1
                self._record(now, "fast-retransmit", f"seq={self._rtx[0].seq}")
                first = self._rtx[0]
                self._emit_event(ev.LossDetected(now, first.seq, 1, "dupacks"))
                self._emit_event(ev.FastRetransmitted(now, first.seq, first.length))
                self._tell_cwnd(now, "fast recovery", always=True)
                self._rtt_seq = None  # Karn
                self._transmit(self._rtx[0], now, resend="fast_retransmit")
        if sacked_news:
            self._on_sack_news(ack, now)
        # RFC 9293 3.10.7.4: window update when SND.UNA =< SEG.ACK =< SND.NXT and the segment
        # is newer than the one that last set the window (SND.WL1, SND.WL2). Deviation, as
        # Linux's tcp_may_update_window: an ACK that advances SND.UNA updates it too, even when
        # it rides on a retransmission of the peer's older text (one filling a hole, SEG.SEQ <
        # SND.WL1); else the old window *size* would apply from the new SND.UNA, past the edge
        # the peer just announced. Seen live: we sent 848 bytes beyond a 2048-byte window.
        if seq_between(self._snd_una, ack, self._snd_nxt) and (
            advanced
            or seq_lt(self._snd_wl1, seg.seq)
            or (self._snd_wl1 == seg.seq and seq_le(self._snd_wl2, ack))
        ):
            self._set_send_window(new_wnd, now)
            self._snd_wl1 = seg.seq
            self._snd_wl2 = ack

        st = self._state
        if self._fin_acked:
            if st is State.FIN_WAIT_1:
                self._set_state(State.FIN_WAIT_2, now)
            elif st is State.CLOSING:
                self._enter_time_wait(now)
            elif st is State.LAST_ACK:
                self._enter_closed(now, Closed())
                return False
        return True

    def _set_send_window(self, wnd: int, now: int) -> None:
        self._snd_wnd = wnd
        self._max_snd_wnd = max(self._max_snd_wnd, wnd)
        if wnd == 0 and self._rtx and self._persist_deadline is None:
            # RFC 9293 3.8.6 / RFC 1122 4.2.2.17: the peer shrank its window to zero with our
            # data outstanding. Retransmissions would only be refused and, counted as retries,
            # would end the connection although the peer answers every one: probe instead, as
            # for a window that was zero before we sent, for as long as ACKs come back.
            self._record(now, "persist", "window shrank to zero with data outstanding")
            self._tlp_deadline = None
            self._arm_persist(now)
            return
        if wnd > 0 and self._persist_deadline is not None:
            # The window opened: leave persist mode (RFC 9293 3.8.6.1).
            self._persist_deadline = None
            self._persist_backoff = 0
            for e in self._rtx:
                # A probe the closed window refused must go again first, without waiting for
                # a timeout; one the peer took is acknowledged by this very ACK.
                e.lost = True
            if self._rtx and self._rtx_deadline is None:
                self._rtx_deadline = now + self._rtt.rto

    def _take_sack_blocks(self, seg: Segment) -> bool:
        """RFC 2018: mark queued segments the peer holds so that recovery skips them.

        Returns True when the blocks SACKed a segment not SACKed before (RFC 6675 2, "DupAck").
        """
        opt = seg.option(SackBlocks)
        if not isinstance(opt, SackBlocks):
            return False
        news = False
        for left, right in opt.blocks:
            if not (
                seq_lt(self._snd_una, right)
                and seq_le(right, self._snd_nxt)
                and seq_lt(left, right)
            ):
                continue  # RFC 2018 / RFC 6675: ignore blocks outside what is outstanding
            for e in self._rtx:
                if not e.sacked and seq_le(left, e.seq) and seq_le(e.end, right):
                    e.sacked = True
                    news = True
        return news

    def _sack_lost(self, now: int) -> tuple[list[_Sent], int | None]:
        """Outstanding segments the SACK scoreboard shows lost, lowest first, and when to look
        again (the RACK reorder timer), if ever.

        Two rules, applied walking down from the highest outstanding segment:
        * RFC 6675 4 (IsLost): lost once more than (DupThresh - 1) * SMSS bytes above it have
          been SACKed, for segments not yet retransmitted (RFC 6675 5, NextSeg rule 1);
        * RFC 8985 6.2 (RACK), in miniature: lost once a segment sent later than it, by more
          than the reordering window (`_reo_wnd`: min RTT / 4, widened after each spurious
          retransmission), has been SACKed. This finds lost retransmissions
          and the losses a tail loss probe reveals, which the first rule cannot. A segment sent
          before the most recently sent SACKed one (ties broken by sequence order) but within
          the reordering window may only be reordered: RFC 8985 6.3 waits until SRTT plus the
          window has passed since it was sent, then presumes it lost (the reorder timer).
          Without that timer, a lost retransmission sent in the same burst as the segment
          SACKed after it waited for the retransmission timeout (1 s at least).
        """
        threshold = (DUP_ACK_THRESHOLD - 1) * self.effective_mss
        srtt = self._rtt.srtt or 0
        reo_wnd = self._reo_wnd()
        rack = max(((e.last_sent, i) for i, e in enumerate(self._rtx) if e.sacked), default=None)
        latest_sacked_send = -1 if rack is None else rack[0]
        sacked_above = 0
        lost: list[_Sent] = []
        look_again: int | None = None
        for i in range(len(self._rtx) - 1, -1, -1):
            e = self._rtx[i]
            if e.sacked:
                sacked_above += e.length
                continue
            if e.lost or e.syn:
                continue
            if (
                sacked_above > threshold and e.transmissions <= 1  # RFC 6675 NextSeg (1)
            ) or latest_sacked_send > e.last_sent + reo_wnd:
                lost.append(e)
                self._rack_marked |= not (sacked_above > threshold and e.transmissions <= 1)
            elif rack is not None and (e.last_sent, i) < rack:
                due = e.last_sent + srtt + reo_wnd  # RFC 8985 6.2 step 5, "remaining"
                if due <= now:
                    lost.append(e)
                    self._rack_marked = True
                else:
                    look_again = max(look_again or 0, due)
        lost.reverse()
        return lost, look_again

    def _reo_wnd(self) -> int:
        """RACK.reo_wnd (RFC 8985 6.2 step 4): min_RTT / 4 times a multiplier that grows when
        a retransmission turns out spurious, never above SRTT; at least 1 ms (our timestamps'
        tick, so that equal send times are not taken for reordering)."""
        srtt = self._rtt.srtt or 0
        base = self._min_rtt if self._min_rtt is not None else srtt
        wnd = base // 4 * self._reo_wnd_mult
        if srtt:
            wnd = min(wnd, srtt)
        return max(1000, wnd)

    def _retransmission_was_spurious(self, e: _Sent, seg: Segment, now: int) -> bool:
        """Did the original of retransmitted `e` arrive after all (it was only reordered)?

        RFC 8985 learns this from DSACK, which we do not receive; the Eifel test of RFC 3522
        does as well with timestamps: an ACK echoing a TSval older than the retransmission was
        caused by an earlier transmission. Without timestamps, an ACK sooner than half the
        smallest RTT after the retransmission cannot be its answer (Linux's RACK test).
        """
        ts = seg.option(Timestamps)
        if self._ts_ok and isinstance(ts, Timestamps) and ts.tsecr != 0:
            return seq_lt(ts.tsecr, self._ts_clock(e.last_sent))
        return self._min_rtt is not None and now - e.last_sent < self._min_rtt // 2

    def _on_sack_news(self, ack: int, now: int) -> None:
        """New SACK information: maybe enter recovery, then presume lost what is lost.

        Lost segments leave the flight and `_output_retransmissions` resends them, oldest first,
        as the congestion window allows; NewReno's window inflation stays as RFC 6582 has it.
        """
        self._rack_marked = False
        lost, self._reorder_deadline = self._sack_lost(now)
        if not lost:
            return
        entered = False
        if not self._cc.in_recovery:
            if lost[0] is not self._rtx[0]:
                return
            flight = seq_diff(self._snd_nxt, self._snd_una)
            sacked = sum(e.length for e in self._rtx if e.sacked)
            if self._cc.enter_recovery(ack, flight, self._snd_nxt, sacked):
                self.stats.fast_retransmits += 1
                self._record(now, "fast-retransmit", f"SACK shows seq={lost[0].seq} lost")
                self._rtt_seq = None  # Karn
                entered = True
            # Otherwise this window already had its congestion response (a timeout's go-back,
            # RFC 6582 "recover" not yet passed): RACK still marks the loss (RFC 8985 6.2),
            # so that a lost go-back retransmission does not wait for a backed-off timeout.
        for e in lost:
            e.lost = True
        self._record(now, "sack-loss", f"{len(lost)} segment(s) presumed lost")
        by: ev.LossSignal = "rack" if self._rack_marked else "sack"
        self._emit_event(ev.LossDetected(now, lost[0].seq, len(lost), by))
        first = lost[0]
        # RFC 6675 5 step (4.3), RFC 5681 3.2 step 2: entering recovery retransmits the first
        # lost segment at once, whatever the window; the others wait for room in cwnd.
        at_once = first is self._rtx[0] and first.transmissions == 1 and self._cc.in_recovery
        if entered and at_once:  # announced only when it is sent: the counts add up
            self._emit_event(ev.FastRetransmitted(now, first.seq, first.length))
        if entered:
            self._tell_cwnd(now, "fast recovery", always=True)
        if at_once:
            self._transmit(first, now, resend="fast_retransmit" if entered else "presumed_lost")

    def _ack_advanced(self, seg: Segment, now: int) -> None:
        """SND.UNA < SEG.ACK =< SND.NXT: drop acknowledged segments, sample RTT, restart timers."""
        ack = seg.ack
        acked_data = 0
        oldest_sent = self._rtx[0].last_sent if self._rtx else now
        spurious = False
        while self._rtx and seq_le(self._rtx[0].end, ack):
            e = self._rtx.pop(0)
            acked_data += len(e.data)
            if e.fin:
                self._fin_acked = True
            if e.transmissions > 1 and not e.syn:
                spurious = spurious or self._retransmission_was_spurious(e, seg, now)
        if spurious and (self._reo_round_end is None or seq_ge(ack, self._reo_round_end)):
            # RFC 8985 6.2 step 4: the path reorders more than the window allowed: widen it.
            self._reo_wnd_mult = min(self._reo_wnd_mult + 1, 16)
            self._reo_round_end = self._snd_nxt
            self._record(now, "rack", f"spurious retransmission: reo_wnd x{self._reo_wnd_mult}")
        if self._rtx and seq_lt(self._rtx[0].seq, ack):
            # Partly acknowledged segment: keep only the unacknowledged tail.
            e = self._rtx[0]
            k = seq_diff(ack, e.seq) - int(e.syn)
            acked_data += k
            e.data = e.data[k:]
            e.seq = ack
            e.syn = False
        self._snd_una = ack
        self._tlp_deadline = None  # RFC 8985 7.2: progress restarts the probe timer
        self._tlp_done = False
        # Karn's algorithm (RFC 6298 3 and 5): the backed-off RTO stays until a valid sample
        # (which `sample` takes to end the back-off), not merely until an ACK of a retransmission.
        self._sample_rtt(seg, now, oldest_sent)
        self._retries = 0
        if acked_data and self._state in SYNCHRONIZED:
            flight_after = seq_diff(self._snd_nxt, self._snd_una)
            if self._cc.on_new_ack(ack, acked_data, flight_after):
                # RFC 6582 3.2 step 5: partial ACK, retransmit the first unacknowledged segment
                # the peer does not already hold (RFC 2018).
                hole = next((e for e in self._rtx if not e.sacked), None)
                if hole is not None:
                    self._record(now, "retransmit", f"partial ACK, seq={hole.seq}")
                    self._emit_event(ev.FastRetransmitted(now, hole.seq, hole.length, True))
                    self._transmit(hole, now, resend="fast_retransmit")
            self._tell_cwnd(now, "partial ACK" if self._cc.in_recovery else "recovery done")
        # RFC 6298 5.2/5.3: stop the timer when all is acknowledged, else restart it.
        if self._rtx:
            if self._persist_deadline is None:
                self._rtx_deadline = now + self._rtt.rto
        else:
            self._rtx_deadline = None

    def _sample_rtt(self, seg: Segment, now: int, oldest_sent: int) -> None:
        """RFC 7323 4.1 (TSecr) or RFC 6298 3 with Karn's rule (one timed segment).

        `oldest_sent` is when the oldest segment this ACK covers was last (re)transmitted. An
        echo older than that belongs to an earlier segment or transmission: the receiver
        answered a duplicate with a stale TS.Recent (RFC 7323 4.3 keeps it for unacceptable
        segments), typically after our ACKs were lost. Such a sample would count our own
        backed-off timeouts as path delay and inflate the RTO, so it is not taken.
        """
        sample: int | None = None
        ts = seg.option(Timestamps)
        if self._ts_ok and isinstance(ts, Timestamps) and ts.tsecr != 0:
            age = seq_diff(self._ts_clock(now), ts.tsecr)  # ms; negative = echo from the future
            if (
                seq_ge(ts.tsecr, self._ts_clock(oldest_sent))
                and 0 <= age * 1000 <= self.config.max_rto
            ):
                sample = age * 1000
            self._rtt_seq = None
        elif self._rtt_seq is not None and seq_ge(seg.ack, self._rtt_seq):
            sample = now - self._rtt_time
            self._rtt_seq = None
        if sample is not None:
            self._rtt.sample(sample)
            self.stats.rtt_samples += 1
            self._min_rtt = sample if self._min_rtt is None else min(self._min_rtt, sample)

    def _receive_text(self, seg: Segment, now: int, seq: int) -> None:
        """Sixth to eighth checks: segment text and FIN, through the reassembler."""
        st = self._state
        if st not in _RECEIVES_TEXT or self._fin_received:
            # RFC 9293 3.10.7.4 seventh step: after the peer's FIN, text is ignored. A FIN
            # retransmission here is answered by the first check; this is belt and braces.
            if seg.fin:
                self._ack_now = True
            if seg.payload:
                self._drop(now, DropReason.TEXT_AFTER_FIN, st.value)
            return
        if seg.payload:
            self._rcv_mss_est = min(self.config.mss, max(self._rcv_mss_est, len(seg.payload)))
        if self.config.ack_batch and seq != self._reasm.next_seq and self._ack_owed():
            # The burst turns out of order (or repeats data): the ACK held for its in-order
            # part goes out first, with the RCV.NXT it had, so that the peer sees the same
            # ACKs as without batching, a new one and then one duplicate per later segment
            # (its fast retransmit counts those).
            self._emit(self._make_ack(now, sack=True))
        res = self._reasm.push(seq, seg.payload, fin=seg.fin, window=self.rcv_wnd)
        if res.refused_bytes:
            self._drop(now, DropReason.BEYOND_WINDOW, str(res.refused_bytes), count=False)
        if res.delivered:
            self._recv_buf.append(res.delivered)
            self.stats.bytes_received += len(res.delivered)
            self._events.append(DataReceived(len(res.delivered)))
        early_fin = seg.fin and not res.fin_reached
        if res.fin_reached and not self._fin_received:
            # Eighth check before the ACK is chosen: one ACK then covers the text and the FIN,
            # instead of an ACK of the text followed at once by another of the FIN.
            self._take_fin(now)
        if (
            res.out_of_order
            or res.filled_gap
            or res.duplicate
            or early_fin
            or self._reasm.held_bytes
        ):
            # RFC 5681 4.2 / RFC 9293 3.8.6.3: out-of-order data, a filled hole or a duplicate
            # get an immediate ACK, a pure one so that the peer counts it as a duplicate. It is
            # queued now, one per segment, so that a driver handing us a burst of segments
            # before asking for output does not merge the peer's three duplicate ACKs into one.
            self._emit(self._make_ack(now, sack=True))
        elif res.delivered:
            self._ack_in_order_data(len(res.delivered), now, sack=True)

    def _take_fin(self, now: int) -> None:
        """Eighth check: the FIN, now that every byte before it is in (RFC 9293 3.10.7.4)."""
        self._fin_received = True
        self._ack_now = True  # a FIN is acknowledged at once
        self._events.append(PeerClosed())
        st = self._state
        if st is State.ESTABLISHED:
            self._set_state(State.CLOSE_WAIT, now)
        elif st is State.FIN_WAIT_1:
            if self._fin_acked:
                self._enter_time_wait(now)
            else:
                self._set_state(State.CLOSING, now)
        elif st is State.FIN_WAIT_2:
            self._enter_time_wait(now)

    # -- sending -------------------------------------------------------------------------------

    def _ts_clock(self, now: int) -> int:
        """TSval: milliseconds plus a per-connection offset (RFC 7323 5.4), 32-bit."""
        return (now // 1000 + self._ts_offset) & MASK

    # -- receive window: what we announce (RFC 9293 3.8.6.2.2, RFC 7323 2.3) ----------------------

    def _reasm_capacity(self) -> int:
        # Rounding the window field up may announce up to one unit (1 << shift) more than the
        # buffer, but never more than 65535 << 14, under the reassembler's 2**30 bound.
        capacity = max(self.config.recv_buffer, MAX_WINDOW_FIELD) + (1 << self._our_shift)
        return min(capacity, MAX_RECV_BUFFER)

    def _sws_threshold(self) -> int:
        """RFC 9293 3.8.6.2.2: move the right edge by at least min(RCV.BUFF / 2, MSS)."""
        return max(1, min(self.config.recv_buffer // 2, self._rcv_mss_est))

    def _window_candidate(self, nxt: int) -> int:
        """The right edge the free buffer allows, from RCV.NXT `nxt` (the caller has it)."""
        avail = max(0, self.config.recv_buffer - len(self._recv_buf))
        return seq_add(nxt, avail)

    def _window_field(self, syn: bool, nxt: int) -> int:
        """The 16-bit window to announce now, RCV.NXT being `nxt` (the caller has it); updates
        the promised right edge."""
        if syn:
            # RFC 7323 2.2: the window field of a SYN is never scaled.
            wnd = min(self.config.recv_buffer, MAX_WINDOW_FIELD)
            edge = seq_add(nxt, wnd)
            self._rcv_adv = seq_max(self._rcv_adv, edge) if self._syn_received else edge
            return wnd
        # Every ACK comes here (one per two segments of a transfer): `_window_candidate`,
        # `_sws_threshold` and the sequence helpers are written out, with their names beside.
        # (Conditionals instead of max() and min(): builtin calls cost more than the tests.)
        adv = self._rcv_adv
        buffer = self.config.recv_buffer
        free = buffer - len(self._recv_buf)
        candidate = (nxt + free if free > 0 else nxt) & MASK  # _window_candidate
        gain = (candidate - adv) & MASK  # seq_diff(candidate, adv), from here on
        if gain >= HALF:
            gain -= MASK + 1
        # Receiver SWS avoidance: only worthwhile openings move the edge (_sws_threshold).
        threshold = buffer // 2
        if self._rcv_mss_est < threshold:
            threshold = self._rcv_mss_est
        right = candidate if gain >= (threshold if threshold > 1 else 1) else adv
        wnd = (right - nxt) & MASK  # max(0, seq_diff(right, nxt))
        if wnd >= HALF:
            wnd = 0
        shift = self._rcv_wscale
        field = wnd >> shift
        if field > MAX_WINDOW_FIELD:
            field = MAX_WINDOW_FIELD
        edge = (nxt + (field << shift)) & MASK
        if field < MAX_WINDOW_FIELD and (edge - adv) & MASK >= HALF:  # seq_lt(edge, adv)
            field += 1  # rounding must not shrink the window (RFC 7323 2.4, RFC 9293 3.8.6)
            edge = (nxt + (field << shift)) & MASK
        if (adv - edge) & MASK >= HALF:  # self._rcv_adv = seq_max(adv, edge)
            self._rcv_adv = edge
        return field

    # -- segments out ---------------------------------------------------------------------------

    def _make(
        self,
        now: int,
        seq: int,
        flags: Flags,
        payload: bytes = b"",
        options: tuple[TcpOption, ...] = (),
    ) -> Segment:
        """A segment carrying our current ACK and window; sending it answers pending ACKs."""
        bits = int(flags)  # int tests: enum `&` is slow
        syn = bool(bits & 0x02)  # Flags.SYN
        # RCV.NXT, read once (the `rcv_nxt` property, inline): the ACK field and the window
        # both start from it.
        nxt = (self._reasm.next_seq + self._fin_received) & MASK if self._syn_received else 0
        ack = 0
        if bits & 0x10:  # Flags.ACK
            ack = nxt
            self._last_ack_sent = ack
            self._ack_now = False
            self._delack_deadline = None
            self._unacked_bytes = 0
        window = self._window_field(syn, nxt)
        if not syn and self._ts_ok:  # RFC 7323: every segment but a SYN carries NOP, NOP, TS
            options = _timestamp_options(self._ts_clock(now), self._ts_recent) + options
        return Segment(
            self.local_port, self.remote_port, seq, ack, flags, window, options, payload, 0
        )

    def _make_ack(self, now: int, sack: bool = False) -> Segment:
        options: tuple[TcpOption, ...] = ()
        if sack and self._sack_ok and self._reasm.held_bytes:
            # RFC 2018 4: the most recent block first; at most 3 blocks next to timestamps.
            blocks = self._reasm.sack_blocks(3 if self._ts_ok else 4)
            if blocks:
                options = (NoOperation(), NoOperation(), SackBlocks(tuple(blocks)))
        return self._make(now, self._acceptable_seq(), Flags.ACK, options=options)

    def _acceptable_seq(self) -> int:
        """The sequence number of a pure ACK: SND.NXT, unless the peer shrank its window below
        it, then the window's right edge SND.UNA + SND.WND (Linux's tcp_acceptable_seq).

        RFC 1122 4.2.2.16 asks a sender to be robust against a shrinking window, and a peer may
        shrink it (Linux does when its receive memory runs out). A zero-length segment is
        acceptable only with SEQ inside the receiver's window (RFC 9293 3.10.7.4), so an ACK at
        SND.NXT beyond the shrunk edge is dropped unread: the peer never learns what we received,
        keeps retransmitting into our answers, and the two ends can stall each other for good
        (seen live under the impair test's faults). The edge itself is what Linux sends and
        accepts, and for a zero window it is RCV.NXT, the one number RFC 9293 accepts then."""
        if self._state is State.SYN_RECEIVED:
            return self._snd_nxt  # the peer's window was never applied to our data yet
        edge = seq_add(self._snd_una, self._snd_wnd)
        return edge if seq_lt(edge, self._snd_nxt) else self._snd_nxt

    def _emit(self, seg: Segment) -> None:
        self.stats.segments_sent += 1
        self._out.append(seg)

    def _syn_options(self, now: int) -> tuple[TcpOption, ...]:
        opts: list[TcpOption] = [MaxSegmentSize(self.config.mss)]
        if self._offer_wscale:
            opts += [NoOperation(), WindowScale(self._our_shift)]
        if self._offer_sack:
            opts += [NoOperation(), NoOperation(), SackPermitted()]
        if self._offer_ts:
            echo = self._ts_recent if self._syn_received else 0
            opts += [NoOperation(), NoOperation(), Timestamps(self._ts_clock(now), echo)]
        return tuple(opts)

    def _send_syn(self, now: int) -> None:
        e = _Sent(self.iss, b"", syn=True, fin=False, first_sent=now, transmissions=0)
        self._rtx.append(e)
        self._snd_nxt = seq_add(self.iss, 1)
        self._transmit(e, now)

    def _transmit(self, e: _Sent, now: int, resend: ev.ResendReason | None = None) -> None:
        """Put one queued segment on the wire: the first time, or again for reason `resend`
        (told as a `Resent` event: every retransmission passes here, so those add up)."""
        if e.syn:
            flags = Flags.SYN | (Flags.ACK if self._syn_received else Flags(0))
            seg = self._make(now, e.seq, flags, options=self._syn_options(now))
        else:
            flags = Flags.ACK
            if e.fin:
                flags |= Flags.FIN
            if e.data and e.end == self._snd_nxt and not self._unsent:
                flags |= Flags.PSH
            seg = self._make(now, e.seq, flags, payload=e.data)
        e.transmissions += 1
        e.last_sent = now
        e.lost = False
        self._last_data_sent = now
        if resend is not None:
            self.stats.retransmissions += 1
            if e.syn:
                self._syn_retransmitted = True
            self._record(now, "retransmit", f"seq={e.seq} len={e.length}")
            self._emit_event(ev.Resent(now, e.seq, e.length, resend))
            if self._rtt_seq is not None and seq_lt(e.seq, self._rtt_seq):
                self._rtt_seq = None  # Karn: the timed segment's ACK is now ambiguous
        if self._rtx_deadline is None and self._persist_deadline is None:
            self._rtx_deadline = now + self._rtt.rto  # RFC 6298 5.1
        self._emit(seg)

    def _flight(self) -> int:
        """Bytes in flight: outstanding and not presumed lost."""
        return sum(e.length for e in self._rtx if not e.lost)

    def _output(self, now: int) -> None:
        st = self._state
        if st in _SENDS_DATA:
            self._output_retransmissions(now)
            self._output_new_data(now)
            self._arm_probe(now)
        if self._ack_now and st not in (State.CLOSED, State.LISTEN, State.SYN_SENT):
            self._emit(self._make_ack(now, sack=True))
        elif self._ack_now and st is State.SYN_SENT:
            self._ack_now = False

    def _output_retransmissions(self, now: int) -> None:
        """After a timeout: resend presumed-lost segments, oldest first, as cwnd allows."""
        for e in self._rtx:
            if not e.lost:
                continue
            if e.sacked:
                e.lost = False
                continue
            if self._flight() + e.length > self._cc.cwnd:
                break
            self._transmit(e, now, resend="presumed_lost")

    def _output_new_data(self, now: int) -> None:
        """New segments within cwnd and the peer's window (RFC 5681, RFC 9293 3.8.6)."""
        mss = self.effective_mss
        if any(e.lost for e in self._rtx):
            return  # presumed-lost segments go first (RFC 5681 3.1 after a timeout)
        if (
            self._unsent
            and not self._rtx
            and self._last_data_sent is not None
            and now - self._last_data_sent > self._rtt.rto
        ):
            # RFC 5681 4.1: idle for more than an RTO, the ACK clock is gone; a full cwnd sent
            # back-to-back could overflow a queue. Start again from RW = min(IW, cwnd).
            if self._cc.restart_after_idle():
                self._record(now, "cwnd", f"restart window {self._cc.cwnd} after idle")
            self._last_data_sent = now
        while self._unsent and not self._fin_sent:
            in_flight = seq_diff(self._snd_nxt, self._snd_una)
            wnd_room = self._snd_wnd - in_flight
            cwnd_room = self._cc.cwnd + self._limited_transmit_allowance(mss) - self._flight()
            usable = min(wnd_room, cwnd_room)
            size = min(mss, len(self._unsent), usable)
            if size <= 0:
                if self._snd_wnd == 0 and not self._rtx and self._persist_deadline is None:
                    self._arm_persist(now)
                return
            if size < mss and not self._may_send_small(size, in_flight):
                return
            data = bytes(self._unsent[:size])
            del self._unsent[:size]
            fin = not self._unsent and self._fin_queued
            e = _Sent(self._snd_nxt, data, syn=False, fin=fin, first_sent=now, transmissions=0)
            self._queue_new(e, now)
            self.stats.bytes_sent += size
        if self._fin_queued and not self._fin_sent and not self._unsent:
            self._queue_new(
                _Sent(self._snd_nxt, b"", syn=False, fin=True, first_sent=now, transmissions=0),
                now,
            )

    def _limited_transmit_allowance(self, mss: int) -> int:
        """RFC 3042: each of the first two duplicate ACKs lets one new segment out beyond cwnd,
        so that a loss in a small window still produces the three duplicates fast retransmit
        needs instead of waiting for the retransmission timer."""
        if self._cc.in_recovery or not self._cc.dup_acks:
            return 0
        return min(self._cc.dup_acks, 2) * mss

    def _may_send_small(self, size: int, in_flight: int) -> bool:
        """Sender SWS avoidance and Nagle (RFC 9293 3.8.6.2.1, 3.7.4)."""
        if size == len(self._unsent):
            return not (self.config.nagle and in_flight > 0)
        # Nothing outstanding means no ACK will come to open the window further: send.
        return in_flight == 0 or size >= self._max_snd_wnd // 2

    def _queue_new(self, e: _Sent, now: int) -> None:
        self._rtx.append(e)
        self._snd_nxt = e.end
        if e.fin:
            self._fin_sent = True
            self._fin_seq = seq_add(e.end, -1)
        if self._rtt_seq is None and not self._ts_ok and e.data:
            self._rtt_seq = e.end
            self._rtt_time = now
        self._transmit(e, now)

    # -- timers --------------------------------------------------------------------------------

    def _on_retransmit_timeout(self, now: int) -> None:
        """RFC 6298 5.4-5.6: resend the oldest segment, back off, restart the timer."""
        self._rtx_deadline = None
        self._reorder_deadline = None  # everything outstanding is presumed lost below
        if not self._rtx:
            return
        self._retries += 1
        handshaking = self._state in (State.SYN_SENT, State.SYN_RECEIVED)
        limit = self.config.syn_retries if handshaking else self.config.data_retries
        if (
            self._state is State.SYN_SENT
            and self._retries > limit
            and now - self._rtx[0].first_sent < self.config.syn_timeout
        ):
            # RFC 1122 4.2.3.5: an active open retries its SYN for 3 minutes at least. A
            # SYN,ACK (SYN-RECEIVED) keeps the plain count, as Linux's tcp_synack_retries does:
            # half-open connections held for minutes would only help a SYN flood.
            limit = self._retries
        if self._retries > limit:
            self._record(now, "timeout", f"gave up after {limit} retransmissions")
            self._enter_closed(now, TimedOut())
            return
        self.stats.timeouts += 1
        self._record(now, "rto", f"rto={self._rtt.rto} seq={self._rtx[0].seq}")
        fired = self._rtt.rto
        if not handshaking:
            self._cc.on_retransmit_timeout(self._flight(), self._snd_nxt)
        self._rtt.back_off()
        self._emit_event(ev.RtoFired(now, self._rtx[0].seq, fired, self._rtt.rto, self._retries))
        if not handshaking:
            self._tell_cwnd(now, "timeout", always=True)
        self._rtt_seq = None  # Karn's rule
        for e in self._rtx:
            # RFC 2018 8: after a timeout, SACK information is not trusted.
            e.lost = True
            e.sacked = False
        self._transmit(self._rtx[0], now, resend="rto")
        self._rtx_deadline = now + self._rtt.rto

    def _arm_probe(self, now: int) -> None:
        """RFC 8985 7.2: schedule a tail loss probe two smoothed RTTs after the last send.

        When the last segments of a flight are lost no duplicate ACK comes back, and only the
        retransmission timer (1 s at least) would notice. A probe after 2 * SRTT draws a SACK
        that lets `_on_sack_news` start fast recovery instead. Needs SACK and an RTT estimate;
        one probe per episode; never later than the retransmission timer itself.
        """
        srtt = self._rtt.srtt
        if (
            self._tlp_deadline is not None
            or self._tlp_done
            or not self._sack_ok
            or srtt is None
            or not self._rtx
            or self._rtx_deadline is None
            or self._cc.in_recovery
            or self._state not in (State.ESTABLISHED, State.CLOSE_WAIT)
            or any(e.lost for e in self._rtx)
        ):
            return
        pto = 2 * srtt
        if seq_diff(self._snd_nxt, self._snd_una) < 2 * self.effective_mss:
            # RFC 8985 7.2 adds the peer's delayed-ACK time when one segment is in flight. A
            # receiver may equally delay its ACK for a full segment plus a short last one (RFC
            # 5681 4.2 asks for an ACK per two *full-sized* segments), the usual end of a
            # transfer: without the allowance every such tail was probed spuriously.
            pto += self.config.delayed_ack
        pto = max(pto, 10_000)
        if now + pto < self._rtx_deadline:
            self._tlp_deadline = now + pto

    def _on_probe_timeout(self, now: int) -> None:
        """RFC 8985 7.3: send one new segment if the windows allow, else resend the last one."""
        self._tlp_deadline = None
        self._tlp_done = True
        if not self._rtx:
            return  # recovery or a timeout took over since the probe was armed
        in_flight = seq_diff(self._snd_nxt, self._snd_una)
        size = min(self.effective_mss, len(self._unsent), self._snd_wnd - in_flight)
        self.stats.tail_loss_probes += 1
        if size > 0 and not self._fin_sent:
            data = bytes(self._unsent[:size])
            del self._unsent[:size]
            fin = not self._unsent and self._fin_queued
            self._record(now, "tail-loss-probe", f"new data seq={self._snd_nxt} len={size}")
            self._emit_event(ev.TailLossProbeSent(now, self._snd_nxt, size, True))
            e = _Sent(self._snd_nxt, data, syn=False, fin=fin, first_sent=now, transmissions=0)
            self._queue_new(e, now)
            self.stats.bytes_sent += size
        else:
            last = self._rtx[-1]
            self._record(now, "tail-loss-probe", f"resend seq={last.seq} len={last.length}")
            self._emit_event(ev.TailLossProbeSent(now, last.seq, last.length, False))
            self._transmit(last, now, resend="tail_loss_probe")
        self._rtx_deadline = now + self._rtt.rto  # RFC 8985 7.3: the RTO follows the probe

    def _arm_persist(self, now: int) -> None:
        interval = min(self.config.max_rto, self._rtt.rto << self._persist_backoff)
        self._persist_deadline = now + interval
        self._rtx_deadline = None

    def _on_persist_timeout(self, now: int) -> None:
        """RFC 9293 3.8.6.1: probe a zero window with one byte, backing off, as long as the
        peer answers. RFC 1122 4.2.2.17 keeps the connection open while ACKs arrive; probes
        that go unanswered `data_retries` times in a row end it as retransmissions would."""
        self._persist_deadline = None
        if self._snd_wnd != 0:
            return
        if self._probes_unanswered >= self.config.data_retries and (self._rtx or self._unsent):
            self._record(now, "timeout", f"{self._probes_unanswered} window probes unanswered")
            self._enter_closed(now, TimedOut())
            return
        self._probes_unanswered += 1
        if self._rtx:
            probe = self._rtx[0]
            self._record(now, "persist", f"probe again seq={probe.seq}")
            self._transmit(probe, now, resend="window_probe")
        elif self._unsent:
            data = bytes(self._unsent[:1])
            del self._unsent[:1]
            self._record(now, "persist", f"probe seq={self._snd_nxt}")
            e = _Sent(self._snd_nxt, data, syn=False, fin=False, first_sent=now, transmissions=0)
            self._rtx.append(e)
            self._snd_nxt = e.end
            self.stats.bytes_sent += 1
            self._persist_deadline = now  # keep the retransmit timer off while probing
            self._transmit(e, now)
        else:
            return
        self._rtx_deadline = None
        self._persist_backoff = min(self._persist_backoff + 1, 16)
        self._arm_persist(now)
        probe_seq = self._rtx[0].seq if self._rtx else self._snd_nxt
        interval = min(self.config.max_rto, self._rtt.rto << self._persist_backoff)
        self._emit_event(ev.ZeroWindowProbed(now, probe_seq, interval))


class Listener:
    """A passive open on one local port: SYNs become connections in SYN-RECEIVED."""

    def __init__(
        self,
        local_ip: str,
        local_port: int,
        *,
        config: TcpConfig,
        isn: IsnGenerator,
        backlog: int = 16,
    ) -> None:
        self.local_ip = local_ip
        self.local_port = local_port
        self.config = config
        self.backlog = backlog
        self._isn = isn
        self._pending: list[Connection] = []
        self.refused = 0  # SYNs dropped because the backlog was full

    def receive_syn(
        self,
        remote_ip: str,
        syn: Segment,
        now: int,
        iss: int | None = None,
        *,
        local_ip: str | None = None,
        config: TcpConfig | None = None,
    ) -> Connection | None:
        """A new connection in SYN-RECEIVED with its SYN,ACK queued; None if the backlog is full
        or the segment is not a plain SYN (SYN+FIN included: Linux drops it too).

        `iss` forces the initial send sequence number (a SYN that ended a TIME-WAIT).
        `local_ip` and `config`: the address the SYN was sent to and the settings for its family,
        when a dual-stack endpoint listens on both (default: the listener's own)."""
        local_ip = self.local_ip if local_ip is None else local_ip
        if not syn.syn or syn.has_ack or syn.rst or syn.fin:
            return None
        self._pending = [c for c in self._pending if c.state is not State.CLOSED]
        if len(self._pending) >= self.backlog:
            self.refused += 1
            return None
        if iss is None:
            iss = self._isn.isn(local_ip, self.local_port, remote_ip, syn.src_port, now)
        conn = Connection(
            local_ip,
            self.local_port,
            remote_ip,
            syn.src_port,
            config=self.config if config is None else config,
            iss=iss,
            rng_seed=iss,
        )
        conn.listen_accept_syn(syn, now)
        self._pending.append(conn)
        return conn

    def accept(self) -> Connection | None:
        """The oldest connection that completed its handshake and was not yet accepted."""
        for conn in self._pending:
            if conn.state in SYNCHRONIZED:
                self._pending.remove(conn)
                return conn
        return None

    @property
    def pending(self) -> int:
        """Connections in the backlog (handshaking or not yet accepted)."""
        return sum(1 for c in self._pending if c.state is not State.CLOSED)
