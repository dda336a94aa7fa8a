"""Behaviour of the sans-IO TCP connection (RFC 9293 and friends), one test per rule.

Two kinds of harness, both in memory and in virtual time:
* a `Peer` that crafts segments by hand (templates varied with `dataclasses.replace`) to drive one
  connection into each state and poke it with exactly the segment an RFC rule talks about;
* a `Pair` that wires two connections together (segments of one into the other at a given time),
  optionally through a seeded lossy, reordering mover.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.tcp.connection import (
    Closed,
    Connected,
    Connection,
    ConnectionRefused,
    ConnectionStateError,
    DataReceived,
    Event,
    Listener,
    PeerClosed,
    Reset,
    State,
    TcpConfig,
    TcpConfigError,
    TimedOut,
)
from lab.tcp.events import DropReason, SegmentDropped, StateChanged
from lab.tcp.isn import IsnGenerator
from lab.wire.options import (
    MaxSegmentSize,
    NoOperation,
    SackBlocks,
    SackPermitted,
    TcpOption,
    Timestamps,
    WindowScale,
)
from lab.wire.segment import Flags, Segment
from lab.wire.seq import seq_add, seq_diff

A_IP, B_IP = "198.18.0.1", "198.18.0.2"
A_PORT, B_PORT = 40000, 21
ISS = 1000  # ours
IRS = 9000  # the peer's
SYN, ACK, FIN, RST, PSH = Flags.SYN, Flags.ACK, Flags.FIN, Flags.RST, Flags.PSH

# Plain config for crafted-segment tests: the peer offers no options unless a test says so.
PLAIN = TcpConfig(delayed_ack=0)


def conn(config: TcpConfig = PLAIN, iss: int = ISS) -> Connection:
    return Connection(A_IP, A_PORT, B_IP, B_PORT, config=config, iss=iss)


@dataclass
class Peer:
    """The far end, played by hand: knows its own next sequence number."""

    c: Connection
    seq: int = seq_add(IRS, 1)  # next sequence number the peer sends
    window: int = 65535

    def seg(
        self,
        flags: Flags = ACK,
        payload: bytes = b"",
        *,
        seq: int | None = None,
        ack: int | None = None,
        window: int | None = None,
        options: tuple[TcpOption, ...] = (),
    ) -> Segment:
        """A segment template: the peer's next seq, acking all we sent, its usual window."""
        return Segment(
            B_PORT,
            A_PORT,
            self.seq if seq is None else seq,
            self.c.snd_nxt if ack is None else ack,
            flags,
            self.window if window is None else window,
            options,
            payload,
        )

    def send(
        self,
        flags: Flags = ACK,
        payload: bytes = b"",
        at: int = 0,
        *,
        seq: int | None = None,
        ack: int | None = None,
        window: int | None = None,
        options: tuple[TcpOption, ...] = (),
    ) -> None:
        """Deliver one segment; advance the peer's sequence number unless `seq` was forced."""
        s = self.seg(flags, payload, seq=seq, ack=ack, window=window, options=options)
        self.c.receive_segment(s, at)
        if seq is None:
            self.seq = seq_add(self.seq, s.seg_len)

    def syn(
        self, flags: Flags = SYN, options: tuple[TcpOption, ...] = (MaxSegmentSize(1460),)
    ) -> Segment:
        return self.seg(flags, seq=IRS, ack=self.c.snd_nxt if flags & ACK else 0, options=options)


def out(c: Connection, at: int = 0) -> list[Segment]:
    return c.segments_to_send(at)


WINDOW = 65535  # what we announce under PLAIN: 1 MiB of buffer in an unscaled 16-bit field
NOP = NoOperation()
MSS_ONLY = (MaxSegmentSize(1460),)  # our SYN's options when the peer's SYN offered no others


def ours(
    flags: Flags = ACK,
    payload: bytes = b"",
    *,
    seq: int,
    ack: int,
    window: int = WINDOW,
    options: tuple[TcpOption, ...] = (),
) -> Segment:
    """The whole segment we should send, every field given (smoltcp's `recv!` templates): a test
    compares it with `==`, so a wrong window, a stray option or a missing PSH fails it."""
    return Segment(A_PORT, B_PORT, seq, ack, flags, window, options, payload)


def rst(seq: int, ack: int = 0, flags: Flags = RST) -> Segment:
    """Our reset: no window, no options (RFC 9293 3.10.7.1 <SEQ=..><ACK=..><CTL=RST(,ACK)>)."""
    return Segment(A_PORT, B_PORT, seq, ack, flags)


