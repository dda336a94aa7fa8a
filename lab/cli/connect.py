"""`lab connect HOST PORT`: a TCP connection from the hand-built stack: stdin out, replies back.

Like `nc HOST PORT`, but every segment is built by `lab.tcp` and every frame by our codecs. With no
`--iface` the lab builds its topology and, when HOST is the server namespace's kernel
(198.18.0.1, or 2001:2::1 over IPv6, from the lab stack's 2001:2::2), starts a kernel echo server
there on PORT first (`--no-server` skips it: then the
kernel answers our SYN with RST, a handy way to see a refused connection). With `--iface` it
connects wherever HOST is.

What is read from stdin is sent as it comes; at its end our side half-closes (FIN) and keeps
printing what arrives until the peer closes too, or until nothing came for `--timeout` seconds.
`-v` prints the TCP state transitions on stderr as the frames that carry them pass, e.g.
"out 40000 > 198.18.0.1:7: CLOSED -> SYN-SENT", then a summary.

Exit: 0 done, 1 refused/reset/unreachable, 2 usage, 4 connect timeout, 77 no privileges.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from lab.cli.errors import ExitCode, UsageError
from lab.cli.stack_options import (
    add_stack_arguments,
    check_interface_arguments,
    open_stack,
    run_tool,
)
from lab.cli.values import ip_address
from lab.topology.peers import start_echo_server
from lab.units import parse_port, parse_seconds

if TYPE_CHECKING:
    from lab.runtime import Socket
    from lab.session import LabStack

CHUNK = 65536
POLL = 0.2  # seconds per recv while waiting, so the idle timeout and ^C are noticed


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "host", type=ip_address, help="address to connect to (198.18.0.1: the lab's echo server)"
    )
    parser.add_argument("port", type=parse_port, help="TCP port")
    parser.add_argument(
        "--timeout",
        type=parse_seconds,
        default=10.0,
        help="seconds for the handshake, and of silence "
        "after stdin ended before giving up on the peer's close (10)",
    )
    parser.add_argument(
        "--no-server", action="store_true", help="do not start the kernel echo server"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show state transitions")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the summary as JSON on stderr (stdout carries the peer's bytes)",
    )
    add_stack_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_tool("connect", lambda: _connect(args))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def show_transition(direction: str, frame: bytes, transitions: list[str]) -> None:
    """Frame observer for -v (called from the runtime's thread: quick, no runtime calls)."""
    for text in transitions:
        _say(f"{direction:>3} {text}")


@contextlib.contextmanager
def echo_server(args: argparse.Namespace, stack: LabStack) -> Iterator[None]:
    """A kernel echo server on PORT in the server namespace, when the command asks for one."""
    from lab.ftp.transport import same_address

    topology = stack.topology
    ours = [ip for ip in (stack.server_ip, stack.server_ip6) if ip is not None]
    known = any(same_address(args.host, ip) for ip in ours)
    if topology is None or args.no_server or not known:
        if topology is not None and not known:
            _say(
                f"lab connect: note: the lab's server namespace is at {stack.server_ip}"
                f" and {stack.server_ip6}"
            )
        yield
        return
    start_echo_server(topology, args.host, args.port)  # a PeerStartError is an OSError
    if args.verbose:
        _say(f"kernel echo server listening on {endpoint(args.host, args.port)} (server namespace)")
    yield  # the topology stops it at teardown


def endpoint(host: str, port: int) -> str:
    """host:port, an IPv6 host in brackets ([2001:2::1]:7)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connect(args: argparse.Namespace) -> int:
    from lab.runtime import Timeout

    check_interface_arguments(args, args.host)
    if not 0 < args.port < 65536:
        raise UsageError(f"bad port {args.port}")
    observer = show_transition if args.verbose else None
    with open_stack(args, "connect", observer) as stack, echo_server(args, stack):
        sock = stack.runtime.connect(args.host, args.port, timeout=args.timeout)
        local = endpoint(*sock.local_address)
        if args.verbose:
            _say(f"connected {local} -> {endpoint(args.host, args.port)}")
        pump = StdinPump(sock, sys.stdin.buffer)
        received = 0
        last_data = time.monotonic()
        out = sys.stdout.buffer
        try:
            while True:
                try:
                    data = sock.recv(CHUNK, timeout=POLL)
                except Timeout:
                    # Give up only after `--timeout` seconds of silence once stdin has ended: a
                    # peer still sending after our FIN (its half of the connection) is not done.
                    silent = min(pump.idle_for(), time.monotonic() - last_data)
                    if silent > args.timeout:
                        _say(f"lab connect: the peer did not close within {args.timeout:g} s")
                        break
                    continue
                if not data:
                    break
                last_data = time.monotonic()
                received += len(data)
                out.write(data)
                out.flush()
        finally:
            sock.close()  # our FIN, if stdin had not ended yet
        if pump.error is not None:
            raise pump.error
        state = _wait_closed(sock, min(args.timeout, 5.0))
        if getattr(args, "json", False):
            summary = {
                "local": local,
                "remote": endpoint(args.host, args.port),
                "sent": pump.sent,
                "received": received,
                "final_state": state,
                "capture": None if stack.capture is None else str(stack.capture),
            }
            _say(json.dumps(summary))
        elif args.verbose:
            _say(
                f"sent {pump.sent} bytes, received {received} bytes; {local} ends in "
                f"{state}; capture {stack.capture}"
            )
    return ExitCode.OK


def _wait_closed(sock: Socket, timeout: float) -> str:
    from lab.runtime import Timeout

    try:
        return sock.wait_closed(timeout=timeout).value
    except Timeout:
        return sock.state.value


class StdinPump:
    """Copies stdin to the socket from a thread, half-closing at EOF (our FIN)."""

    def __init__(self, sock: Socket, source: BinaryIO) -> None:
        self.sock = sock
        self.source = source
        self.sent = 0
        self.error: BaseException | None = None
        self._done_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="lab-connect-stdin", daemon=True)
        self._thread.start()

    def idle_for(self) -> float:
        """Seconds since stdin ended (0 while it is still open)."""
        return 0.0 if self._done_at is None else time.monotonic() - self._done_at

    def _run(self) -> None:
        read = getattr(self.source, "read1", self.source.read)
        try:
            while chunk := read(CHUNK):
                self.sock.sendall(chunk)
                self.sent += len(chunk)
            self.sock.shutdown()
        except BrokenPipeError:
            pass  # the peer closed or reset first: the receive side reports it
        except BaseException as exc:  # re-raised by the main thread
            self.error = exc
        finally:
            self._done_at = time.monotonic()
