"""The RFC gaps of issue 11, one test per rule, each failing on the stack before its fix.

Same harness as `test_connection.py` (a `Peer` that crafts segments by hand, a connection driven
into a state): the peer's segments arrive at exact virtual times and whole outputs are compared.
"""

from __future__ import annotations

import random
import re

import pytest
from test_connection import (
    IRS,
    ISS,
    MSS_ONLY,
    Peer,
    drive,
    flight,
    lossy_mover,
    ours,
    out,
    pair,
    sack_sender_with_srtt,
    state_of,
    syn_options,
    transfer,
    ts,
    ts_clock,
)

from lab.tcp.connection import (
    MIN_PEER_MSS,
    PAWS_IDLE_LIMIT,
    Connection,
    Listener,
    State,
    TcpConfig,
    TcpConfigError,
    TimedOut,
)
from lab.tcp.endpoint import TcpEndpoint
from lab.tcp.events import DropReason, SegmentDropped
from lab.tcp.isn import IsnGenerator
from lab.wire.options import (
    EndOfOptions,
    MalformedOptionsError,
    MaxSegmentSize,
    NoOperation,
    SackBlocks,
    TcpOption,
    Timestamps,
    WindowScale,
    decode_options,
    decode_options_leniently,
)
from lab.wire.segment import AddressedSegment, Flags, Segment
from lab.wire.seq import seq_add

SYN, ACK, FIN, RST, PSH = Flags.SYN, Flags.ACK, Flags.FIN, Flags.RST, Flags.PSH
TS_PEER = (MaxSegmentSize(1460), Timestamps(100, 0))


def probe_log(c: Connection, p: Peer, until: int, window: int = 0) -> list[tuple[int, Segment]]:
    """Fire every timer up to `until`; the peer answers each segment 10 ms later with an ACK of
    SND.UNA and `window`. Returns (time, segment) of everything sent."""
    log: list[tuple[int, Segment]] = []
    while c.state is State.ESTABLISHED:
        t = c.next_deadline()
        assert t is not None
        if t > until:
            break
        c.on_timer(t)
        for s in out(c, t):
            log.append((t, s))
            p.send(ACK, at=t + 10_000, ack=c.snd_una, window=window)
    return log


# -- RFC 9293 3.8.6, RFC 1122 4.2.2.17: a window shrunk to zero with data outstanding ----------


def test_window_shrunk_to_zero_with_data_outstanding_is_probed_for_as_long_as_acks_come() -> None:
    c, p = drive(State.ESTABLISHED)
    c.events()
    c.send(b"d" * 3000, 0)
    sent = out(c, 0)
    assert sent == flight(b"d" * 3000, seq=ISS + 1, ack=IRS + 1)
    p.send(ACK, at=10_000, ack=ISS + 1, window=0)  # nothing acknowledged, window closed
    log = probe_log(c, p, until=2_000_000_000)
    # Persist probes (the oldest segment) backing off to max_rto, as for a window that was zero
    # before we sent; never a timeout, since every probe is answered.
    probe_times = [10_000 + 1_000_000 * (2 ** (k + 1) - 1) for k in range(6)]
    probe_times += [63_010_000 + 60_000_000 * k for k in range(1, 33)]
    assert log == [(t, sent[0]) for t in probe_times]
    assert state_of(c) is State.ESTABLISHED
    assert c.events() == []
    p.send(ACK, at=2_000_000_000, ack=ISS + 1, window=65535)  # the window opens again
    assert out(c, 2_000_000_000) == flight(b"d" * 3000, seq=ISS + 1, ack=IRS + 1)