def ts_clock(now: int, rng_seed: int = 0) -> int:
    """Our TSval at `now`: milliseconds plus the per-connection offset (RFC 7323 5.4), which is the
    first draw of the connection's seeded RNG, so a test knows it."""
    return (now // 1000 + random.Random(rng_seed).getrandbits(32)) & 0xFFFFFFFF


def sack(*blocks: tuple[int, int]) -> tuple[TcpOption, ...]:
    """SACK blocks as an ACK carries them without timestamps: two NOPs align them."""
    return (NOP, NOP, SackBlocks(blocks))


def ts(tsval: int, tsecr: int) -> tuple[TcpOption, ...]:
    """The timestamps option as every non-SYN segment carries it: two NOPs align it."""
    return (NOP, NOP, Timestamps(tsval, tsecr))


def syn_options(
    tsval: int | None = None, tsecr: int = 0, shift: int | None = 5, sack_permitted: bool = True
) -> tuple[TcpOption, ...]:
    """Our SYN's options in wire order (MSS, window scale, SACK permitted, timestamps; NOPs
    align each); None leaves an option out."""
    opts: tuple[TcpOption, ...] = (MaxSegmentSize(1460),)
    if shift is not None:
        opts += (NOP, WindowScale(shift))
    if sack_permitted:
        opts += (NOP, NOP, SackPermitted())
    if tsval is not None:
        opts += (NOP, NOP, Timestamps(tsval, tsecr))
    return opts


def flight(
    data: bytes,
    *,
    seq: int,
    ack: int,
    mss: int = 1460,
    push: bool = True,
    options: tuple[TcpOption, ...] = (),
) -> list[Segment]:
    """Our data segments carrying `data` from `seq`, `mss` bytes each; the last has PSH when it
    empties the send buffer (`push`), as a sender marks the end of what the application gave."""
    chunks = [data[i : i + mss] for i in range(0, len(data), mss)]
    return [
        ours(
            ACK | PSH if push and i == len(chunks) - 1 else ACK,
            chunk,
            seq=seq_add(seq, i * mss),
            ack=ack,
            options=options,
        )
        for i, chunk in enumerate(chunks)
    ]


def state_of(c: Connection) -> State:
    """The state, read through a call so that mypy does not narrow it across events."""
    return c.state


def states(c: Connection) -> list[str]:
    return [f"{t.old.value} -> {t.new.value}" for t in c.trace if isinstance(t, StateChanged)]


# -- per-state fixtures: drive a fresh connection into each state with crafted segments ---------


def drive(
    state: State,
    config: TcpConfig = PLAIN,
    iss: int = ISS,
    syn_options: tuple[TcpOption, ...] = (MaxSegmentSize(1460),),
) -> tuple[Connection, Peer]:
    """A connection in `state`, its output drained, and the peer that put it there."""
    c = conn(config, iss)
    p = Peer(c)
    if state is State.CLOSED:
        return c, p
    if state is State.LISTEN:
        c.listen(0)
        return c, p
    if state is State.SYN_RECEIVED:
        c.listen(0)
        c.receive_segment(p.syn(options=syn_options), 0)
        out(c)
        return c, p
    c.open(0)
    out(c)
    if state is State.SYN_SENT:
        return c, p
    c.receive_segment(p.syn(SYN | ACK, syn_options), 0)
    out(c)
    if state is State.ESTABLISHED:
        return c, p
    if state in (State.CLOSE_WAIT, State.LAST_ACK):
        p.send(FIN | ACK)
        out(c)
        if state is State.LAST_ACK:
            c.close(0)
            out(c)
        return c, p
    c.close(0)  # FIN-WAIT-1
    out(c)
    if state is State.FIN_WAIT_1:
        return c, p
    if state is State.CLOSING:
        p.send(FIN | ACK, ack=seq_add(c.snd_nxt, -1))  # their FIN crosses ours
        out(c)
        return c, p
    p.send(ACK)  # acks our FIN
    if state is State.FIN_WAIT_2:
        return c, p
    p.send(FIN | ACK)
    out(c)
    assert state is State.TIME_WAIT
    return c, p


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("iss", [ISS, 0xFFFFFFFF])
def test_drive_reaches_every_state_even_across_the_sequence_wrap(state: State, iss: int) -> None:
    c, _ = drive(state, iss=iss)
    assert c.state is state


def test_state_values_are_the_rfc_names() -> None:
    assert State.SYN_SENT.value == "SYN-SENT"
    assert State.TIME_WAIT.value == "TIME-WAIT"
    assert len(State) == 11


# -- two connections wired together -----------------------------------------------------------


Mover = Callable[[Segment, int], list[int]]  # segment, now -> delivery times (empty = lost)


def instant(_seg: Segment, now: int) -> list[int]:
    return [now]


@dataclass
class Pair:
    """Two connections, each one's segments delivered to the other by `mover` in virtual time."""

    a: Connection
    b: Connection
    mover: Mover = instant
    now: int = 0
    wire: list[tuple[int, int, int, Segment]] = field(default_factory=list)  # (t, n, dst, seg)
    log: list[tuple[int, str, Segment]] = field(default_factory=list)
    _n: int = 0

    def pump(self) -> None:
        """Collect output of both ends at `now` and schedule it."""
        for src, c in (("a", self.a), ("b", self.b)):
            for s in c.segments_to_send(self.now):
                self.log.append((self.now, src, s))
                for t in self.mover(s, self.now):
                    self._n += 1
                    heapq.heappush(self.wire, (t, self._n, 1 if src == "a" else 0, s))

    def step(self) -> bool:
        """Advance to the next delivery or timer; False when nothing is left to happen."""
        self.pump()
        times = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
        if self.wire:
            times.append(self.wire[0][0])
        if not times:
            return False
        self.now = max(self.now, min(times))
        while self.wire and self.wire[0][0] <= self.now:
            _, _, dst, s = heapq.heappop(self.wire)
            (self.b if dst else self.a).receive_segment(s, self.now)
        for c in (self.a, self.b):
            d = c.next_deadline()
            if d is not None and d <= self.now:
                c.on_timer(self.now)
        self.pump()
        return True

    def settle(self, until: int | None = None) -> None:
        """Move segments (delivered without delay) until quiet; timers do not fire."""
        for _ in range(10_000):
            self.pump()
            if not self.wire:
                return
            while self.wire and (until is None or self.wire[0][0] <= until):
                _, _, dst, s = heapq.heappop(self.wire)
                (self.b if dst else self.a).receive_segment(s, self.now)
        raise AssertionError("no quiet after 10000 rounds")

    def run(self, until: int, stop: Callable[[], bool] = lambda: False) -> None:
        while self.now <= until and not stop():
            if not self.step():
                return


def pair(cfg_a: TcpConfig = PLAIN, cfg_b: TcpConfig | None = None, mover: Mover = instant) -> Pair:
    a = Connection(A_IP, A_PORT, B_IP, B_PORT, config=cfg_a, iss=ISS, rng_seed=1)
    b = Connection(B_IP, B_PORT, A_IP, A_PORT, config=cfg_b or cfg_a, iss=IRS, rng_seed=2)
    return Pair(a, b, mover)


def established(cfg_a: TcpConfig = PLAIN, cfg_b: TcpConfig | None = None) -> Pair:
    p = pair(cfg_a, cfg_b)
    p.b.listen(0)
    p.a.open(0)
    p.settle()
    assert state_of(p.a) is State.ESTABLISHED
    assert state_of(p.b) is State.ESTABLISHED
    return p


# -- end to end ------------------------------------------------------------------------------


def lossy_mover(seed: int, loss: float, delay: int, jitter: int) -> Mover:
    """Seeded loss, duplication and reordering (jittered delay)."""
    rng = random.Random(seed)

    def move(_seg: Segment, now: int) -> list[int]:
        if rng.random() < loss:
            return []
        times = [now + delay + rng.randrange(jitter)]
        if rng.random() < 0.01:
            times.append(now + delay + rng.randrange(jitter))
        return times

    return move


def transfer(p: Pair, data_a: bytes, data_b: bytes, limit: int = 600_000_000) -> list[bytes]:
    """b listens, a opens; each sends its data then closes; returns what [a, b] received."""
    ends = [p.a, p.b]
    payload = [data_a, data_b]
    sent = [0, 0]
    got = [bytearray(), bytearray()]
    closed = [False, False]
    p.b.listen(0)
    p.a.open(0)

    def feed() -> bool:
        for i, c in enumerate(ends):
            if c.state in (State.ESTABLISHED, State.CLOSE_WAIT):
                if sent[i] < len(payload[i]):
                    sent[i] += c.send(payload[i][sent[i] :], p.now)
                elif not closed[i]:
                    c.close(p.now)
                    closed[i] = True
            got[i] += c.read()
        return p.a.state is State.CLOSED and p.b.state is State.CLOSED

    while p.now < limit and not feed():
        if not p.step():
            break
    return [bytes(g) for g in got]


def assert_clean_close(p: Pair) -> None:
    for c in (p.a, p.b):
        assert state_of(c) is State.CLOSED
        evs = c.events()
        assert Closed() in evs
        assert PeerClosed() in evs
        assert not any(isinstance(e, (Reset, TimedOut)) for e in evs)


@pytest.mark.parametrize("seed", [1, 2])
def test_two_connections_move_200kb_both_ways_through_loss_and_reordering(seed: int) -> None:
    cfg = TcpConfig(msl=1_000_000, recv_buffer=65536, send_buffer=32768)
    p = pair(cfg, cfg, lossy_mover(seed, loss=0.03, delay=5_000, jitter=4_000))
    rng = random.Random(seed)
    data_a, data_b = rng.randbytes(200_000), rng.randbytes(200_000)
    got_a, got_b = transfer(p, data_a, data_b)
    assert got_b == data_a
    assert got_a == data_b
    assert_clean_close(p)
    assert p.a.stats.retransmissions > 0
    assert p.b.stats.retransmissions > 0


NEAR_WRAP = st.integers(2**32 - 50_000, 2**32 - 1)


@settings(max_examples=200, deadline=None)
@given(
    timestamps=st.booleans(),
    sack=st.booleans(),
    scaling=st.booleans(),
    nagle=st.booleans(),
    delayed_ack=st.sampled_from([0, 200_000]),
    recv_buffer=st.sampled_from([3000, 65536, 300_000]),
    iss_a=st.one_of(st.integers(0, 2**32 - 1), NEAR_WRAP),
    iss_b=st.one_of(st.integers(0, 2**32 - 1), NEAR_WRAP),
    loss=st.floats(0, 0.25),
    seed=st.integers(0, 2**16),
    sizes=st.tuples(st.integers(0, 30_000), st.integers(0, 30_000)),
)
def test_every_option_mix_delivers_exact_bytes_and_closes(
    timestamps: bool,
    sack: bool,
    scaling: bool,
    nagle: bool,
    delayed_ack: int,
    recv_buffer: int,
    iss_a: int,
    iss_b: int,
    loss: float,
    seed: int,
    sizes: tuple[int, int],
) -> None:
    cfg = TcpConfig(
        mss=1000,
        recv_buffer=recv_buffer,
        send_buffer=8000,
        timestamps=timestamps,
        sack=sack,
        window_scaling=scaling,
        nagle=nagle,
        delayed_ack=delayed_ack,
        msl=500_000,
        syn_retries=15,
        data_retries=30,
    )
    a = Connection(A_IP, A_PORT, B_IP, B_PORT, config=cfg, iss=iss_a, rng_seed=seed)
    b = Connection(B_IP, B_PORT, A_IP, A_PORT, config=cfg, iss=iss_b, rng_seed=seed + 1)
    p = Pair(a, b, lossy_mover(seed, loss, delay=2_000, jitter=3_000))
    rng = random.Random(seed)
    data_a, data_b = rng.randbytes(sizes[0]), rng.randbytes(sizes[1])
    got_a, got_b = transfer(p, data_a, data_b, limit=3_600_000_000)
    assert got_b == data_a
    assert got_a == data_b
    assert_clean_close(p)


# -- opening ---------------------------------------------------------------------------------


def test_active_open_sends_a_syn_with_our_options_and_waits_in_syn_sent() -> None:
    c = conn(TcpConfig())
    c.open(0)
    # The SYN window is never scaled; the default 1 MiB >> 5 fits 16 bits; nothing to echo yet.
    assert out(c) == [ours(SYN, seq=ISS, ack=0, options=syn_options(ts_clock(0), tsecr=0))]
    assert state_of(c) is State.SYN_SENT
    assert states(c) == ["CLOSED -> SYN-SENT"]


def test_syn_ack_completes_the_active_open_with_an_ack() -> None:
    c, p = drive(State.SYN_SENT)
    c.receive_segment(p.syn(SYN | ACK), 5)
    assert state_of(c) is State.ESTABLISHED
    assert c.events() == [Connected()]
    assert out(c, 5) == [ours(seq=ISS + 1, ack=IRS + 1)]
    assert states(c)[-1] == "SYN-SENT -> ESTABLISHED"


def test_listener_queues_a_syn_ack_and_accepts_once_established() -> None:
    lst = Listener(A_IP, A_PORT, config=PLAIN, isn=IsnGenerator(b"k"), backlog=1)
    syn = Segment(B_PORT, A_PORT, IRS, 0, SYN, 65535, (MaxSegmentSize(1460),))
    c = lst.receive_syn(B_IP, syn, 0)
    assert c is not None
    assert state_of(c) is State.SYN_RECEIVED
    assert states(c) == ["CLOSED -> LISTEN", "LISTEN -> SYN-RECEIVED"]
    iss = IsnGenerator(b"k").isn(A_IP, A_PORT, B_IP, B_PORT, 0)  # RFC 6528: the keyed clock
    # Only the MSS: the peer's SYN offered nothing else (RFC 7323 2.2, RFC 2018 2).
    [sa] = out(c)
    assert sa == ours(SYN | ACK, seq=iss, ack=IRS + 1, options=MSS_ONLY)
    assert lst.accept() is None
    assert lst.receive_syn(B_IP, replace(syn, src_port=B_PORT + 1), 0) is None  # backlog full
    c.receive_segment(Segment(B_PORT, A_PORT, IRS + 1, seq_add(iss, 1), ACK, 65535), 1)

    assert state_of(c) is State.ESTABLISHED
    assert lst.accept() is c
    assert lst.accept() is None


def test_simultaneous_open_goes_through_syn_received_on_both_sides() -> None:
    p = pair()
    p.a.open(0)
    p.b.open(0)
    ts_a, ts_b = ts_clock(0, rng_seed=1), ts_clock(0, rng_seed=2)
    [sa], [sb] = out(p.a), out(p.b)
    assert sa == ours(SYN, seq=ISS, ack=0, options=syn_options(ts_a))
    assert sb == replace(sa, src_port=B_PORT, dst_port=A_PORT, seq=IRS, options=syn_options(ts_b))
    p.a.receive_segment(sb, 1)
    p.b.receive_segment(sa, 1)
    assert (p.a.state, p.b.state) == (State.SYN_RECEIVED, State.SYN_RECEIVED)
    [saa], [sba] = out(p.a, 1), out(p.b, 1)
    # The same SYN, now with an ACK, echoing the other's timestamp (1 us later: the same ms).
    assert saa == replace(sa, flags=SYN | ACK, ack=IRS + 1, options=syn_options(ts_a, ts_b))
    assert sba == replace(sb, flags=SYN | ACK, ack=ISS + 1, options=syn_options(ts_b, ts_a))
    p.a.receive_segment(sba, 2)
    p.b.receive_segment(saa, 2)
    assert (p.a.state, p.b.state) == (State.ESTABLISHED, State.ESTABLISHED)
    assert states(p.a) == [
        "CLOSED -> SYN-SENT",
        "SYN-SENT -> SYN-RECEIVED",
        "SYN-RECEIVED -> ESTABLISHED",
    ]


def test_a_syn_ack_with_another_isn_in_syn_received_is_challenged_not_taken() -> None:
    # Only the peer's own SYN (SEG.SEQ = IRS) with our ISS acked completes a simultaneous open;
    # a SYN,ACK from elsewhere in the sequence space is RFC 5961 4 material.
    c, p = drive(State.SYN_RECEIVED)
    c.receive_segment(p.seg(SYN | ACK, seq=IRS + 77, ack=ISS + 1), 10)
    assert out(c, 10) == [ours(seq=ISS + 1, ack=IRS + 1)]  # <SEQ=SND.NXT><ACK=RCV.NXT><ACK>
    assert state_of(c) is State.SYN_RECEIVED
    assert c.stats.challenge_acks == 1


@pytest.mark.parametrize(
    ("name", "flags", "ack", "rst_seq", "state"),
    [
        ("ack of the iss", ACK, ISS, ISS, State.SYN_SENT),
        ("ack of unsent", ACK, ISS + 2, ISS + 2, State.SYN_SENT),
        ("syn-ack of unsent", SYN | ACK, ISS + 5, ISS + 5, State.SYN_SENT),
        ("rst with bad ack", RST | ACK, ISS + 5, None, State.SYN_SENT),
        ("rst without ack", RST, 0, None, State.SYN_SENT),
        ("plain ack", ACK, ISS + 1, None, State.SYN_SENT),
        ("rst acking our syn", RST | ACK, ISS + 1, None, State.CLOSED),
    ],
)
def test_syn_sent_answers_per_rfc_9293_3_10_7_3(
    name: str, flags: Flags, ack: int, rst_seq: int | None, state: State
) -> None:
    c, p = drive(State.SYN_SENT)
    c.receive_segment(p.seg(flags, seq=IRS, ack=ack), 1)
    # <SEQ=SEG.ACK><CTL=RST> for an unacceptable ACK, else nothing.
    assert out(c, 1) == ([] if rst_seq is None else [rst(rst_seq)]), name
    assert c.state is state


def test_rst_acking_our_syn_is_connection_refused() -> None:
    c, p = drive(State.SYN_SENT)
    c.receive_segment(p.seg(RST | ACK, seq=0, ack=ISS + 1), 1)
    assert state_of(c) is State.CLOSED
    assert c.events() == [ConnectionRefused()]
    assert c.next_deadline() is None


@pytest.mark.parametrize(
    ("flags", "answer", "state"),
    [
        (RST, [], State.LISTEN),
        (ACK, [rst(777)], State.LISTEN),  # <SEQ=SEG.ACK><CTL=RST>
        (FIN, [], State.LISTEN),
        # <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>, our MSS only: the peer's SYN offered no option.
        (SYN, [ours(SYN | ACK, seq=ISS, ack=IRS + 1, options=MSS_ONLY)], State.SYN_RECEIVED),
    ],
)
def test_listen_answers_per_rfc_9293_3_10_7_2(
    flags: Flags, answer: list[Segment], state: State
) -> None:
    c, p = drive(State.LISTEN)
    c.receive_segment(p.seg(flags, seq=IRS, ack=777 if flags & ACK else 0), 1)
    assert out(c, 1) == answer
    assert c.state is state


def test_duplicate_syn_in_syn_received_resends_the_syn_ack() -> None:
    c, p = drive(State.SYN_RECEIVED)
    c.receive_segment(p.syn(), 5)
    assert out(c, 5) == [ours(SYN | ACK, seq=ISS, ack=IRS + 1, options=MSS_ONLY)]
    assert state_of(c) is State.SYN_RECEIVED


def test_unacceptable_ack_in_syn_received_gets_a_reset() -> None:
    c, p = drive(State.SYN_RECEIVED)
    p.send(ACK, ack=ISS + 100)
    assert out(c) == [rst(ISS + 100)]  # <SEQ=SEG.ACK><CTL=RST>
    assert state_of(c) is State.SYN_RECEIVED


def test_syn_retries_run_out_into_timed_out() -> None:
    c = conn(TcpConfig(syn_retries=2, syn_timeout=0))
    c.open(0)
    out(c)
    times = []
    while c.state is State.SYN_SENT:
        t = c.next_deadline()
        assert t is not None
        c.on_timer(t - 1)
        assert out(c, t - 1) == []  # nothing before the deadline
        c.on_timer(t)
        sent = out(c, t)
        if sent:  # the same SYN, its timestamp from the clock of the retry
            assert sent == [ours(SYN, seq=ISS, ack=0, options=syn_options(ts_clock(t)))]
            times.append(t)
    assert times == [1_000_000, 3_000_000]  # two retries, backing off
    assert state_of(c) is State.CLOSED
    assert c.events() == [TimedOut()]


# -- the FIN in every state that can receive it -----------------------------------------------


@pytest.mark.parametrize(
    ("state", "acks_our_fin", "retransmitted", "after", "snd_nxt"),
    [
        (State.SYN_RECEIVED, False, False, State.CLOSE_WAIT, ISS + 1),
        (State.ESTABLISHED, False, False, State.CLOSE_WAIT, ISS + 1),
        (State.FIN_WAIT_1, False, False, State.CLOSING, ISS + 2),
        (State.FIN_WAIT_1, True, False, State.TIME_WAIT, ISS + 2),
        (State.FIN_WAIT_2, True, False, State.TIME_WAIT, ISS + 2),
        (State.CLOSE_WAIT, False, True, State.CLOSE_WAIT, ISS + 1),
        (State.CLOSING, False, True, State.CLOSING, ISS + 2),
        (State.LAST_ACK, False, True, State.LAST_ACK, ISS + 2),
        (State.TIME_WAIT, True, True, State.TIME_WAIT, ISS + 2),
    ],
)
def test_fin_moves_each_state_per_rfc_9293_and_is_acked_at_once(
    state: State, acks_our_fin: bool, retransmitted: bool, after: State, snd_nxt: int
) -> None:
    c, p = drive(state)
    ack = snd_nxt if acks_our_fin or state is State.SYN_RECEIVED else c.snd_una
    seq = seq_add(p.seq, -1) if retransmitted else p.seq
    c.receive_segment(p.seg(FIN | ACK, seq=seq, ack=ack), 7)
    assert c.state is after
    assert out(c, 7) == [ours(seq=snd_nxt, ack=IRS + 2)]  # one ACK; SYN and FIN consumed
    if not retransmitted:
        assert PeerClosed() in c.events()


@pytest.mark.parametrize(
    ("state", "flags", "answer"),
    [
        (State.CLOSED, FIN, rst(0, IRS + 2, RST | ACK)),  # 3.10.7.1: <ACK=SEG.SEQ+SEG.LEN>
        (State.CLOSED, FIN | ACK, rst(ISS + 1)),  # 3.10.7.1: <SEQ=SEG.ACK><RST>
        (State.LISTEN, FIN, None),  # 3.10.7.2: no SYN, no ACK: dropped
        (State.LISTEN, FIN | ACK, rst(ISS + 1)),  # 3.10.7.2: any ACK in LISTEN gets a RST
        (State.SYN_SENT, FIN, None),  # 3.10.7.3: neither SYN nor RST: dropped
        (State.SYN_SENT, FIN | ACK, None),  # the ACK of our SYN, but no SYN: dropped
    ],
)
def test_fin_is_not_processed_where_its_sequence_number_cannot_be_validated(
    state: State, flags: Flags, answer: Segment | None
) -> None:
    # RFC 9293 3.10.7.4 eighth step: "Do not process the FIN if the state is CLOSED, LISTEN,
    # or SYN-SENT since the SEG.SEQ cannot be validated".
    c, p = drive(state)
    c.receive_segment(p.seg(flags, seq=IRS + 1, ack=ISS + 1), 5)
    assert state_of(c) is state
    assert PeerClosed() not in c.events()
    assert out(c, 5) == ([answer] if answer is not None else [])


def test_fin_beyond_a_hole_waits_for_the_missing_data() -> None:
    c, p = drive(State.ESTABLISHED)
    c.receive_segment(p.seg(FIN | ACK, b"world", seq=IRS + 7), 1)
    assert state_of(c) is State.ESTABLISHED
    assert out(c, 1) == [ours(seq=ISS + 1, ack=IRS + 1)]  # a duplicate ACK, FIN not acknowledged
    p.send(ACK, b"hello ", at=2)
    assert state_of(c) is State.CLOSE_WAIT
    assert c.read() == b"hello world"
    assert out(c, 2) == [ours(seq=ISS + 1, ack=IRS + 13)]  # one ACK for the text and the FIN


@pytest.mark.parametrize(
    ("config", "before"),
    [
        (PLAIN, b""),  # no delayed ACKs: the text is acknowledged at once
        (TcpConfig(delayed_ack=200_000), b""),  # the FIN cuts the delay short
        (TcpConfig(delayed_ack=200_000), b"x" * 1460),  # the second full-sized segment
    ],
)
def test_a_fin_with_text_is_acknowledged_by_one_ack(config: TcpConfig, before: bytes) -> None:
    # RFC 9293 3.8.6.3: no more ACKs than needed; the ACK of the text would be stale at once.
    c, p = drive(State.ESTABLISHED, config)
    p.send(ACK, before, at=1)
    p.send(FIN | ACK, b"y" * 1460, at=1)
    assert state_of(c) is State.CLOSE_WAIT
    assert out(c, 1) == [ours(seq=ISS + 1, ack=IRS + 1 + len(before) + 1460 + 1)]


def test_time_wait_ends_after_two_msl_and_not_before() -> None:
    c, _ = drive(State.TIME_WAIT)
    assert c.next_deadline() == 2 * PLAIN.msl
    c.on_timer(2 * PLAIN.msl - 1)
    assert state_of(c) is State.TIME_WAIT
    c.on_timer(2 * PLAIN.msl)
    assert state_of(c) is State.CLOSED
    assert Closed() in c.events()
    assert c.next_deadline() is None


def test_retransmitted_fin_restarts_the_time_wait_timer() -> None:
    c, p = drive(State.TIME_WAIT)
    c.receive_segment(p.seg(FIN | ACK, seq=IRS + 1), 1_000)
    assert out(c, 1_000) == [ours(seq=ISS + 2, ack=IRS + 2)]
    assert c.next_deadline() == 1_000 + 2 * PLAIN.msl


# -- closing ---------------------------------------------------------------------------------


def test_simultaneous_close_passes_through_closing_on_both_sides() -> None:
    p = established()
    p.a.close(10)
    p.b.close(10)
    [fa], [fb] = out(p.a, 10), out(p.b, 10)
    # Both offered every option: 1 MiB >> 5 in the window field, timestamps of the same ms.
    ts_a, ts_b = ts_clock(10, rng_seed=1), ts_clock(10, rng_seed=2)
    assert fa == ours(FIN | ACK, seq=ISS + 1, ack=IRS + 1, window=32768, options=ts(ts_a, ts_b))
    assert fb == Segment(B_PORT, A_PORT, IRS + 1, ISS + 1, FIN | ACK, 32768, ts(ts_b, ts_a))
    p.a.receive_segment(fb, 11)
    p.b.receive_segment(fa, 11)
    assert (p.a.state, p.b.state) == (State.CLOSING, State.CLOSING)
    p.now = 11
    p.settle()
    assert (p.a.state, p.b.state) == (State.TIME_WAIT, State.TIME_WAIT)
    assert states(p.a)[-3:] == [
        "ESTABLISHED -> FIN-WAIT-1",
        "FIN-WAIT-1 -> CLOSING",
        "CLOSING -> TIME-WAIT",
    ]


def test_half_close_we_close_and_still_receive() -> None:
    p = established()
    p.a.close(0)
    p.settle()
    assert (p.a.state, p.b.state) == (State.FIN_WAIT_2, State.CLOSE_WAIT)
    assert p.b.events()[-1] == PeerClosed()
    assert p.b.send(b"still talking", 1) == 13
    p.settle()
    assert p.a.read() == b"still talking"
    p.b.close(2)
    p.settle()
    assert state_of(p.a) is State.TIME_WAIT
    assert state_of(p.b) is State.CLOSED
    assert Closed() in p.b.events()


def test_half_close_peer_closes_and_we_still_send() -> None:
    p = established()
    p.b.close(0)
    p.settle()
    assert state_of(p.a) is State.CLOSE_WAIT
    p.a.send(b"x" * 5000, 1)
    p.settle()
    assert p.b.read() == b"x" * 5000
    p.a.close(2)
    assert state_of(p.a) is State.LAST_ACK
    p.settle()
    assert state_of(p.a) is State.CLOSED
    assert state_of(p.b) is State.TIME_WAIT


def test_fin_is_retransmitted_until_acknowledged() -> None:
    c, _ = drive(State.FIN_WAIT_1)
    c.on_timer(999_999)
    assert out(c, 999_999) == []
    c.on_timer(1_000_000)
    assert out(c, 1_000_000) == [ours(FIN | ACK, seq=ISS + 1, ack=IRS + 1)]


def test_abort_sends_rst_and_closes_at_once() -> None:
    c, _ = drive(State.ESTABLISHED)
    c.send(b"pending", 0)
    c.abort(1)
    assert out(c, 1) == [rst(ISS + 1)]  # <SEQ=SND.NXT><CTL=RST>, no ACK (RFC 9293 3.10.5)
    assert state_of(c) is State.CLOSED
    assert c.send_buffered == 0


def test_closed_connection_answers_with_rst_but_never_rst_to_rst() -> None:
    c = conn()
    c.receive_segment(Segment(B_PORT, A_PORT, 5, 0, RST), 0)
    assert out(c) == []
    c.receive_segment(Segment(B_PORT, A_PORT, 5, 0, FIN, payload=b"ab"), 0)
    assert out(c) == [rst(0, 8, RST | ACK)]  # <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (State.CLOSED, "send"),
        (State.LISTEN, "send"),
        (State.FIN_WAIT_1, "send"),
        (State.LAST_ACK, "send"),
        (State.TIME_WAIT, "send"),
        (State.SYN_SENT, "open"),
        (State.ESTABLISHED, "open"),
        (State.FIN_WAIT_2, "close"),
        (State.CLOSED, "close"),
        (State.CLOSED, "abort"),
    ],
)
def test_api_misuse_raises_connection_state_error(state: State, action: str) -> None:
    c, _ = drive(state)
    calls: dict[str, Callable[[], object]] = {
        "send": lambda: c.send(b"x", 1),
        "open": lambda: c.open(1),
        "close": lambda: c.close(1),
        "abort": lambda: c.abort(1),
    }
    with pytest.raises(ConnectionStateError):
        calls[action]()


