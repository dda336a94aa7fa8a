"""Entering a network namespace without leaving the calling thread in it.

`setns(2)` with CLONE_NEWNET changes the namespace of the calling *thread* only, and a socket keeps
the namespace it was created in for its whole life. So the safe way to get a socket (or run any
short piece of code) inside a namespace is a short-lived thread that enters the namespace, does the
work and ends: the main thread never changes namespace, so a signal or an exception in the middle
cannot leave it in the wrong one. Child processes enter the namespace between fork and exec.

Namespaces are always opened with flags=0: pyroute2's default (O_CREAT) would silently create a
namespace that does not exist, which would turn a typo into a leak.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pyroute2 import netns as _netns

NETNS_DIR = "/run/netns"

T = TypeVar("T")


def list_namespaces() -> list[str]:
    """Names of the namespaces bound under /run/netns (what `ip netns list` shows)."""
    return sorted(_netns.listnetns())


CLONE_NEWNET = 0x40000000
# Loaded once, at import: `enter_namespace` also runs between fork and exec (preexec_fn), where
# importing or loading a library could deadlock on a lock another thread of the parent held.
_LIBC = ctypes.CDLL(None, use_errno=True)


def enter_namespace(name: str) -> None:
    """Move the calling thread into a network namespace (never creates it): a name under
    /run/netns, or a path such as /proc/PID/ns/net (a namespace with no name, held by a
    process)."""
    path = name if name.startswith("/") else f"{NETNS_DIR}/{name}"
    fd = os.open(path, os.O_RDONLY)
    try:
        if _LIBC.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def call_in_thread(fn: Callable[[], T], *, name: str, enter: Callable[[], None] | None = None) -> T:
    """Run `fn()` in a fresh thread (after `enter()`, if given) and return its result.

    The caller blocks until it is done; exceptions raised there are re-raised here. This is how
    lab code runs something in another network namespace (the namespace is per thread, so the
    caller's stays untouched) or away from a running asyncio loop.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            if enter is not None:
                enter()
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread below
            error.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def run_in_namespace(name: str, fn: Callable[[], T]) -> T:
    """Run `fn()` in a fresh thread inside namespace `name` (or a path, see `enter_namespace`)
    and return its result.

    Exceptions raised by `fn` are re-raised in the caller. Sockets `fn` creates stay in `name`.
    """
    label = name.rsplit("/", 3)[-3] if name.startswith("/") else name  # /proc/PID/ns/net: PID
    return call_in_thread(fn, name=f"netns-{label}", enter=lambda: enter_namespace(name))


def socket_in_namespace(name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside namespace `name` (it stays there, whoever uses it)."""
    return run_in_namespace(name, lambda: socket.socket(family, kind, proto))


def popen_in_namespace(name: str, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start `args` as a child process inside namespace `name` (like `ip netns exec`).

    The child enters the namespace after fork and before exec, so the parent is untouched.
    """

    def enter() -> None:
        enter_namespace(name)

    return subprocess.Popen(list(args), preexec_fn=enter, **kwargs)
