"""`lab get`, `lab put`, `lab ls`: the FTP client from the command line.

Where it runs:
- With no `--iface` (the default), the lab builds its own topology, starts the embedded pyftpdlib
  server at 198.18.0.1 in the server namespace, runs the command from the client namespace with
  the hand-built stack (or, with `--kernel`, with the kernel's sockets from the same veth, at
  198.18.0.3) and tears everything down. URLs then name 198.18.0.1, e.g.
  `lab get ftp://198.18.0.1/pub/10M.bin`; over IPv6 the server is at 2001:2::1 (the lab
  stack at 2001:2::2, the `--kernel` client at 2001:2::3): `lab get ftp://[2001:2::1]/1M.bin`,
  active mode with EPRT |2|, passive with EPSV, never PORT or PASV. Samples: hello.txt,
  300K.bin, 1M.bin, pub/10M.bin, 50M.bin; user `lab` (password `lab`) may write; `put` uses it
  when the URL names no user.
- With `--iface IF --addr CIDR [--gateway IP]`, the hand-built stack takes CIDR on the existing
  interface IF (with IF's MAC) and talks to whatever server the URL names. Use an interface you
  made for this (a veth into a namespace of your own): the kernel must not own CIDR's address on
  IF, and the lab never changes the interface. Never point it at the host's own uplink unless you
  mean to. `--kernel` with `--iface` simply uses kernel sockets in the current namespace.

The stack options (`--codec`, `--capture`, `--iface/--addr/--gateway`) and the fault injection
(`--loss 5% --reorder 2% --dup 1% --corrupt 0.1% --delay 10ms --rate 10mbit --seed N`) are those
of every live command, from `lab.cli.stack_options`. Faults are injected on the lab stack's link, so
`--kernel` (no lab link) refuses them as a usage error. The summary names the schedule and the
faults applied; the capture's comments hold every fault, frame by frame.

Output: `-v` prints the control dialogue to stderr as it happens; a progress bar (stderr, only on a
terminal) appears for transfers lasting over a second; the summary line goes to stdout (stderr for
`ls`, whose stdout is the listing), or one JSON object with `--json` (`ok` and `exit` always;
on failure `error`, and for an incomplete transfer `received`, `expected` and the `part` path).
A capture of the run is always written (default captures/runs/<time>-<command>.pcapng).

Exit codes: 0 done; 1 FTP or network error; 2 usage; 3 transfer incomplete (bytes kept in
NAME.part, `--resume` continues it; Ctrl-C during a transfer ends here too, so the message says
how many bytes arrived); 4 timeout; 77 no privileges; 130 interrupted outside a transfer.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import json
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.cli.errors import ExitCode, UsageError, exit_code_for
from lab.cli.stack_options import (
    add_stack_arguments,
    capture_path,
    check_interface_arguments,
    impairment_requested,
    impairment_text,
    open_stack,
)
from lab.cli.values import file_or_folder
from lab.ftp.client import (
    Client,
    DialogueArrow,
    FtpError,
    FtpTimeout,
    Progress,
    TransferIncomplete,
    TransferResult,
)
from lab.ftp.transport import KernelTransport, LabTransport, Transport, same_address
from lab.units import parse_seconds

__all__ = [
    "FtpUrl",
    "configure_get",
    "configure_ls",
    "configure_put",
    "run_get",
    "run_ls",
    "run_put",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
PROGRESS_AFTER = 1.0  # seconds before a progress bar appears


@dataclass(frozen=True, slots=True)
class FtpUrl:
    """ftp://[user[:password]@]host[:port]/path, percent-decoded.

    An IPv6 host is written in brackets (RFC 3986 3.2.2): ftp://[2001:2::1]:2121/1M.bin; `host`
    then holds the address without brackets, in its canonical (compressed) form."""

    host: str
    port: int
    path: str  # without the leading "/": relative to the login directory, as curl does
    user: str | None
    password: str | None

    @classmethod
    def parse(cls, text: str) -> FtpUrl:
        try:
            parts = urllib.parse.urlsplit(text)
            hostname = parts.hostname
        except ValueError as exc:  # "[2001:2::1" unclosed, "[zz]" not an address
            raise UsageError(f"bad host in {text!r}: {exc}") from exc
        if parts.scheme != "ftp" or not hostname:
            raise UsageError(f"not an ftp:// URL: {text!r}")
        try:
            port = parts.port or 21
        except ValueError as exc:
            if parts.netloc.count(":") > 1 and "[" not in parts.netloc:
                raise UsageError(
                    f"an IPv6 address goes in brackets (ftp://[ADDR]:PORT/PATH): {text!r}"
                ) from exc
            raise UsageError(f"bad port in {text!r}") from exc
        if ":" in hostname:
            try:
                hostname = ipaddress.IPv6Address(hostname).compressed
            except ValueError as exc:  # "[v1.x]": an IPvFuture literal, which no one speaks
                raise UsageError(f"bad IPv6 address in {text!r}: {exc}") from exc
        else:
            try:
                ipaddress.IPv4Address(hostname)
            except ValueError:  # the lab resolves no names; caught here, before any topology
                raise UsageError(
                    f"not an IP address: {hostname!r} in {text!r} (the lab resolves no names;"
                    " e.g. ftp://198.18.0.1/hello.txt)"
                ) from None
        path = urllib.parse.unquote(parts.path)
        path = path[1:] if path.startswith("/") else path
        user = urllib.parse.unquote(parts.username) if parts.username else None
        password = urllib.parse.unquote(parts.password) if parts.password is not None else None
        for what, value in (("path", path), ("user", user), ("password", password)):
            # %0d%0a would smuggle a second command onto the control connection, %00 cut the
            # local name: refused here, as curl does ("URL using bad/illegal format").
            if value is not None and _CONTROL.search(value):
                raise UsageError(f"control character in the URL's {what}: {text!r}")
        return cls(hostname, port, path, user, password)

    @property
    def basename(self) -> str:
        """The last path component; empty when the path ends with "/" (a directory)."""
        return self.path.rpartition("/")[2]


# -- arguments ----------------------------------------------------------------------------------


EPILOG = """\
Without --iface the lab builds a topology, starts its embedded FTP server at 198.18.0.1 and tears
everything down afterwards. Sample files: hello.txt, 300K.bin, 1M.bin, pub/10M.bin, 50M.bin
(anonymous, read-only); user lab, password lab, may write (put uses it when the URL names no user).
Faults (--loss 5% --reorder 2% --seed 3 ...) are injected on the lab stack's link (not with
--kernel); the summary names the schedule, the capture's comments hold every fault applied.
Exit codes: 0 done, 1 FTP or network error, 2 usage, 3 transfer incomplete (NAME.part kept;
--resume continues it), 4 timeout, 77 no privileges, 130 interrupted outside a transfer.
"""


def positive_seconds(text: str) -> float:
    """A timeout: 0 would make kernel sockets non-blocking (no wait at all), not "no limit"."""
    return parse_seconds(text)  # one syntax for every command: 30, 1.5s, 500ms


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    net = parser.add_argument_group("stack and network")
    net.add_argument("--passive", action="store_true", help="passive mode (EPSV, then PASV)")
    net.add_argument("--kernel", action="store_true", help="kernel sockets, not the lab stack")
    net.add_argument(
        "--trust-pasv-ip", action="store_true", help="connect where a 227 reply says, not the peer"
    )
    net.add_argument(
        "--timeout", type=positive_seconds, default=30.0, help="seconds for each wait (30)"
    )
    add_stack_arguments(parser, net)
    out = parser.add_argument_group("output")
    out.add_argument("-v", "--verbose", action="store_true", help="show the control dialogue")
    out.add_argument("--json", action="store_true", help="print the summary as JSON")


def configure_get(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="ftp://[user[:pass]@]host[:port]/path")
    parser.add_argument(
        "-o",
        "--output",
        type=file_or_folder,
        help=(
            "local file (missing folders are made) or a folder to save it in"
            " (default: the URL's name)"
        ),
    )
    parser.add_argument("--resume", action="store_true", help="continue NAME.part with REST")
    parser.add_argument("--ascii", action="store_true", help="TYPE A (CRLF becomes LF)")
    add_common_arguments(parser)


def configure_put(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="local file to send")
    parser.add_argument("url", help="ftp://[user[:pass]@]host[:port]/path (a trailing / adds name)")
    parser.add_argument("--append", action="store_true", help="APPE instead of STOR")
    parser.add_argument("--ascii", action="store_true", help="TYPE A (LF becomes CRLF)")
    add_common_arguments(parser)


def configure_ls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="ftp://[user[:pass]@]host[:port]/directory")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--names", action="store_true", help="NLST: names only")
    how.add_argument("--mlsd", action="store_true", help="MLSD: machine-readable facts")
    add_common_arguments(parser)


# -- where the client runs ----------------------------------------------------------------------


@dataclass
class Environment:
    """The transport and what the summary needs to say about it."""

    transport: Transport
    stack: str  # "lab (fast codec)" or "kernel"
    capture: Path | None  # None only for a stack that does not record (never from the CLI)
    embedded: bool
    frames: Callable[[], int] = lambda: 0
    capture_drops: Callable[[], int] = lambda: 0  # frames the kernel dropped from the capture
    details: dict[str, Any] = field(default_factory=dict)
    impairment: str | None = None  # the fault schedule, in the options' words
    faults: Callable[[], dict[str, int]] = dict  # faults applied so far, by kind


@contextlib.contextmanager
def environment(args: argparse.Namespace, kind: str, big: bool) -> Iterator[Environment]:
    """Where the command runs (see the module docstring): the lab stack from
    `lab.cli.stack_options.open_stack`, plus the embedded server on a topology of our own; or the
    kernel's sockets with `--kernel`."""
    if args.kernel:
        if impairment_requested(args):
            raise UsageError(
                "--kernel has no lab link to impair: the fault options "
                "(--loss, --reorder, --dup, --corrupt, --delay, --jitter, --rate) "
                "work with the lab stack only"
            )
        with kernel_environment(args, kind, big) as env:
            yield env
        return
    with open_stack(args, kind) as stack:
        mode = ", offload mode" if getattr(args, "offload", False) else ""
        lab = f"lab ({args.codec} codec{mode})"
        common: dict[str, Any] = {
            "frames": stack.frames_captured,
            "impairment": impairment_text(args),
            "faults": stack.faults,
        }
        if stack.topology is None:
            yield Environment(
                LabTransport(stack.runtime), lab, stack.capture, embedded=False, **common
            )
            return
        from lab.ftp.server import EmbeddedServer

        with EmbeddedServer(stack.topology, big=big) as server:
            yield Environment(
                LabTransport(stack.runtime),
                lab,
                stack.capture,
                embedded=True,
                details={"server": server.address, "server6": server.address6},
                **common,
            )


