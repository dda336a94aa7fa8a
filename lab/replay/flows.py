"""TCP flows of a capture, each direction fed to the same `Reassembler` the live stack uses.

A flow is one TCP connection: a 4-tuple (IPv4 or IPv6) plus its lifetime, because a 4-tuple is
reused: a SYN with a new ISN after the previous connection closed (or on a tuple whose SYN had
another ISN) starts a new flow, as Wireshark's `tcp.stream` does. The client is the sender of the
SYN; without one (mid-stream pickup) the side with the ephemeral-looking port is guessed.

Each direction owns a `Reassembler` created at ISN + 1 when the SYN is seen. When it is not
(capture started mid-connection, or the SYN was lost) the reassembler starts at the first data
byte seen and the flow is flagged `midstream`; if the peer had already acknowledged an earlier
sequence number, the stream starts there instead, so the bytes the capture missed are reported
as a leading gap rather than silently dropped. The same trick at the end: bytes the peer
acknowledged but the capture never held are a trailing gap.

Retransmissions (segments whose every byte was already received), conflicting overlaps (the
reassembler's `OverlapConflict`, under policy `first` or `last`), bad checksums, snaplen-cut
payload, resets and FINs are counted per direction for the report.

A segment whose TCP checksum fails (and is not explained by offload) is not trusted: the
receiving kernel dropped it and its sender retransmitted, so its bytes are very likely not the
bytes the receiver got. Its data and FIN are set aside (bounded, like the reassembler's window)
instead of entering the reassembler, so a good copy always wins whatever the overlap policy and a
corrupted byte never reaches a recovered file when a clean copy exists. Only at the end of the
capture, bytes that no trusted copy supplied are filled from the set-aside copies, as a last
resort better than a hole, and recorded in `untrusted_ranges` so the report can say exactly which
bytes of a file nobody can vouch for. Its ACK is not trusted either (a corrupted ACK would invent
a trailing gap). When a direction holds more bad-checksum bytes than that bound with no good copy
superseding them (checksums it never gets right: an offload the capture did not reveal), holding
more would be unbounded and dropping them would lose the stream, so from then on they are used
like good ones and every such segment's range is listed as untrusted (conservatively: a copy
that only repeated good bytes is listed too).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from lab.capture.reader import CapturedPacket
from lab.replay.archive import FlowList
from lab.replay.fastpath import endpoints
from lab.replay.store import StoredStream, StreamStore
from lab.tcp.reassembly import OverlapConflict, OverlapPolicy, PushResult, Reassembler
from lab.wire.seq import seq_add, seq_diff, seq_gt

if TYPE_CHECKING:  # the fast replay path never needs the full decoder: imported when used
    from lab.replay.decode import DecodedPacket
    from lab.wire.segment import Segment

# Which half of a flow a segment is in: client to server or server to client (the JSON's words).
FlowHalf = Literal["c2s", "s2c"]
DEFAULT_CAPACITY = 8 << 20
MAX_MARKS = 20_000  # (offset, time) marks kept per stream: enough for any control connection
MARKED_BYTES = 4 << 20  # ... and only for its first bytes: bulk data needs no per-line times
MAX_SUSPECT = 64  # bad-checksum segments set aside at once per direction (as many as holes)
_SEQ_MASK, _SEQ_HALF = 0xFFFFFFFF, 0x80000000  # lab.wire.seq's MASK and HALF, inlined
# TCP header flag bits (RFC 9293 3.1), as plain ints: tested on every packet
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_NOT_BULK = _FIN | _SYN | _RST  # with any of these a segment takes the general path
_BULK_MASK = _NOT_BULK | _ACK  # bulk data: ACK set, none of the others
BULK_LIMIT = 1 << 16  # in-order bytes held back per direction before one push
# A flow whose two streams reached their FIN is archived (lab.replay.archive) once this many
# flows completed after it, or this much capture time passed: its last ACK has usually come by
# then (a late packet only costs bringing it back).
ARCHIVE_AFTER_FLOWS = 256
ARCHIVE_AFTER_NS = 10_000_000_000


def endpoint(ip: str, port: int) -> str:
    """ "ip:port", with IPv6 addresses in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(frozen=True, slots=True)
