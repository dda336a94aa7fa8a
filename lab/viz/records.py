"""What the pictures draw: the segments of one TCP connection, from wherever they came.

Every picture in `lab.viz` reads one `Conversation`: the segments of a connection in the order
they crossed the wire, each a `SegmentRecord` (time, endpoints, the `Segment` value, its direction
and annotations), plus the state changes of both ends. Three sources build it:

* a capture file, classic pcap or pcapng, including the pcapng a live session's tap wrote
  (`conversation_from_capture`): packets are decoded by `lab.replay` (itself `lab.wire.fast`),
  so flows are numbered exactly as `lab replay` numbers them;
* the in-memory simulation (`WireRecorder`, an observer of `lab.sim.simulation.Simulation`):
  what each side put on the wire, when it arrived, and which packets never did;
* `Connection` objects of a live or in-memory session, whose trace gives the real state changes
  (`states_from_connections`). A capture has no states: they are inferred from SYN, FIN, RST and
  the ACKs that cover them (`infer_states`), the way a person reads a capture.

Annotations are computed here once, so that every picture says the same thing: a segment is a
retransmission when it starts before the highest sequence number its sender had already sent
(seen from the sender, as the simulation and a sender-side capture see it, this is exactly the
sender's retransmissions); FTP text is the first line of a payload that reads as an FTP command
or reply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike

from lab.replay.flows import FlowHalf
from lab.tcp.connection import Connection
from lab.tcp.events import StateChanged
from lab.wire.options import SackBlocks, WindowScale
from lab.wire.segment import AddressedSegment, Segment
from lab.wire.seq import seq_add, seq_diff, seq_ge, seq_gt, seq_lt

RETRANSMISSION = "retransmission"
LOST = "lost"  # put on the in-memory wire and never delivered
BAD_CHECKSUM = "bad checksum"

FTP_VERBS = frozenset(
    [
        "ABOR",
        "ACCT",
        "ALLO",
        "APPE",
        "AUTH",
        "CCC",
        "CDUP",
        "CWD",
        "DELE",
        "EPRT",
        "EPSV",
        "FEAT",
        "HELP",
        "HOST",
        "LANG",
        "LIST",
        "MDTM",
        "MKD",
        "MLSD",
        "MLST",
        "MODE",
        "NLST",
        "NOOP",
        "OPTS",
        "PASS",
        "PASV",
        "PBSZ",
        "PORT",
        "PROT",
        "PWD",
        "QUIT",
        "REIN",
        "REST",
        "RETR",
        "RMD",
        "RNFR",
        "RNTO",
        "SITE",
        "SIZE",
        "SMNT",
        "STAT",
        "STOR",
        "STOU",
        "STRU",
        "SYST",
        "TYPE",
        "USER",
        "XCUP",
        "XCWD",
        "XMKD",
        "XPWD",
        "XRMD",
    ]
)
_REPLY_RE = re.compile(r"\d{3}(?:[ -]|\Z)")
_PRINTABLE_RE = re.compile(r"[\t\x20-\x7e]*\Z")
MAX_TEXT = 60  # characters of FTP text kept for a label


def endpoint(ip: str, port: int) -> str:
    """ "ip:port", IPv6 addresses in brackets (as `lab replay` prints them)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def ftp_text(payload: bytes) -> str | None:
    """The first line of `payload` when it reads as an FTP command or reply, else None.

    Why so strict: data connections carry arbitrary bytes, and a label that shows file contents
    as if they were dialogue would mislead. A line qualifies when it is printable ASCII and starts
    with a three-digit reply code or a known command verb.
    """
    if not payload:
        return None
    head = payload[:512]
    end = head.find(b"\n")
    raw = head if end < 0 else head[:end]
    try:
        line = raw.decode("ascii").rstrip("\r")
    except UnicodeDecodeError:
        return None
    if not line or not _PRINTABLE_RE.match(line):
        return None
    verb = line.split(" ", 1)[0].upper()
    if not (_REPLY_RE.match(line) or verb in FTP_VERBS):
        return None
    return line if len(line) <= MAX_TEXT else line[: MAX_TEXT - 3] + "..."


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """One segment on the wire, as the pictures see it.

    `time_us` is when it was sent (simulation) or captured (capture), in microseconds;
    `arrival_us` when it was delivered, if known. `src` and `dst` are "ip:port" strings.
    `annotations` holds `RETRANSMISSION`, `LOST`, `BAD_CHECKSUM`; `text` the FTP line it carries.
    """

    time_us: int
    src: str
    dst: str
    segment: Segment
    direction: FlowHalf
    annotations: tuple[str, ...] = ()
    text: str | None = None
    arrival_us: int | None = None

    @property
    def retransmission(self) -> bool:
        return RETRANSMISSION in self.annotations

    @property
    def lost(self) -> bool:
        return LOST in self.annotations


