"""The notebooks' helpers: steppers that move one segment at a time, the hop log, the kernel's
/proc/net/tcp, and the scripted FTP server. Mode selection is tested in test_notebooks.py."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import pytest

from lab.ftp.protocol import ReplyParser, encode_command
from lab.ftp.scripted import PYFTPDLIB_REPLIES, ScriptedFtpServer
from lab.host import Host
from lab.link.impairment import Impairment
from lab.notebook import HopLog, LiveStepper, WireStepper, frame_of
from lab.sim.wire import MemoryWire
from lab.tcp.connection import State, TcpConfig
from lab.tcp.endpoint import TcpEndpoint
from lab.topology.kernel_sockets import kernel_listening, kernel_state, parse_proc_net_tcp
from lab.wire.fast import decode_ethernet
from lab.wire.frame import TcpFrame
from lab.wire.segment import AddressedSegment, Flags, Segment


def frames_out(host: Host, now: int) -> list[bytes]:
    """The bytes of what `host` sends now (`Host.outgoing_frames` without the transitions)."""
    return [frame.data for frame in host.outgoing_frames(now)]


CLIENT_IP, SERVER_IP = "198.18.0.2", "198.18.0.1"


def pair(**config: int) -> tuple[TcpEndpoint, TcpEndpoint, WireStepper]:
    client = TcpEndpoint(CLIENT_IP, config=TcpConfig(**config), rng_seed=2)
    server = TcpEndpoint(SERVER_IP, rng_seed=1)
    server.listen(2121)
    wire = MemoryWire(Impairment(delay=1_000))
    return client, server, WireStepper(client, server, wire, log=HopLog(CLIENT_IP))


# -- WireStepper ------------------------------------------------------------------------------


def test_wire_stepper_moves_the_handshake_one_segment_per_step() -> None:
    client, server, stepper = pair()
    conn = client.connect(SERVER_IP, 2121, stepper.now, local_port=40000)
    syn = stepper.step()
    assert syn is not None
    assert syn.sender == "client"
    assert syn.segment.flag_string() == "S"
    assert syn.time_us == 1_000  # the wire's delay: it arrived 1 ms after it left
    assert conn.state is State.SYN_SENT
    ((server_conn),) = server.connections.values()
    assert server_conn.state is State.SYN_RECEIVED
    assert "server :2121 LISTEN -> SYN-RECEIVED" in syn.transitions
    synack = stepper.step()
    assert synack is not None
    assert synack.sender == "server"
    assert synack.transitions == ("client :40000 SYN-SENT -> ESTABLISHED",)
    assert server_conn.state is State.SYN_RECEIVED  # our ACK has not arrived yet
    ack = stepper.step()
    assert ack is not None
    assert ack.segment.flag_string() == "."
    assert server_conn.state is State.ESTABLISHED
    assert stepper.step() is None  # nothing left to happen
    assert [h.time_us for h in stepper.log.hops] == [1_000, 2_000, 3_000]


def test_wire_stepper_delivers_segments_arriving_together_in_separate_steps() -> None:
    client, _server, stepper = pair(delayed_ack=0)
    conn = client.connect(SERVER_IP, 2121, stepper.now, local_port=40000)
    stepper.run(lambda: conn.state is State.ESTABLISHED, 10_000)
    stepper.step()  # the handshake's ACK
    conn.send(b"a" * 3000, stepper.now)  # three segments leave at the same instant
    arrivals = [stepper.step() for _ in range(3)]
    assert [len(h.segment.payload) for h in arrivals if h is not None] == [1448, 1448, 104]
    assert len({h.time_us for h in arrivals if h is not None}) == 1


def test_wire_stepper_idle_jumps_through_time_wait_in_virtual_time() -> None:
    client, server, stepper = pair()
    conn = client.connect(SERVER_IP, 2121, stepper.now, local_port=40000)
    stepper.run(lambda: len(server.connections) == 1, 10_000)
    server_conn = next(iter(server.connections.values()))
    stepper.run(lambda: server_conn.state is State.ESTABLISHED, 10_000)
    conn.close(stepper.now)
    stepper.run(lambda: server_conn.state is State.CLOSE_WAIT, 10_000)
    server_conn.close(stepper.now)
    stepper.run(lambda: conn.state is State.TIME_WAIT, 10_000)
    start = stepper.now
    stepper.idle(1_000_000)
    assert conn.state is State.TIME_WAIT
    stepper.idle(2 * client.config.msl)
    assert conn.state is State.CLOSED
    assert stepper.now == start + 1_000_000 + 2 * client.config.msl


def test_hops_carry_frames_that_decode_to_their_segment_with_valid_checksums() -> None:
    client, _server, stepper = pair()
    client.connect(SERVER_IP, 2121, stepper.now, local_port=40000)
    hop = stepper.step()
    assert hop is not None
    frame = decode_ethernet(hop.frame)  # verifies both checksums
    assert isinstance(frame, TcpFrame)
    assert frame.segment == hop.segment
    assert (frame.ip.src, frame.ip.dst) == (CLIENT_IP, SERVER_IP)
    assert "[S] seq=" in hop.describe()
    assert "1.000 ms" in hop.describe()


# -- HopLog -----------------------------------------------------------------------------------


def test_hop_log_take_returns_only_hops_since_the_last_take() -> None:
    log = HopLog(CLIENT_IP)
    packet = AddressedSegment(CLIENT_IP, SERVER_IP, Segment(40000, 21, 1, flags=Flags.SYN))
    log.record(1, "client", packet, frame_of(packet, "client"))
    assert len(log.take()) == 1
    assert log.take() == []
    log.record(2, "client", packet, frame_of(packet, "client"))
    assert [h.time_us for h in log.take()] == [2]
    old = log.new_recording()
    assert len(old) == 2
    assert len(log.recorder) == 0


def test_hop_log_frame_callback_records_tcp_frames_by_their_source() -> None:
    log = HopLog(CLIENT_IP)
    callback = log.frame_callback(clock=lambda: 5_000_000)
    out = AddressedSegment(CLIENT_IP, SERVER_IP, Segment(40000, 21, 1, flags=Flags.SYN))
    back = AddressedSegment(SERVER_IP, CLIENT_IP, Segment(21, 40000, 9, 2, Flags.SYN | Flags.ACK))
    callback("out", frame_of(out, "client"), [])
    callback("in", frame_of(back, "server"), ["40000 > 198.18.0.1:21: SYN-SENT -> ESTABLISHED"])
    callback("in", b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\x00" * 28, [])  # ARP: ignored
    assert [(h.sender, h.time_us) for h in log.hops] == [("client", 5000), ("server", 5000)]
    assert log.hops[1].transitions == ("40000 > 198.18.0.1:21: SYN-SENT -> ESTABLISHED",)


# -- LiveStepper, on a link whose far end is a second host ------------------------------------


class LoopLink:
    """A link whose other end is a `Host`: what we send, it receives; what it sends, we get."""

    def __init__(self, peer: Host, clock: Callable[[], int]) -> None:
        self.peer = peer
        self.clock = clock
        self.inbox: deque[bytes] = deque()
        self.sent: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        now = self.clock() // 1000
        self.peer.receive_frame(frame, now)
        self.inbox.extend(frames_out(self.peer, now))

    def receive(self, timeout: float) -> bytes | None:
        return self.inbox.popleft() if self.inbox else None


def test_live_stepper_sends_and_receives_one_tcp_segment_per_step_answering_arp() -> None:
    ticks = iter(range(0, 10**12, 1_000_000))  # each look at the clock: 1 ms later

    def clock() -> int:
        return next(ticks)

    peer_tcp = TcpEndpoint(SERVER_IP)
    peer_tcp.listen(2121)
    peer = Host("02:00:00:00:00:01", SERVER_IP, 24, None, tcp=peer_tcp, now=0)
    link = LoopLink(peer, clock)
    host = Host("02:00:00:00:00:02", CLIENT_IP, 24, None, now=0)
    stepper = LiveStepper(host, link, clock=clock)
    conn = host.tcp.connect(SERVER_IP, 2121, stepper.now, local_port=40000)

    syn = stepper.step(timeout=1.0)
    assert syn is not None
    assert syn.sender == "client"
    assert syn.segment.flag_string() == "S"
    assert any(not isinstance(decode_ethernet(f), TcpFrame) for f in link.sent)  # ARP went first
    ((peer_conn),) = peer_tcp.connections.values()
    synack = stepper.step(timeout=1.0)
    assert synack is not None
    assert synack.sender == "server"
    assert conn.state is State.ESTABLISHED
    assert any("SYN-SENT -> ESTABLISHED" in t for t in synack.transitions)
    assert peer_conn.state is State.SYN_RECEIVED  # our ACK waits in the outbox for a step
    ack = stepper.step(timeout=1.0)
    assert ack is not None
    assert ack.segment.flag_string() == "."
    assert peer_conn.state is State.ESTABLISHED
    assert stepper.step(timeout=0.01) is None
    assert [h.sender for h in stepper.log.hops] == ["client", "server", "client"]


# -- the kernel's sockets ---------------------------------------------------------------------

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 010012C6:0849 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 010012C6:0849 020012C6:9C40 03 00000000:00000000 02:00000064 00000000     0        0 0 1
   2: 010012C6:0849 020012C6:9C41 06 00000000:00000000 03:00000F9F 00000000     0        0 0 3
"""


