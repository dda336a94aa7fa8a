"""Frame-level header prediction (lab.host.prediction) and the ACKs packed from a template
(lab.wire.fast.BareAckTemplate) are shortcuts, never a second opinion.

Every test feeds the same frames to two hosts, one with the shortcuts and one without any (the
general paths: the bulk decoder, `Segment`s, the connection's full receive path, frame values
encoded by the codec's entry point), and asserts that they end in the same place: the frames
sent (ACKs, byte for byte), the bytes delivered, every counter, the connection's trace and
events and its receive, send-window and timestamp variables. The streams mix the predicted
case with every way a frame can differ from it (holes, duplicates, bad checksums, window
changes, options, flags, fragments, padding...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.host import Host
from lab.tcp.connection import Connection, State
from lab.tcp.endpoint import TcpEndpoint
from lab.wire import fast
from lab.wire.checksum import internet_checksum, ipv4_pseudo_header_sum
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.options import NoOperation, SackBlocks, TcpOption, Timestamps
from lab.wire.segment import Flags, Segment

OUR_MAC, OUR_IP, OUR_PORT = "02:00:00:00:00:02", "198.18.0.2", 40000
PEER_MAC, PEER_IP, PEER_PORT = "02:00:00:00:00:01", "198.18.0.1", 20
MSS_PAYLOAD = 1448  # 1460 less the timestamp option


def exchange(a: Host, b: Host, now: int) -> list[bytes]:
    """Move frames both ways until neither host has any; the frames `a` sent, in order."""
    sent: list[bytes] = []
    moved = True
    while moved:
        moved = False
        for src, dst in ((a, b), (b, a)):
            for frame in src.outgoing_frames(now):
                if src is a:
                    sent.append(frame.data)
                dst.receive_frame(frame.data, now)
                moved = True
    return sent


@dataclass
class Receiver:
    """Our host after the handshake of an active-mode data connection (the peer's port 20 to
    ours), and what the peer's stream looks like from there."""

    host: Host
    conn: Connection
    seq: int  # the peer's next sequence number
    ack: int  # what the peer acknowledges (our SND.NXT)
    window: int  # the peer's window field
    ts_ok: bool
    sent: list[bytes] = field(default_factory=list)


def receiver(*, prediction: bool, timestamps: bool = True, codec: Any = None) -> Receiver:
    from lab.tcp.connection import TcpConfig

    if codec is None:
        # Without the shortcuts, every frame out is a `TcpFrame` encoded by the codec's entry
        # point (a wrapper is not `fast.encode`, so no ACK is packed from a template).
        codec = fast.encode if prediction else lambda frame: fast.encode(frame)

    config = TcpConfig(timestamps=timestamps)
    ours = Host(
        OUR_MAC,
        OUR_IP,
        24,
        None,
        now=0,
        tcp=TcpEndpoint(OUR_IP, isn_key=b"ours", config=config),
        frame_prediction=prediction,
        codec=codec,
    )
    peer = Host(PEER_MAC, PEER_IP, 24, None, now=0, tcp=TcpEndpoint(PEER_IP, isn_key=b"peer"))
    ours.tcp.listen(OUR_PORT)
    sender = peer.tcp.connect(OUR_IP, OUR_PORT, 0, local_port=PEER_PORT)
    sent = exchange(ours, peer, 0)
    conn = ours.tcp.connections[(OUR_IP, OUR_PORT, PEER_IP, PEER_PORT)]
    assert conn.state is State.ESTABLISHED
    assert conn.timestamps_enabled is timestamps
    scale = conn.window_scaling
    window = conn.snd_wnd >> (scale[1] if scale else 0)
    return Receiver(ours, conn, sender.snd_nxt, conn.snd_nxt, window, timestamps, sent)