# -- RST and SYN per RFC 5961 ----------------------------------------------------------------

# Each state `drive` reaches after the SYNs: the event a RST at RCV.NXT ends it with, and its
# SND.NXT and RCV.NXT there (our FIN and the peer's each take one sequence number).
RESET_STATES = [
    (State.SYN_RECEIVED, Reset, ISS + 1, IRS + 1),
    (State.ESTABLISHED, Reset, ISS + 1, IRS + 1),
    (State.FIN_WAIT_1, Reset, ISS + 2, IRS + 1),
    (State.FIN_WAIT_2, Reset, ISS + 2, IRS + 1),
    (State.CLOSE_WAIT, Reset, ISS + 1, IRS + 2),
    (State.CLOSING, Closed, ISS + 2, IRS + 2),
    (State.LAST_ACK, Closed, ISS + 2, IRS + 2),
    (State.TIME_WAIT, Closed, ISS + 2, IRS + 2),
]
RESET_FIELDS = ("state", "event", "snd_nxt", "rcv_nxt")


@pytest.mark.parametrize(RESET_FIELDS, RESET_STATES)
def test_rst_at_rcv_nxt_resets_the_connection(
    state: State, event: type[Event], snd_nxt: int, rcv_nxt: int
) -> None:
    c, p = drive(state)
    assert (c.snd_nxt, c.rcv_nxt) == (snd_nxt, rcv_nxt)
    c.events()
    c.receive_segment(replace(p.seg(), flags=RST, seq=rcv_nxt), 1)
    assert state_of(c) is State.CLOSED
    assert out(c, 1) == []
    [e] = c.events()
    assert isinstance(e, event)