def test_acks_after_the_peer_shrank_its_window_carry_a_sequence_number_inside_it() -> None:
    """RFC 1122 4.2.2.16: a sender must be robust against window shrinking. A pure ACK sent
    with SEQ = SND.NXT beyond the shrunk window is unacceptable to the peer (RFC 9293
    3.10.7.4; Linux's tcp_sequence drops it unread), so the peer never learns what we hold.
    Seen live (tests/test_impair.py, all impairments): our SND.NXT stood 424 bytes beyond the
    1024-byte window of a Linux peer out of receive memory (we had overrun it, see the next
    test); it skipped every ACK of ours (TCPACKSkippedSeq) and we its retransmits, both backing
    off, no byte moving for a minute. Whether the peer shrank its window or we overran it, pure
    ACKs carry the right edge of its window, SND.UNA + SND.WND, as Linux's tcp_acceptable_seq."""
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=0))
    c.send(b"d" * 3000, 0)
    assert out(c, 0) == flight(b"d" * 3000, seq=ISS + 1, ack=IRS + 1)
    # Nothing acknowledged, and the right edge moves back from ISS + 1 + 65535 to ISS + 1001.
    p.send(ACK, at=10_000, ack=ISS + 1, window=1000)
    assert out(c, 10_000) == []
    p.send(ACK, b"echo", at=20_000, ack=ISS + 1, window=1000)
    assert out(c, 20_000) == [ours(seq=ISS + 1001, ack=IRS + 5)]
    # The window opens again: ACKs carry SND.NXT as before.
    p.send(ACK, b"more", at=30_000, ack=ISS + 3001, window=65535)
    assert out(c, 30_000) == [ours(seq=ISS + 3001, ack=IRS + 9)]


def test_an_ack_that_advances_takes_the_window_even_from_a_retransmitted_segment() -> None:
    """RFC 9293 3.10.7.4 takes the window only from a segment newer than SND.WL1, SND.WL2. The
    peer's retransmission filling a hole is older than its last pure ACK; taking its ACK but not
    its window applies the old window size from the new SND.UNA, past the edge the peer just
    announced. Seen live before the impair test's stall: Linux said 2048 bytes on such a
    segment, we sent 848 bytes beyond. As Linux's tcp_may_update_window, an ACK that advances
    SND.UNA always brings its window."""
    c, p = drive(State.ESTABLISHED)
    p.send(ACK, b"def", at=1_000, seq=IRS + 4, ack=ISS + 1)  # "abc" before it was lost
    p.seq = seq_add(IRS, 7)
    p.send(ACK, at=2_000, ack=ISS + 1, window=4380)  # SND.WL1 = IRS + 7
    out(c, 2_000)
    c.send(b"d" * 10_000, 3_000)
    assert [s.seq for s in out(c, 3_000) if s.payload] == [ISS + 1, ISS + 1461, ISS + 2921]
    # "abc" again (SEG.SEQ < SND.WL1), acknowledging one segment; the edge stays at SND.NXT.
    p.send(ACK, b"abc", at=4_000, seq=IRS + 1, ack=ISS + 1461, window=2920)
    assert c.snd_wnd == 2920
    assert [s for s in out(c, 4_000) if s.payload] == []


def test_zero_window_probes_that_go_unanswered_end_the_connection() -> None:
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=0, data_retries=3))
    c.send(b"d" * 100, 0)
    segment = ours(ACK | PSH, b"d" * 100, seq=ISS + 1, ack=IRS + 1)
    assert out(c, 0) == [segment]
    p.send(ACK, at=10_000, ack=ISS + 1, window=0)
    sent: list[tuple[int, Segment]] = []
    while c.state is State.ESTABLISHED:
        t = c.next_deadline()
        assert t is not None
        c.on_timer(t)
        sent += [(t, s) for s in out(c, t)]
    assert sent == [(t, segment) for t in (1_010_000, 3_010_000, 7_010_000)]  # the same probe
    assert c.events()[-1] == TimedOut()


# -- RFC 7323 5.3: PAWS --------------------------------------------------------------------------


def test_paws_drops_a_segment_with_an_older_timestamp_and_acks_it() -> None:
    c, p = drive(State.ESTABLISHED, syn_options=TS_PEER)
    p.send(ACK, b"new", at=1_000, options=(Timestamps(200, 0),))
    out(c, 1_000)
    assert c.read() == b"new"
    old = p.seg(ACK, b"old", options=(Timestamps(150, 0),))  # in window, but an old duplicate
    c.receive_segment(old, 2_000)
    # RFC 7323 5.3 R1: an ACK of RCV.NXT, still echoing TS.Recent of the newer segment.
    assert out(c, 2_000) == [ours(seq=ISS + 1, ack=IRS + 4, options=ts(ts_clock(2_000), 200))]
    assert c.read() == b""
    assert [t for t in c.trace if isinstance(t, SegmentDropped)] == [
        SegmentDropped(2_000, DropReason.PAWS)
    ]


