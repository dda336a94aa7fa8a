"""`Transfer`: two TCP endpoints in memory, each sending its bytes and closing, under a seeded
fault schedule and the virtual clock of `lab.sim.simulation`.

The harness behind `lab demo`; the end-to-end tests, the pictures and the benchmark drive it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lab.link.impairment import Impairment
from lab.sim.simulation import Simulation
from lab.sim.wire import Corrupter, MemoryWire, drop_as_corrupt
from lab.tcp.connection import Connection, State, TcpConfig
from lab.tcp.endpoint import TcpEndpoint
from lab.tcp.isn import FixedIsn

CLIENT_IP = "198.18.0.1"
SERVER_IP = "198.18.0.2"
SERVER_PORT = 5001
_CHUNK = 65536  # bytes offered to `send` at a time: the send buffer takes what it has room for


@dataclass(slots=True)
class TransferResult:
    """What happened in one `Transfer.run`."""

    client: Connection
    server: Connection | None
    # Every server connection of the run, in order of appearance: the accepted one, and any
    # child whose handshake gave up (the listener then makes another for the next SYN).
    servers: list[Connection]
    client_endpoint: TcpEndpoint
    server_endpoint: TcpEndpoint
    wire: MemoryWire
    received_by_server: bytes
    received_by_client: bytes
    data_done_at: int | None  # virtual us when both sides had all the bytes
    finished_at: int  # virtual us at the end of the run
    both_closed: bool  # both connections CLOSED and reaped

    @property
    def retransmissions(self) -> int:
        """Resends by the client and by every server connection."""
        return sum(c.stats.retransmissions for c in (self.client, *self.servers))


@dataclass(slots=True)
class _Side:
    """The application on one end: send `outgoing`, read everything, close when all is acked."""

    outgoing: bytes
    wait_for_peer: bool = False  # close only after the peer's FIN (the passive closer)
    conn: Connection | None = None
    offset: int = 0
    received: bytearray = field(default_factory=bytearray)
    closed: bool = False

    def pump(self, now: int) -> None:
        conn = self.conn
        if conn is None:
            return
        if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            while self.offset < len(self.outgoing):
                n = conn.send(self.outgoing[self.offset : self.offset + _CHUNK], now)
                if n <= 0:
                    break
                self.offset += n
        self.received += conn.read()
        if (
            not self.closed
            and self.offset == len(self.outgoing)
            and conn.send_buffered == 0
            and (
                conn.state is State.CLOSE_WAIT
                or (conn.state is State.ESTABLISHED and not self.wait_for_peer)
            )
        ):
            conn.close(now)
            self.closed = True


class Transfer:
    """Client connects and sends `upload` while the server sends `download`; each side closes
    once its data is acknowledged. `run` goes until both connections are reaped or `limit`."""

    def __init__(
        self,
        upload: bytes,
        download: bytes = b"",
        impairment: Impairment | None = None,
        *,
        config: TcpConfig | None = None,
        client_iss: int | None = None,
        server_iss: int | None = None,
        seed: int = 0,
        server_closes_first: bool = False,
        corrupter: Corrupter = drop_as_corrupt,
    ) -> None:
        """The client closes first once its data is acknowledged, and the server closes when it
        sees the client's FIN; with `server_closes_first` both close as soon as their own data
        is acknowledged, so the server's FIN may come first or the two may cross."""
        config = config if config is not None else TcpConfig()
        self.upload = upload
        self.download = download
        # A fixed ISN key keeps a seeded demo reproducible (endpoints draw a random one).
        self.client_endpoint = TcpEndpoint(CLIENT_IP, config=config, isn_key=b"lab", rng_seed=seed)
        self.server_endpoint = TcpEndpoint(
            SERVER_IP,
            config=config,
            isn_key=b"lab",
            rng_seed=seed + 1,
            isn=FixedIsn(server_iss) if server_iss is not None else None,
        )
        self.wire = MemoryWire(
            impairment if impairment is not None else Impairment(), corrupter=corrupter
        )
        self.sim = Simulation(self.client_endpoint, self.server_endpoint, self.wire)
        self.listener = self.server_endpoint.listen(SERVER_PORT)
        self.client = self.client_endpoint.connect(SERVER_IP, SERVER_PORT, now=0, iss=client_iss)
        self._up = _Side(upload, conn=self.client)
        self._down = _Side(download, wait_for_peer=not server_closes_first)
        self.data_done_at: int | None = None
        self.servers: list[Connection] = []  # see TransferResult.servers

    @property
    def server(self) -> Connection | None:
        """The accepted server connection, once the handshake completed."""
        return self._down.conn

    def find_servers(self) -> list[Connection]:
        """`servers`, with any server connection made since the last look added: the
        transfer looks after each step, an observer of the wire may look within one."""
        for conn in self.server_endpoint.connections.values():
            if all(conn is not seen for seen in self.servers):
                self.servers.append(conn)
        return self.servers

    def _pump(self) -> None:
        self.find_servers()
        if self._down.conn is None:
            self._down.conn = self.listener.accept()
        now = self.sim.now
        self._up.pump(now)
        self._down.pump(now)
        if (
            self.data_done_at is None
            and len(self._down.received) == len(self.upload)
            and len(self._up.received) == len(self.download)
        ):
            self.data_done_at = now

    def finished(self) -> bool:
        return not self.client_endpoint.connections and not self.server_endpoint.connections

    def run(
        self,
        limit: int = 3_600_000_000,
        after_step: Callable[[Simulation], None] | None = None,
    ) -> TransferResult:
        self._pump()
        while not self.finished():
            if not self.sim.step(limit):
                break
            self._pump()
            if after_step is not None:
                after_step(self.sim)
        return TransferResult(
            client=self.client,
            server=self._down.conn,
            servers=list(self.servers),
            client_endpoint=self.client_endpoint,
            server_endpoint=self.server_endpoint,
            wire=self.wire,
            received_by_server=bytes(self._down.received),
            received_by_client=bytes(self._up.received),
            data_done_at=self.data_done_at,
            finished_at=self.sim.now,
            both_closed=self.finished() and self.client.state is State.CLOSED,
        )
