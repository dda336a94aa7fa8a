"""The embedded FTP server: pyftpdlib in the server namespace, with reproducible sample files.

So that `lab get` works with nothing else installed, the lab starts its own server: a child
process `python -m lab.ftp.server --root DIR` run through `Topology.popen_server`, bound to the
server namespace's addresses: 198.18.0.1 and 2001:2::1, one listening socket per family on one
pyftpdlib I/O loop. (Two listeners rather than one "::" socket with IPV6_V6ONLY=0: an IPv4 client
then meets an AF_INET socket exactly as before, and pyftpdlib never sees v4-mapped addresses.)
It serves
- anonymous, read-only: `DIR/anon` with the sample files (`hello.txt`, `300K.bin`, `1M.bin`,
  `pub/10M.bin`, and `50M.bin` when asked for), whose bytes come from a seeded PRNG, so their
  sha256 is the same on every machine and tests can check a download without a second copy;
- user `lab`, password `lab`, read-write: `DIR/lab` (for STOR, DELE, MKD, RNFR/RNTO...).

`EmbeddedServer` is the parent's handle: it writes the samples, starts the child, waits until the
child prints "ready" (it does so only once its socket listens) and stops it by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.topology import Topology

USER = "lab"
PASSWORD = "lab"
PASSIVE_PORTS = (60000, 60199)
HELLO = b"Hello from the lab's embedded FTP server.\r\nThis file travels in ASCII or binary.\r\n"
SEED = 20240601

# name (relative to the anonymous root) -> size in bytes
SAMPLES: dict[str, int] = {
    "300K.bin": 300 << 10,  # small enough for the committed captures of captures/ (< 5 MB each)
    "1M.bin": 1 << 20,
    "pub/10M.bin": 10 << 20,
}
BIG_SAMPLES: dict[str, int] = {"50M.bin": 50 << 20}


def sample_bytes(name: str, size: int) -> bytes:
    """The content of sample `name`: a PRNG seeded with the name, so each file differs."""
    seed = int.from_bytes(hashlib.sha256(f"{SEED}:{name}".encode()).digest()[:8], "big")
    return random.Random(seed).randbytes(size)


def write_samples(anon_root: Path, *, big: bool = False) -> dict[str, str]:
    """Write the sample files under `anon_root` (skipping ones already right); name -> sha256."""
    digests: dict[str, str] = {}
    files = {"hello.txt": HELLO}
    wanted = {**SAMPLES, **(BIG_SAMPLES if big else {})}
    for name, size in wanted.items():
        files[name] = sample_bytes(name, size)
    for name, content in files.items():
        path = anon_root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size != len(content):
            path.write_bytes(content)
        digests[name] = hashlib.sha256(content).hexdigest()
    return digests


def prepare_root(root: Path, *, big: bool = False) -> dict[str, str]:
    """Lay out `root/anon` (samples) and `root/lab` (the writable home); sample digests."""
    (root / USER).mkdir(parents=True, exist_ok=True)
    return write_samples(root / "anon", big=big)


# -- the child process --------------------------------------------------------------------------


def make_server(
    root: Path,
    address: str,
    port: int,
    passive_ports: tuple[int, int],
    also: tuple[str, ...] = (),
) -> Any:
    """A pyftpdlib `FTPServer` for `root` (anon/ read-only, lab/ writable), already listening;
    with `also`, one more listener on each of those addresses (same port, same handler, same
    I/O loop: serving the returned server serves them all)."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    authorizer = DummyAuthorizer()
    authorizer.add_anonymous(str(root / "anon"), perm="elr")
    authorizer.add_user(USER, PASSWORD, str(root / USER), perm="elradfmwMT")

    class Handler(FTPHandler):  # type: ignore[misc]
        pass

    Handler.authorizer = authorizer
    Handler.banner = "lab embedded FTP server (pyftpdlib) ready"
    Handler.passive_ports = range(passive_ports[0], passive_ports[1] + 1)
    Handler.permit_foreign_addresses = False
    Handler.use_sendfile = False  # keep every byte in user space, as a portable server would
    server = FTPServer((address, port), Handler)
    server.max_cons = 32
    for other in also:
        FTPServer((other, port), Handler, ioloop=server.ioloop).max_cons = 32
    return server


def serve(root: Path, addresses: list[str], port: int, passive_ports: tuple[int, int]) -> None:
    """Run pyftpdlib until killed; prints "ready" once listening on every address."""
    server = make_server(root, addresses[0], port, passive_ports, tuple(addresses[1:]))
    print("ready", flush=True)
    server.serve_forever(handle_exit=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.ftp.server", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="directory with anon/ and lab/")
    parser.add_argument(
        "--address",
        action="append",
        help="address to listen on; repeat for more (default 198.18.0.1)",
    )
    parser.add_argument("--port", type=int, default=21)
    parser.add_argument("--passive-ports", default=f"{PASSIVE_PORTS[0]}-{PASSIVE_PORTS[1]}")
    parser.add_argument("--prepare", action="store_true", help="write the sample files first")
    parser.add_argument("--big", action="store_true", help="with --prepare: also 50M.bin")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr)
    if args.prepare:
        prepare_root(args.root, big=args.big)
    low, _, high = args.passive_ports.partition("-")
    addresses = args.address or ["198.18.0.1"]
    serve(args.root, addresses, args.port, (int(low), int(high or low)))
    return 0


# -- the parent's handle ------------------------------------------------------------------------


class ServerStartError(RuntimeError):
    """A server did not start: the embedded one did not report ready, or a daemon of
    `lab.ftp.servers` exited or never listened. The message holds the end of its log."""


@dataclass
class EmbeddedServer:
    """Starts pyftpdlib in the topology's server namespace; use as a context manager."""

    topology: Topology
    root: Path | None = None
    port: int = 21
    big: bool = False
    startup_timeout: float = 15.0
    digests: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[Any] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _log: Path | None = None

    @property
    def address(self) -> str:
        return self.topology.info.server_ip

    @property
    def address6(self) -> str:
        """The server's IPv6 address (it listens on both)."""
        return self.topology.info.server_ip6

    @property
    def anon_root(self) -> Path:
        assert self.root is not None
        return self.root / "anon"

    @property
    def user_home(self) -> Path:
        assert self.root is not None
        return self.root / USER

    def start(self) -> EmbeddedServer:
        if self.root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lab-ftp-")
            self.root = Path(self._tmp.name)
        self.digests = prepare_root(self.root, big=self.big)
        self._log = self.root / "server.log"
        log_file = open(self._log, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.process = self.topology.popen_server(
                [
                    sys.executable,
                    "-m",
                    "lab.ftp.server",
                    "--root",
                    str(self.root),
                    "--address",
                    self.address,
                    "--address",
                    self.address6,
                    "--port",
                    str(self.port),
                ],
                stdout=subprocess.PIPE,
                stderr=log_file,
                cwd=str(Path(__file__).resolve().parents[2]),
            )
        finally:
            log_file.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        out = self.process.stdout
        ready, _, _ = select.select([out], [], [], self.startup_timeout)
        line = out.readline() if ready else b""
        if line.strip() != b"ready":
            self.stop()
            tail = self._log.read_text(errors="replace")[-2000:] if self._log else ""
            raise ServerStartError(f"embedded FTP server did not start: {tail.strip()}")

    def stop_process(self) -> None:
        """Stop the server process (by its pid); the root and its files stay."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def stop(self) -> None:
        """Stop the process and remove the root if we made it."""
        self.stop_process()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