def test_paws_lets_a_rst_with_an_old_timestamp_through() -> None:
    c, p = drive(State.ESTABLISHED, syn_options=TS_PEER)
    p.send(ACK, b"new", at=1_000, options=(Timestamps(200, 0),))
    p.send(RST, at=2_000, options=(Timestamps(150, 0),))
    assert state_of(c) is State.CLOSED


def test_paws_takes_an_older_timestamp_after_24_days_idle() -> None:
    c, p = drive(State.ESTABLISHED, syn_options=TS_PEER)
    p.send(ACK, b"new", at=1_000, options=(Timestamps(200, 0),))
    out(c, 1_000)
    c.read()
    p.send(ACK, b"late", at=1_000 + PAWS_IDLE_LIMIT - 1, options=(Timestamps(150, 0),))
    assert c.read() == b""  # one microsecond short of 24 days: still an old duplicate
    out(c, 1_000 + PAWS_IDLE_LIMIT - 1)
    p.seq = seq_add(p.seq, -4)
    late = 1_000 + PAWS_IDLE_LIMIT
    p.send(ACK, b"late", at=late, options=(Timestamps(150, 0),))
    assert out(c, late) == [ours(seq=ISS + 1, ack=IRS + 8, options=ts(ts_clock(late), 150))]
    assert c.read() == b"late"


# -- RFC 5681 4.1: restart window after idle -----------------------------------------------------


@pytest.mark.parametrize(("idle", "segments"), [(1_000_001, 3), (1_000_000, 6)])  # RTO: 1 s
def test_cwnd_restarts_from_the_initial_window_after_more_than_one_rto_idle(
    idle: int, segments: int
) -> None:
    c, p = drive(State.ESTABLISHED)
    c.send(b"i" * 4380, 0)
    sent = out(c, 0)
    for i, s in enumerate(sent):  # three ACKs in slow start: cwnd 3 -> 6 segments
        p.send(ACK, at=10_000 + i, ack=seq_add(s.seq, len(s.payload)))
    assert (c.cwnd, c.rto) == (6 * 1460, 1_000_000)
    c.send(b"j" * 20_000, idle)  # `idle` after the last data went out, at 0
    segments_of_j = flight(b"j" * 20_000, seq=ISS + 4381, ack=IRS + 1)
    assert out(c, idle) == segments_of_j[:segments]


# -- RFC 6298 5.7: the RTO after a lost SYN -----------------------------------------------------


def test_data_after_a_lost_syn_and_no_rtt_sample_uses_a_three_second_rto() -> None:
    c = Connection("198.18.0.1", 40000, "198.18.0.2", 21, config=TcpConfig(), iss=ISS)
    p = Peer(c)
    c.open(0)
    out(c, 0)
    c.on_timer(1_000_000)
    syn = ours(SYN, seq=ISS, ack=0, options=syn_options(ts_clock(1_000_000)))
    assert out(c, 1_000_000) == [syn]  # the SYN again
    c.receive_segment(p.syn(SYN | ACK), 1_100_000)
    out(c, 1_100_000)
    assert (c.srtt, c.rto) == (None, 3_000_000)
    c.send(b"x" * 100, 1_200_000)
    out(c, 1_200_000)
    assert c.next_deadline() == 4_200_000


# -- RFC 1122 4.2.3.5: SYN retries last at least 3 minutes ---------------------------------------