@pytest.mark.parametrize(RESET_FIELDS, RESET_STATES)
def test_rst_in_window_but_not_exact_gets_a_challenge_ack(
    state: State, event: object, snd_nxt: int, rcv_nxt: int
) -> None:
    c, p = drive(state)
    c.receive_segment(replace(p.seg(), flags=RST, seq=seq_add(rcv_nxt, 100)), 1)
    assert c.state is state
    assert out(c, 1) == [ours(seq=snd_nxt, ack=rcv_nxt)]  # RFC 5961 3.2: <SEQ=SND.NXT><ACK=RCV.NXT>
    assert c.stats.challenge_acks == 1


@pytest.mark.parametrize(RESET_FIELDS, RESET_STATES)
@pytest.mark.parametrize("offset", [-1, 70_000, 1 << 31])
def test_rst_out_of_window_is_silently_dropped(
    state: State, event: object, snd_nxt: int, rcv_nxt: int, offset: int
) -> None:
    c, p = drive(state)
    drops = c.stats.drops
    c.receive_segment(replace(p.seg(), flags=RST | ACK, seq=seq_add(rcv_nxt, offset)), 1)
    assert c.state is state
    assert out(c, 1) == []
    assert c.stats.drops == drops + 1
    assert c.trace[-1] == SegmentDropped(1, DropReason.RST_OUT_OF_WINDOW)


