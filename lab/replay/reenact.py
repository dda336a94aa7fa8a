"""Reenact a captured FTP client's session, live, and compare replies (`lab reenact CAPTURE`).

tcpreplay resends a capture's packets as they were; against a live server that cannot work for
TCP (the server picks new ISNs, so every recorded ACK is wrong) nor for FTP (PORT names the
recorded client's address, PASV replies name new ports). Reenacting is *stateful* replay: the
client side's commands are read from the capture (through `lab replay`), then sent again, in
order, over fresh connections of the hand-built stack (fresh ISNs, new ports), rewriting only what
must change: PORT/EPRT announce our own listener, PASV/EPSV replies are followed to the live
port, and STOR/APPE send the bytes the capture recorded. Each reply code is compared with the
recorded one, and each transfer's size and sha256 with the recorded transfer's.

Two halves, as elsewhere in the lab: `script_from_session` turns a replay report's session into a
`Script` (pure, testable anywhere), and `Reenactor` drives it over any `lab.ftp.transport`
transport. Replies are parsed by `lab.ftp.protocol.ReplyParser`, the FTP client's own parser;
the connections are the client's transport (`LabTransport` over the lab stack, the same one
`lab get` uses), but the dialogue is the capture's, not the client's: `lab.ftp.client.Client`
chooses its own commands (TYPE, SIZE, EPSV...), which would not line up with the recording.

The command itself (where it runs, its options and exit status) is `lab.cli.reenact`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.ftp.protocol import (
    TRANSFER_COMMANDS,
    FtpProtocolError,
    Reply,
    ReplyParser,
    encode_eprt,
    encode_port,
    parse_command_line,
    parse_epsv_reply,
    parse_pasv_reply,
)
from lab.ftp.transport import DataListener, Stream, Transport

CHUNK = 65536
MAX_REPLIES_PER_COMMAND = 8
_SAME_MEANING = {125, 150}
_LISTINGS = frozenset({"LIST", "NLST", "MLSD"})


# -- the script: what the capture's client did ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedTransfer:
    """What the capture says one data command moved."""

    bytes: int
    sha256: str | None
    complete: bool
    saved_as: str | None  # the recovered file (the bytes an upload sends again)


@dataclass(frozen=True, slots=True)
class ScriptCommand:
    """One client command line and the reply codes that followed it in the capture."""

    verb: str
    argument: str | None
    line: str
    replies: tuple[int, ...]
    transfer: RecordedTransfer | None = None

    @property
    def shown(self) -> str:
        return "PASS ****" if self.verb == "PASS" else self.line


@dataclass(frozen=True, slots=True)
class Script:
    """A recorded session: who talked, the greeting's codes, then each command in order."""

    server: str
    client: str
    greeting: tuple[int, ...]
    commands: tuple[ScriptCommand, ...]


def _codes(lines: list[str]) -> tuple[int, ...]:
    """Reply codes of consecutive server lines (multi-line replies count once)."""
    parser = ReplyParser()
    codes: list[int] = []
    for line in lines:
        try:
            codes += [r.code for r in parser.feed(line.encode("utf-8", "replace") + b"\r\n")]
        except FtpProtocolError:
            parser = ReplyParser()  # a line that is no reply: skip it, keep the rest
    return tuple(codes)


def script_from_session(session: dict[str, Any]) -> Script:
    """The script of one `ftp_sessions` entry of a replay report (`lab replay --json`)."""
    greeting: list[str] = []
    pending: list[tuple[str, list[str]]] = []  # (command line, server lines after it)
    for entry in session["dialogue"]:
        if entry["from"] == "client":
            pending.append((entry["line"], []))
        elif pending:
            pending[-1][1].append(entry["line"])
        else:
            greeting.append(entry["line"])
    transfers: list[dict[str, Any]] = list(session["transfers"])
    commands = []
    for line, server_lines in pending:
        cmd = parse_command_line(line)
        recorded: RecordedTransfer | None = None
        if cmd.verb in TRANSFER_COMMANDS:
            for i, t in enumerate(transfers):  # the next transfer of this verb and argument
                if t["command"] == cmd.verb and t["argument"] == cmd.arg:
                    del transfers[: i + 1]
                    recorded = RecordedTransfer(
                        t["bytes"], t["sha256"], t["complete"], t.get("saved_as")
                    )
                    break
        commands.append(ScriptCommand(cmd.verb, cmd.arg, line, _codes(server_lines), recorded))
    return Script(session["server"], session["client"], _codes(greeting), tuple(commands))


def scripts_from_capture(path: Path, workdir: Path) -> list[Script]:
    """Replay `path` (transfers saved under `workdir`) and return one script per FTP session."""
    from lab.replay.report import replay_capture

    result = replay_capture(path, out_dir=workdir)
    return [script_from_session(s) for s in result.report["ftp_sessions"]]