def test_syn_is_retransmitted_for_at_least_three_minutes_by_default() -> None:
    c = Connection("198.18.0.1", 40000, "198.18.0.2", 21, config=TcpConfig(), iss=ISS)
    c.open(0)
    out(c, 0)
    times = []
    while c.state is State.SYN_SENT:
        t = c.next_deadline()
        assert t is not None
        c.on_timer(t)
        sent = out(c, t)
        if sent:  # the same SYN, its timestamp from the clock of the retry
            assert sent == [ours(SYN, seq=ISS, ack=0, options=syn_options(ts_clock(t)))]
            times.append(t)
    s = 1_000_000
    assert times == [1 * s, 3 * s, 7 * s, 15 * s, 31 * s, 63 * s, 123 * s]
    assert [t.time for t in c.trace if t.kind == "timeout"] == [183 * s]
    assert c.events() == [TimedOut()]


# -- Linux tcp_min_snd_mss (CVE-2019-11479): a floor for the peer's MSS ----------------------------


def test_a_tiny_peer_mss_is_raised_to_48_bytes() -> None:
    c, _ = drive(State.ESTABLISHED, syn_options=(MaxSegmentSize(1),))
    assert c.effective_mss == MIN_PEER_MSS == 48
    c.send(b"m" * 200, 0)
    segments = flight(b"m" * 200, seq=ISS + 1, ack=IRS + 1, mss=48)
    assert out(c, 0) == segments[:4]  # IW: 4 segments
    assert [t.detail for t in c.trace if t.kind == "option"] == ["peer MSS 1 raised to 48"]


# -- Linux tcp_invalid_ratelimit: duplicate ACKs for out-of-window segments ----------------------


def test_acks_answering_out_of_window_segments_without_data_are_rate_limited() -> None:
    c, p = drive(State.ESTABLISHED)
    far = seq_add(p.seq, 1_000_000)
    answered = []
    for at in (1_000, 101_000, 500_999, 501_000, 600_000, 1_001_000):
        c.receive_segment(p.seg(ACK, seq=far), at)
        answered.append(out(c, at))
    ack = ours(seq=ISS + 1, ack=IRS + 1)
    assert answered == [[ack], [], [], [ack], [], [ack]]  # at most one per 500 ms


def test_out_of_window_segments_carrying_data_are_always_answered() -> None:
    c, p = drive(State.ESTABLISHED)
    old = seq_add(p.seq, -100)  # a retransmission of data we already have
    answered = []
    for at in (1_000, 2_000, 3_000):
        c.receive_segment(p.seg(ACK, b"x" * 10, seq=old), at)
        answered.append(out(c, at))
    assert answered == [[ours(seq=ISS + 1, ack=IRS + 1)]] * 3


# -- SYN+FIN to a listener (as Linux: dropped) ---------------------------------------------------


def test_syn_fin_to_a_listening_connection_is_dropped_without_a_syn_ack() -> None:
    c, p = drive(State.LISTEN)
    c.receive_segment(p.syn(SYN | FIN), 0)
    assert out(c, 0) == []
    assert state_of(c) is State.LISTEN
    listener = Listener("198.18.0.1", 40000, config=TcpConfig(), isn=IsnGenerator(b"k"))
    assert listener.receive_syn("198.18.0.2", p.syn(SYN | FIN), 0) is None
    b = TcpEndpoint("198.18.0.2", isn_key=b"k")
    b.listen(21)
    b.receive(AddressedSegment("198.18.0.1", "198.18.0.2", Segment(40000, 21, 5, 0, SYN | FIN)), 0)
    assert b.packets_to_send(0) == []
    assert (b.stats.listen_dropped, b.connections) == (1, {})


# -- configuration ---------------------------------------------------------------------------------


def test_the_largest_rfc_7323_window_is_supported() -> None:
    config = TcpConfig(recv_buffer=2**30, delayed_ack=0)
    c = Connection("198.18.0.1", 40000, "198.18.0.2", 21, config=config, iss=ISS)
    c.open(0)
    assert out(c, 0) == [ours(SYN, seq=ISS, ack=0, options=syn_options(ts_clock(0), shift=14))]
    c.receive_segment(Peer(c).syn(SYN | ACK, (MaxSegmentSize(1460), WindowScale(0))), 1_000)
    # 65535 << 14: 2**30 - 2**14 bytes; no SACK and no timestamps, which the peer did not offer.
    assert out(c, 1_000) == [ours(seq=ISS + 1, ack=IRS + 1, window=0xFFFF)]