@dataclass(frozen=True, slots=True)
class StateChange:
    """One end of the connection moved from `old` to `new` (RFC 9293 state names)."""

    time_us: int
    endpoint: str
    old: str
    new: str


@dataclass(slots=True)
class Conversation:
    """The segments of one TCP connection and the state changes of its two ends.

    `client` sent the first SYN (or, without one, the first segment). `isn` maps each endpoint to
    the base its sequence numbers are shown relative to: its ISN when its SYN was seen, else the
    first sequence number seen from it. `window_shift` maps each endpoint to the window scale its
    windows are shifted by (RFC 7323: only when both SYNs carried the option).
    """

    client: str
    server: str
    records: list[SegmentRecord]
    isn: dict[str, int]
    window_shift: dict[str, int]
    states: dict[str, list[StateChange]] = field(default_factory=dict)
    states_inferred: bool = True
    title: str = ""

    @property
    def start_us(self) -> int:
        return self.records[0].time_us if self.records else 0

    @property
    def end_us(self) -> int:
        if not self.records:
            return 0
        return max(r.arrival_us or r.time_us for r in self.records)

    def endpoints(self) -> tuple[str, str]:
        return self.client, self.server

    def peer(self, ep: str) -> str:
        return self.server if ep == self.client else self.client

    def relative_seq(self, ep: str, seq: int) -> int:
        """`seq` from endpoint `ep` as an offset from its ISN (wrap-safe)."""
        return seq_diff(seq, self.isn.get(ep, seq))

    def payload_bytes(self, direction: FlowHalf) -> int:
        return sum(len(r.segment.payload) for r in self.records if r.direction == direction)

    def sender(self, direction: FlowHalf) -> str:
        return self.client if direction == "c2s" else self.server

    def with_states(self, states: dict[str, list[StateChange]]) -> Conversation:
        """This conversation with the given (real, not inferred) state changes."""
        self.states = states
        self.states_inferred = False
        return self


# -- building a conversation -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Raw:
    time_us: int
    src: str
    dst: str
    segment: Segment
    annotations: tuple[str, ...] = ()
    arrival_us: int | None = None


def build_conversation(raw: Sequence[_Raw], title: str = "") -> Conversation:
    """Orient, number and annotate raw records (all of one connection, in wire order)."""
    if not raw:
        return Conversation("", "", [], {}, {}, {}, True, title)
    client = next((r.src for r in raw if r.segment.syn and not r.segment.has_ack), raw[0].src)
    server = next((r.dst for r in raw if r.src == client), None) or next(
        (r.src for r in raw if r.src != client), raw[0].dst
    )
    isn: dict[str, int] = {}
    syn_shift: dict[str, int | None] = {}
    for r in raw:
        seg = r.segment
        if seg.syn and r.src not in syn_shift:
            isn[r.src] = seg.seq
            ws = seg.option(WindowScale)
            syn_shift[r.src] = ws.shift if isinstance(ws, WindowScale) else None
    for r in raw:
        isn.setdefault(r.src, r.segment.seq)
    both = all(syn_shift.get(ep) is not None for ep in (client, server))
    window_shift = {ep: (min(syn_shift[ep] or 0, 14) if both else 0) for ep in (client, server)}

    highest: dict[str, int] = {}  # per sender: the end of the highest sequence sent so far
    records: list[SegmentRecord] = []
    for r in raw:
        seg = r.segment
        notes = list(r.annotations)
        if seg.seg_len:
            end = seq_add(seg.seq, seg.seg_len)
            top = highest.get(r.src)
            if top is not None and seq_lt(seg.seq, top):
                notes.insert(0, RETRANSMISSION)
            if top is None or seq_gt(end, top):
                highest[r.src] = end
        direction: FlowHalf = "c2s" if r.src == client else "s2c"
        records.append(
            SegmentRecord(
                r.time_us,
                r.src,
                r.dst,
                seg,
                direction,
                tuple(notes),
                ftp_text(seg.payload),
                r.arrival_us,
            )
        )
    conv = Conversation(client, server, records, isn, window_shift, {}, True, title)
    conv.states = infer_states(conv)
    return conv