def encode(
    r: Receiver,
    *,
    seq: int | None = None,
    payload: bytes = b"",
    flags: Flags = Flags.ACK,
    window: int | None = None,
    ack: int | None = None,
    tsval: int | None = 1000,
    options: tuple[TcpOption, ...] | None = None,
    ttl: int = 64,
    more_fragments: bool = False,
    eth_dst: str = OUR_MAC,
    src_port: int = PEER_PORT,
) -> bytes:
    """One frame from the peer, by the struct codec (byte-identical to Scapy's, test_codec)."""
    if options is None:
        stamp = (NoOperation(), NoOperation(), Timestamps(tsval, 5)) if tsval is not None else ()
        options = stamp if r.ts_ok else ()
    segment = Segment(
        src_port,
        OUR_PORT,
        r.seq if seq is None else seq,
        r.ack if ack is None else ack,
        flags,
        r.window if window is None else window,
        options,
        payload,
    )
    ip = Ipv4Header(PEER_IP, OUR_IP, ttl=ttl, ident=7, more_fragments=more_fragments)
    return fast.encode(TcpFrame(PEER_MAC, eth_dst, ip, segment))


def chunk(i: int, size: int = MSS_PAYLOAD) -> bytes:
    return bytes((i * 31 + k) % 251 for k in range(size))


# What can happen to the next frame of the stream: the predicted case (most often) and its
# departures. Frames the receiver must drop leave the peer's stream where it was, as a lost
# frame would, so that what follows stays in order and predictable.
KINDS = (
    *["data"] * 6,
    "psh",
    "small",
    "hole",  # one segment held back: what follows is out of order until "fill"
    "fill",
    "fill",
    "duplicate",
    "bad_tcp_checksum",
    "bad_ip_checksum",
    "window",
    "ack_unsent",
    "old_tsval",
    "no_timestamps",
    "sack_option",
    "ttl_zero",
    "fragment",
    "padding",
    "urgent",
    "broadcast",
    "other_port",
    "pure_ack",
    "reserved_bits",
    "tick",  # time passes (delayed ACK timer)
)


@dataclass
class Stream:
    """The peer's side of the stream: what was sent, and the holes it left."""

    next_seq: int
    tsval: int = 1000
    index: int = 0
    held: list[tuple[int, bytes]] = field(default_factory=list)  # skipped (seq, payload)
    sent: list[tuple[int, bytes]] = field(default_factory=list)


def with_tcp_checksum(frame: bytearray) -> bytes:
    """`frame` with its TCP checksum made right again (after a header byte was changed)."""
    frame[50:52] = b"\0\0"
    pseudo = ipv4_pseudo_header_sum(PEER_IP, OUR_IP, 6, len(frame) - 34)
    frame[50:52] = internet_checksum(bytes(frame[34:]), pseudo).to_bytes(2)
    return bytes(frame)