def test_two_connections_with_the_largest_window_move_data_through_loss() -> None:
    config = TcpConfig(recv_buffer=2**30, msl=1_000_000)
    p = pair(config, config, lossy_mover(3, loss=0.02, delay=5_000, jitter=4_000))
    data = random.Random(1).randbytes(300_000)
    assert transfer(p, data, b"") == [b"", data]
    assert p.a.window_scaling == (14, 14)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recv_buffer", 2**30 + 1),
        ("recv_buffer", 0),
        ("mss", 47),
        ("send_buffer", 0),
        ("min_rto", 0),
        ("data_retries", -1),
        ("initial_cwnd_segments", 0),
    ],
)
def test_a_bad_config_raises_a_clear_error_naming_the_field(field: str, value: int) -> None:
    with pytest.raises(TcpConfigError, match=f"TcpConfig: {field}"):
        TcpConfig(**{field: value})  # type: ignore[arg-type]


# -- RFC 6528: the ISN key is secret by default ------------------------------------------------


def test_endpoints_without_an_isn_key_draw_different_random_keys() -> None:
    isns = {TcpEndpoint("198.18.0.1").isn.isn("198.18.0.1", 40000, "198.18.0.2", 21, 0)}
    isns.add(TcpEndpoint("198.18.0.1").isn.isn("198.18.0.1", 40000, "198.18.0.2", 21, 0))
    assert len(isns) == 2
    keyed = {TcpEndpoint("198.18.0.1", isn_key=b"k").isn.offset("198.18.0.1", 1, "1.2.3.4", 2)}
    keyed.add(TcpEndpoint("198.18.0.1", isn_key=b"k").isn.offset("198.18.0.1", 1, "1.2.3.4", 2))
    assert len(keyed) == 1


# -- RFC 6191: a SYN for a new incarnation ends TIME-WAIT ---------------------------------------

A, B = "198.18.0.1", "198.18.0.2"
SERVER_ISS = IsnGenerator(b"k").isn(B, 21, A, 40000, 0)  # RFC 6528: the keyed clock at 0


def server_in_time_wait(
    timestamps: bool,
) -> tuple[TcpEndpoint, Connection, int]:
    """A server endpoint whose connection from A:40000 is in TIME-WAIT (the server closed first);
    returns it, the connection and the client's next sequence number."""
    b = TcpEndpoint(B, config=TcpConfig(delayed_ack=0), isn_key=b"k")
    b.listen(21)
    opts = (MaxSegmentSize(1460), Timestamps(100, 0)) if timestamps else (MaxSegmentSize(1460),)
    ts = (Timestamps(110, 0),) if timestamps else ()

    def send(seq: int, ack: int, flags: Flags, at: int) -> list[Segment]:
        b.receive(AddressedSegment(A, B, Segment(40000, 21, seq, ack, flags, 65535, ts)), at)
        return [p.segment for p in b.packets_to_send(at)]

    b.receive(AddressedSegment(A, B, Segment(40000, 21, 5000, 0, SYN, 65535, opts)), 0)
    [syn_ack] = [p.segment for p in b.packets_to_send(0)]
    iss = syn_ack.seq
    assert iss == SERVER_ISS
    send(5001, iss + 1, ACK, 1_000)
    [server] = b.connections.values()
    server.close(2_000)
    [fin] = [p.segment for p in b.packets_to_send(2_000)]
    assert fin.fin
    send(5001, iss + 2, FIN | ACK, 3_000)
    assert server.state is State.TIME_WAIT
    return b, server, 5002