class FlowKey:
    """The 4-tuple, oriented client to server."""

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int

    @property
    def client(self) -> str:
        return endpoint(self.client_ip, self.client_port)

    @property
    def server(self) -> str:
        return endpoint(self.server_ip, self.server_port)

    def __str__(self) -> str:
        return f"{self.client}>{self.server}"


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """A reassembler's state, small enough to keep per step in a notebook."""

    next_offset: int
    next_seq: int
    held_bytes: int
    gaps: tuple[tuple[int, int], ...]
    finished: bool
    conflicts: int

    @staticmethod
    def of(r: Reassembler) -> StreamSnapshot:
        return StreamSnapshot(
            r.next_offset, r.next_seq, r.held_bytes, tuple(r.gaps()), r.finished, len(r.conflicts)
        )


@dataclass(slots=True)
class HalfStream:
    """One direction of a flow: what its sender sent, as reassembled."""

    sender: str
    data: StoredStream
    isn: int | None = None
    reassembler: Reassembler | None = None
    syn: bool = False
    fin: bool = False
    rst: bool = False
    midstream: bool = False
    packets: int = 0
    payload_packets: int = 0
    payload_bytes: int = 0
    retransmissions: int = 0
    bad_checksums: int = 0
    offloaded_checksums: int = 0
    truncated_packets: int = 0
    missing_bytes: int = 0
    rst_data_bytes: int = 0
    refused_bytes: int = 0  # beyond the reassembler's window (bounded memory): never stored
    peer_ack: int | None = None  # highest ACK the other side sent for this direction's bytes
    first_ts: int | None = None
    last_ts: int | None = None
    first_data_ts: int | None = None
    last_data_ts: int | None = None
    marks: list[tuple[int, int]] = field(default_factory=list)  # (stream offset, time ns)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # known after `finish`

    suspect: list[tuple[int, bytes, bool, int]] = field(default_factory=list)  # seq,data,fin,ts
    suspect_bytes: int = 0  # bytes held in `suspect` (bounded by the reassembler's capacity)
    superseded_bad_checksums: int = 0  # set-aside segments a trusted copy made useless
    untrusted_ranges: list[tuple[int, int]] = field(default_factory=list)  # filled from them
    bad_is_normal: bool = False  # too many bad checksums to set aside: used, listed untrusted
    retired: bool = False  # reassembler dropped once the stream was complete (memory)
    late_packets: int = 0  # segments with data or FIN after retirement (ignored)
    _conflicts: list[OverlapConflict] = field(default_factory=list)
    # In-order bulk data not yet given to the reassembler (see FlowTable._bulk): the payloads,
    # and the sequence number of the first one. None when nothing is pending (no list per half).
    pending: list[bytes] | None = None
    pending_seq: int = 0
    pending_len: int = 0

    def flush_pending(self) -> None:
        """Give the reassembler the in-order bytes held back, in one push (same bytes, same
        offsets as one push per segment: they were all in order and nothing else was held)."""
        pending = self.pending
        r = self.reassembler
        if not pending or r is None:
            return
        self.pending = None
        offset = r.next_offset
        joined = b"".join(pending)
        # They start at RCV.NXT (`_bulk` began at it and nothing else moved it since), so the
        # reassembler takes them as they are, without copying them into a `PushResult`.
        if self.pending_seq != r.next_seq or not r.take_in_order(joined):
            push = r.push(self.pending_seq, joined)
            assert not push.refused_bytes
            joined = push.delivered
        assert len(joined) == self.pending_len
        self.data.write(offset, joined)
        self.pending_len = 0

    @property
    def conflicts(self) -> list[OverlapConflict]:
        return self._conflicts if self.reassembler is None else self.reassembler.conflicts

    def retire(self) -> None:
        """Forget the reassembler of a finished stream (its delivered-bytes history is up to
        `capacity` bytes); keep what the report needs."""
        if self.reassembler is not None:
            self._conflicts = self.reassembler.conflicts
            self.reassembler = None
            self.retired = True
        self.superseded_bad_checksums += len(self.suspect)
        self.suspect.clear()
        self.suspect_bytes = 0

    def set_aside(self, seq: int, payload: bytes, fin: bool, capacity: int, ts: int) -> bool:
        """Keep a bad-checksum segment out of the stream, for `finish` to use as a last resort."""
        if self.suspect_bytes + len(payload) > capacity or len(self.suspect) >= MAX_SUSPECT:
            return False
        self.suspect.append((seq, payload, fin, ts))
        self.suspect_bytes += len(payload)
        return True

    def note_untrusted(self, lo: int, hi: int) -> None:
        """Record bytes taken from a bad-checksum copy (merged with the last range if adjacent)."""
        if hi <= lo:
            return
        if (
            self.untrusted_ranges
            and self.untrusted_ranges[-1][0] <= lo <= self.untrusted_ranges[-1][1]
        ):
            last = self.untrusted_ranges[-1]
            self.untrusted_ranges[-1] = (last[0], max(last[1], hi))
        else:
            self.untrusted_ranges.append((lo, hi))

    def prune_suspect(self) -> None:
        """Forget set-aside segments whose every byte a trusted copy has delivered."""
        r = self.reassembler
        if r is None or not self.suspect:
            return
        keep = []
        for seq, payload, fin, ts in self.suspect:
            end = seq_add(seq, len(payload) + int(fin))
            if seq_diff(end, r.next_seq) <= 0 and not (fin and r.fin_offset is None):
                self.superseded_bad_checksums += 1
                self.suspect_bytes -= len(payload)
            else:
                keep.append((seq, payload, fin, ts))
        self.suspect = keep

    @property
    def delivered(self) -> int:
        return self.data.stored_bytes

    @property
    def complete(self) -> bool:
        """Every byte of the stream held: no gap, and it ended with a FIN."""
        return not self.gaps and self.fin and not self.midstream

    def add_mark(self, offset: int, ts: int) -> None:
        """Note that the bytes from `offset` first arrived at capture time `ts` (ns).

        Marks stay sorted by offset and the first arrival wins, so a byte's time is when its
        segment was captured, also when it arrived out of order or was taken from a set-aside
        copy at the end: a reply held behind a hole keeps its place in the dialogue.
        """
        if offset >= MARKED_BYTES or len(self.marks) >= MAX_MARKS:
            return
        if not self.marks or offset > self.marks[-1][0]:
            self.marks.append((offset, ts))  # the usual case: in order
            return
        i = bisect_left(self.marks, offset, key=lambda m: m[0])
        if self.marks[i][0] != offset:
            self.marks.insert(i, (offset, ts))

    def time_at(self, offset: int) -> int | None:
        """Capture time (ns) of the segment that first brought the byte at `offset`."""
        i = bisect_right(self.marks, offset, key=lambda m: m[0])
        return self.marks[i - 1][1] if i else self.first_data_ts