@pytest.mark.parametrize(RESET_FIELDS, RESET_STATES[1:])
def test_syn_in_a_synchronized_state_gets_a_challenge_ack(
    state: State, event: object, snd_nxt: int, rcv_nxt: int
) -> None:
    c, p = drive(state)
    c.receive_segment(replace(p.seg(), flags=SYN, seq=rcv_nxt, ack=0), 1)
    assert c.state is state
    assert out(c, 1) == [ours(seq=snd_nxt, ack=rcv_nxt)]  # RFC 5961 4.2
    assert c.stats.challenge_acks == 1


def test_challenge_acks_are_rate_limited_per_second() -> None:
    c, p = drive(State.ESTABLISHED)
    challenge = ours(seq=ISS + 1, ack=IRS + 1)
    for i in range(15):
        c.receive_segment(p.seg(SYN, seq=IRS + 1, ack=0), 100 + i)
    assert out(c, 200) == [challenge] * PLAIN.challenge_ack_limit
    c.receive_segment(p.seg(SYN, seq=IRS + 1, ack=0), 1_000_100)
    assert out(c, 1_000_100) == [challenge]


def test_ack_of_unsent_data_is_dropped_and_answered_with_an_ack() -> None:
    c, p = drive(State.ESTABLISHED)
    p.send(ACK, b"data", ack=ISS + 1000)
    assert out(c) == [ours(seq=ISS + 1, ack=IRS + 1)]  # the data was not taken either
    assert c.snd_una == ISS + 1
    assert c.recv_buffered == 0


def test_acks_outside_the_rfc_5961_range_share_the_challenge_ack_rate_limit() -> None:
    # RFC 5961 5.2 answers such ACKs with an ACK, and section 7 throttles every challenge ACK:
    # a blind flood of bad ACKs must not be reflected segment for segment.
    c, p = drive(State.ESTABLISHED)
    answers: list[Segment] = []
    for i in range(25):
        bad_ack = ISS + 100_000 if i % 2 else seq_add(ISS, -200_000)
        p.send(ACK, ack=bad_ack, at=1_000 + i)
        answers += out(c, 1_000 + i)
    challenge = ours(seq=ISS + 1, ack=IRS + 1)
    assert answers == [challenge] * PLAIN.challenge_ack_limit
    assert c.stats.challenge_acks == PLAIN.challenge_ack_limit
    assert c.snd_una == ISS + 1
    # A second later the budget is back.
    p.send(ACK, ack=ISS + 100_000, at=1_001_000)
    assert out(c, 1_001_000) == [challenge]


# -- receiving -------------------------------------------------------------------------------


def zero_window_receiver() -> tuple[Connection, Peer]:
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=0, recv_buffer=1000))
    p.send(ACK, b"z" * 1000)
    out(c)
    assert c.rcv_wnd == 0
    return c, p


@pytest.mark.parametrize(
    ("zero_window", "offset", "length", "acceptable"),
    [
        # RCV.WND = 0: only an empty segment at RCV.NXT.
        (True, 0, 0, True),
        (True, 1, 0, False),
        (True, 0, 10, False),
        (True, 1, 1, False),
        # RCV.WND > 0: the first or the last byte in the window.
        (False, 0, 0, True),
        (False, 500, 0, True),
        (False, -1, 0, False),
        (False, 70_000, 0, False),
        (False, -5, 10, True),  # overlaps into the window: acceptable, trimmed
        (False, -10, 10, False),  # entirely old
        (False, 65_530, 10, True),  # starts in the window
        (False, 65_535, 10, False),  # starts beyond it
    ],
)
def test_segment_acceptability_follows_the_four_cases(
    zero_window: bool, offset: int, length: int, acceptable: bool
) -> None:
    if zero_window:
        c, p = zero_window_receiver()
    else:
        c, p = drive(State.ESTABLISHED)
        p.send(ACK, b"a" * 100)
        out(c)
    c.receive_segment(p.seg(ACK, b"q" * length, seq=seq_add(c.rcv_nxt, offset)), 1)
    last = c.trace[-1]
    unacceptable = (DropReason.SEQUENCE_NOT_ACCEPTABLE, DropReason.DATA_BEYOND_ZERO_WINDOW)
    dropped = isinstance(last, SegmentDropped) and last.reason in unacceptable
    assert dropped is not acceptable


def test_bare_fin_is_taken_even_when_the_window_is_closed() -> None:
    c, p = zero_window_receiver()
    p.send(FIN | ACK, at=1)
    assert state_of(c) is State.CLOSE_WAIT
    assert out(c, 1) == [ours(seq=ISS + 1, ack=IRS + 1002, window=0)]


def test_keepalive_probe_is_answered_with_an_ack() -> None:
    c, p = drive(State.ESTABLISHED)
    c.receive_segment(p.seg(ACK, b"\x00", seq=IRS), 1)
    assert out(c, 1) == [ours(seq=ISS + 1, ack=IRS + 1)]
    assert c.recv_buffered == 0


def test_zero_window_probe_is_answered_and_its_ack_processed() -> None:
    c, p = zero_window_receiver()
    c.send(b"abc", 1)
    assert out(c, 1) == [ours(PSH | ACK, b"abc", seq=ISS + 1, ack=IRS + 1001, window=0)]
    c.receive_segment(p.seg(ACK, b"!", ack=ISS + 4), 2)  # peer probes our zero window
    assert out(c, 2) == [ours(seq=ISS + 4, ack=IRS + 1001, window=0)]  # the byte is not taken
    assert c.snd_una == ISS + 4  # the probe's ACK was processed


def test_sack_blocks_appear_while_holding_out_of_order_data() -> None:
    c, p = drive(State.ESTABLISHED, syn_options=(MaxSegmentSize(1460), SackPermitted()))
    assert c.sack_enabled
    c.receive_segment(p.seg(ACK, b"B" * 100, seq=IRS + 101), 1)
    c.receive_segment(p.seg(ACK, b"D" * 100, seq=IRS + 301), 1)
    b, d = (IRS + 101, IRS + 201), (IRS + 301, IRS + 401)
    assert out(c, 1) == [
        ours(seq=ISS + 1, ack=IRS + 1, options=sack(b)),
        ours(seq=ISS + 1, ack=IRS + 1, options=sack(d, b)),  # the newest block first
    ]
    p.send(ACK, b"A" * 100, at=2)
    assert out(c, 2) == [ours(seq=ISS + 1, ack=IRS + 201, options=sack(d))]
    p.send(ACK, b"C" * 100, seq=IRS + 201, at=3)
    assert out(c, 3) == [ours(seq=ISS + 1, ack=IRS + 401)]  # nothing held: no SACK option
    assert c.read() == b"A" * 100 + b"B" * 100 + b"C" * 100 + b"D" * 100


def test_no_sack_blocks_unless_both_syns_allowed_sack() -> None:
    c, p = drive(State.ESTABLISHED)
    c.receive_segment(p.seg(ACK, b"B" * 100, seq=IRS + 101), 1)
    assert out(c, 1) == [ours(seq=ISS + 1, ack=IRS + 1)]


def test_delayed_ack_waits_for_its_timer() -> None:
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=200_000))
    p.send(ACK, b"x" * 1460, at=0)
    assert out(c, 0) == []
    assert c.next_deadline() == 200_000
    c.on_timer(199_999)
    assert out(c, 199_999) == []
    c.on_timer(200_000)
    assert out(c, 200_000) == [ours(seq=ISS + 1, ack=IRS + 1 + 1460)]


def test_every_second_full_sized_segment_is_acked_at_once() -> None:
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=200_000))
    p.send(ACK, b"x" * 1460, at=0)
    assert out(c, 0) == []
    p.send(ACK, b"y" * 1460, at=1)
    assert out(c, 1) == [ours(seq=ISS + 1, ack=IRS + 1 + 2920)]
    assert c.next_deadline() is None


DELAYED = TcpConfig(delayed_ack=200_000)


def _acks_of_a_burst(config: TcpConfig, segments: int = 6) -> list[int]:
    """The ACK numbers a connection sends for `segments` in-order full-sized segments that
    arrive together, the output pulled once after the burst (as the live host does)."""
    c, p = drive(State.ESTABLISHED, config)
    for k in range(segments):
        p.send(ACK, b"z" * 1460, at=5, seq=IRS + 1 + 1460 * k)
    return [seg.ack - IRS - 1 for seg in out(c, 5)]


def test_a_burst_is_acked_every_second_segment_by_default() -> None:
    assert _acks_of_a_burst(DELAYED) == [2920, 5840, 8760]


def test_ack_batch_acks_a_burst_once_at_its_end() -> None:
    assert _acks_of_a_burst(replace(DELAYED, ack_batch=1 << 20)) == [8760]


def test_ack_batch_still_acks_once_that_many_bytes_are_unacked() -> None:
    assert _acks_of_a_burst(replace(DELAYED, ack_batch=4380)) == [4380, 8760]


def test_ack_batch_never_merges_the_duplicate_acks_of_out_of_order_data() -> None:
    c, p = drive(State.ESTABLISHED, replace(DELAYED, ack_batch=1 << 20))
    for k in range(1, 4):  # the first segment is missing; three later ones arrive at once
        p.send(ACK, b"o" * 200, at=5, seq=IRS + 1 + 200 * k)
    assert [seg.ack for seg in out(c, 5)] == [IRS + 1] * 3


BATCH = replace(DELAYED, ack_batch=1 << 20)


def test_ack_batch_sends_the_held_ack_before_the_duplicates_of_a_hole() -> None:
    # Segments 0 and 1 arrive in order, 2 is lost, 3-5 arrive in the same burst: the peer
    # sees what it would without batching, the ACK of 0-1 then three duplicates of it.
    c, p = drive(State.ESTABLISHED, BATCH)
    for k in (0, 1, 3, 4, 5):
        p.send(ACK, b"z" * 1460, at=5, seq=IRS + 1 + 1460 * k)
    assert [seg.ack - IRS - 1 for seg in out(c, 5)] == [2920] * 4