# -- the outcome ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """One step of the reenactment: recorded against live."""

    command: str  # as shown (PASS masked); "(greeting)" for the greeting
    recorded: tuple[int, ...]
    live: tuple[int, ...] = ()
    recorded_bytes: int | None = None
    live_bytes: int | None = None
    recorded_sha256: str | None = None
    live_sha256: str | None = None
    note: str = ""
    sent: bool = True
    listing: bool = False  # LIST/NLST/MLSD: dates and owners differ between servers and runs

    @property
    def exact(self) -> bool:
        return self.sent and self.recorded == self.live

    @property
    def codes_match(self) -> bool:
        """The same replies, taking 125 and 150 as one: which of them a server sends depends
        only on whether the data connection was up before the command arrived (RFC 959 4.2)."""
        if not self.sent or len(self.recorded) != len(self.live):
            return False
        return all(
            a == b or {a, b} == _SAME_MEANING for a, b in zip(self.recorded, self.live, strict=True)
        )

    @property
    def data_match(self) -> bool | None:
        """None when no data moved in the recording, or for a listing; else same size and (if
        known) same hash."""
        if self.recorded_bytes is None or self.listing:
            return None
        if self.live_bytes != self.recorded_bytes:
            return False
        return self.recorded_sha256 is None or self.recorded_sha256 == self.live_sha256

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["recorded"] = list(self.recorded)
        out["live"] = list(self.live)
        out["codes_match"] = self.codes_match
        out["exact"] = self.exact
        out["data_match"] = self.data_match
        return out


@dataclass(slots=True)
class Reenactment:
    script: Script
    server: str
    stack: str
    control: str = ""  # the live control connection, local>remote
    live_capture: str | None = None
    steps: list[Outcome] = field(default_factory=list)

    @property
    def all_match(self) -> bool:
        return all(s.codes_match for s in self.steps) and all(
            s.data_match is not False for s in self.steps
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "recorded": {"server": self.script.server, "client": self.script.client},
            "live": {
                "server": self.server,
                "stack": self.stack,
                "control": self.control,
                "capture": self.live_capture,
            },
            "matched": sum(s.codes_match for s in self.steps),
            "exact": sum(s.exact for s in self.steps),
            "total": len(self.steps),
            "all_match": self.all_match,
            "steps": [s.as_json() for s in self.steps],
        }


# -- the driver -----------------------------------------------------------------------------------


class SessionBroken(Exception):  # noqa: N818 - reads as what happened
    """The live control connection is gone or silent; the rest of the script is not sent."""