@dataclass(slots=True, weakref_slot=True)  # weak: lab.replay.archive's cache of read flows
class Flow:
    """One TCP connection seen in the capture."""

    index: int  # 0-based, in order of first packet (Wireshark's tcp.stream)
    key: FlowKey
    c2s: HalfStream
    s2c: HalfStream
    first_ts: int
    last_ts: int
    packets: int = 0
    syn_seen: bool = False
    synack_seen: bool = False
    handshake_complete: bool = False
    midstream: bool = False
    reset: bool = False
    finished: bool = False

    @property
    def closed(self) -> bool:
        return self.reset or (self.c2s.fin and self.s2c.fin)

    def half(self, direction: FlowHalf) -> HalfStream:
        return self.c2s if direction == "c2s" else self.s2c

    def swap(self) -> None:
        """Reverse the orientation (replay learned from content who the server is)."""
        k = self.key
        self.key = FlowKey(k.server_ip, k.server_port, k.client_ip, k.client_port)
        self.c2s, self.s2c = self.s2c, self.c2s


@dataclass(frozen=True, slots=True)
class Step:
    """What one captured packet did (for notebooks and `lab.replay.steps`)."""

    packet: CapturedPacket
    decoded: DecodedPacket
    flow: Flow | None = None
    direction: FlowHalf | None = None
    before: StreamSnapshot | None = None
    after: StreamSnapshot | None = None
    push: PushResult | None = None
    events: tuple[str, ...] = ()

    @property
    def flow_key(self) -> FlowKey | None:
        return None if self.flow is None else self.flow.key

    @property
    def segment(self) -> Segment | None:
        tcp = self.decoded.tcp
        return None if tcp is None else tcp.segment


def _looks_like_server_port(port: int, other: int) -> bool:
    return port < 1024 <= other or (port < other and port < 49152 <= other)