def test_ack_batch_holds_nothing_when_one_segment_is_owed_a_delayed_ack() -> None:
    # One in-order segment (a delayed ACK pending), then a hole: no extra ACK, as without
    # batching, the first ACK of the out-of-order segment covers the in-order one.
    for config in (DELAYED, BATCH):
        c, p = drive(State.ESTABLISHED, config)
        for k in (0, 2, 3):
            p.send(ACK, b"z" * 1460, at=5, seq=IRS + 1 + 1460 * k)
        assert [seg.ack - IRS - 1 for seg in out(c, 5)] == [1460, 1460], config


def test_ack_batch_acks_segments_arriving_alone_as_rfc_5681() -> None:
    for config in (DELAYED, BATCH):
        c, p = drive(State.ESTABLISHED, config)
        acks = []
        for k in range(5):
            p.send(ACK, b"z" * 1460, at=k, seq=IRS + 1 + 1460 * k)
            acks.append([seg.ack - IRS - 1 for seg in out(c, k)])
        assert acks == [[], [2920], [], [5840], []], config
        assert c.next_deadline() == 4 + 200_000, config


def test_ack_batch_covers_held_data_and_a_fin_with_one_ack() -> None:
    c, p = drive(State.ESTABLISHED, BATCH)
    for k in range(4):
        p.send(ACK | (FIN if k == 3 else 0), b"z" * 1460, at=5, seq=IRS + 1 + 1460 * k)
    assert [seg.ack - IRS - 1 for seg in out(c, 5)] == [4 * 1460 + 1]
    assert c.state is State.CLOSE_WAIT
    assert c.next_deadline() is None


def test_a_negative_ack_batch_is_refused() -> None:
    with pytest.raises(TcpConfigError, match="ack_batch"):
        TcpConfig(ack_batch=-1)


def test_data_filling_a_gap_is_acked_at_once_even_with_delayed_acks() -> None:
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=200_000))
    c.receive_segment(p.seg(ACK, b"b" * 10, seq=IRS + 11), 0)
    assert out(c, 0) == [ours(seq=ISS + 1, ack=IRS + 1)]  # out of order: immediate
    p.send(ACK, b"a" * 10, at=1)
    assert out(c, 1) == [ours(seq=ISS + 1, ack=IRS + 21)]


def test_advertised_right_edge_never_moves_left() -> None:
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=0, recv_buffer=10_000))
    rng = random.Random(7)
    edge = seq_add(IRS + 1, 10_000)
    for t in range(200):
        if rng.random() < 0.6:
            p.send(ACK, b"d" * rng.randrange(1, 1500), at=t)
        else:
            c.read(rng.randrange(0, 4000))
        for s in out(c, t):
            right = seq_add(s.ack, s.window)
            assert seq_diff(right, edge) >= 0
            edge = right
    assert c.stats.bytes_received > 10_000  # the window did reopen


def test_window_update_waits_until_the_opening_is_worth_it() -> None:
    c, _ = zero_window_receiver()  # RCV.BUFF = 1000: opening by less than half is silly window
    assert c.read(300) == b"z" * 300
    assert out(c, 5) == []
    assert c.read(300) == b"z" * 300
    assert out(c, 6) == [ours(seq=ISS + 1, ack=IRS + 1001, window=600)]


def test_small_reads_under_a_full_unscaled_window_send_no_window_update() -> None:
    # 1 MiB of buffer behind an unscaled 16-bit field: the window announced is 65535 before and
    # after each read, so a "window update" would only repeat the last ACK (a duplicate ACK to
    # the peer, which counts it towards fast retransmit).
    c, p = drive(State.ESTABLISHED)
    p.send(ACK, b"d" * 1000, at=1)
    assert out(c, 1) == [ours(seq=ISS + 1, ack=IRS + 1001)]
    for t in range(2, 12):
        assert c.read(10) == b"d" * 10
        assert out(c, t) == []


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a_ws", "b_ws"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_window_scaling_is_on_only_when_both_syns_carry_it(a_ws: bool, b_ws: bool) -> None:
    p = pair(
        TcpConfig(window_scaling=a_ws, recv_buffer=262144),
        TcpConfig(window_scaling=b_ws, recv_buffer=262144),
    )
    p.b.listen(0)
    p.a.open(0)
    [syn] = out(p.a)
    p.b.receive_segment(syn, 0)
    [syn_ack] = out(p.b)
    both = a_ws and b_ws
    # 256 KiB >> 3 fits 16 bits; b scales only when a's SYN offered it (RFC 7323 2.2).
    options = syn_options(ts_clock(0, rng_seed=2), ts_clock(0, rng_seed=1), 3 if both else None)
    assert syn_ack == Segment(B_PORT, A_PORT, IRS, ISS + 1, SYN | ACK, 65535, options)
    p.a.receive_segment(syn_ack, 0)
    p.settle()
    assert p.a.window_scaling == ((3, 3) if both else None)
    assert p.b.window_scaling == ((3, 3) if both else None)
    # The ACK of the handshake announces the whole 256 KiB only when scaled.
    assert p.b.snd_wnd == (262144 if both else 65535)


@pytest.mark.parametrize(
    ("peer_options", "config", "segment", "options"),
    [
        ((MaxSegmentSize(500),), PLAIN, 500, ()),
        ((), PLAIN, 536, ()),  # RFC 9293 3.7.1 default
        ((MaxSegmentSize(9000),), PLAIN, 1460, ()),  # never more than we announce
        (
            (MaxSegmentSize(1460), Timestamps(5, ISS)),
            TcpConfig(delayed_ack=0),
            1448,  # 12 bytes of timestamps in every segment
            ts(ts_clock(1), 5),
        ),
        ((MaxSegmentSize(1460), Timestamps(5, ISS)), TcpConfig(timestamps=False), 1460, ()),
    ],
)
def test_segments_are_clamped_to_the_peers_mss_less_option_space(
    peer_options: tuple[TcpOption, ...],
    config: TcpConfig,
    segment: int,
    options: tuple[TcpOption, ...],
) -> None:
    c, _ = drive(State.ESTABLISHED, config, syn_options=peer_options)
    c.send(b"m" * 3000, 1)
    # RFC 5681 3.1: the initial window is 4 segments up to 1095 bytes, 3 up to 2190.
    segments = flight(b"m" * 3000, seq=ISS + 1, ack=IRS + 1, mss=segment, options=options)
    assert out(c, 1) == segments[: 4 if segment <= 1095 else 3]


def test_path_mss_from_icmp_lowers_new_segments_but_never_raises_them() -> None:
    c, _ = drive(State.ESTABLISHED, PLAIN, syn_options=(MaxSegmentSize(1460),))
    c.set_path_mss(1200)
    c.set_path_mss(1400)  # a larger value later must not raise it again
    c.send(b"m" * 3000, 1)
    assert out(c, 1) == flight(b"m" * 3000, seq=ISS + 1, ack=IRS + 1, mss=1200)
    c.set_path_mss(100)  # absurd advice is floored at the RFC 9293 minimum
    assert c.effective_mss == 536


def test_timestamps_are_echoed_and_give_rtt_samples() -> None:
    c, p = drive(
        State.ESTABLISHED,
        TcpConfig(delayed_ack=0),
        syn_options=(MaxSegmentSize(1460), Timestamps(777, 0)),
    )
    assert c.timestamps_enabled
    p.send(ACK, b"hi", at=10_000, options=(Timestamps(800, 0),))
    assert out(c, 10_000) == [ours(seq=ISS + 1, ack=IRS + 3, options=ts(ts_clock(10_000), 800))]
    c.send(b"data", 20_000)
    sent_at = ts_clock(20_000)
    assert out(c, 20_000) == [
        ours(ACK | PSH, b"data", seq=ISS + 1, ack=IRS + 3, options=ts(sent_at, 800))
    ]
    p.send(ACK, at=70_000, options=(Timestamps(900, sent_at),))
    assert c.srtt == 50_000


# -- sending, retransmission, congestion -----------------------------------------------------


def test_rto_resends_only_the_oldest_segment_at_rto_and_backs_off() -> None:
    c, _ = drive(State.ESTABLISHED)
    c.send(b"r" * 4000, 0)
    first = out(c, 0)
    assert first == flight(b"r" * 4000, seq=ISS + 1, ack=IRS + 1)
    assert c.next_deadline() == 1_000_000
    c.on_timer(999_999)
    assert out(c, 999_999) == []
    c.on_timer(1_000_000)
    assert out(c, 1_000_000) == [first[0]]
    assert c.next_deadline() == 3_000_000  # doubled
    c.on_timer(2_999_999)
    assert out(c, 2_999_999) == []
    c.on_timer(3_000_000)
    assert out(c, 3_000_000) == [first[0]]
    assert c.next_deadline() == 7_000_000
    assert [t.kind for t in c.trace].count("rto") == 2


def test_data_retries_run_out_into_timed_out_and_closed() -> None:
    c, _ = drive(State.ESTABLISHED, TcpConfig(data_retries=3, max_rto=4_000_000))
    c.send(b"t" * 10, 0)
    [segment] = out(c, 0)
    assert segment == ours(ACK | PSH, b"t" * 10, seq=ISS + 1, ack=IRS + 1)
    resent: list[Segment] = []
    while c.state is State.ESTABLISHED:
        t = c.next_deadline()
        assert t is not None
        c.on_timer(t)
        resent += out(c, t)
    assert resent == [segment] * 3
    assert state_of(c) is State.CLOSED
    assert c.events()[-1] == TimedOut()