@contextlib.contextmanager
def kernel_environment(args: argparse.Namespace, kind: str, big: bool) -> Iterator[Environment]:
    """`--kernel`: the kernel's sockets, here (with `--iface`) or from the topology's client
    namespace at 198.18.0.3, recorded by a sniffer on the same veth."""
    capture = capture_path(args, kind)
    if args.iface is not None:
        yield Environment(KernelTransport(), "kernel", capture, embedded=False)
        return
    from lab.ftp.server import EmbeddedServer
    from lab.session import kernel_client
    from lab.topology import Topology, require_privileges

    require_privileges()
    with (
        Topology(offload=bool(getattr(args, "offload", False))) as topo,
        EmbeddedServer(topo, big=big) as server,
        kernel_client(topo, capture=capture) as side,
    ):
        yield Environment(
            KernelTransport(
                namespace=side.namespace, source_ip=side.address, source_ip6=side.address6
            ),
            "kernel",
            capture,
            embedded=True,
            frames=lambda: side.frames,
            capture_drops=lambda: side.drops,
            details={"server": server.address, "server6": server.address6},
        )


# -- output -------------------------------------------------------------------------------------


def dialogue_printer() -> Callable[[DialogueArrow, str], None]:
    def show(direction: DialogueArrow, text: str) -> None:
        print(f"{direction} {text}", file=sys.stderr, flush=True)

    return show