def test_a_syn_with_a_higher_isn_reopens_a_4_tuple_in_time_wait() -> None:
    b, old, rcv_nxt = server_in_time_wait(timestamps=False)
    b.receive(AddressedSegment(A, B, Segment(40000, 21, rcv_nxt + 100_000, 0, SYN, 65535)), 4_000)
    # The new ISS lies beyond the old incarnation's SND.NXT (its ISS, SYN and FIN).
    iss = seq_add(SERVER_ISS + 2, 65537)
    assert [p.segment for p in b.packets_to_send(4_000)] == [
        Segment(21, 40000, iss, rcv_nxt + 100_001, SYN | ACK, 65535, MSS_ONLY)
    ]
    assert old.state is State.CLOSED
    [new] = b.connections.values()
    assert new is not old
    assert new.state is State.SYN_RECEIVED


def test_a_syn_with_a_newer_timestamp_reopens_a_4_tuple_in_time_wait() -> None:
    b, old, rcv_nxt = server_in_time_wait(timestamps=True)
    syn = Segment(40000, 21, rcv_nxt - 10, 0, SYN, 65535, (Timestamps(500, 0),))
    b.receive(AddressedSegment(A, B, syn), 4_000)
    # The new ISS lies beyond the old SND.NXT, as Linux's (tw_snd_nxt + 65535 + 2); the new
    # connection seeds its timestamp offset with its ISS; the SYN-ACK echoes 500.
    iss = seq_add(SERVER_ISS + 2, 65537)
    options = (*MSS_ONLY, *ts(ts_clock(4_000, rng_seed=iss), 500))
    assert [p.segment for p in b.packets_to_send(4_000)] == [
        Segment(21, 40000, iss, rcv_nxt - 9, SYN | ACK, 65535, options)
    ]
    assert old.state is State.CLOSED


@pytest.mark.parametrize("timestamps", [False, True])
def test_an_old_syn_to_a_4_tuple_in_time_wait_still_gets_a_challenge_ack(timestamps: bool) -> None:
    b, old, rcv_nxt = server_in_time_wait(timestamps)
    stamp = (Timestamps(110, 0),) if timestamps else ()
    syn = Segment(40000, 21, rcv_nxt - 10, 0, SYN, 65535, stamp)
    b.receive(AddressedSegment(A, B, syn), 4_000)
    # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, echoing the peer's last timestamp when they are on.
    echo = ts(ts_clock(4_000, rng_seed=SERVER_ISS), 110) if timestamps else ()
    assert [p.segment for p in b.packets_to_send(4_000)] == [
        Segment(21, 40000, SERVER_ISS + 2, rcv_nxt, ACK, 65535, echo)
    ]
    assert old.state is State.TIME_WAIT


# -- RFC 8985 6.3: the RACK reorder timer ----------------------------------------------------------


def test_a_lost_go_back_retransmission_is_resent_by_the_reorder_timer_not_the_rto() -> None:
    # After a timeout, s1 and s2 go again in one burst; s2 is SACKed, s1 is not. s1 was sent
    # before s2 (same instant, lower sequence), so RACK presumes it lost once SRTT plus the
    # reordering window (SRTT/4) has passed since it left: 12.5 ms later, not at the next
    # (backed-off, 2 s) retransmission timeout.
    c, p = sack_sender_with_srtt(10_000)
    c.send(b"r" * 1460 * 3, 20_000)
    s0, s1, s2 = sent = out(c, 20_000)
    assert sent == flight(b"r" * 1460 * 3, seq=ISS + 1461, ack=IRS + 1)
    log: list[tuple[int, Segment]] = []

    def run_to(t: int) -> None:
        while (d := c.next_deadline()) is not None and d <= t:
            c.on_timer(d)
            log.extend((d, s) for s in out(c, d))

    def ack(at: int, sack: tuple[int, int] | None = None) -> None:
        p.send(ACK, at=at, ack=s1.seq, options=(SackBlocks((sack,)),) if sack else ())
        log.extend((at, s) for s in out(c, at))

    run_to(1_045_000)  # all three lost: a tail loss probe (s2), then the timeout (s0)
    ack(1_050_000)  # s0 arrived: cwnd 2, s1 and s2 go again together
    ack(1_060_000, (s2.seq, seq_add(s2.seq, 1460)))  # only s2 arrived
    run_to(1_065_000)
    assert log == [
        (40_000, s2),
        (1_040_000, s0),
        (1_050_000, s1),
        (1_050_000, s2),
        (1_062_500, s1),
    ]

    assert c.stats.timeouts == 1