def test_karns_rule_ignores_the_ack_of_a_retransmitted_segment() -> None:
    c, p = drive(State.ESTABLISHED)
    c.send(b"k" * 100, 0)
    out(c, 0)
    c.on_timer(1_000_000)
    out(c, 1_000_000)
    p.send(ACK, at=1_100_000)
    assert c.srtt is None  # ambiguous: not sampled
    # Karn: the backed-off RTO is kept until a segment that was not retransmitted is timed.
    assert c.rto == 2_000_000
    c.send(b"k" * 100, 1_100_000)
    out(c, 1_100_000)
    assert c.next_deadline() == 1_100_000 + 2_000_000
    p.send(ACK, at=1_150_000)
    assert c.srtt == 50_000
    assert c.rto == 1_000_000  # the fresh sample ends the back-off (1 s floor)


def test_fast_retransmit_after_exactly_three_duplicate_acks() -> None:
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=0, initial_cwnd_segments=10))
    c.send(b"f" * 14600, 0)
    sent = out(c, 0)
    assert sent == flight(b"f" * 14600, seq=ISS + 1, ack=IRS + 1)  # the initial window
    for i in range(2):
        p.send(ACK, at=10 + i, ack=ISS + 1)
        assert out(c, 10 + i) == []
    p.send(ACK, at=20, ack=ISS + 1)
    assert out(c, 20) == [sent[0]]
    assert c.stats.fast_retransmits == 1
    assert c.stats.dup_acks_received == 3
    assert c.ssthresh == 5 * 1460
    assert c.cwnd == 8 * 1460
    assert any(t.kind == "fast-retransmit" for t in c.trace)


def test_limited_transmit_sends_one_new_segment_on_each_of_the_first_two_duplicates() -> None:
    # RFC 3042: keeps the ACK clock going so that a loss in a small window is found by fast
    # retransmit rather than by the retransmission timer.
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=0, initial_cwnd_segments=4))
    c.send(b"L" * 1460 * 10, 0)
    segments = flight(b"L" * 1460 * 10, seq=ISS + 1, ack=IRS + 1)
    assert out(c, 0) == segments[:4]
    for i in range(2):
        p.send(ACK, at=10 + i, ack=ISS + 1)
        assert out(c, 10 + i) == [segments[4 + i]]
    p.send(ACK, at=20, ack=ISS + 1)
    assert out(c, 20) == [segments[0]]  # the third duplicate: fast retransmit
    assert c.stats.fast_retransmits == 1


def test_every_out_of_order_segment_of_a_burst_gets_its_own_duplicate_ack() -> None:
    c, p = drive(State.ESTABLISHED)
    for k in range(1, 4):  # the first segment is missing; three later ones arrive at once
        p.send(ACK | PSH, b"o" * 100, at=5, seq=IRS + 1 + 100 * k)
    assert out(c, 5) == [ours(seq=ISS + 1, ack=IRS + 1)] * 3


def test_duplicate_ack_reporting_new_sack_data_counts_even_if_the_window_moved() -> None:
    # RFC 6675 2: the receiver's application read in between, so the window differs, but the
    # SACK block proves a later segment arrived: it is a duplicate ACK all the same.
    sack_on = TcpConfig(delayed_ack=0, initial_cwnd_segments=10, timestamps=False)
    c, p = drive(State.ESTABLISHED, sack_on, syn_options=(MaxSegmentSize(1460), SackPermitted()))
    c.send(b"s" * 14600, 0)
    sent = out(c, 0)
    for i in range(1, 4):
        block = SackBlocks(((sent[1].seq, seq_add(sent[i].seq, 1460)),))
        p.send(ACK, at=10 + i, ack=ISS + 1, window=60000 + i, options=(block,))
    assert c.stats.dup_acks_received == 3
    assert c.stats.fast_retransmits == 1


SACK_PEER = (MaxSegmentSize(1460), SackPermitted())
SACK_CONFIG = TcpConfig(delayed_ack=0, initial_cwnd_segments=10, timestamps=False)


def sack_sender_with_srtt(rtt: int = 10_000) -> tuple[Connection, Peer]:
    """An established SACK sender whose SRTT is `rtt` (one timed segment acknowledged)."""
    c, p = drive(State.ESTABLISHED, SACK_CONFIG, syn_options=SACK_PEER)
    c.send(b"t" * 1460, 0)
    out(c, 0)
    p.send(ACK, at=rtt, ack=c.snd_nxt)
    assert c.srtt == rtt
    return c, p


def test_tail_loss_probe_resends_the_last_segment_after_two_srtt() -> None:
    # RFC 8985 7: the last two segments of a flight are lost; no duplicate ACK can come back.
    c, _p = sack_sender_with_srtt(10_000)
    c.send(b"p" * 2920, 20_000)
    sent = out(c, 20_000)
    assert sent == flight(b"p" * 2920, seq=ISS + 1461, ack=IRS + 1)
    assert c.next_deadline() == 40_000  # 2 * SRTT, far before the 1 s retransmission timer
    c.on_timer(39_999)
    assert out(c, 39_999) == []
    c.on_timer(40_000)
    assert out(c, 40_000) == [sent[1]]
    assert c.stats.tail_loss_probes == 1
    assert c.stats.timeouts == 0


def test_tail_probe_waits_for_a_delayed_ack_of_one_full_and_one_short_segment() -> None:
    # The common end of a transfer: a full segment and a short last one. The receiver may hold
    # its ACK for the delayed-ACK time (RFC 5681 4.2: an ACK per two *full-sized* segments), so
    # probing after 2 * SRTT would retransmit data that was never lost.
    config = TcpConfig(initial_cwnd_segments=10, timestamps=False, delayed_ack=200_000)
    c, p = drive(State.ESTABLISHED, config, syn_options=SACK_PEER)
    c.send(b"t" * 1460, 0)
    out(c, 0)
    p.send(ACK, at=10_000, ack=c.snd_nxt)
    assert c.srtt == 10_000
    c.send(b"p" * 2000, 20_000)
    assert out(c, 20_000) == flight(b"p" * 2000, seq=ISS + 1461, ack=IRS + 1)  # 1460 and 540
    assert c.next_deadline() == 20_000 + 2 * 10_000 + 200_000
    c.on_timer(40_000)
    assert out(c, 40_000) == []
    assert c.stats.tail_loss_probes == 0


def test_a_clean_wire_never_retransmits_even_when_the_last_segment_is_short() -> None:
    # The sender's application waits for everything to be acknowledged before closing, so the
    # tail of the data stands alone and the receiver delays its ACK.
    p = pair(TcpConfig(), mover=lambda _s, now: [now + 1_000])
    p.b.listen(0)
    p.a.open(0)
    p.run(10_000, stop=lambda: p.a.state is State.ESTABLISHED)
    data = random.Random(3).randbytes(100_001)
    assert p.a.send(data, p.now) == len(data)
    p.run(2_000_000, stop=lambda: p.a.send_buffered == 0)
    assert p.b.read() == data
    assert (p.a.stats.retransmissions, p.a.stats.tail_loss_probes) == (0, 0)


def test_sack_for_the_probe_starts_recovery_of_the_earlier_loss() -> None:
    c, p = sack_sender_with_srtt(10_000)
    c.send(b"p" * 2920, 20_000)
    first, second = out(c, 20_000)
    c.on_timer(40_000)
    assert out(c, 40_000) == [second]  # the tail loss probe
    # The probe arrived: the peer SACKs the second segment, the first is still missing.
    block = SackBlocks(((second.seq, seq_add(second.seq, 1460)),))
    p.send(ACK, at=50_000, ack=first.seq, options=(block,))
    assert out(c, 50_000) == [first]
    assert c.stats.fast_retransmits == 1
    assert c.stats.timeouts == 0


def test_a_lost_retransmission_is_found_from_later_sacks_not_the_timer() -> None:
    # RFC 8985 6.2 in miniature: data sent after the retransmission is SACKed while the
    # retransmission is not, so the retransmission itself must have been lost.
    c, p = sack_sender_with_srtt(10_000)
    c.send(b"r" * 1460 * 16, 20_000)
    segments = flight(b"r" * 1460 * 16, seq=ISS + 1461, ack=IRS + 1)
    sent = out(c, 20_000)
    assert sent == segments[:11]  # the initial window, grown by the timed segment's ACK
    hole = sent[0]

    def sack_up_to(end: int, at: int) -> list[Segment]:
        p.send(ACK, at=at, ack=hole.seq, options=(SackBlocks(((sent[1].seq, end),)),))
        return out(c, at)

    # Limited transmit on the first two duplicates, a fast retransmit of the hole on the third.
    emitted = [sack_up_to(sent[i].seq + 1460, 30_000 + i) for i in range(1, 4)]
    assert emitted == [[segments[11]], [segments[12]], [hole]]
    fresh: list[Segment] = []
    for i in range(4, len(sent)):  # further duplicates inflate the window: new data goes out
        fresh += sack_up_to(sent[i].seq + 1460, 40_000 + i)
    assert fresh == segments[13:]  # the rest of the data, and not the hole again
    # The first new segment (sent 10 ms after the lost retransmission) is SACKed.
    resent = sack_up_to(seq_add(fresh[0].seq, 1460), 50_000)
    assert resent == [hole]
    assert c.stats.timeouts == 0
    assert any(t.kind == "sack-loss" for t in c.trace)


