"""FTP sessions reconstructed from a capture's flows: dialogue, transfers, files, anomalies.

Control connections are recognised by content, never by port: the server's stream starts with a
reply (a 220 greeting, or any reply when the capture starts mid-session) and the client's with an
FTP command. The dialogue is read with the same sans-IO parsers the live client uses
(`lab.ftp.protocol`), each line stamped with the capture time of the segment that carried it.

Commands and replies are paired in order (RFC 959 5.4: one final reply per command, preliminary
1yz replies before it). A transfer command (RETR, STOR, STOU, APPE, LIST, NLST, MLSD) takes the
data address announced just before it: PORT / EPRT (active: the server connects to that address)
or a 227 / 229 reply to PASV / EPSV (passive: the client connects to that port). Its data flow is
the unused flow to that port that opened closest after the announcement; without any announcement
(mid-session capture) the next unused flow between the two hosts is taken, by ordering alone.

Expected sizes come from a SIZE reply (213) for the same argument or a `150 ... (N bytes)` text.
Everything that makes a transfer doubtful is an anomaly with the data needed to check it; a
transfer with any gap, or with bytes that only a bad-checksum segment carried (`untrusted_ranges`
of its `bad_checksum` anomaly), is incomplete and saved with a `.part` suffix. Files are named
from the command's argument, reduced to a safe basename of at most 200 UTF-8 bytes (NAME_MAX is
255 bytes), and never overwrite anything (suffix `.1`, `.2`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lab.ftp.protocol import (
    EXPECTED_REPLIES,
    TRANSFER_COMMANDS,
    FtpProtocolError,
    InvalidAddressError,
    Reply,
    ReplyError,
    ReplyParser,
    parse_command_line,
    parse_eprt,
    parse_epsv_reply,
    parse_pasv_reply,
    parse_port,
    reply_expected,
)
from lab.replay.flows import Flow, FlowTable, HalfStream, endpoint
from lab.tcp.reassembly import OverlapPolicy

if TYPE_CHECKING:  # hashlib loads OpenSSL (2 ms of start-up): imported when a digest is made
    import hashlib

MAX_CONTROL_BYTES = 1 << 20  # control streams beyond this are not parsed (reported)
MAX_DIALOGUE_LINES = 20_000
MAX_SESSION_ANOMALIES = 1000
MAX_LINE_SHOWN = 2000
MAX_CONFLICTS_LISTED = 100
READ_CHUNK = 1 << 20  # a stream is read back from the store in pieces this big (hashed, saved)
_REPLY_START = re.compile(rb"[1-5][0-9][0-9][ -]")
_COMMAND_START = re.compile(rb"[A-Za-z]{3,4}( [^\r\n]*)?\r?\n")
_BYTES_RE = re.compile(r"\((\d+)\s+bytes?\)", re.IGNORECASE)
_FTP_VERBS = frozenset(EXPECTED_REPLIES) | {"AUTH", "PBSZ", "PROT", "HOST", "CLNT", "XPWD", "XCWD"}

# SITE is server-specific (RFC 959 4.1.3): real servers answer SITE CHMOD / UMASK / HELP with
# 250 / 550 / 214 as for a file action, so those are expected too.
_SITE_REPLIES: dict[str, frozenset[int]] = {"SITE": frozenset({214, 250, 550})}

Mode = Literal["active", "passive"]


@dataclass(slots=True)
class DialogueLine:
    t: int  # capture time, ns
    sender: Literal["client", "server"]
    line: str


@dataclass(slots=True)
class DataAddress:
    mode: Mode
    host: str
    port: int
    t: int


@dataclass(slots=True)
class Transfer:
    """One data-connection command and what came of it."""

    command: str
    argument: str | None
    t: int
    address: DataAddress | None
    restart_at: int = 0  # REST offset: the data holds the file from this byte on
    expected_size: int | None = None
    size_source: str | None = None
    replies: list[int] = field(default_factory=list)
    data_flow: Flow | None = None
    data_half: HalfStream | None = None
    bytes: int = 0
    sha256: str = ""
    complete: bool = False
    saved_as: str | None = None
    anomalies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mode(self) -> Mode | None:
        return None if self.address is None else self.address.mode

    @property
    def accepted(self) -> bool:
        """The server started it (1yz) or a data flow was found for it."""
        return any(100 <= c < 200 for c in self.replies) or self.data_flow is not None


@dataclass(slots=True)
class FtpSession:
    control: Flow
    dialogue: list[DialogueLine] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    anomalies: list[dict[str, Any]] = field(default_factory=list)

    dropped_anomalies: int = 0
    dropped_lines: int = 0

    def note(self, anomaly: dict[str, Any]) -> None:
        """Record an anomaly; bounded, since a hostile control stream can make millions."""
        if len(self.anomalies) < MAX_SESSION_ANOMALIES:
            self.anomalies.append(anomaly)
        else:
            self.dropped_anomalies += 1

    def say(self, line: DialogueLine) -> None:
        if len(self.dialogue) < MAX_DIALOGUE_LINES:
            self.dialogue.append(line)
        else:
            self.dropped_lines += 1

    @property
    def server(self) -> str:
        return self.control.key.server

    @property
    def client(self) -> str:
        return self.control.key.client


# -- recognition -----------------------------------------------------------------------------------


def _looks_like_server(head: bytes) -> bool:
    return _REPLY_START.match(head) is not None


def _looks_like_client(head: bytes) -> bool:
    m = _COMMAND_START.match(head)
    return m is not None and head[:4].split(b" ")[0].split(b"\r")[0].upper().decode() in _FTP_VERBS


def is_control(flow: Flow) -> bool:
    """Recognise an FTP control connection by content; fix its orientation if it was guessed."""
    # Both sides must speak: a data connection carrying a text file that starts "220 " has
    # only one talking side, and must not be mistaken for a control connection.
    c_head = flow.c2s.data.head(256)
    s_head = flow.s2c.data.head(256)
    if _looks_like_server(s_head) and _looks_like_client(c_head):
        return True
    if _looks_like_server(c_head) and _looks_like_client(s_head):
        flow.swap()
        return True
    return False


# -- dialogue --------------------------------------------------------------------------------------


def _lines(half: HalfStream) -> tuple[list[tuple[int, bytes]], bool]:
    """(stream offset, line with its LF) of the contiguous start of a stream; True if cut short."""
    data = bytearray()
    for start, chunk in half.data.runs():
        if start != len(data) or len(data) >= MAX_CONTROL_BYTES:
            break
        data += chunk
    cut = half.data.stored_bytes > len(data)
    out = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        out.append((pos, bytes(data[pos:end])))
        pos = end
    return out, cut


def _text(raw: bytes) -> str:
    raw = raw.rstrip(b"\r\n")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text if len(text) <= MAX_LINE_SHOWN else text[:MAX_LINE_SHOWN] + "..."


@dataclass(slots=True)
class _Event:
    t: int
    order: int
    command: tuple[str, str | None] | None = None
    reply: Reply | None = None


def _events(session: FtpSession) -> list[_Event]:
    flow = session.control
    events: list[_Event] = []
    lines, cut = _lines(flow.c2s)
    for order, (offset, raw) in enumerate(lines):
        t = flow.c2s.time_at(offset) or flow.first_ts
        text = _text(raw)
        session.say(DialogueLine(t, "client", text))
        if raw.endswith(b"\n") and len(events) < MAX_DIALOGUE_LINES:
            cmd = parse_command_line(text)
            events.append(_Event(t, order, command=(cmd.verb, cmd.arg)))
    if cut:
        session.note({"kind": "control_stream_cut", "from": "client"})
    lines, cut = _lines(flow.s2c)
    parser = ReplyParser()
    for order, (offset, raw) in enumerate(lines):
        t = flow.s2c.time_at(offset) or flow.first_ts
        session.say(DialogueLine(t, "server", _text(raw)))
        try:
            replies = parser.feed(raw)
        except ReplyError as exc:
            replies = list(exc.replies)
            session.note(
                {"kind": "bad_reply", "error": type(exc).__name__, "detail": str(exc)[:200]}
            )
        events.extend(_Event(t, order, reply=r) for r in replies)
    if cut:
        session.note({"kind": "control_stream_cut", "from": "server"})
    # Server lines sort before client lines at the same instant only when they come first in
    # the stream: the stable sort keeps each side's order.
    events.sort(key=lambda e: (e.t, 0 if e.reply is not None else 1, e.order))
    session.dialogue.sort(key=lambda d: d.t)
    if session.dropped_lines:
        session.note({"kind": "dialogue_truncated", "lines_not_shown": session.dropped_lines})
    return events


def _interpret(session: FtpSession, events: list[_Event]) -> None:
    """Pair commands with replies; collect data addresses, sizes and transfers."""
    pending: list[tuple[str, str | None, Transfer | None]] = []
    address: DataAddress | None = None
    sizes: dict[str, int] = {}
    restart = 0
    greeted = False
    for ev in events:
        if ev.command is not None:
            verb, arg = ev.command
            transfer = None
            if verb in ("PORT", "EPRT") and arg is not None:
                try:
                    host, port = parse_port(arg) if verb == "PORT" else parse_eprt(arg)
                    address = DataAddress("active", host, port, ev.t)
                    if host != session.control.key.client_ip:
                        # FTP bounce (RFC 2577 3): the server is asked to connect elsewhere.
                        # Behind NAT this is also what a private address looks like.
                        session.note(
                            {
                                "kind": "foreign_data_address",
                                "command": verb,
                                "address": endpoint(host, port),
                                "client": session.control.key.client_ip,
                            }
                        )
                except InvalidAddressError as exc:
                    session.note({"kind": "bad_address", "detail": str(exc)})
            elif verb in TRANSFER_COMMANDS:
                transfer = Transfer(verb, arg, ev.t, address, restart_at=restart)
                restart = 0  # RFC 3659 5.3: REST applies to the next transfer only
                if arg is not None and verb == "RETR" and arg in sizes:
                    transfer.expected_size = max(0, sizes[arg] - transfer.restart_at)
                    transfer.size_source = "SIZE"
                session.transfers.append(transfer)
            pending.append((verb, arg, transfer))
            continue
        reply = ev.reply
        assert reply is not None
        if not pending:
            if not greeted and reply.code in (120, 220, 421):
                greeted = reply.code == 220
                continue
            session.note({"kind": "unsolicited_reply", "code": reply.code})
            continue
        verb, arg, transfer = pending[0]
        if not reply_expected(verb, reply.code) and reply.code not in _SITE_REPLIES.get(verb, ()):
            session.note({"kind": "unexpected_reply", "command": verb, "code": reply.code})
        if transfer is not None:
            transfer.replies.append(reply.code)
            if reply.code == 150 and transfer.expected_size is None:
                m = _BYTES_RE.search(reply.text)
                if m:
                    transfer.expected_size = int(m.group(1))
                    transfer.size_source = "150"
        if reply.code == 227 and verb == "PASV":
            try:
                host, port = parse_pasv_reply(reply.text)
                address = DataAddress("passive", host, port, ev.t)
            except InvalidAddressError as exc:
                session.note({"kind": "bad_address", "detail": str(exc)})
        elif reply.code == 229 and verb == "EPSV":
            try:
                port = parse_epsv_reply(reply.text)
                address = DataAddress("passive", session.control.key.server_ip, port, ev.t)
            except InvalidAddressError as exc:
                session.note({"kind": "bad_address", "detail": str(exc)})
        elif reply.code == 350 and verb == "REST" and arg is not None and arg.strip().isdigit():
            restart = int(arg.strip())
        elif reply.code == 213 and verb == "SIZE" and arg is not None:
            digits = reply.text.strip().split()[:1]
            if digits and digits[0].isdigit():
                sizes[arg] = int(digits[0])
        if reply.code >= 200:
            pending.pop(0)


# -- data flows ------------------------------------------------------------------------------------


def _match_data_flows(sessions: list[FtpSession], flows: Sequence[Flow], used: set[int]) -> None:
    """Give each transfer the earliest unused flow that fits its data address (or, without one,
    the earliest unused flow between the same hosts opened after the command)."""
    slack = 1_000_000_000  # 1 s: capture timestamps of two interfaces may disagree a little
    for session in sessions:
        ctl = session.control.key
        hosts = {ctl.client_ip, ctl.server_ip}
        for t in session.transfers:
            chosen = None
            a = t.address
            for flow in flows:  # in order of first packet
                if flow.index in used:
                    continue
                k = flow.key
                if a is not None:
                    if flow.first_ts < a.t - slack:
                        continue
                    wanted = ctl.client_ip if a.mode == "active" else ctl.server_ip
                    if not _serves(k.server_ip, k.server_port, k.client_ip, a, wanted, hosts):
                        # Without its SYN a flow's orientation was only guessed from the ports
                        # (wrong for active mode from port 20, or high ports on both sides):
                        # the announced endpoint says which side listened.
                        if flow.syn_seen or flow.synack_seen:
                            continue
                        if not _serves(k.client_ip, k.client_port, k.server_ip, a, wanted, hosts):
                            continue
                        flow.swap()
                elif flow.first_ts < t.t - slack or not {k.client_ip, k.server_ip} <= hosts:
                    continue
                chosen = flow
                break
            if chosen is not None:
                used.add(chosen.index)
                t.data_flow = chosen
                t.data_half = _data_half(t, chosen, session)


def _serves(ip: str, port: int, peer_ip: str, a: DataAddress, wanted: str, hosts: set[str]) -> bool:
    """The endpoint (ip, port) is the announced data address and its peer one of the hosts."""
    return port == a.port and ip in (a.host, wanted) and peer_ip in hosts


def _data_half(t: Transfer, flow: Flow, session: FtpSession) -> HalfStream:
    download = TRANSFER_COMMANDS[t.command]
    if t.mode is not None:
        # active: the FTP server opened the data flow (it is the flow's client)
        server_sends_on_c2s = t.mode == "active"
        return flow.c2s if download == server_sends_on_c2s else flow.s2c
    sender_ip = session.control.key.server_ip if download else session.control.key.client_ip
    if flow.c2s.sender.startswith(sender_ip) or flow.c2s.delivered > flow.s2c.delivered:
        return flow.c2s
    return flow.s2c


# -- anomalies, files ------------------------------------------------------------------------------


def half_anomalies(
    half: HalfStream, flow: Flow, policy: OverlapPolicy, truncated_file: bool
) -> list[dict[str, Any]]:
    """Anomalies of one direction of a flow, in the issue's schema."""
    out: list[dict[str, Any]] = []
    if half.gaps:
        out.append(
            {
                "kind": "gap",
                "ranges": [[a, b] for a, b in half.gaps],
                "missing_bytes": sum(b - a for a, b in half.gaps),
            }
        )
    for c in half.conflicts[:MAX_CONFLICTS_LISTED]:
        out.append(
            {
                "kind": "overlap_conflict",
                "offset": c.offset,
                "length": c.length,
                "winner": c.winner,
                "policy": policy,
            }
        )
    if len(half.conflicts) > MAX_CONFLICTS_LISTED:
        out.append({"kind": "overlap_conflict", "more": len(half.conflicts) - MAX_CONFLICTS_LISTED})
    if half.refused_bytes:
        out.append({"kind": "out_of_window", "bytes": half.refused_bytes})
    if half.retransmissions:
        out.append({"kind": "retransmission", "count": half.retransmissions})
    if half.bad_checksums:
        # Bad-checksum copies are never trusted over good ones (see lab.replay.flows): say how
        # many a good copy superseded and which bytes, if any, only they supplied.
        out.append(
            {
                "kind": "bad_checksum",
                "count": half.bad_checksums,
                "superseded": half.superseded_bad_checksums,
                "untrusted_ranges": [[a, b] for a, b in half.untrusted_ranges],
            }
        )
    if flow.reset:
        senders = [h.sender for h in (flow.c2s, flow.s2c) if h.rst]
        out.append({"kind": "rst", "from": senders})
    if half.midstream:
        out.append({"kind": "midstream"})
    if half.truncated_packets:
        out.append(
            {
                "kind": "truncated_capture",
                "reason": "packets cut short (snaplen or damaged capture)",
                "packets": half.truncated_packets,
                "missing_bytes": half.missing_bytes,
            }
        )
    elif truncated_file and not half.fin and not flow.reset:
        out.append({"kind": "truncated_capture", "reason": "file ends before the stream"})
    return out


