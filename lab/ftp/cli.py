"""`lab get`, `lab put`, `lab ls`: the FTP client from the command line.

Where it runs:
- With no `--iface` (the default), the lab builds its own topology, starts the embedded pyftpdlib
  server at 198.18.0.1 in the server namespace, runs the command from the client namespace with
  the hand-built stack (or, with `--kernel`, with the kernel's sockets from the same veth, at
  198.18.0.3) and tears everything down. URLs then name 198.18.0.1, e.g.
  `lab get ftp://198.18.0.1/pub/10M.bin`. Samples: hello.txt, 1M.bin, pub/10M.bin, 50M.bin;
  user `lab` (password `lab`) may write; `put` uses it when the URL names no user.
- With `--iface IF --addr CIDR [--gateway IP]`, the hand-built stack takes CIDR on the existing
  interface IF (with IF's MAC) and talks to whatever server the URL names. Use an interface you
  made for this (a veth into a namespace of your own): the kernel must not own CIDR's address on
  IF, and the lab never changes the interface. Never point it at the host's own uplink unless you
  mean to. `--kernel` with `--iface` simply uses kernel sockets in the current namespace.

Output: `-v` prints the control dialogue to stderr as it happens; a progress bar (stderr, only on a
terminal) appears for transfers lasting over a second; the summary line goes to stdout (stderr for
`ls`, whose stdout is the listing), or one JSON object with `--json`. A capture of the run is
always written (default captures/runs/<time>-<command>.pcapng).

Exit codes: 0 done; 1 FTP or network error; 2 usage; 3 transfer incomplete (bytes kept in
NAME.part, `--resume` continues it; Ctrl-C during a transfer ends here too, so the message says
how many bytes arrived); 4 timeout; 77 no privileges; 130 interrupted outside a transfer.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.cli import EXIT_NO_PRIVILEGES, EXIT_USAGE
from lab.ftp.client import (
    Client,
    Direction,
    FtpError,
    FtpTimeout,
    Progress,
    TransferIncomplete,
    TransferResult,
)
from lab.ftp.transport import KernelTransport, LabTransport, Transport

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INCOMPLETE = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130
PROGRESS_AFTER = 1.0  # seconds before a progress bar appears


class UsageError(ValueError):
    """Bad command-line input (exit 2)."""


@dataclass(frozen=True, slots=True)
class FtpUrl:
    """ftp://[user[:password]@]host[:port]/path, percent-decoded."""

    host: str
    port: int
    path: str  # without the leading "/": relative to the login directory, as curl does
    user: str | None
    password: str | None

    @classmethod
    def parse(cls, text: str) -> FtpUrl:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme != "ftp" or not parts.hostname:
            raise UsageError(f"not an ftp:// URL: {text!r}")
        try:
            port = parts.port or 21
        except ValueError as exc:
            raise UsageError(f"bad port in {text!r}") from exc
        path = urllib.parse.unquote(parts.path)
        path = path[1:] if path.startswith("/") else path
        user = urllib.parse.unquote(parts.username) if parts.username else None
        password = urllib.parse.unquote(parts.password) if parts.password is not None else None
        return cls(parts.hostname, port, path, user, password)

    @property
    def basename(self) -> str:
        """The last path component; empty when the path ends with "/" (a directory)."""
        return self.path.rpartition("/")[2]


# -- arguments ----------------------------------------------------------------------------------


EPILOG = """\
Without --iface the lab builds a topology, starts its embedded FTP server at 198.18.0.1 and tears
everything down afterwards. Sample files: hello.txt, 1M.bin, pub/10M.bin, 50M.bin (anonymous,
read-only); user lab, password lab, may write (put uses it when the URL names no user).
Exit codes: 0 done, 1 FTP or network error, 2 usage, 3 transfer incomplete (NAME.part kept;
--resume continues it), 4 timeout, 77 no privileges.
"""


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    net = parser.add_argument_group("stack and network")
    net.add_argument("--passive", action="store_true", help="passive mode (EPSV, then PASV)")
    net.add_argument("--kernel", action="store_true", help="kernel sockets, not the lab stack")
    net.add_argument(
        "--codec", choices=("fast", "scapy"), default="fast", help="frame encoder of the lab stack"
    )
    net.add_argument("--capture", type=Path, help="pcapng file (default under captures/runs/)")
    net.add_argument(
        "--trust-pasv-ip", action="store_true", help="connect where a 227 reply says, not the peer"
    )
    net.add_argument("--timeout", type=float, default=30.0, help="seconds for each wait (30)")
    net.add_argument("--iface", help="run on this existing interface instead of a new topology")
    net.add_argument("--addr", help="with --iface: the lab stack's address, e.g. 198.18.5.2/24")
    net.add_argument("--gateway", help="with --iface: next hop for other networks")
    out = parser.add_argument_group("output")
    out.add_argument("-v", "--verbose", action="store_true", help="show the control dialogue")
    out.add_argument("--json", action="store_true", help="print the summary as JSON")