class FlowTable:
    """Feeds decoded packets to flows; `finish()` at the end of the capture."""

    def __init__(
        self,
        policy: OverlapPolicy = "first",
        *,
        capacity: int = DEFAULT_CAPACITY,
        store: StreamStore | None = None,
    ) -> None:
        self.policy: OverlapPolicy = policy
        self.capacity = capacity
        self.store = store if store is not None else StreamStore()
        self.flows = FlowList(self.store)
        # the flow of each 4-tuple; an int: the index of an archived one
        self._active: dict[tuple[tuple[str, int], tuple[str, int]], Flow | int] = {}
        self._complete: deque[Flow] = deque()  # both streams complete, to archive soon
        self.tcp_packets = 0
        self.bad_checksum_packets = 0
        self._bulk_limit = min(BULK_LIMIT, capacity)  # one push never exceeds the window
        # The flow and direction of each 4-tuple as sent (see `fast_segment`), emptied whenever
        # `_active` changes, so it never says anything `_lookup` would not.
        # (flow, its key then, client to server?, this half, the other half)
        self._hot: dict[bytes, tuple[Flow, FlowKey, bool, HalfStream, HalfStream]] = {}

    # -- lookup -----------------------------------------------------------------------------------

    def _new_flow(self, key: FlowKey, ts: int) -> Flow:
        flow = Flow(
            len(self.flows),
            key,
            HalfStream(key.client, self.store.new_stream()),
            HalfStream(key.server, self.store.new_stream()),
            ts,
            ts,
        )
        self.flows.append(flow)
        return flow

    def _orient(self, src: str, sport: int, dst: str, dport: int, bits: int) -> FlowKey:
        if bits & _SYN and not bits & _ACK:
            return FlowKey(src, sport, dst, dport)
        if bits & _SYN:
            return FlowKey(dst, dport, src, sport)
        if _looks_like_server_port(sport, dport):
            return FlowKey(dst, dport, src, sport)
        return FlowKey(src, sport, dst, dport)

    def _lookup(
        self, src: str, sport: int, dst: str, dport: int, bits: int, seq: int, ts: int
    ) -> tuple[Flow, FlowHalf, bool]:
        a, b = (src, sport), (dst, dport)
        canon = (a, b) if a <= b else (b, a)
        flow = self._active.get(canon)
        if type(flow) is int:  # archived: a late packet brings it back
            flow = self._active[canon] = self.flows.restore(flow)
            self._hot.clear()
        assert not isinstance(flow, int)
        if (
            flow is not None
            and bits & _SYN
            and not bits & _ACK
            and self._is_reuse(flow, src, sport, seq)
        ):
            flow.finished = True
            flow = None
        created = False
        if flow is None:
            key = self._orient(src, sport, dst, dport, bits)
            flow = self._new_flow(key, ts)
            self._active[canon] = flow
            self._hot.clear()
            created = True
        k = flow.key
        direction: FlowHalf = "c2s" if sport == k.client_port and src == k.client_ip else "s2c"
        return flow, direction, created

    @staticmethod
    def _is_reuse(flow: Flow, src: str, sport: int, seq: int) -> bool:
        """A SYN on a known 4-tuple opens a new connection unless it repeats the flow's own SYN."""
        k = flow.key
        from_client = (src, sport) == (k.client_ip, k.client_port)
        half = flow.c2s if from_client else flow.s2c
        if half.isn is not None:
            return half.isn != seq
        # no SYN known from this side: a SYN is new only if the flow already ended or moved data
        return flow.closed or half.payload_bytes > 0

    # -- processing -------------------------------------------------------------------------------

    def process(self, pkt: CapturedPacket, decoded: DecodedPacket, *, detail: bool = False) -> Step:
        tcp = decoded.tcp
        if tcp is None:
            return Step(pkt, decoded)
        seg = tcp.segment
        step = self.segment(
            pkt.timestamp_ns,
            tcp.ip.src,
            seg.src_port,
            tcp.ip.dst,
            seg.dst_port,
            seg.seq,
            seg.ack,
            int(seg.flags),  # plain int tests: IntFlag operations dominate the profile
            seg.payload,
            decoded.bad_checksum,
            decoded.offloaded,
            decoded.missing_bytes,
            detail,
            pkt,
            decoded,
        )
        assert step is not None  # a packet was given: a step is made
        return step

    def fast_segment(
        self, ts: int, key: bytes, seq: int, ack: int, bits: int, payload: bytes
    ) -> None:
        """A segment from the fast decode path (checksums right, nothing cut): the same as
        `segment`, with the commonest segments of an established flow done here at once.

        Those are: a pure ACK, bulk data (`_bulk`) and in-order data while the stream's arrival
        times are still marked. For each, `segment` would do exactly what is done here (the same
        counters, the same ACK bookkeeping, the same bytes to the same offsets); it is about
        a third of replay's time per packet, and most of it was finding the flow again and
        building what nobody reads (events, a `PushResult`). Anything else goes to `segment`.
        """
        hot = self._hot.get(key)
        if hot is None or hot[0].key is not hot[1]:  # not known yet, or turned round (`swap`)
            src, sport, dst, dport = endpoints(key)
            self.segment(ts, src, sport, dst, dport, seq, ack, bits, payload)
            self._remember(key, src, sport, dst, dport)
            return
        if bits & _BULK_MASK != _ACK:  # SYN, FIN, RST, or no ACK
            self.segment(ts, *endpoints(key), seq, ack, bits, payload)
            return
        flow, _key, c2s, half, other = hot
        if payload:
            pending = half.pending
            if pending:
                # The next piece of a bulk transfer. What else `_bulk` checks (a reassembler
                # with no FIN, nothing held, no set-aside copy, bad checksums not the norm) held
                # when this run began and still does: whatever could change it (any segment
                # with data, SYN, FIN or RST on this flow, a bad checksum) flushes the run first.
                n = len(payload)
                length = half.pending_len + n
                if (
                    seq != (half.pending_seq + half.pending_len) & _SEQ_MASK
                    or length > self._bulk_limit
                ):
                    self.segment(ts, *endpoints(key), seq, ack, bits, payload)
                    return
                pending.append(payload)
                half.pending_len = length
                half.payload_packets += 1
                half.payload_bytes += n
                half.last_data_ts = ts
            elif other.pending or not self._in_order(half, seq, payload, ts):
                self.segment(ts, *endpoints(key), seq, ack, bits, payload)
                return
            else:
                half.payload_packets += 1
                half.payload_bytes += len(payload)
                if half.first_data_ts is None:
                    half.first_data_ts = ts
                half.last_data_ts = ts
        # what `segment` does for every trusted segment with ACK set and no SYN, FIN or RST
        self.tcp_packets += 1
        flow.packets += 1
        flow.last_ts = ts
        half.packets += 1
        if half.first_ts is None:
            half.first_ts = ts
        half.last_ts = ts
        peer_ack = other.peer_ack
        if peer_ack is None or 0 < ((ack - peer_ack) & _SEQ_MASK) < _SEQ_HALF:  # seq_gt
            other.peer_ack = ack
        if not flow.handshake_complete and c2s:
            s2c_isn = flow.s2c.isn
            if flow.synack_seen and s2c_isn is not None and ack == seq_add(s2c_isn, 1):
                flow.handshake_complete = True

    @staticmethod
    def _in_order(half: HalfStream, seq: int, payload: bytes, ts: int) -> bool:
        """Deliver data that starts at RCV.NXT with nothing held, while arrival times are
        marked (beyond, `_bulk` holds it back): what `segment` does with it through the
        reassembler's push, without a `PushResult`. False: not such data, nothing done."""
        r = half.reassembler
        if r is None or half.suspect or seq != r.next_seq:
            return False
        offset = r.next_offset
        if offset >= MARKED_BYTES:
            return False
        if not r.take_in_order(payload):
            return False
        half.add_mark(offset, ts)
        half.data.write(offset, payload)
        return True

    def _remember(self, key: bytes, src: str, sport: int, dst: str, dport: int) -> None:
        """Note the flow and direction `_lookup` found for this 4-tuple (for `fast_segment`)."""
        a, b = (src, sport), (dst, dport)
        flow = self._active.get((a, b) if a <= b else (b, a))
        if isinstance(flow, Flow):
            k = flow.key
            if sport == k.client_port and src == k.client_ip:
                self._hot[key] = (flow, k, True, flow.c2s, flow.s2c)
            else:
                self._hot[key] = (flow, k, False, flow.s2c, flow.c2s)

    def segment(
        self,
        ts: int,
        src: str,
        sport: int,
        dst: str,
        dport: int,
        seq: int,
        ack: int,
        bits: int,
        payload: bytes,
        untrusted: bool = False,
        offloaded: bool = False,
        missing_bytes: int = 0,
        detail: bool = False,
        pkt: CapturedPacket | None = None,
        decoded: DecodedPacket | None = None,
    ) -> Step | None:
        """One TCP segment as plain values (the fast replay path decodes straight to these).

        The `Step` (what notebooks show) is made only when the packet and its decoding are given.
        """
        self.tcp_packets += 1
        flow, direction, created = self._lookup(src, sport, dst, dport, bits, seq, ts)
        half = flow.c2s if direction == "c2s" else flow.s2c
        other = flow.s2c if direction == "c2s" else flow.c2s
        if (
            payload
            and pkt is None
            and bits & _BULK_MASK == _ACK
            and not (untrusted or offloaded or missing_bytes)
            and self._bulk(flow, direction, half, other, ts, seq, ack, payload)
        ):
            return None
        if (flow.c2s.pending or flow.s2c.pending) and (
            payload or bits & _NOT_BULK or untrusted or detail
        ):
            flow.c2s.flush_pending()  # anything else that may touch a stream sees every byte
            flow.s2c.flush_pending()
        syn = bool(bits & _SYN)
        fin = bool(bits & _FIN)
        rst = bool(bits & _RST)
        has_ack = bool(bits & _ACK)
        events: list[str] = ["new flow"] if created else []
        flow.packets += 1
        flow.last_ts = ts
        half.packets += 1
        if half.first_ts is None:
            half.first_ts = ts
        half.last_ts = ts
        if untrusted:
            half.bad_checksums += 1
            self.bad_checksum_packets += 1
            events.append("bad checksum")
        if offloaded:
            half.offloaded_checksums += 1
        if missing_bytes:
            half.truncated_packets += 1
            half.missing_bytes += missing_bytes
            events.append(f"snaplen cut {missing_bytes} bytes")

        if syn:
            events.append("syn-ack" if has_ack else "syn")
            if has_ack:
                flow.synack_seen = True
            else:
                flow.syn_seen = True
            if half.isn is None:
                half.isn = seq
                half.syn = True
                if half.reassembler is None or half.payload_bytes == 0:
                    # a FIN or RST seen before any SYN carried no data: the SYN defines the stream
                    half.reassembler = Reassembler(seq_add(seq, 1), self.capacity, self.policy)
                    half.fin = False
                    half.midstream = False
        if has_ack and not untrusted:
            if other.peer_ack is None or seq_gt(ack, other.peer_ack):
                other.peer_ack = ack
            if (
                not flow.handshake_complete
                and direction == "c2s"
                and not syn
                and flow.synack_seen
                and flow.s2c.isn is not None
                and ack == seq_add(flow.s2c.isn, 1)
            ):
                flow.handshake_complete = True
                events.append("handshake complete")

        before = after = None
        push = None
        if rst:
            half.rst = True
            flow.reset = True
            events.append("rst")
            if payload:
                half.rst_data_bytes += len(payload)
                payload = b""  # RFC 9293 3.5.3: a reset's data is diagnostic, never stream data
        if untrusted and (payload or fin) and not half.retired and not half.bad_is_normal:
            data_seq = seq_add(seq, 1) if syn else seq
            if half.set_aside(data_seq, bytes(payload), fin and not rst, self.capacity, ts):
                events.append("set aside (not trusted)")
                payload = b""
                fin = False
            else:
                # More bad-checksum bytes than the window with no good copy to supersede them:
                # checksums this direction never gets right (offload the capture did not
                # reveal). Holding more would be unbounded and dropping them would lose the
                # stream: use them from now on, every byte listed as untrusted.
                self._fill_from_suspect(flow, half)
                half.bad_is_normal = True
                events.append("bad checksums everywhere: used, listed as untrusted")
        untrusted_push = untrusted and half.bad_is_normal and bool(payload)
        if half.retired and (payload or fin):
            half.late_packets += 1
            events.append("late segment after the stream completed")
            payload = b""
            fin = False
        if payload or (fin and not rst):
            data_seq = seq_add(seq, 1) if syn else seq
            r = half.reassembler
            if r is None:
                r = self._midstream_start(half, data_seq)
                flow.midstream = True
                events.append("midstream")
            if detail:
                before = StreamSnapshot.of(r)
            offset = r.next_offset
            start = offset + seq_diff(data_seq, seq_add(r.initial_seq, offset))
            push = r.push(data_seq, payload, fin=fin)
            if untrusted_push:
                half.note_untrusted(max(start, 0), start + len(payload))
            if push.delivered or push.out_of_order:
                half.add_mark(max(start, offset), ts)
            if push.delivered:
                half.data.write(offset, push.delivered)
            if payload:
                half.payload_packets += 1
                half.payload_bytes += len(payload)
                if half.first_data_ts is None:
                    half.first_data_ts = ts
                half.last_data_ts = ts
                if push.duplicate:
                    half.retransmissions += 1
                    events.append("retransmission")
            if push.refused_bytes:
                half.refused_bytes += push.refused_bytes
                events.append(f"refused {push.refused_bytes} bytes beyond the window")
            if push.conflicts:
                events.append(f"overlap conflict x{len(push.conflicts)}")
            if push.out_of_order:
                events.append("out of order")
            if push.filled_gap:
                events.append("filled gap")
            if half.suspect and (push.delivered or push.fin_reached):
                half.prune_suspect()  # only RCV.NXT moving can supersede a set-aside copy
            if detail:
                after = StreamSnapshot.of(r)
        if fin:
            half.fin = True
            events.append("fin")
        if push is not None and push.fin_reached:
            rc, rs = flow.c2s.reassembler, flow.s2c.reassembler
            if rc is not None and rs is not None and rc.finished and rs.finished:
                # Both directions delivered every byte up to their FIN: nothing can be missing
                # any more, so the history kept to compare retransmissions can go.
                flow.c2s.retire()
                flow.s2c.retire()
                events.append("both streams complete")
                self._complete.append(flow)
                self._archive_complete(ts)
        if pkt is None or decoded is None:
            return None
        return Step(pkt, decoded, flow, direction, before, after, push, tuple(events))

    def _bulk(
        self,
        flow: Flow,
        direction: FlowHalf,
        half: HalfStream,
        other: HalfStream,
        ts: int,
        seq: int,
        ack: int,
        payload: bytes,
    ) -> bool:
        """Hold back one trusted, in-order data segment of a bulk transfer (no SYN, FIN or RST;
        nothing out of order held; past the bytes whose arrival times are kept): it would go
        straight through the reassembler, so its push waits to be joined with the next ones.
        Does for it everything else `segment` does for such a segment; False: not such one."""
        r = half.reassembler
        if r is None or half.suspect or half.bad_is_normal or r.fin_offset is not None:
            return False
        if r.held_bytes:
            return False
        n = len(payload)
        if half.pending:
            if seq != seq_add(half.pending_seq, half.pending_len):
                return False
            if half.pending_len + n > self._bulk_limit:
                half.flush_pending()
                return self._bulk(flow, direction, half, other, ts, seq, ack, payload)
            half.pending.append(payload)
        else:
            if seq != r.next_seq or r.next_offset < MARKED_BYTES or n > self._bulk_limit:
                return False
            half.pending = [payload]
            half.pending_seq = seq
        half.pending_len += n
        flow.packets += 1
        flow.last_ts = ts
        half.packets += 1
        if half.first_ts is None:
            half.first_ts = ts
        half.last_ts = ts
        # the ACK it carries, as for any trusted segment with ACK set (bulk data always has it)
        if other.peer_ack is None or seq_gt(ack, other.peer_ack):
            other.peer_ack = ack
        if (
            not flow.handshake_complete
            and direction == "c2s"
            and flow.synack_seen
            and flow.s2c.isn is not None
            and ack == seq_add(flow.s2c.isn, 1)
        ):
            flow.handshake_complete = True
        half.payload_packets += 1
        half.payload_bytes += n
        if half.first_data_ts is None:
            half.first_data_ts = ts
        half.last_data_ts = ts
        return True

    def _archive_complete(self, now: int) -> None:
        """Archive the flows complete for long enough (see ARCHIVE_AFTER_FLOWS)."""
        complete = self._complete
        while complete and (
            len(complete) > ARCHIVE_AFTER_FLOWS or complete[0].last_ts + ARCHIVE_AFTER_NS < now
        ):
            flow = complete.popleft()
            if not self.flows.is_in_memory(flow):
                continue
            k = flow.key
            a, b = (k.client_ip, k.client_port), (k.server_ip, k.server_port)
            canon = (a, b) if a <= b else (b, a)
            if self._active.get(canon) is flow:
                self._active[canon] = flow.index
                self._hot.clear()
            flow.finished = True  # what `finish` would do: its streams are complete
            self.flows.archive(flow)

    def _midstream_start(self, half: HalfStream, data_seq: int) -> Reassembler:
        """Start a direction whose SYN was not seen at its first data byte, or at the peer's ACK."""
        initial = data_seq
        if half.peer_ack is not None and 0 < seq_diff(data_seq, half.peer_ack) <= self.capacity:
            initial = half.peer_ack
        half.midstream = True
        half.reassembler = Reassembler(initial, self.capacity, self.policy)
        return half.reassembler

    # -- end of capture ---------------------------------------------------------------------------

    def finish(self) -> None:
        """Give up on the holes: store held runs, record gaps (including acknowledged-but-missing
        bytes at the end of a direction)."""
        for flow in self.flows.in_memory():  # archived flows are finished already
            flow.c2s.flush_pending()
            flow.s2c.flush_pending()
            for half in (flow.c2s, flow.s2c):
                if half.suspect:
                    self._fill_from_suspect(flow, half)
                r = half.reassembler
                if r is None:
                    continue
                for offset, data in r.flush():
                    half.data.write(offset, data)
                half.gaps = list(r.abandoned_gaps)
                end = r.fin_offset if r.fin_offset is not None else r.next_offset
                if half.peer_ack is not None:
                    acked = seq_diff(half.peer_ack, r.initial_seq)
                    if half.fin and r.fin_offset is not None:
                        acked -= 1  # the ACK of a FIN covers the FIN itself
                    if end < acked <= end + self.capacity:
                        half.gaps.append((end, acked))
            flow.finished = True
        self._active.clear()
        self._hot.clear()

    def _fill_from_suspect(self, flow: Flow, half: HalfStream) -> None:
        """Fill, from bad-checksum copies, only the bytes no trusted copy supplied.

        Only holes are filled (never bytes held or delivered), so the overlap policy cannot let
        an untrusted copy win; every byte filled this way is listed in `untrusted_ranges`.
        """
        r = half.reassembler
        if r is None:
            if half.retired:
                half.retire()
                return
            r = self._midstream_start(half, half.suspect[0][0])
            flow.midstream = True
        for seq, payload, fin, ts in half.suspect:
            a = r.next_offset + seq_diff(seq, r.next_seq)
            b = a + len(payload)
            covered = [(0, r.next_offset), *r.held_ranges()]
            pieces: list[tuple[int, int]] = []
            cursor = max(a, 0)
            for lo, hi in covered:
                if lo > cursor:
                    pieces.append((cursor, min(lo, b)))
                cursor = max(cursor, hi)
                if cursor >= b:
                    break
            if cursor < b:
                pieces.append((cursor, b))
            if r.fin_offset is not None:
                pieces = [(lo, min(hi, r.fin_offset)) for lo, hi in pieces]
            used = False
            for lo, hi in pieces:
                if hi <= lo:
                    continue
                offset = r.next_offset
                push = r.push(seq_add(r.initial_seq, lo), payload[lo - a : hi - a])
                if push.delivered:
                    half.data.write(offset, push.delivered)
                taken = hi - lo - push.refused_bytes
                if taken > 0:
                    half.note_untrusted(lo, lo + taken)
                    half.add_mark(lo, ts)
                    used = True
                if push.refused_bytes:
                    half.refused_bytes += push.refused_bytes
            if fin and r.fin_offset is None:
                push = r.push(seq_add(seq, len(payload)), b"", fin=True)
                if push.delivered:
                    half.data.write(r.next_offset - len(push.delivered), push.delivered)
                if _fin_known(r):
                    half.fin = True
                    used = True
            if not used:
                half.superseded_bad_checksums += 1
        half.untrusted_ranges = _merge(half.untrusted_ranges)
        half.suspect.clear()
        half.suspect_bytes = 0


def _fin_known(r: Reassembler) -> bool:
    return r.fin_offset is not None


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