MAX_NAME_BYTES = 200


def safe_name(argument: str | None, fallback: str) -> str:
    """A file name from a command argument: its basename, no traversal, no control characters."""
    name = (argument or "").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*')
    name = name.strip().lstrip(".")
    if not name:
        return fallback
    # NAME_MAX (255) counts bytes, not characters: cut the UTF-8 form at a character boundary,
    # leaving room for ".part" and a ".N" suffix
    return name.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore") or fallback


def _unique_path(directory: Path, name: str, suffix: str = "") -> Path:
    """`name` + `suffix`, or `name.N` + `suffix`: an incomplete file's name always ends `.part`."""
    candidate = directory / f"{name}{suffix}"
    n = 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = directory / f"{name}.{n}{suffix}"
    return candidate


def _write(
    directory: Path,
    name: str,
    half: HalfStream,
    suffix: str = "",
    digest: hashlib._Hash | None = None,
) -> Path:
    """Write a stream's bytes (holes skipped, never zero-filled) without overwriting anything;
    with `digest`, hash them on the way (one pass over the stream for both)."""
    directory.mkdir(parents=True, exist_ok=True)
    while True:
        path = _unique_path(directory, name, suffix)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(path, flags, 0o644)  # recovered bytes are never made executable
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as f:
            for _offset, chunk in half.data.runs(READ_CHUNK):
                f.write(chunk)
                if digest is not None:
                    digest.update(chunk)
        return path