def test_proc_net_tcp_lines_become_addresses_and_rfc_state_names() -> None:
    listening, half_open, time_wait = parse_proc_net_tcp(PROC_NET_TCP)
    assert listening.local == ("198.18.0.1", 2121)
    assert listening.remote == ("0.0.0.0", 0)
    assert listening.state == "LISTEN"
    assert half_open.remote == ("198.18.0.2", 40000)
    assert (half_open.state, half_open.linux_name) == ("SYN-RECEIVED", "SYN-RECV")
    assert time_wait.state == "TIME-WAIT"


def test_kernel_state_is_closed_when_no_socket_holds_the_connection() -> None:
    sockets = parse_proc_net_tcp(PROC_NET_TCP)
    assert kernel_state(sockets, 2121, 40000) == "SYN-RECEIVED"
    assert kernel_state(sockets, 2121, 40001) == "TIME-WAIT"
    assert kernel_state(sockets, 2121, 40002) == "CLOSED"
    assert kernel_listening(sockets, 2121)
    assert not kernel_listening(sockets, 2122)


# -- the scripted FTP server ------------------------------------------------------------------


def ftp_pair() -> tuple[TcpEndpoint, ScriptedFtpServer, WireStepper]:
    client = TcpEndpoint(CLIENT_IP, rng_seed=2)
    server = ScriptedFtpServer(TcpEndpoint(SERVER_IP, rng_seed=1))
    return client, server, WireStepper(client, server, log=HopLog(CLIENT_IP))