class Reenactor:
    """Sends a `Script` over `transport` to `host:port` and records each outcome."""

    def __init__(
        self,
        transport: Transport,
        host: str,
        port: int = 21,
        *,
        timeout: float = 15.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.timeout = timeout
        self.log = log
        self._control: Stream | None = None
        self._parser = ReplyParser()
        self._replies: list[Reply] = []
        self._listener: DataListener | None = None
        self._passive: Stream | None = None
        self.control = ""  # the live control connection, local>remote, once connected

    # -- control connection ------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def _reply(self) -> Reply:
        assert self._control is not None
        while not self._replies:
            try:
                chunk = self._control.recv(4096, self.timeout)
            except (TimeoutError, OSError) as exc:
                raise SessionBroken(f"no reply: {exc or type(exc).__name__}") from exc
            if not chunk:
                raise SessionBroken("the server closed the control connection")
            try:
                self._replies += self._parser.feed(chunk)
            except FtpProtocolError as exc:
                raise SessionBroken(f"unparsable reply: {exc}") from exc
        reply = self._replies.pop(0)
        self._say(f"< {reply.lines[-1]}")
        return reply

    def _send(self, line: str, shown: str) -> None:
        assert self._control is not None
        self._say(f"> {shown}")
        try:
            self._control.sendall(line.encode("utf-8") + b"\r\n", self.timeout)
        except (TimeoutError, OSError) as exc:
            raise SessionBroken(f"sending {shown}: {exc}") from exc

    # -- data connections --------------------------------------------------------------------

    def _drop_data(self) -> None:
        if self._passive is not None:
            self._passive.abort()
            self._passive = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _port_line(self, cmd: ScriptCommand) -> str:
        """PORT/EPRT rewritten to announce a listener of ours."""
        assert self._control is not None
        self._drop_data()
        self._listener = self.transport.listen(
            self._control.local_address[0], peer_ip=self._control.remote_address[0]
        )
        host, port = self._listener.address
        arg = encode_eprt(host, port) if cmd.verb == "EPRT" else encode_port(host, port)
        return f"{cmd.verb} {arg}"

    def _open_passive(self, verb: str, reply: Reply) -> str:
        assert self._control is not None
        self._drop_data()
        try:
            if verb == "EPSV":
                port = parse_epsv_reply(reply.text)
            else:
                _host, port = parse_pasv_reply(reply.text)  # the control peer, as Client does
        except FtpProtocolError as exc:
            return f"unparsable {reply.code} reply: {exc}"
        host = self._control.remote_address[0]
        try:
            self._passive = self.transport.connect(host, port, self.timeout)
        except (TimeoutError, OSError) as exc:
            return f"data connection to {host}:{port} failed: {exc}"
        return f"data connection to {host}:{port}"

    def _data_stream(self) -> Stream | None:
        if self._passive is not None:
            stream, self._passive = self._passive, None
            return stream
        if self._listener is not None:
            listener, self._listener = self._listener, None
            try:
                return listener.accept(self.timeout, self._control_peer())
            except (TimeoutError, OSError):
                return None
            finally:
                listener.close()
        return None

    def _control_peer(self) -> str:
        assert self._control is not None
        return self._control.remote_address[0]

    def _move_data(self, cmd: ScriptCommand, stream: Stream, out: Outcome) -> None:
        digest = hashlib.sha256()
        moved = 0
        try:
            if TRANSFER_COMMANDS[cmd.verb]:  # server to client
                while chunk := stream.recv(CHUNK, self.timeout):
                    digest.update(chunk)
                    moved += len(chunk)
            else:
                for chunk in _upload_chunks(cmd.transfer):
                    stream.sendall(chunk, self.timeout)
                    digest.update(chunk)
                    moved += len(chunk)
                stream.shutdown()
                while stream.recv(CHUNK, self.timeout):
                    pass
        except (TimeoutError, OSError) as exc:
            out.note = f"data connection broke after {moved} bytes: {exc}"
        finally:
            stream.close()
        out.live_bytes = moved
        out.live_sha256 = digest.hexdigest()

    # -- the script ----------------------------------------------------------------------------

    def _step(self, cmd: ScriptCommand) -> Outcome:
        out = Outcome(cmd.shown, cmd.replies, listing=cmd.verb in _LISTINGS)
        if cmd.transfer is not None:
            out.recorded_bytes = cmd.transfer.bytes
            out.recorded_sha256 = cmd.transfer.sha256
        line = cmd.line
        if cmd.verb in ("PORT", "EPRT"):
            line = self._port_line(cmd)
            out.note = f"sent as {line}"
        self._send(line, cmd.shown if line == cmd.line else line)
        live: list[int] = []
        reply = self._reply()
        live.append(reply.code)
        if cmd.verb in ("PASV", "EPSV") and reply.code in (227, 229):
            out.note = self._open_passive(cmd.verb, reply)
        elif cmd.verb in TRANSFER_COMMANDS and reply.preliminary:
            stream = self._data_stream()
            if stream is None:
                out.note = "no data connection"
            else:
                self._move_data(cmd, stream, out)
        elif cmd.verb in TRANSFER_COMMANDS:
            self._drop_data()
        # up to the final reply (226 after 150); waiting for more than the live server says
        # would only time out, so extra recorded replies show up as a difference instead
        while reply.preliminary and len(live) < MAX_REPLIES_PER_COMMAND:
            reply = self._reply()
            live.append(reply.code)
        out.live = tuple(live)
        return out

    def run(self, script: Script) -> Iterator[Outcome]:
        """Connect, then yield one outcome for the greeting and one per command."""
        greeting = Outcome("(greeting)", script.greeting)
        try:
            self._control = self.transport.connect(self.host, self.port, self.timeout)
            local, remote = self._control.local_address, self._control.remote_address
            self.control = f"{local[0]}:{local[1]}>{remote[0]}:{remote[1]}"
        except (TimeoutError, OSError) as exc:
            greeting.note = f"cannot connect to {self.host}:{self.port}: {exc}"
            greeting.sent = False
            yield greeting
            yield from _not_sent(script.commands, "no control connection")
            return
        try:
            codes = [self._reply().code]
            while len(codes) < len(script.greeting) or codes[-1] == 120:
                codes.append(self._reply().code)
            greeting.live = tuple(codes)
            yield greeting
            for i, cmd in enumerate(script.commands):
                try:
                    outcome = self._step(cmd)
                except SessionBroken as exc:
                    yield Outcome(cmd.shown, cmd.replies, note=str(exc))
                    yield from _not_sent(script.commands[i + 1 :], "session broke off")
                    return
                yield outcome
        except SessionBroken as exc:
            greeting.note = str(exc)
            yield greeting
            yield from _not_sent(script.commands, "no greeting")
        finally:
            self._drop_data()
            control, self._control = self._control, None
            if control is not None:
                control.close()


def _not_sent(commands: Sequence[ScriptCommand], why: str) -> Iterator[Outcome]:
    for cmd in commands:
        yield Outcome(cmd.shown, cmd.replies, note=why, sent=False)


def _upload_chunks(transfer: RecordedTransfer | None) -> Iterator[bytes]:
    if transfer is None or transfer.saved_as is None:
        return
    with open(transfer.saved_as, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def reenact(
    script: Script,
    transport: Transport,
    host: str,
    port: int = 21,
    *,
    stack: str = "",
    timeout: float = 15.0,
    log: Callable[[str], None] | None = None,
) -> Reenactment:
    """Run `script` against `host:port` over `transport`; every outcome, in order."""
    result = Reenactment(script, f"{host}:{port}", stack or getattr(transport, "name", "?"))
    driver = Reenactor(transport, host, port, timeout=timeout, log=log)
    for outcome in driver.run(script):
        result.steps.append(outcome)
    result.control = driver.control
    return result