def configure_get(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="ftp://[user[:pass]@]host[:port]/path")
    parser.add_argument("-o", "--output", type=Path, help="local file (default: URL's name)")
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
    capture: Path
    embedded: bool
    frames: Callable[[], int] = lambda: 0
    details: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def environment(args: argparse.Namespace, kind: str, big: bool) -> Iterator[Environment]:
    from lab.session import LabStack, default_capture_path

    capture: Path = args.capture if args.capture is not None else default_capture_path(kind)
    if args.iface is not None:
        if args.kernel:
            yield Environment(KernelTransport(), "kernel", capture, embedded=False)
            return
        if not args.addr:
            raise UsageError("--iface needs --addr (the lab stack's address, e.g. 10.0.0.2/24)")
        address = args.addr.partition("/")[0]
        if kernel_owns(address):
            raise UsageError(
                f"the kernel already owns {address} here: it would reset the lab stack's "
                "connections; give the lab an address of its own"
            )
        with LabStack.on_interface(
            args.iface, args.addr, gateway=args.gateway, codec=args.codec, capture=capture
        ) as stack:
            yield Environment(
                LabTransport(stack.runtime),
                f"lab ({args.codec} codec)",
                capture,
                embedded=False,
                frames=stack.frames_captured,
            )
        return
    from lab.ftp.server import EmbeddedServer
    from lab.topology import Topology, require_privileges

    require_privileges()
    if args.kernel:
        from lab.session import kernel_client

        with (
            Topology() as topo,
            EmbeddedServer(topo, big=big) as server,
            kernel_client(topo, capture=capture) as side,
        ):
            env = Environment(
                KernelTransport(namespace=side.namespace, source_ip=side.address),
                "kernel",
                capture,
                embedded=True,
                frames=lambda: side.sniffer.frames,
                details={"server": server.address},
            )
            yield env
        return
    with LabStack.on_topology(codec=args.codec, capture=capture) as stack:
        assert stack.topology is not None
        with EmbeddedServer(stack.topology, big=big) as server:
            yield Environment(
                LabTransport(stack.runtime),
                f"lab ({args.codec} codec)",
                capture,
                embedded=True,
                frames=stack.frames_captured,
                details={"server": server.address},
            )


def kernel_owns(address: str) -> bool:
    """Whether the kernel of this namespace has `address` (binding to it succeeds)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind((address, 0))
    except OSError:
        return False
    finally:
        probe.close()
    return True


# -- output -------------------------------------------------------------------------------------


def dialogue_printer() -> Callable[[Direction, str], None]:
    def show(direction: Direction, text: str) -> None:
        print(f"{direction} {text}", file=sys.stderr, flush=True)

    return show


class ProgressBar:
    """A rich progress bar on stderr, shown only on a terminal and once a second has passed."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
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
        "capture": str(env.capture),
        "sha256": sha256,
        "reply": str(result.reply),
    }


def summary_line(summary: dict[str, Any]) -> str:
    segments = (
        f"{summary['segments_in']} segments in, {summary['segments_out']} out, "
        f"{summary['retransmissions']} retransmissions"
        if summary["segments_in"] is not None
        else "segment counts unavailable"
    )
    resumed = f" (resumed at {summary['resumed_from']})" if summary["resumed_from"] else ""
    return (
        f"{summary['command']} {summary['remote']}: {summary['bytes']} bytes{resumed} in "
        f"{summary['seconds']:.3f} s ({summary['mb_per_s']:.2f} MB/s), {segments}; "
        f"{summary['mode']} mode, {summary['stack']}; capture {summary['capture']}"
    )


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
    bar = ProgressBar(f"{kind} {url.basename or url.path or '/'}", enabled=not args.json)
    summary: dict[str, Any] | None = None
    code = EXIT_OK
    try:
        with environment(args, kind, big=url.basename == "50M.bin") as env:
            if env.embedded and url.host != env.details.get("server"):
                print(
                    f"note: the embedded server is at {env.details.get('server')}; "
                    f"{url.host} may be unreachable",
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
    except PrivilegeError as exc:
        print(exc, file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    except UsageError as exc:
        print(f"lab {kind}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TransferIncomplete as exc:
        print(f"lab {kind}: {exc}", file=sys.stderr)
        if exc.part_path is not None:
            print(f"lab {kind}: continue with --resume", file=sys.stderr)
        code = EXIT_INCOMPLETE
    except FtpTimeout as exc:
        print(f"lab {kind}: timeout: {exc}", file=sys.stderr)
        code = EXIT_TIMEOUT
    except (FtpError, OSError) as exc:
        print(f"lab {kind}: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = EXIT_ERROR
    if args.json:
        print(json.dumps({"ok": code == EXIT_OK, "exit": code, **(summary or {})}))
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
    except UsageError as exc:
        print(f"lab get: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def action(client: Client, env: Environment, progress: Progress) -> dict[str, Any]:
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
        return EXIT_USAGE
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
        return EXIT_USAGE
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
            return {"command": "ls", "path": url.path, "lines": lines, "capture": str(env.capture)}
        for line in lines:
            print(line)
        return None

    return execute(args, "ls", url, action, url.user, url.password)