def _finish_transfer(
    t: Transfer,
    index: int,
    out_dir: Path | None,
    policy: OverlapPolicy,
    truncated_file: bool,
    digests: bool = True,
) -> None:
    half = t.data_half
    final = [c for c in t.replies if c >= 200]
    if half is None or t.data_flow is None:
        t.anomalies.append({"kind": "no_data_connection"})
        t.complete = False
    else:
        t.bytes = half.delivered
        t.anomalies.extend(half_anomalies(half, t.data_flow, policy, truncated_file))
        ended = half.fin or (t.data_flow.reset and not half.gaps)
        if t.expected_size is not None and t.expected_size != t.bytes:
            t.anomalies.append(
                {
                    "kind": "size_mismatch",
                    "expected": t.expected_size,
                    "source": t.size_source,
                    "bytes": t.bytes,
                }
            )
        bad = {"gap", "midstream", "truncated_capture", "size_mismatch", "out_of_window"}
        t.complete = ended and not any(a["kind"] in bad for a in t.anomalies)
        if half.untrusted_ranges:
            t.complete = False  # bytes only a corrupted segment carried: nobody can vouch
        if t.data_flow.reset and not (226 in final or 250 in final):
            t.complete = False
    if not any(c in (226, 250) for c in final):
        t.anomalies.append({"kind": "no_226", "final_reply": final[-1] if final else None})
        if final and final[-1] >= 400:
            t.complete = False
    # The sha256 of the stream's bytes, read once: while they are saved, when they are.
    wanted = digests and half is not None and t.data_flow is not None
    digest = None
    if wanted:
        import hashlib

        digest = hashlib.sha256()
    if out_dir is not None and half is not None:
        fallback = f"{t.command.lower()}-{index}"
        name = safe_name(t.argument if t.command not in ("LIST", "NLST", "MLSD") else None, "")
        if t.command in ("LIST", "NLST", "MLSD"):
            name = f"{fallback}.txt"
        elif not name:
            name = fallback
        t.saved_as = str(_write(out_dir, name, half, "" if t.complete else ".part", digest))
    elif digest is not None and half is not None:
        for _offset, chunk in half.data.runs(READ_CHUNK):
            digest.update(chunk)
    if digest is not None:
        t.sha256 = digest.hexdigest()


