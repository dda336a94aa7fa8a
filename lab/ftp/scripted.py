"""A scripted FTP control-connection server, sans-IO, on a lab `TcpEndpoint` (no process, no
clock): the far end of the in-memory wire for the notebooks' offline FTP dialogue.

It answers with the lab's embedded pyftpdlib's own reply lines, so the offline dialogue reads
like the live one.
"""

from __future__ import annotations

from collections.abc import Mapping

from lab.ftp.protocol import Command, CommandParser
from lab.tcp.connection import Connection, State
from lab.tcp.endpoint import FourTuple, TcpEndpoint
from lab.wire.segment import AddressedSegment

# What the lab's embedded pyftpdlib answers (its replies, as captured in
# captures/tools-pyftpdlib-*.pcap and read from pyftpdlib's handlers), so that the offline
# dialogue reads like the live one.
PYFTPDLIB_GREETING = b"220 lab embedded FTP server (pyftpdlib) ready\r\n"
PYFTPDLIB_REPLIES: dict[str, bytes] = {
    "USER": b"331 Username ok, send password.\r\n",
    "PASS": b"230 Login successful.\r\n",
    "SYST": b"215 UNIX Type: L8\r\n",
    "FEAT": (
        b"211-Features supported:\r\n"
        b" EPRT\r\n EPSV\r\n MDTM\r\n MFMT\r\n"
        b" MLST type*;perm*;size*;modify*;unique*;unix.mode;unix.uid;unix.gid;\r\n"
        b" REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n"
        b"211 End FEAT.\r\n"
    ),
    "PWD": b'257 "/" is the current directory.\r\n',
    "TYPE": b"200 Type set to: Binary.\r\n",
    "NOOP": b"200 I successfully did nothing'.\r\n",
    "QUIT": b"221 Goodbye.\r\n",
}
UNKNOWN_COMMAND = b"500 Command not understood.\r\n"


class ScriptedFtpServer:
    """An FTP control-connection server, sans-IO, on a lab `TcpEndpoint`: canned replies.

    Why: offline, the notebooks need a server on the far end of the in-memory wire that answers
    the way pyftpdlib does, with no process and no clock. It is a simulation `Party` (it wraps the
    endpoint's `receive`/`packets_to_send`/`on_timer`), reads commands with the same
    `CommandParser` replay uses, answers each at once (so its ACK rides on the reply, as a real
    server's does when it answers within the delayed-ACK time), and closes after QUIT.
    """

    def __init__(self, endpoint: TcpEndpoint, port: int = 21) -> None:
        self.endpoint = endpoint
        self.listener = endpoint.listen(port)
        self.commands: list[Command] = []
        self._sessions: list[tuple[Connection, CommandParser]] = []

    @property
    def connections(self) -> Mapping[FourTuple, Connection]:
        return self.endpoint.connections

    def receive(self, packet: AddressedSegment, now: int) -> None:
        self.endpoint.receive(packet, now)
        self._serve(now)

    def packets_to_send(self, now: int) -> list[AddressedSegment]:
        self._serve(now)
        return self.endpoint.packets_to_send(now)

    def on_timer(self, now: int) -> None:
        self.endpoint.on_timer(now)
        self._serve(now)

    def next_deadline(self) -> int | None:
        return self.endpoint.next_deadline()

    def _serve(self, now: int) -> None:
        while (conn := self.listener.accept()) is not None:
            self._sessions.append((conn, CommandParser()))
            conn.send(PYFTPDLIB_GREETING, now)
        for conn, parser in self._sessions:
            if conn.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
                continue
            for command in parser.feed(conn.read()):
                self.commands.append(command)
                conn.send(PYFTPDLIB_REPLIES.get(command.verb, UNKNOWN_COMMAND), now)
                if command.verb == "QUIT":
                    conn.close(now)
                    break
            else:
                if conn.state is State.CLOSE_WAIT:  # the client left without QUIT
                    conn.close(now)