def test_scripted_server_greets_answers_each_command_and_closes_after_quit() -> None:
    client, server, stepper = ftp_pair()
    conn = client.connect(SERVER_IP, 21, stepper.now)
    parser = ReplyParser()
    replies = []
    for verb in ("USER", "FEAT", "XYZZ", "QUIT"):
        stepper.idle(300_000)
        replies.extend(parser.feed(conn.read()))
        conn.send(encode_command(verb), stepper.now)
    stepper.idle(300_000)
    replies.extend(parser.feed(conn.read()))
    assert [r.code for r in replies] == [220, 331, 211, 500, 221]
    assert replies[2].lines[0] == "211-Features supported:"
    assert len(replies[2].lines) == 11
    assert [c.verb for c in server.commands] == ["USER", "FEAT", "XYZZ", "QUIT"]
    assert conn.state is State.CLOSE_WAIT  # the server closed after QUIT
    conn.close(stepper.now)
    stepper.idle(100_000)
    assert conn.state is State.CLOSED
    assert [c.state for c in server.connections.values()] == [State.TIME_WAIT]


def test_scripted_replies_are_well_formed_ftp_replies() -> None:
    for verb, raw in PYFTPDLIB_REPLIES.items():
        parsed = ReplyParser().feed(raw)
        assert len(parsed) == 1, verb


@pytest.mark.parametrize("verb", ["NOOP", "PWD"])
def test_scripted_server_acknowledges_a_command_on_its_reply(verb: str) -> None:
    client, _server, stepper = ftp_pair()
    conn = client.connect(SERVER_IP, 21, stepper.now)
    stepper.idle(500_000)
    conn.read()
    stepper.log.take()
    conn.send(encode_command(verb), stepper.now)
    stepper.idle(10_000)  # less than the delayed-ACK time
    command, reply = stepper.log.take()
    assert command.sender == "client"
    assert reply.sender == "server"
    assert reply.segment.payload == PYFTPDLIB_REPLIES[verb]
    assert reply.segment.ack == command.segment.seq + len(command.segment.payload)


def test_a_hop_departs_when_it_left_its_sender_as_the_ladder_draws_it() -> None:
    # Notebook 3 prints `departed_us`: the same time as the top of the hop's ladder arrow.
    client, _server, stepper = pair()
    client.connect(SERVER_IP, 2121, stepper.now, local_port=40000)
    while stepper.step() is not None:
        pass
    assert [h.departed_us for h in stepper.log.hops] == [0, 1_000, 2_000]
    assert [h.time_us for h in stepper.log.hops] == [1_000, 2_000, 3_000]
    sends = [r.time_us for r in stepper.log.recorder.conversation().records]
    assert sends == [h.departed_us for h in stepper.log.hops]


def test_scripted_replies_are_pyftpdlibs_own_words() -> None:
    import inspect

    from pyftpdlib import authorizers, handlers

    from lab.ftp.scripted import PYFTPDLIB_GREETING

    replies = PYFTPDLIB_REPLIES

    source = inspect.getsource(inspect.getmodule(handlers.FTPHandler))  # type: ignore[arg-type]
    source += inspect.getsource(authorizers)  # the login and goodbye messages
    for verb, reply in replies.items():
        if verb == "FEAT":
            continue  # built from the handler's feature list, line by line
        for line in reply.decode().splitlines():
            words = line[4:].replace('"/"', '"%s"')  # after the code; PWD's path is a parameter
            assert words in source, (verb, line)
    assert b"(pyftpdlib)" in PYFTPDLIB_GREETING  # the banner lab.ftp.server sets
    assert "did nothing'." in inspect.getsource(handlers.FTPHandler.ftp_NOOP)


def test_numeric_ports_shows_the_labs_ftp_port_as_a_number() -> None:
    from scapy.layers.inet import IP, TCP

    from lab.notebook import numeric_ports

    numeric_ports()
    shown = (IP() / TCP(sport=40000, dport=2121)).show(dump=True)
    assert "dport     = 2121" in shown
    assert "iprop" not in shown