# -- driver ----------------------------------------------------------------------------------------


def _refused(t: Transfer) -> bool:
    return bool(t.replies) and t.replies[0] >= 400


def reconstruct(
    table: FlowTable,
    *,
    out_dir: Path | None = None,
    truncated_file: bool = False,
    digests: bool = True,
) -> list[FtpSession]:
    """Find FTP sessions among finished flows, match their transfers, write files; with
    `digests` False, each transfer's sha256 is left empty (nobody will read it)."""
    sessions: list[FtpSession] = []
    used: set[int] = set()
    for flow in table.flows:
        if flow.c2s.delivered + flow.s2c.delivered and is_control(flow):
            sessions.append(FtpSession(flow))
            used.add(flow.index)
    for session in sessions:
        _interpret(session, _events(session))
        ctl = session.control
        for side, half in (("client", ctl.c2s), ("server", ctl.s2c)):
            for anomaly in half_anomalies(half, ctl, table.policy, truncated_file):
                if anomaly["kind"] != "rst" or side == "server":  # one rst entry per flow
                    session.note({**anomaly, "control_from": side})
        # A command refused outright (4yz/5yz, no 1yz) opened no data connection: it must not
        # take one that belongs to a later transfer.
        session.transfers = [t for t in session.transfers if not _refused(t)]
    _match_data_flows(sessions, table.flows, used)
    n = 0
    for session in sessions:
        # keep only transfers the server took up or that moved data
        session.transfers = [t for t in session.transfers if t.accepted]
        for t in session.transfers:
            n += 1
            _finish_transfer(t, n, out_dir, table.policy, truncated_file, digests)
    return sessions