class ProgressBar:
    """A rich progress bar on stderr, shown only on a terminal and once a second has passed."""

    def __init__(self, label: str, enabled: bool) -> None:
        from lab.cli.main import use_colour

        self.label = label
        self.enabled = enabled and use_colour(sys.stderr)  # a terminal, and no NO_COLOR
        self._started = time.monotonic()
        self._progress: Any = None
        self._task: Any = None

    def update(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            if time.monotonic() - self._started < PROGRESS_AFTER:
                return
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=total)
        self._progress.update(self._task, completed=done, total=total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def summarize(result: TransferResult, env: Environment, sha256: str | None) -> dict[str, Any]:
    stats = result.stats
    return {
        "command": result.command,
        "remote": result.remote,
        "local": str(result.local) if result.local is not None else None,
        "bytes": result.bytes,
        "total": result.total,
        "resumed_from": result.resumed_from,
        "seconds": round(result.seconds, 6),
        "mb_per_s": round(result.mb_per_s, 3),
        "segments_in": stats.segments_received if stats else None,
        "segments_out": stats.segments_sent if stats else None,
        "retransmissions": stats.retransmissions if stats else None,
        "mode": result.mode,
        "stack": env.stack,
        "capture": str(env.capture) if env.capture is not None else None,
        "capture_drops": env.capture_drops(),
        "sha256": sha256,
        "reply": str(result.reply),
        "impairment": env.impairment,
        "faults": env.faults() if env.impairment is not None else None,
    }


def summary_line(summary: dict[str, Any]) -> str:
    segments = (
        f"{summary['segments_in']} segments in, {summary['segments_out']} out, "
        f"{summary['retransmissions']} retransmissions"
        if summary["segments_in"] is not None
        else "segment counts unavailable"
    )
    resumed = f" (resumed at {summary['resumed_from']})" if summary["resumed_from"] else ""
    impaired = ""
    if summary.get("impairment"):
        faults = ", ".join(f"{n} {kind}" for kind, n in (summary.get("faults") or {}).items())
        impaired = f"; impairment {summary['impairment']} ({faults or 'no fault applied yet'})"
    return (
        f"{summary['command']} {summary['remote']}: {summary['bytes']} bytes{resumed} in "
        f"{summary['seconds']:.3f} s ({summary['mb_per_s']:.2f} MB/s), {segments}; "
        f"{summary['mode']} mode, {summary['stack']}{impaired}; capture {summary['capture']}"
        + _capture_drops(summary)
    )


def _capture_drops(summary: dict[str, Any]) -> str:
    drops = summary.get("capture_drops") or 0
    return f" ({drops} frames missing: the capture could not keep up)" if drops else ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# -- running ------------------------------------------------------------------------------------

Action = Callable[[Client, Environment, Progress], dict[str, Any] | None]


def execute(
    args: argparse.Namespace,
    kind: str,
    url: FtpUrl,
    action: Action,
    user: str | None,
    password: str | None,
) -> int:
    """Set up the environment, log in, run `action`, print the summary; map errors to exits."""
    from lab.topology import PrivilegeError

    show = dialogue_printer() if args.verbose else None
    bar = ProgressBar(
        f"{kind} {url.basename or url.path or '/'}",
        enabled=not (args.json or getattr(args, "quiet", False)),
    )
    summary: dict[str, Any] | None = None
    failure: dict[str, Any] = {}  # for --json: what went wrong, and what a .part holds
    code = ExitCode.OK
    try:
        if not args.kernel:
            check_interface_arguments(args, url.host)
        with environment(args, kind, big=url.basename == "50M.bin") as env:
            embedded_at = [env.details.get("server"), env.details.get("server6")]
            if env.embedded and not any(
                at is not None and same_address(url.host, at) for at in embedded_at
            ):
                print(
                    f"note: the embedded server is at {env.details.get('server')} and "
                    f"[{env.details.get('server6')}]; {url.host} may be unreachable",
                    file=sys.stderr,
                )
            client = Client(
                env.transport,
                timeout=args.timeout,
                data_timeout=args.timeout,
                passive=args.passive,
                trust_pasv_ip=args.trust_pasv_ip,
                dialogue=show,
            )
            if user is None:
                user = "lab" if env.embedded and kind == "put" else "anonymous"
            if password is None:
                password = "lab" if user == "lab" and env.embedded else "lab@"
            try:
                client.connect(url.host, url.port)
                client.login(user, password)
                summary = action(client, env, bar.update)
            finally:
                bar.close()
                client.quit()
    except (PrivilegeError, UsageError) as exc:
        return exit_code_for(kind, exc)  # the one place that words these and picks their codes
    except TransferIncomplete as exc:
        print(f"lab {kind}: {exc}", file=sys.stderr)
        if exc.part_path is not None:
            print(f"lab {kind}: continue with --resume", file=sys.stderr)
        code = ExitCode.INCOMPLETE
        failure = {
            "error": str(exc),
            "received": exc.received,
            "expected": exc.expected,
            "part": str(exc.part_path) if exc.part_path is not None else None,
        }
    except FtpTimeout as exc:
        print(f"lab {kind}: timeout: {exc}", file=sys.stderr)
        code = ExitCode.TIMEOUT
        failure = {"error": f"timeout: {exc}"}
    except (FtpError, OSError) as exc:
        print(f"lab {kind}: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = ExitCode.FAILURE
        failure = {"error": f"{type(exc).__name__}: {exc}"}
    if args.json:
        print(json.dumps({"ok": code == ExitCode.OK, "exit": code, **failure, **(summary or {})}))
    elif summary is not None:
        print(summary_line(summary), file=sys.stderr if kind == "ls" else sys.stdout)
    return code


def _local_target(args: argparse.Namespace, url: FtpUrl) -> Path:
    """The local file: what the user named, or the URL's last component (which they typed)."""
    if args.output is not None:
        target: Path = args.output
        if target.is_dir():
            if not url.basename:
                raise UsageError("the URL names no file; give -o FILE")
            target = target / url.basename
        return target
    name = url.basename
    if name in ("", ".", ".."):
        raise UsageError("the URL names no file; give -o FILE")
    return Path(name)


def run_get(args: argparse.Namespace) -> int:
    try:
        url = FtpUrl.parse(args.url)
        local = _local_target(args, url)
        if args.resume and args.ascii:
            raise UsageError("--resume needs binary mode: REST offsets in ASCII are ambiguous")
    except UsageError as exc:
        print(f"lab get: {exc}", file=sys.stderr)
        return ExitCode.USAGE

    def action(client: Client, env: Environment, progress: Progress) -> dict[str, Any]:
        # -o accepted a file in folders still to be made (lab.cli.values checked that the nearest
        # existing one is writable): make them once the server has let us in, as curl's
        # --create-dirs does, rather than fail after the login.
        local.parent.mkdir(parents=True, exist_ok=True)
        result = client.retrieve(
            url.path, local, resume=args.resume, ascii=args.ascii, progress=progress
        )
        return summarize(result, env, _sha256(local))

    return execute(args, "get", url, action, url.user, url.password)


def run_put(args: argparse.Namespace) -> int:
    try:
        url = FtpUrl.parse(args.url)
        if not args.file.is_file():
            raise UsageError(f"{args.file} is not a file")
    except UsageError as exc:
        print(f"lab put: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    remote = url.path
    if not remote or remote.endswith("/"):
        remote += args.file.name

    def action(client: Client, env: Environment, progress: Progress) -> dict[str, Any]:
        result = client.store(
            args.file, remote, append=args.append, ascii=args.ascii, progress=progress
        )
        return summarize(result, env, _sha256(args.file))

    return execute(args, "put", url, action, url.user, url.password)


def run_ls(args: argparse.Namespace) -> int:
    try:
        url = FtpUrl.parse(args.url)
    except UsageError as exc:
        print(f"lab ls: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    path = url.path or None

    def action(client: Client, env: Environment, progress: Progress) -> dict[str, Any] | None:
        if args.mlsd:
            entries = client.mlsd(path)
            lines = [
                ";".join(f"{k}={v}" for k, v in sorted(e.facts.items())) + " " + e.name
                for e in entries
            ]
        elif args.names:
            lines = client.nlst(path)
        else:
            lines = client.list(path)
        if args.json:
            return {
                "command": "ls",
                "path": url.path,
                "lines": lines,
                "capture": str(env.capture) if env.capture else None,
            }
        for line in lines:
            print(line)
        return None

    return execute(args, "ls", url, action, url.user, url.password)