def sack_blocks(seg: Segment) -> tuple[tuple[int, int], ...]:
    """The SACK blocks a segment carries (empty when none)."""
    opt = seg.option(SackBlocks)
    return opt.blocks if isinstance(opt, SackBlocks) else ()


# -- states -----------------------------------------------------------------------------------


class _StateReader:
    """Reads the state of both ends off the segments, as a person reads a capture.

    The rules are RFC 9293's transitions seen from outside: a SYN puts its sender in SYN-SENT and
    its receiver (from LISTEN) in SYN-RECEIVED; the ACK of a SYN establishes; the first FIN moves
    its sender to FIN-WAIT-1 and the receiver to CLOSE-WAIT, and so on to TIME-WAIT and CLOSED; a
    RST closes both. Each change is dated by the segment that reveals it.
    """

    def __init__(self, client: str, server: str) -> None:
        self.state = {client: "CLOSED", server: "LISTEN"}
        self.changes: dict[str, list[StateChange]] = {client: [], server: []}
        self.syn_end: dict[str, int] = {}
        self.fin_end: dict[str, int] = {}
        self.peer = {client: server, server: client}

    def move(self, ep: str, new: str, t: int) -> None:
        old = self.state[ep]
        if old != new:
            self.state[ep] = new
            self.changes[ep].append(StateChange(t, ep, old, new))

    def feed(self, r: SegmentRecord) -> None:
        seg, src, t = r.segment, r.src, r.time_us
        dst = self.peer[src]
        if seg.rst:
            self.move(src, "CLOSED", t)
            self.move(dst, "CLOSED", t)
            return
        if seg.syn:
            self.syn_end[src] = seq_add(seg.seq, 1)
            if not seg.has_ack:
                self.move(src, "SYN-SENT", t)
                if self.state[dst] in ("LISTEN", "CLOSED"):
                    self.move(dst, "SYN-RECEIVED", t)
            else:
                if self.state[src] in ("LISTEN", "CLOSED"):
                    self.move(src, "SYN-RECEIVED", t)
                if self.state[dst] in ("LISTEN", "CLOSED"):
                    self.move(dst, "SYN-SENT", t)
        if seg.has_ack:
            self._acked(src, dst, seg.ack, t)
        if seg.fin:
            self.fin_end[src] = seq_add(seg.seq, seg.seg_len)
            self._fin_sent(src, t)
            self._fin_received(dst, t)

    def _acked(self, src: str, dst: str, ack: int, t: int) -> None:
        """`src` acknowledges `dst`'s bytes up to `ack`."""
        syn_end = self.syn_end.get(dst)
        if (
            syn_end is not None
            and src in self.syn_end
            and seq_ge(ack, syn_end)
            and self.state[dst] in ("SYN-SENT", "SYN-RECEIVED")
        ):
            # dst's SYN is acknowledged and src's SYN was seen: dst is synchronised (the active
            # opener on the SYN-ACK, the passive one on the third segment)
            self.move(dst, "ESTABLISHED", t)
        fin_end = self.fin_end.get(dst)
        if fin_end is not None and seq_ge(ack, fin_end):
            state = self.state[dst]
            if state == "FIN-WAIT-1":
                self.move(dst, "FIN-WAIT-2", t)
            elif state == "CLOSING":
                self.move(dst, "TIME-WAIT", t)
            elif state == "LAST-ACK":
                self.move(dst, "CLOSED", t)

    def _fin_sent(self, ep: str, t: int) -> None:
        state = self.state[ep]
        if state in ("ESTABLISHED", "SYN-RECEIVED"):
            self.move(ep, "FIN-WAIT-1", t)
        elif state == "CLOSE-WAIT":
            self.move(ep, "LAST-ACK", t)

    def _fin_received(self, ep: str, t: int) -> None:
        state = self.state[ep]
        if state in ("ESTABLISHED", "SYN-RECEIVED"):
            self.move(ep, "CLOSE-WAIT", t)
        elif state == "FIN-WAIT-1":
            self.move(ep, "CLOSING", t)
        elif state == "FIN-WAIT-2":
            self.move(ep, "TIME-WAIT", t)


def infer_states(conv: Conversation) -> dict[str, list[StateChange]]:
    """The state changes of both ends as the segments reveal them (see `_StateReader`).

    A capture picked up mid-connection shows no SYN: both ends then start in ESTABLISHED.
    """
    if not conv.records:
        return {}
    reader = _StateReader(conv.client, conv.server)
    if not any(r.segment.syn for r in conv.records):
        t0 = conv.start_us
        reader.move(conv.client, "ESTABLISHED", t0)
        reader.move(conv.server, "ESTABLISHED", t0)
    for r in conv.records:
        reader.feed(r)
    return reader.changes