def frames_for(kind: str, r: Receiver, s: Stream) -> list[bytes]:
    """The frames one step of `kind` puts on the wire (none for "hole" and "tick")."""
    s.index += 1
    s.tsval += s.index % 3 == 0  # the peer's clock ticks now and then
    data = chunk(s.index)

    def new(payload: bytes = data, **kw: Any) -> bytes:
        """The next segment of the stream."""
        seq = s.next_seq
        s.next_seq = (seq + len(payload)) & 0xFFFFFFFF
        s.sent.append((seq, payload))
        kw.setdefault("tsval", s.tsval)
        return encode(r, seq=seq, payload=payload, **kw)

    def dropped(payload: bytes = data, **kw: Any) -> bytes:
        """A frame at the stream's next sequence number that the receiver must drop."""
        kw.setdefault("tsval", s.tsval)
        return encode(r, seq=s.next_seq, payload=payload, **kw)

    if kind == "data":
        return [new()]
    if kind == "psh":
        return [new(flags=Flags.ACK | Flags.PSH)]
    if kind == "small":
        return [new(data[:100])]
    if kind == "hole":
        s.held.append((s.next_seq, data))
        s.next_seq = (s.next_seq + len(data)) & 0xFFFFFFFF
        return []
    if kind == "fill":
        held, s.held = s.held, []
        return [encode(r, seq=seq, payload=p, tsval=s.tsval) for seq, p in held]
    if kind == "duplicate":
        return [encode(r, seq=seq, payload=p, tsval=s.tsval) for seq, p in s.sent[-2:-1]]
    if kind == "bad_tcp_checksum":
        frame = bytearray(dropped())
        frame[-1] ^= 0x55
        return [bytes(frame)]
    if kind == "bad_ip_checksum":
        frame = bytearray(dropped())
        frame[15] ^= 0x04  # TOS changed after the header checksum was computed
        return [bytes(frame)]
    if kind == "window":
        r.window = max(1, r.window - 7)  # the peer's window moves, and stays there
        return [new()]
    if kind == "ack_unsent":
        return [dropped(ack=(r.ack + 1000) & 0xFFFFFFFF)]  # RFC 5961 5.2: a challenge ACK
    if kind == "old_tsval":
        return [dropped(tsval=s.tsval - 100)]  # RFC 7323 5.3: PAWS
    if kind == "no_timestamps":
        return [new(options=())]
    if kind == "sack_option":
        stamp = (NoOperation(), NoOperation(), Timestamps(s.tsval, 5))
        sack = (NoOperation(), NoOperation(), SackBlocks(((r.ack, r.ack),)))
        return [new(options=(*stamp, *sack) if r.ts_ok else sack)]
    if kind == "ttl_zero":
        return [dropped(ttl=0)]
    if kind == "fragment":
        return [dropped(more_fragments=True)]  # held by the IPv4 reassembler, never completed
    if kind == "padding":
        return [new(data[:20]) + bytes(30)]  # Ethernet padding after the IP packet
    if kind == "urgent":
        return [new(flags=Flags.ACK | Flags.URG)]
    if kind == "broadcast":
        return [dropped(eth_dst="ff:ff:ff:ff:ff:ff")]
    if kind == "other_port":
        return [dropped(src_port=PEER_PORT + 1)]  # no connection: answered with a RST
    if kind == "pure_ack":
        return [dropped(b"")]
    if kind == "reserved_bits":
        frame = bytearray(new())
        frame[14 + 20 + 12] |= 0x02  # a reserved bit of the data-offset byte (ignored)
        return [with_tcp_checksum(frame)]
    return []


def state_of(r: Receiver) -> dict[str, Any]:
    """Everything a difference between the paths could show up in."""
    conn, host = r.conn, r.host
    plain = {
        k: v for k, v in vars(conn).items() if isinstance(v, (int, bool, str, State, type(None)))
    }
    return {
        "connection": plain,
        "rcv_nxt": conn.rcv_nxt,
        "trace": list(conn.trace),
        "events": conn.events(),
        "stats": conn.stats,
        "reassembler": conn.reassembler.stats,
        "host_stats": host.stats,
        "decode_stats": host.decode_stats,
        "endpoint_stats": host.tcp.stats,
        "deadline": host.next_deadline(),
    }


def run(kinds: list[str], *, prediction: bool, timestamps: bool = True) -> dict[str, Any]:
    """The stream of `kinds` through our host with frame prediction on, or with every shortcut
    off: no frame prediction and no header prediction in the connection either (the full
    RFC 9293 receive path for every segment)."""
    if prediction:
        return _run(kinds, prediction=True, timestamps=timestamps)
    with mock.patch.object(Connection, "_receive_predicted", return_value=False):
        return _run(kinds, prediction=False, timestamps=timestamps)


def _run(kinds: list[str], *, prediction: bool, timestamps: bool) -> dict[str, Any]:
    r = receiver(prediction=prediction, timestamps=timestamps)
    s = Stream(r.seq)
    now = 1_000
    sent: list[tuple[bytes, tuple[object, ...]]] = []
    delivered = b""
    for step, kind in enumerate(kinds):
        now += 250_000 if kind == "tick" else 100
        host = r.host
        if kind == "tick" and (deadline := host.next_deadline()) is not None and deadline <= now:
            host.on_timer(now)
        for frame in frames_for(kind, r, s):
            transitions = host.receive_frame(frame, now)
            sent.append((b"in", tuple(transitions)))
        if step % 3 == 2:  # the runtime pulls output after a burst, not after every frame
            sent += [(f.data, f.transitions) for f in host.outgoing_frames(now)]
            delivered += r.conn.read()
    sent += [(f.data, f.transitions) for f in r.host.outgoing_frames(now)]
    delivered += r.conn.read()
    return {"handshake": r.sent, "sent": sent, "delivered": delivered, **state_of(r)}


