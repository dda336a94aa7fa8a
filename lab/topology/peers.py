"""Kernel peers the lab starts inside its server namespace for experiments and tests.

The point of most live experiments is to put the hand-built stack opposite a real kernel TCP, so
the same small echo server is wanted by `lab connect`, the runtime and impairment tests and the
blind-reset exercise. It is a child Python process (the namespace's kernel owns its sockets),
started through `Topology.popen_server` so that the topology stops it at teardown.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.topology.topology import Topology

ECHO_SERVER_SOURCE = textwrap.dedent(
    """
    import socket, sys, threading
    def echo(conn):
        try:
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)
        except OSError:
            pass  # a reset peer ends its own echo, not the server
    server = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((sys.argv[1], int(sys.argv[2])))
    server.listen()
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()
    """
)


class PeerStartError(OSError):
    """A kernel peer did not come up."""


def start_echo_server(topology: Topology, ip: str, port: int) -> subprocess.Popen[str]:
    """A kernel TCP echo server on ip:port in the server namespace, listening when this returns
    (`ip` may be IPv6: the socket's family follows it).

    Each connection is served in its own thread until the peer closes; the process lives until
    the topology is torn down (or the caller stops it by its pid).
    """
    process: subprocess.Popen[str] = topology.popen_server(
        [sys.executable, "-c", ECHO_SERVER_SOURCE, ip, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        process.wait()
        raise PeerStartError(f"the kernel echo server on {ip}:{port} did not start")
    return process