# -- a malformed option list (as Linux: the segment stays, the remaining options are ignored) ----


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        (b"\x02\x04\x05\xb4\x01\x03\x03", (MaxSegmentSize(1460), NoOperation())),  # cut wscale
        (b"\x01\x03\x04\x07\x02\x04\x05\xb4", (NoOperation(),)),  # wscale of length 4
        (b"\x01\x01\x05\x01\x00\x00", (NoOperation(), NoOperation())),  # SACK of length 1
        (b"\x02\x04\x05\xb4\x00\x00\x00\x00", (MaxSegmentSize(1460), EndOfOptions())),  # fine
    ],
)
def test_a_malformed_option_list_keeps_the_options_before_the_damage(
    raw: bytes, kept: tuple[TcpOption, ...]
) -> None:
    options, problem = decode_options_leniently(raw)
    assert options == kept
    assert (problem is None) == (kept[-1:] == (EndOfOptions(),))
    if problem is not None:
        with pytest.raises(MalformedOptionsError, match=re.escape(problem)):
            decode_options(raw)


def test_a_syn_ack_keeps_the_plain_retry_count() -> None:
    # Only the active open waits 3 minutes; a half-open passive connection gives up after
    # syn_retries retransmissions, as Linux's tcp_synack_retries.
    c, _ = drive(State.SYN_RECEIVED, TcpConfig(syn_retries=2))
    times = []
    while c.state is State.SYN_RECEIVED:
        t = c.next_deadline()
        assert t is not None
        c.on_timer(t)
        sent = out(c, t)
        if sent:
            assert sent == [ours(SYN | ACK, seq=ISS, ack=IRS + 1, options=MSS_ONLY)]
            times.append(t)
    assert times == [1_000_000, 3_000_000]
    assert c.events()[-1] == TimedOut()


def test_a_retransmitted_fin_in_time_wait_is_always_acknowledged() -> None:
    # A FIN occupies sequence space: like data, it is never subject to the rate limit.
    c, p = drive(State.TIME_WAIT)
    fin = p.seg(FIN | ACK, seq=seq_add(p.seq, -1))
    answered = []
    for at in (1_000, 2_000):
        c.receive_segment(fin, at)
        answered.append(out(c, at))
    assert answered == [[ours(seq=ISS + 2, ack=IRS + 2)]] * 2


def test_the_reorder_timer_resends_a_suspect_segment_and_a_spurious_resend_widens_the_window() -> (
    None
):
    # s1 (sent with s0) is SACKed: s0 may only be reordered, so RACK waits SRTT + SRTT/4 after
    # s0 left (20 ms + 12.5 ms), then resends it at once as it enters recovery.
    c, p = sack_sender_with_srtt(10_000)
    c.send(b"r" * 1460 * 4, 20_000)
    s = out(c, 20_000)
    p.send(ACK, at=30_000, ack=s[0].seq, options=(SackBlocks(((s[1].seq, s[2].seq),)),))
    assert (out(c, 30_000), c.next_deadline()) == ([], 32_500)
    c.on_timer(32_500)
    assert out(c, 32_500) == [s[0]]
    # The original was only late: everything is acknowledged 0.5 ms after the resend, sooner
    # than any answer to it could come. The reordering window doubles (RFC 8985 6.2 step 4).
    p.send(ACK, at=33_000, ack=c.snd_nxt)
    assert [t.detail for t in c.trace if t.kind == "rack"] == [
        "spurious retransmission: reo_wnd x2"
    ]
    c.send(b"q" * 1460 * 4, 40_000)
    s2 = out(c, 40_000)  # two segments: cwnd after the (spurious) recovery
    p.send(ACK, at=50_000, ack=s2[0].seq, options=(SackBlocks(((s2[1].seq, s2[1].seq + 1460),)),))
    out(c, 50_000)
    assert c.next_deadline() == 40_000 + 10_000 + 5_000  # SRTT + 2 * SRTT/4