def test_a_bulk_stream_gives_the_same_acks_bytes_and_state_with_and_without_prediction() -> None:
    kinds = ["data"] * 40 + ["psh"] + ["data"] * 9
    assert run(kinds, prediction=True) == run(kinds, prediction=False)


def test_prediction_takes_the_bulk_stream_without_decoding_segments() -> None:
    """The shortcut is taken: after the first data frame, no frame of an in-order stream
    reaches the general decoder (whose `decode_unicast_tcp` makes a `Segment`)."""
    import lab.host.host as host_module

    r = receiver(prediction=True)
    s = Stream(r.seq)
    calls = 0
    original = host_module.decode_unicast_tcp

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    host_module.decode_unicast_tcp = counting  # type: ignore[assignment]
    try:
        for _ in range(20):
            for frame in frames_for("data", r, s):
                r.host.receive_frame(frame, 10)
    finally:
        host_module.decode_unicast_tcp = original
    assert calls == 1  # the first frame, which made the prediction
    assert r.conn.recv_buffered == 20 * MSS_PAYLOAD
    assert len(r.host.outgoing_frames(10)) == 10  # RFC 5681: an ACK for every second segment


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(KINDS), min_size=1, max_size=40), st.booleans())
def test_any_mix_of_frames_gives_the_same_result_with_and_without_prediction(
    kinds: list[str], timestamps: bool
) -> None:
    with_prediction = run(kinds, prediction=True, timestamps=timestamps)
    without = run(kinds, prediction=False, timestamps=timestamps)
    assert with_prediction == without


def test_a_frame_with_a_bad_checksum_is_dropped_and_counted_by_the_general_path() -> None:
    r = receiver(prediction=True)
    s = Stream(r.seq)
    for kind in ("data", "data", "bad_tcp_checksum"):
        for frame in frames_for(kind, r, s):
            r.host.receive_frame(frame, 10)
    assert r.conn.recv_buffered == 2 * MSS_PAYLOAD
    assert sum(r.host.decode_stats.drops.values()) == 1


def test_a_closed_connection_is_no_longer_predicted() -> None:
    r = receiver(prediction=True)
    s = Stream(r.seq)
    for frame in frames_for("data", r, s):
        r.host.receive_frame(frame, 10)
    r.conn.abort(20)
    r.host.outgoing_frames(20)  # the RST leaves; the endpoint reaps the connection
    assert r.host._prediction is None
    frame = frames_for("data", r, s)[0]
    r.host.receive_frame(frame, 30)  # a closed port now: answered with a RST
    [rst] = r.host.outgoing_frames(30)
    assert rst.data[14 + 20 + 13] & 0x04


def test_the_mixed_codec_packs_acks_and_still_gives_scapy_the_fin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`lab get`'s default codec: the bulk ACKs are packed from the template (the struct
    codec's bytes, which the mixed codec would have chosen), and our FIN is still built by
    Scapy field by field, with and without the shortcuts alike."""
    from lab.wire import mixed, scapy_codec

    original = scapy_codec.encode
    by_scapy: list[str] = []

    def counting(frame: Any) -> bytes:
        if isinstance(frame, TcpFrame):
            by_scapy.append(frame.segment.flag_string())
        return original(frame)

    monkeypatch.setattr(scapy_codec, "encode", counting)

    def transfer(codec: Any) -> tuple[list[bytes], list[str], int, int]:
        by_scapy.clear()
        r = receiver(prediction=True, codec=codec)
        s = Stream(r.seq)
        for _ in range(6):
            for frame in frames_for("data", r, s):
                r.host.receive_frame(frame, 10)
        acks = [f.data for f in r.host.outgoing_frames(10)]
        r.conn.close(20)
        fin = [f.data for f in r.host.outgoing_frames(20)]
        return r.sent + acks + fin, list(by_scapy), len(acks), len(fin)

    packed = transfer(mixed.encode)
    general = transfer(lambda frame: mixed.encode(frame))  # not `mixed.encode`: nothing packed
    assert packed == general
    _, scapy_built, acks, fins = packed
    assert (acks, fins) == (3, 1)  # an ACK per two segments (RFC 5681), then our FIN
    assert scapy_built == ["S.", "F."]  # our SYN-ACK and our FIN