def _seconds(t: int, start: int) -> float:
    return round((t - start) / 1e9, 6)


def session_json(session: FtpSession, start: int) -> dict[str, Any]:
    return {
        "server": session.server,
        "client": session.client,
        "control_flow": session.control.index,
        "dialogue": [
            {"t": _seconds(d.t, start), "from": d.sender, "line": d.line} for d in session.dialogue
        ],
        "transfers": [
            {
                "command": t.command,
                "argument": t.argument,
                "mode": t.mode,
                "data_flow": None if t.data_flow is None else str(_data_flow_label(t)),
                "bytes": t.bytes,
                "sha256": t.sha256 or None,
                "complete": t.complete,
                "saved_as": t.saved_as,
                "expected_size": t.expected_size,
                "restart_at": t.restart_at,
                "replies": t.replies,
                "anomalies": t.anomalies,
            }
            for t in session.transfers
        ],
        "anomalies": session.anomalies
        + (
            [{"kind": "more_anomalies", "count": session.dropped_anomalies}]
            if session.dropped_anomalies
            else []
        ),
    }


def _data_flow_label(t: Transfer) -> str:
    """The data's `sender>receiver`, as the issue's schema writes data_flow."""
    assert t.data_flow is not None
    assert t.data_half is not None
    k = t.data_flow.key
    if t.data_half is t.data_flow.c2s:
        return f"{k.client}>{k.server}"
    return f"{k.server}>{k.client}"


__all__ = [
    "DialogueLine",
    "FtpProtocolError",
    "FtpSession",
    "Transfer",
    "endpoint",
    "half_anomalies",
    "is_control",
    "reconstruct",
    "safe_name",
    "session_json",
]