def test_acks_carrying_data_or_a_new_window_are_not_duplicates() -> None:
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=0, initial_cwnd_segments=10))
    c.send(b"f" * 14600, 0)
    out(c, 0)
    p.send(ACK, b"x", at=1, ack=ISS + 1)
    p.send(ACK, at=2, ack=ISS + 1, window=60000)
    p.send(ACK, b"y", at=3, ack=ISS + 1)
    assert c.stats.dup_acks_received == 0
    p.send(ACK, at=4, ack=ISS + 1)  # same window as the last one: a duplicate
    assert c.stats.dup_acks_received == 1


def test_partial_ack_in_recovery_resends_the_next_hole() -> None:
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=0, initial_cwnd_segments=10))
    c.send(b"f" * 14600, 0)
    sent = out(c, 0)
    for i in range(3):
        p.send(ACK, at=10 + i, ack=ISS + 1)
    assert out(c, 12) == [sent[0]]
    p.send(ACK, at=20, ack=sent[1].seq)  # partial: the first hole filled, the second not
    resent = out(c, 20)
    assert resent[0] == sent[1]
    assert c.stats.fast_retransmits == 1


def test_after_a_timeout_sacked_segments_are_not_resent() -> None:
    c, p = drive(
        State.ESTABLISHED,
        TcpConfig(delayed_ack=0, initial_cwnd_segments=5),
        syn_options=(MaxSegmentSize(1000), SackPermitted()),
    )
    c.send(b"s" * 5000, 0)
    sent = out(c, 0)
    assert sent == flight(b"s" * 5000, seq=ISS + 1, ack=IRS + 1, mss=1000)
    c.on_timer(1_000_000)
    assert out(c, 1_000_000) == [sent[0]]
    # The first is in now, the second still missing, the rest held by the peer.
    held = SackBlocks(((sent[2].seq, ISS + 5001),))
    p.send(ACK, at=1_000_100, ack=sent[1].seq, options=(held,))
    assert out(c, 1_000_100) == [sent[1]]


def test_cwnd_grows_per_ack_in_slow_start_and_per_window_in_avoidance() -> None:
    c, p = drive(State.ESTABLISHED, TcpConfig(delayed_ack=0, initial_cwnd_segments=4))
    assert c.cwnd == 4 * 1460
    c.send(b"c" * 5840, 0)
    sent = out(c, 0)
    p.send(ACK, at=10, ack=sent[1].seq)  # one segment acked in slow start
    assert c.cwnd == 5 * 1460
    c.on_timer(c.next_deadline() or 0)  # a timeout: ssthresh = FlightSize / 2, cwnd = 1
    assert (c.cwnd, c.ssthresh) == (1460, 2 * 1460)
    p.send(ACK, at=2_000_000, ack=sent[2].seq)
    assert c.cwnd == 2 * 1460  # slow start up to ssthresh
    p.send(ACK, at=2_000_001, ack=sent[3].seq)
    assert c.cwnd == 2 * 1460 + 1460 * 1460 // (2 * 1460)  # avoidance: SMSS*SMSS/cwnd


def test_zero_window_is_probed_with_backoff_and_transfer_resumes() -> None:
    c, p = drive(State.ESTABLISHED)
    p.send(ACK, window=0)
    c.send(b"w" * 3000, 0)
    assert out(c, 0) == []
    assert c.next_deadline() == 1_000_000
    c.on_timer(999_999)
    assert out(c, 999_999) == []
    c.on_timer(1_000_000)
    probe = ours(ACK, b"w", seq=ISS + 1, ack=IRS + 1)  # one byte of the queued data
    assert out(c, 1_000_000) == [probe]
    p.send(ACK, at=1_000_100, ack=ISS + 1, window=0)  # refused, still closed
    assert c.next_deadline() == 3_000_000  # backed off
    c.on_timer(3_000_000)
    assert out(c, 3_000_000) == [probe]
    p.send(ACK, at=3_000_100, ack=ISS + 1, window=65535)  # opens
    # The probe's byte goes again as it was sent, then the rest in full segments.
    assert out(c, 3_000_100) == [probe, *flight(b"w" * 2999, seq=ISS + 2, ack=IRS + 1)]
    assert state_of(c) is State.ESTABLISHED


def test_send_window_updates_only_from_newer_segments() -> None:
    c, p = drive(State.ESTABLISHED)
    c.receive_segment(p.seg(ACK, b"n", seq=seq_add(p.seq, 100), window=3000), 1)
    assert c.snd_wnd == 3000
    c.receive_segment(p.seg(ACK, b"o" * 100, window=6000), 2)  # older SEG.SEQ than SND.WL1
    assert c.snd_wnd == 3000


@pytest.mark.parametrize(("nagle", "second_goes_at_once"), [(False, True), (True, False)])
def test_nagle_holds_small_segments_while_data_is_outstanding(
    nagle: bool, second_goes_at_once: bool
) -> None:
    c, p = drive(State.ESTABLISHED, TcpConfig(nagle=nagle, delayed_ack=0))
    c.send(b"1" * 10, 0)
    assert out(c, 0) == [ours(ACK | PSH, b"1" * 10, seq=ISS + 1, ack=IRS + 1)]
    c.send(b"2" * 10, 1)
    second = ours(ACK | PSH, b"2" * 10, seq=ISS + 11, ack=IRS + 1)
    assert out(c, 1) == ([second] if second_goes_at_once else [])
    p.send(ACK, at=2, ack=ISS + 11)  # the first is acknowledged: Nagle lets the second go
    assert out(c, 2) == ([] if second_goes_at_once else [second])


def test_send_buffer_is_bounded() -> None:
    c, _ = drive(State.ESTABLISHED, TcpConfig(send_buffer=1000))
    assert c.send(b"b" * 1500, 0) == 1000
    assert c.send(b"b", 0) == 0
    assert c.send_buffered == 1000


def test_events_are_drained() -> None:
    c, p = drive(State.ESTABLISHED)
    assert c.events() == [Connected()]
    p.send(ACK, b"abc")
    assert c.events() == [DataReceived(3)]
    assert c.events() == []


# -- robustness ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    state=st.sampled_from(list(State)),
    flags=st.integers(0, 0xFF),
    seq_off=st.integers(-(1 << 31), (1 << 31) - 1),
    ack=st.integers(0, 0xFFFFFFFF),
    window=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=40),
)
def test_arbitrary_segments_never_raise(
    state: State, flags: int, seq_off: int, ack: int, window: int, payload: bytes
) -> None:
    c, p = drive(state)
    s = p.seg(Flags(flags), payload, seq=seq_add(c.rcv_nxt, seq_off), ack=ack, window=window)
    c.receive_segment(s, 1)
    for seg in out(c, 1):
        assert not (s.rst and seg.rst)  # never a RST for a RST
    deadline = c.next_deadline()
    if deadline is not None:
        c.on_timer(deadline)
        out(c, deadline)


# -- more handshake details ------------------------------------------------------------------


def test_syn_ack_offers_only_what_the_peers_syn_offered() -> None:
    c = conn(TcpConfig())
    c.listen(0)
    c.receive_segment(Peer(c).syn(options=(MaxSegmentSize(1200), SackPermitted())), 0)
    # No window scale and no timestamps: the peer's SYN offered neither. Our own MSS is sent.
    assert out(c) == [ours(SYN | ACK, seq=ISS, ack=IRS + 1, options=syn_options(shift=None))]
    assert (c.sack_enabled, c.timestamps_enabled, c.window_scaling) == (True, False, None)
    assert c.effective_mss == 1200


def test_peer_window_shift_above_14_is_used_as_14() -> None:
    c, p = drive(
        State.ESTABLISHED,
        TcpConfig(delayed_ack=0, recv_buffer=262144),
        syn_options=(MaxSegmentSize(1460), WindowScale(20)),
    )
    assert c.window_scaling == (3, 14)
    p.send(ACK, window=2)
    assert c.snd_wnd == 2 << 14


def test_a_lost_syn_makes_the_initial_window_one_segment() -> None:
    c = conn()
    c.open(0)
    out(c)
    c.on_timer(1_000_000)
    syn = ours(SYN, seq=ISS, ack=0, options=syn_options(ts_clock(1_000_000)))
    assert out(c, 1_000_000) == [syn]
    c.receive_segment(Peer(c).syn(SYN | ACK), 1_000_100)
    assert c.cwnd == 1460
    c.send(b"x" * 5000, 1_000_100)
    # One segment, which also acknowledges the SYN-ACK.
    assert out(c, 1_000_100) == flight(b"x" * 1460, seq=ISS + 1, ack=IRS + 1, push=False)


def test_close_in_syn_received_sends_the_fin_once_established() -> None:
    c, p = drive(State.SYN_RECEIVED)
    c.close(1)
    assert state_of(c) is State.SYN_RECEIVED
    assert out(c, 1) == []
    p.send(ACK, at=2)
    assert states(c)[-2:] == ["SYN-RECEIVED -> ESTABLISHED", "ESTABLISHED -> FIN-WAIT-1"]
    assert out(c, 2) == [ours(FIN | ACK, seq=ISS + 1, ack=IRS + 1)]


def test_abort_in_time_wait_closes_without_rst() -> None:
    c, _ = drive(State.TIME_WAIT)
    c.abort(5)
    assert out(c, 5) == []
    assert state_of(c) is State.CLOSED


def test_dropped_segments_are_counted_and_traced_with_a_reason() -> None:
    c, p = drive(State.ESTABLISHED)
    before = c.stats.drops
    p.send(Flags(0), b"no ack bit")
    assert c.stats.drops == before + 1
    assert c.trace[-1] == SegmentDropped(c.trace[-1].time, DropReason.NO_ACK_BIT)
    assert c.recv_buffered == 0
