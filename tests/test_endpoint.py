"""TcpEndpoint: demultiplexing, listeners, ephemeral ports, RSTs for closed ports, reaping."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.link.impairment import Impairment
from lab.sim.simulation import Simulation
from lab.sim.wire import MemoryWire
from lab.tcp.connection import Connection, State, TcpConfig
from lab.tcp.endpoint import (
    TRACE_LIMIT,
    AddressInUseError,
    PortsExhaustedError,
    TcpEndpoint,
    reset_for,
)
from lab.tcp.isn import IsnGenerator
from lab.wire.segment import AddressedSegment, Flags, Segment

A, B = "198.18.0.1", "198.18.0.2"
FAST = TcpConfig(msl=1_000_000, delayed_ack=0)


def incoming(seg: Segment, src: str = A, dst: str = B) -> AddressedSegment:
    return AddressedSegment(src, dst, seg)


def pair() -> tuple[TcpEndpoint, TcpEndpoint, Simulation]:
    a = TcpEndpoint(A, config=FAST, rng_seed=1)
    b = TcpEndpoint(B, config=FAST, rng_seed=2)
    return a, b, Simulation(a, b, MemoryWire())


def established() -> tuple[TcpEndpoint, TcpEndpoint, Simulation, Connection, Connection]:
    """`pair()` with a connection from A to B:21 through its handshake: (a, b, sim, client,
    server)."""
    a, b, sim = pair()
    b.listen(21)
    client = a.connect(B, 21, now=0)
    assert sim.run_until(lambda: client.state is State.ESTABLISHED, limit=10_000_000)
    server = b.connections[(B, 21, A, client.local_port)]
    sim.run_until(lambda: server.state is State.ESTABLISHED, limit=10_000_000)
    return a, b, sim, client, server


# -- RST for segments nobody owns (RFC 9293 3.10.7.1) ------------------------------------------


def test_syn_to_a_closed_port_gets_rst_ack_with_seq_zero() -> None:
    b = TcpEndpoint(B)
    b.receive(incoming(Segment(40000, 21, seq=1000, flags=Flags.SYN)), now=0)
    [rst] = b.packets_to_send(now=0)
    assert (rst.src, rst.dst) == (B, A)
    assert rst.segment == Segment(21, 40000, seq=0, ack=1001, flags=Flags.RST | Flags.ACK)


def test_ack_to_a_closed_port_gets_rst_with_seq_of_the_ack() -> None:
    b = TcpEndpoint(B)
    b.receive(incoming(Segment(40000, 21, seq=5, ack=777, flags=Flags.ACK, payload=b"hi")), 0)
    [rst] = b.packets_to_send(now=0)
    assert rst.segment == Segment(21, 40000, seq=777, flags=Flags.RST)


def test_rst_ack_counts_payload_and_fin_and_wraps() -> None:
    seg = Segment(1, 2, seq=2**32 - 2, flags=Flags.FIN, payload=b"abc")
    rst = reset_for(seg)
    assert rst is not None
    assert rst.ack == 2  # (2**32 - 2) + 3 + 1 wraps to 2


def test_a_rst_is_never_answered() -> None:
    b = TcpEndpoint(B)
    b.receive(incoming(Segment(40000, 21, seq=5, flags=Flags.RST)), 0)
    b.receive(incoming(Segment(40000, 21, seq=5, ack=9, flags=Flags.RST | Flags.ACK)), 0)
    assert b.packets_to_send(now=0) == []
    assert b.stats.rst_ignored == 2


def test_segments_for_another_address_are_ignored() -> None:
    b = TcpEndpoint(B)
    b.receive(incoming(Segment(40000, 21, seq=5, flags=Flags.SYN), dst="198.18.0.9"), 0)
    assert b.packets_to_send(now=0) == []
    assert b.stats.not_for_us == 1


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.sampled_from([Flags(0), Flags.SYN, Flags.FIN, Flags.ACK, Flags.ACK | Flags.FIN]),
    st.binary(max_size=20),
)
def test_reset_for_follows_rfc_9293(seq: int, ack: int, flags: Flags, payload: bytes) -> None:
    seg = Segment(1, 2, seq=seq, ack=ack, flags=flags, payload=payload)
    rst = reset_for(seg)
    assert rst is not None
    assert rst.rst
    assert (rst.src_port, rst.dst_port) == (2, 1)
    if seg.has_ack:
        assert (rst.seq, rst.flags) == (ack, Flags.RST)
    else:
        assert rst.seq == 0
        assert rst.flags == Flags.RST | Flags.ACK
        assert rst.ack == (seq + seg.seg_len) % 2**32


# -- listeners ---------------------------------------------------------------------------------


def test_ack_to_a_listening_port_gets_rst() -> None:
    b = TcpEndpoint(B)
    b.listen(21)
    b.receive(incoming(Segment(40000, 21, seq=5, ack=99, flags=Flags.ACK)), 0)
    [rst] = b.packets_to_send(now=0)
    assert rst.segment == Segment(21, 40000, seq=99, flags=Flags.RST)


def test_rst_to_a_listening_port_is_ignored() -> None:
    b = TcpEndpoint(B)
    b.listen(21)
    b.receive(incoming(Segment(40000, 21, seq=5, flags=Flags.RST)), 0)
    assert b.packets_to_send(now=0) == []
    assert b.connections == {}


def test_syn_to_a_listening_port_makes_a_connection_that_answers_syn_ack() -> None:
    b = TcpEndpoint(B)
    b.listen(21)
    b.receive(incoming(Segment(40000, 21, seq=1000, flags=Flags.SYN, window=65535)), 0)
    conn = b.connections[(B, 21, A, 40000)]
    assert conn.state is State.SYN_RECEIVED
    [synack] = b.packets_to_send(now=0)
    assert synack.segment.syn
    assert synack.segment.has_ack
    assert synack.segment.ack == 1001


def test_listening_twice_on_one_port_is_refused() -> None:
    b = TcpEndpoint(B)
    b.listen(21)
    with pytest.raises(AddressInUseError):
        b.listen(21)


def test_unlisten_makes_the_port_closed_again() -> None:
    b = TcpEndpoint(B)
    b.listen(21)
    b.unlisten(21)
    b.receive(incoming(Segment(40000, 21, seq=1, flags=Flags.SYN)), 0)
    [rst] = b.packets_to_send(now=0)
    assert rst.segment.rst


# -- admission: a listener that refuses some sources at the SYN ---------------------------------

THIRD = "198.18.0.3"


def only_from(allowed: str, asked: list[tuple[str, int]]) -> Callable[[str, int], bool]:
    def accept_from(ip: str, port: int) -> bool:
        asked.append((ip, port))
        return ip == allowed

    return accept_from


def test_syn_from_a_source_the_listener_refuses_gets_the_rst_of_a_closed_port() -> None:
    b = TcpEndpoint(B)
    asked: list[tuple[str, int]] = []
    b.listen(40001, accept_from=only_from(A, asked))
    syn = Segment(20, 40001, seq=2**32 - 1, flags=Flags.SYN, window=65535)
    b.receive(incoming(syn, src=THIRD), now=7)
    [rst] = b.packets_to_send(now=7)
    assert (rst.src, rst.dst) == (B, THIRD)
    # RFC 9293 3.10.7.1 for a SYN without ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    assert rst.segment == Segment(40001, 20, seq=0, ack=0, flags=Flags.RST | Flags.ACK)
    assert rst.segment == reset_for(syn)
    assert asked == [(THIRD, 20)]
    assert b.connections == {}
    assert (b.stats.syn_rejected, b.stats.rst_sent) == (1, 1)
    [entry] = b.trace
    assert (entry.time, entry.kind) == (7, "rst")
    assert f"{THIRD}:20" in entry.detail
    assert "not admitted" in entry.detail


def test_syn_from_an_admitted_source_proceeds_to_syn_received() -> None:
    b = TcpEndpoint(B)
    asked: list[tuple[str, int]] = []
    b.listen(40001, accept_from=only_from(A, asked))
    b.receive(incoming(Segment(20, 40001, seq=1000, flags=Flags.SYN)), now=0)
    conn = b.connections[(B, 40001, A, 20)]
    assert conn.state is State.SYN_RECEIVED
    [synack] = b.packets_to_send(now=0)
    assert synack.segment.syn
    assert synack.segment.ack == 1001
    assert asked == [(A, 20)]
    assert (b.stats.syn_rejected, b.stats.rst_sent) == (0, 0)
    assert list(b.trace) == []


def test_only_syns_are_put_to_the_admission_hook() -> None:
    b = TcpEndpoint(B)
    asked: list[tuple[str, int]] = []
    b.listen(40001, accept_from=only_from(A, asked))
    b.receive(incoming(Segment(20, 40001, seq=5, ack=99, flags=Flags.ACK), src=THIRD), 0)
    b.receive(incoming(Segment(20, 40001, seq=5, flags=Flags.RST), src=THIRD), 0)
    [rst] = b.packets_to_send(now=0)
    assert rst.segment == Segment(40001, 20, seq=99, flags=Flags.RST)  # as for any listener
    assert asked == []
    assert b.stats.syn_rejected == 0


def test_unlisten_forgets_the_admission_hook() -> None:
    b = TcpEndpoint(B)
    b.listen(40001, accept_from=lambda ip, port: False)
    b.unlisten(40001)
    b.listen(40001)
    b.receive(incoming(Segment(20, 40001, seq=1, flags=Flags.SYN), src=THIRD), 0)
    assert (B, 40001, THIRD, 20) in b.connections


def test_a_refused_connect_through_the_demux_fails_at_once_and_the_admitted_one_completes() -> None:
    a, b, sim = pair()
    third = TcpEndpoint(THIRD, config=FAST, rng_seed=3)
    listener = b.listen(21, accept_from=lambda ip, port: ip == A)
    intruder = third.connect(B, 21, now=0)
    b.receive(third.packets_to_send(0)[0], now=0)
    [rst] = b.packets_to_send(now=0)
    third.receive(rst, now=0)
    assert intruder.state is State.CLOSED
    assert any(type(e).__name__ == "ConnectionRefused" for e in intruder.events())
    assert b.connections == {}
    client = a.connect(B, 21, now=0)
    assert sim.run_until(lambda: listener.accept() is not None, limit=10_000_000)
    assert client.state is State.ESTABLISHED


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 2000))
def test_the_endpoint_trace_stays_bounded_under_a_syn_flood(count: int) -> None:
    b = TcpEndpoint(B)
    b.listen(40001, accept_from=lambda ip, port: False)
    for i in range(count):
        b.receive(incoming(Segment(1024 + i, 40001, seq=i, flags=Flags.SYN), src=THIRD), i)
    assert len(b.packets_to_send(now=count)) == count
    assert b.stats.syn_rejected == count
    assert len(b.trace) == min(count, TRACE_LIMIT)


# -- active opens and ports --------------------------------------------------------------------


def test_connect_sends_a_syn_from_an_ephemeral_port_with_the_rfc_6528_iss() -> None:
    a = TcpEndpoint(A, isn_key=b"k")
    conn = a.connect(B, 21, now=400)
    assert 32768 <= conn.local_port <= 60999
    assert conn.state is State.SYN_SENT
    [syn] = a.packets_to_send(now=400)
    assert (syn.src, syn.dst) == (A, B)
    assert syn.segment.flags == Flags.SYN
    assert syn.segment.seq == IsnGenerator(b"k").isn(A, conn.local_port, B, 21, 400)
    assert a.connections == {(A, conn.local_port, B, 21): conn}


def test_connect_can_force_the_iss() -> None:
    a = TcpEndpoint(A)
    a.connect(B, 21, now=0, iss=2**32 - 1)
    [syn] = a.packets_to_send(now=0)
    assert syn.segment.seq == 2**32 - 1


def test_ephemeral_ports_come_from_the_seeded_rng() -> None:
    ports1 = [TcpEndpoint(A, rng_seed=5).connect(B, 21, 0).local_port for _ in range(3)]
    a = TcpEndpoint(A, rng_seed=5)
    ports2 = [a.connect(B, 21, 0).local_port for _ in range(3)]
    assert ports1 == [ports2[0]] * 3
    assert len(set(ports2)) == 3


def test_ports_in_use_are_skipped_and_exhaustion_is_reported() -> None:
    a = TcpEndpoint(A, ephemeral_ports=(50000, 50002))
    a.listen(50001)
    ports = {a.connect(B, 21, 0).local_port for _ in range(2)}
    assert ports == {50000, 50002}
    with pytest.raises(PortsExhaustedError):
        a.connect(B, 21, 0)


def test_an_explicit_local_port_may_not_duplicate_a_4_tuple() -> None:
    a = TcpEndpoint(A)
    a.connect(B, 21, 0, local_port=20)
    a.connect(B, 22, 0, local_port=20)  # another remote port: another 4-tuple
    with pytest.raises(AddressInUseError):
        a.connect(B, 21, 0, local_port=20)


# -- whole conversations through the demux -------------------------------------------------------


def test_handshake_through_two_endpoints_and_accept() -> None:
    a, b, sim = pair()
    listener = b.listen(21)
    client = a.connect(B, 21, now=0)
    assert listener.accept() is None
    assert sim.run_until(lambda: client.state is State.ESTABLISHED, limit=10_000_000)
    server = b.connections[(B, 21, A, client.local_port)]
    assert sim.run_until(lambda: server.state is State.ESTABLISHED, limit=10_000_000)
    assert listener.accept() is server
    assert listener.accept() is None


def test_connect_to_a_closed_port_is_refused() -> None:
    a, b, sim = pair()
    client = a.connect(B, 21, now=0)
    assert sim.run_until(lambda: client.state is State.CLOSED, limit=10_000_000)
    assert a.connections == {}
    assert b.stats.rst_sent == 1
    assert any(type(e).__name__ == "ConnectionRefused" for e in client.events())


def test_time_wait_is_kept_until_it_expires_then_reaped() -> None:
    a, b, sim = pair()
    b.listen(21)
    client = a.connect(B, 21, now=0)
    key = (A, client.local_port, B, 21)
    assert sim.run_until(lambda: client.state is State.ESTABLISHED, limit=10_000_000)
    server = b.connections[(B, 21, A, client.local_port)]
    sim.run_until(lambda: server.state is State.ESTABLISHED, limit=10_000_000)
    client.close(sim.now)
    assert sim.run_until(lambda: server.state is State.CLOSE_WAIT, limit=10_000_000)
    server.close(sim.now)
    assert sim.run_until(lambda: client.state is State.TIME_WAIT, limit=10_000_000)
    entered = sim.now
    assert sim.run_until(lambda: not b.connections, limit=10_000_000)
    assert a.connections == {key: client}  # still in TIME-WAIT
    assert sim.run_until(lambda: not a.connections, limit=100_000_000)
    assert client.state is State.CLOSED
    assert sim.now - entered >= 2 * FAST.msl
    assert a.stats.connections_reaped == 1


def test_abort_sends_rst_and_the_connection_is_reaped() -> None:
    a, b, sim, client, server = established()
    client.abort(sim.now)
    assert sim.run_until(lambda: server.state is State.CLOSED, limit=10_000_000)
    assert a.connections == {}
    assert b.connections == {}


def test_segment_for_a_reaped_connection_gets_a_rst() -> None:
    a, b, sim = pair()
    b.listen(21)
    client = a.connect(B, 21, now=0)
    assert sim.run_until(lambda: client.state is State.ESTABLISHED, limit=10_000_000)
    port = client.local_port
    client.abort(sim.now)
    a.packets_to_send(sim.now)  # the RST is lost: b never hears of it
    assert a.connections == {}
    a.receive(incoming(Segment(21, port, seq=1, ack=50, flags=Flags.ACK), src=B, dst=A), sim.now)
    [rst] = a.packets_to_send(sim.now)
    assert rst.segment == Segment(port, 21, seq=50, flags=Flags.RST)


def test_next_deadline_is_the_earliest_of_the_connections() -> None:
    a = TcpEndpoint(A)
    assert a.next_deadline() is None
    c1 = a.connect(B, 21, now=0)
    a.packets_to_send(0)
    c2 = a.connect(B, 22, now=500)
    a.packets_to_send(500)
    deadlines = [d for d in (c1.next_deadline(), c2.next_deadline()) if d is not None]
    assert deadlines
    assert a.next_deadline() == min(deadlines)


@settings(max_examples=15, deadline=None)
@given(
    count=st.integers(1, 6),
    loss=st.floats(0, 0.15),
    seed=st.integers(0, 2**16),
)
def test_concurrent_connections_to_one_listener_are_kept_apart(
    count: int, loss: float, seed: int
) -> None:
    config = TcpConfig(msl=1_000_000, syn_retries=12, data_retries=20)
    a = TcpEndpoint(A, config=config, rng_seed=seed)
    b = TcpEndpoint(B, config=config, rng_seed=seed + 1)
    sim = Simulation(a, b, MemoryWire(Impairment(loss=loss, delay=2_000, jitter=500, seed=seed)))
    listener = b.listen(21)
    clients = [a.connect(B, 21, now=0) for _ in range(count)]
    payloads = {c.local_port: bytes([i + 1]) * (3000 + 997 * i) for i, c in enumerate(clients)}
    offsets = dict.fromkeys(payloads, 0)
    servers: list[Connection] = []
    got: dict[int, bytearray] = {}

    def pump() -> bool:
        while (s := listener.accept()) is not None:
            servers.append(s)
            got[s.remote_port] = bytearray()
        for c in clients:
            data = payloads[c.local_port]
            if c.state is State.ESTABLISHED and offsets[c.local_port] < len(data):
                offsets[c.local_port] += c.send(data[offsets[c.local_port] :], sim.now)
        for s in servers:
            got[s.remote_port] += s.read()
        return len(servers) == count and all(got[p] == payloads[p] for p in payloads)

    while not pump():
        assert sim.step(limit=600_000_000), "ran out of events before the data arrived"
    assert {s.remote_port for s in servers} == set(payloads)
    assert len(b.connections) == count


def test_receive_established_counts_hands_over_and_reaps_as_receive_does() -> None:
    a, _b, sim, client, server = established()
    a.packets_to_send(sim.now)
    received = a.stats.received
    seq, ack = server.snd_nxt, client.snd_nxt
    data = Segment(21, client.local_port, seq=seq, ack=ack, flags=Flags.ACK, payload=b"hi")
    a.receive_established(client, data, sim.now)
    assert client.read() == b"hi"
    assert a.stats.received == received + 1
    rst = Segment(21, client.local_port, seq=seq + 2, flags=Flags.RST)
    a.receive_established(client, rst, sim.now)
    assert client.state is State.CLOSED
    assert a.connections == {}  # reaped at once, as `receive` reaps