def states_from_connections(
    connections: Iterable[Connection], *, time_offset_us: int = 0
) -> dict[str, list[StateChange]]:
    """The real state changes of each connection, from its trace (`StateChanged` events).

    `time_offset_us` is added to trace times, for a driver whose clock starts elsewhere than the
    records' (the simulation's clock and the recorder's are the same: offset 0).
    """
    out: dict[str, list[StateChange]] = {}
    for conn in connections:
        ep = endpoint(conn.local_ip, conn.local_port)
        changes = out.setdefault(ep, [])
        for entry in conn.trace:
            if isinstance(entry, StateChanged):
                changes.append(
                    StateChange(entry.time + time_offset_us, ep, entry.old.value, entry.new.value)
                )
    return out


# -- sources ----------------------------------------------------------------------------------


class WireRecorder:
    """An observer for `Simulation`: records what each side put on the in-memory wire.

    Use as `Simulation(..., observer=recorder)` (or `sim.observer = recorder`), or chain it after
    another observer with `recorder.chain(other)`. Packets are matched to their delivery by
    identity, so each record knows when it arrived; a packet never delivered is marked `LOST`.
    """

    def __init__(self) -> None:
        self._raw: list[_Raw] = []
        self._arrival: dict[int, int] = {}
        self._pending: dict[int, tuple[int, AddressedSegment]] = {}

    def __call__(self, now: int, event: str, side: str, packet: AddressedSegment) -> None:
        key = id(packet)
        if event == "send":
            index = len(self._raw)
            seg = packet.segment
            self._raw.append(
                _Raw(
                    now, endpoint(packet.src, seg.src_port), endpoint(packet.dst, seg.dst_port), seg
                )
            )
            self._pending[key] = (index, packet)  # holding `packet` keeps its id unique
        elif event == "deliver":
            pending = self._pending.pop(key, None)
            if pending is not None:
                self._arrival[pending[0]] = now

    def __len__(self) -> int:
        return len(self._raw)

    def conversation(
        self, connections: Iterable[Connection] = (), *, title: str = "in-memory wire"
    ) -> Conversation:
        """Everything recorded so far (one connection is expected), with the connections'
        real states when given, else inferred ones."""
        raw = [
            _Raw(
                r.time_us,
                r.src,
                r.dst,
                r.segment,
                () if i in self._arrival else (LOST,),
                self._arrival.get(i),
            )
            for i, r in enumerate(self._raw)
        ]
        conv = build_conversation(raw, title)
        conns = list(connections)
        if conns:
            conv.with_states(states_from_connections(conns))
        return conv


def conversations_from_capture(
    path: str | PathLike[str], flows: Iterable[int] | None = None
) -> dict[int, Conversation]:
    """Conversations of the TCP flows of a capture, keyed by `lab replay`'s flow index.

    `flows` limits which flows are kept (None: all of them; memory then grows with the capture,
    which is fine for anything worth a picture).
    """
    from lab import replay

    wanted = None if flows is None else set(flows)
    raw: dict[int, list[_Raw]] = {}
    for step in replay.steps(path):
        tcp = step.decoded.tcp
        if tcp is None or step.flow is None:
            continue
        index = step.flow.index
        if wanted is not None and index not in wanted:
            continue
        seg = tcp.segment
        notes = (BAD_CHECKSUM,) if step.decoded.bad_checksum else ()
        raw.setdefault(index, []).append(
            _Raw(
                step.packet.timestamp_ns // 1000,
                endpoint(tcp.ip.src, seg.src_port),
                endpoint(tcp.ip.dst, seg.dst_port),
                seg,
                notes,
            )
        )
    name = getattr(path, "name", None) or str(path).rsplit("/", 1)[-1]
    return {i: build_conversation(r, f"{name}, flow {i}") for i, r in raw.items()}


def conversation_from_capture(path: str | PathLike[str], flow: int | None = None) -> Conversation:
    """One flow of a capture (by `lab replay`'s index); by default the first that carries data.

    Raises `LookupError` when the capture has no such TCP flow.
    """
    convs = conversations_from_capture(path, None if flow is None else [flow])
    if flow is not None:
        if flow not in convs:
            raise LookupError(f"{path}: no TCP flow {flow}")
        return convs[flow]
    if not convs:
        raise LookupError(f"{path}: no TCP flow")
    with_data = [i for i, c in sorted(convs.items()) if any(r.segment.payload for r in c.records)]
    return convs[with_data[0] if with_data else min(convs)]
