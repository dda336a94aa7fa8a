"""The lab topology: two network namespaces joined by a veth pair, built through netlink.

```
  server namespace (kernel)                 client namespace (lab stack)
  labXXXXXXs 198.18.0.1/24  <--- veth --->  labXXXXXXc  (no kernel address;
             2001:2::1/64                   the lab stack owns 198.18.0.2 and
  kernel TCP servers live here              2001:2::2 and reads the veth through AF_PACKET)
```

Why the client end has no kernel address: the kernel in the client namespace then never answers
our peer (no RST for connections it does not know, no ARP or Neighbor Discovery replies), so
everything the server sees comes from the lab stack. IPv6 is disabled in both namespaces before
the veth exists, and stays disabled for the client kernel on its veth (AF_PACKET still sees every
v6 frame: the lab stack does its own Neighbor Discovery). Offloads are off so the wire carries
real segments.

Dual stack, the server side (`enable_server_ipv6`): the server veth gets IPv6 back with router
advertisements and address autoconfiguration off (accept_ra=0, autoconf=0: nothing on the link
should configure anything, and a kernel that accepts no RA sends no router solicitation) and
2001:2::1/64 added with IFA_F_NODAD. Why nodad rather than DAD: a tentative address cannot be
bound (EADDRNOTAVAIL) for the ~1 s DAD takes, and servers start at once; this address is
ours in a namespace we just made, where no one else can hold it. DAD stays on for the kernel's
link-local address (accept_dad untouched): it is not needed at once, and a student sees a real
DAD probe on the wire. The prefix 2001:2::/48 is RFC 5180's benchmarking range, mirroring
198.18.0.0/15; the lab stack owns 2001:2::2, and a `--kernel` client gets 2001:2::3
(`lab.session.kernel_client`).

Inside Jupyter (or any coroutine): a notebook cell runs inside a running asyncio loop, and
pyroute2 0.9 drives its own loop with `run_until_complete`, which refuses to start there ("This
event loop is already running"). So every netlink step here goes through `_netlink`, which calls
it directly when the calling thread has no running loop and otherwise in a short-lived worker
thread (which has none). Signal handlers stay with the calling thread, which is where Python
allows them; `lab.notebook.off_the_event_loop` keeps working, since its thread has no loop.

More namespaces: `add_namespace("atk")` makes `lab-<id>-atk` (IPv6 off, loopback up, nothing
else), records it in the topology's state file before creating it, and removes it at teardown with
the rest. Exercises that need a third party (an attacker, a second client) use it, so that their
namespace is owned like the topology's own: a concurrent test session's leak check, `lab clean`
and the signal handlers all treat it as part of this run.

Teardown is guaranteed three ways: `__exit__` (normal exit and exceptions), SIGINT/SIGTERM handlers
installed for the lifetime of the topology (they tear down, restore the previous handlers and then
let the signal take its previous effect), and the state file that `lab clean` reads after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

from pyroute2 import NetNS
from pyroute2 import netns as _netns

from lab.topology.netns import (
    call_in_thread,
    list_namespaces,
    popen_in_namespace,
    run_in_namespace,
)
from lab.topology.offload import disable_offloads, enable_receive_offloads
from lab.topology.privileges import require_privileges
from lab.topology.state import (
    DEFAULT_CLIENT_IP,
    DEFAULT_CLIENT_IP6,
    DEFAULT_PREFIXLEN,
    DEFAULT_PREFIXLEN6,
    DEFAULT_SERVER_IP,
    DEFAULT_SERVER_IP6,
    STATE_DIR,
    Owner,
    StateRecord,
    TopologyInfo,
    TopologyNames,
    extra_namespace_name,
    is_lab_name,
    new_run_id,
    remove_state,
    write_state,
)

T = TypeVar("T")

_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class TopologyError(RuntimeError):
    """The topology could not be built (the partial build has been torn down)."""


def _netlink(fn: Callable[[], T]) -> T:
    """Run `fn` (pyroute2 work) here, or in a worker thread if this thread runs an asyncio loop.

    The caller blocks either way, as it would on a plain netlink call; exceptions come back."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    return call_in_thread(fn, name="lab-netlink")


def disable_ipv6(namespace: str, ifname: str | None = None) -> None:
    """Disable IPv6 in `namespace` (defaults for new links, and `ifname` if given).

    /proc/sys/net resolves against the namespace of the thread that opens it, hence the thread.
    A kernel without IPv6 has no such files, which is just as good.
    """

    def write() -> None:
        for conf in ("all", "default", *((ifname,) if ifname else ())):
            path = Path(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6")
            with contextlib.suppress(FileNotFoundError):
                path.write_text("1\n")

    run_in_namespace(namespace, write)


IFA_F_NODAD = 0x02  # linux/if_addr.h: no duplicate address detection for this address


def _write_conf6(ifname: str, values: dict[str, str]) -> None:
    """Write /proc/sys/net/ipv6/conf/IFNAME/KEY for each key (in the calling thread's namespace);
    a kernel without IPv6 has no such files, and the caller then finds no IPv6 (doctor)."""
    for key, value in values.items():
        Path(f"/proc/sys/net/ipv6/conf/{ifname}/{key}").write_text(f"{value}\n")


def enable_server_ipv6(namespace: str, ifname: str) -> bool:
    """IPv6 back on `ifname` in `namespace`, with no RA, no autoconf, no router solicitation;
    False (and nothing done) when the kernel has no IPv6.

    The order matters: accept_ra/autoconf are set while IPv6 is still off, so the link never
    spends a moment accepting or soliciting anything (see the module docstring). Loopback gets
    IPv6 too: traffic from the namespace to its own 2001:2::1 (a daemon's readiness check, a
    local client) goes through `lo`, and without IPv6 there it is dropped."""

    def write() -> bool:
        if not Path("/proc/sys/net/ipv6").is_dir():
            return False  # a kernel without IPv6 (ipv6.disable=1): the lab stays IPv4 only
        _write_conf6(
            ifname,
            {"accept_ra": "0", "autoconf": "0", "router_solicitations": "0", "disable_ipv6": "0"},
        )
        _write_conf6("lo", {"disable_ipv6": "0"})
        return True

    return run_in_namespace(namespace, write)


def enable_client_kernel_ipv6(namespace: str, ifname: str) -> None:
    """IPv6 on for the client kernel on `ifname` (a `--kernel` client's v6 address), with no
    link-local address (addr_gen_mode=1): the lab stack derives its own fe80:: address from the
    same MAC, and the two must not both own it. No RA, no autoconf, no solicitation, no DAD
    (its one address is added with IFA_F_NODAD). `disable_ipv6` undoes it, addresses and all."""
    run_in_namespace(
        namespace,
        lambda: _write_conf6(
            ifname,
            {
                "addr_gen_mode": "1",
                "accept_ra": "0",
                "autoconf": "0",
                "router_solicitations": "0",
                "accept_dad": "0",
                "disable_ipv6": "0",
            },
        ),
    )


def ipv6_disabled(namespace: str, ifname: str) -> bool:
    """Whether IPv6 is off on `ifname` in `namespace` (True when the kernel has no IPv6)."""

    def read() -> bool:
        path = Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6")
        try:
            return path.read_text().strip() == "1"
        except FileNotFoundError:
            return True

    return run_in_namespace(namespace, read)


def link_mac(namespace: str, ifname: str) -> str:
    def read() -> str:
        with NetNS(namespace, flags=0) as ns:
            index = ns.link_lookup(ifname=ifname)[0]
            return str(ns.get_links(index)[0].get("IFLA_ADDRESS"))

    return _netlink(read)


def remove_topology(names: TopologyNames, extra_namespaces: Sequence[str] = ()) -> list[str]:
    """Delete the veth and both namespaces of `names`, and `extra_namespaces` (with the lab
    links inside them); return what existed and was removed.

    Tolerates any missing piece, so it serves a half-built topology, a normal teardown and
    `lab clean` alike. Refuses names without the lab prefix.
    """
    for name in (*names.all(), *extra_namespaces):
        if not is_lab_name(name):
            raise ValueError(f"refusing to remove {name!r}: not a lab name")
    return _netlink(lambda: _remove_topology(names, tuple(extra_namespaces)))


def _remove_extra_namespaces(extra_namespaces: tuple[str, ...], present: set[str]) -> list[str]:
    """First the lab links inside (a veth end in the server namespace goes with its peer, even
    while a process still holds the namespace open), then the namespaces."""
    removed: list[str] = []
    for namespace in extra_namespaces:
        if namespace not in present:
            continue
        with contextlib.suppress(Exception), NetNS(namespace, flags=0) as ns:
            for link in ns.get_links():
                ifname = link.get("IFLA_IFNAME")
                if ifname and is_lab_name(ifname):
                    ns.link("del", ifname=ifname)
                    removed.append(str(ifname))
        with contextlib.suppress(FileNotFoundError):  # a concurrent `lab clean` got there first
            _netns.remove(namespace)
            removed.append(namespace)
    return removed


def _remove_topology(names: TopologyNames, extra_namespaces: tuple[str, ...] = ()) -> list[str]:
    present = set(list_namespaces())
    removed = _remove_extra_namespaces(extra_namespaces, present)
    # Deleting one veth end deletes both, even if a process still holds a namespace open.
    for namespace, ifname in (
        (names.server_ns, names.server_if),
        (names.client_ns, names.client_if),
    ):
        if namespace not in present:
            continue
        with contextlib.suppress(Exception), NetNS(namespace, flags=0) as ns:
            if ns.link_lookup(ifname=ifname):
                ns.link("del", ifname=ifname)
                removed.append(ifname)
    for namespace in (names.server_ns, names.client_ns):
        if namespace in present:
            with contextlib.suppress(FileNotFoundError):  # a concurrent `lab clean` got there first
                _netns.remove(namespace)
                removed.append(namespace)
    return removed


class Topology:
    """Context manager that builds the two-namespace veth topology and always tears it down.

    >>> with Topology() as topo:                      # doctest: +SKIP
    ...     server = topo.popen_server(["python3", "-m", "http.server"])
    ...     link = PacketLink.open_client_end(topo)  # lab.link.packet
    """

    def __init__(
        self,
        *,
        server_ip: str = DEFAULT_SERVER_IP,
        client_ip: str = DEFAULT_CLIENT_IP,
        prefixlen: int = DEFAULT_PREFIXLEN,
        server_ip6: str = DEFAULT_SERVER_IP6,
        client_ip6: str = DEFAULT_CLIENT_IP6,
        prefixlen6: int = DEFAULT_PREFIXLEN6,
        run_id: str | None = None,
        state_dir: Path = STATE_DIR,
        handle_signals: bool = True,
        offload: bool = False,
    ) -> None:
        self.names = TopologyNames.for_run(run_id or new_run_id())
        self.server_ip = server_ip
        self.client_ip = client_ip
        self.prefixlen = prefixlen
        self.server_ip6 = server_ip6
        self.client_ip6 = client_ip6
        self.prefixlen6 = prefixlen6
        self.ipv6 = False  # set by the build: whether the kernel has IPv6 (doctor says so too)
        self.state_dir = state_dir
        self.handle_signals = handle_signals
        # Offload mode: the client end gets GRO and rx checksumming back after everything was
        # switched off, as a NIC gives them to a kernel (`enable_receive_offloads`).
        self.offload = offload
        self._info: TopologyInfo | None = None
        self._previous_handlers: dict[int, _SignalHandler] = {}
        self._handler_pid = os.getpid()
        self._children: list[subprocess.Popen[Any]] = []
        self._up = False
        self._detached = False
        self._extra_namespaces: list[str] = []
        self._extra_lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Topology:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    @property
    def info(self) -> TopologyInfo:
        if self._info is None:
            raise RuntimeError("topology is not up")
        return self._info

    def up(self) -> TopologyInfo:
        """Build everything; on any failure tear down what was built and raise TopologyError."""
        require_privileges()
        if self._up:
            return self.info
        self._up = True
        self._install_signal_handlers()
        try:
            self._write_state(Owner.current(), None)
            _netlink(self._build)
        except BaseException as exc:
            self.down()
            if isinstance(exc, Exception):
                raise TopologyError(f"building topology {self.names.run_id}: {exc}") from exc
            raise
        self._write_state(Owner.current(), self.info)
        return self.info

    def _write_state(self, owner: Owner | None, info: TopologyInfo | None) -> None:
        record = StateRecord(self.names, owner, info, tuple(self._extra_namespaces))
        write_state(record, self.state_dir)

    def _build(self) -> None:
        n = self.names
        for namespace in (n.server_ns, n.client_ns):
            _netns.create(namespace)
            disable_ipv6(namespace)
        with NetNS(n.server_ns, flags=0) as ns:
            # Created directly inside the namespaces: no lab link ever appears in the host's.
            ns.link(
                "add",
                ifname=n.server_if,
                kind="veth",
                peer={"ifname": n.client_if, "net_ns_fd": n.client_ns},
            )
        disable_ipv6(n.server_ns, n.server_if)
        disable_ipv6(n.client_ns, n.client_if)
        self.ipv6 = enable_server_ipv6(n.server_ns, n.server_if)
        disable_offloads(n.server_if, n.server_ns)
        disable_offloads(n.client_if, n.client_ns)
        if self.offload:
            enable_receive_offloads(n.client_if, n.client_ns)
        with NetNS(n.server_ns, flags=0) as ns:
            index = ns.link_lookup(ifname=n.server_if)[0]
            ns.addr("add", index=index, address=self.server_ip, prefixlen=self.prefixlen)
            if self.ipv6:
                ns.addr(
                    "add",
                    index=index,
                    address=self.server_ip6,
                    prefixlen=self.prefixlen6,
                    flags=IFA_F_NODAD,
                )
            ns.link("set", index=index, state="up")
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        with NetNS(n.client_ns, flags=0) as ns:
            index = ns.link_lookup(ifname=n.client_if)[0]
            ns.link("set", index=index, state="up")
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        self._info = TopologyInfo(
            names=n,
            server_mac=link_mac(n.server_ns, n.server_if),
            client_mac=link_mac(n.client_ns, n.client_if),
            server_ip=self.server_ip,
            client_ip=self.client_ip,
            prefixlen=self.prefixlen,
            server_ip6=self.server_ip6,
            client_ip6=self.client_ip6,
            prefixlen6=self.prefixlen6,
        )

    def down(self) -> list[str]:
        """Stop our child processes and remove everything; idempotent. Returns what was removed."""
        if not self._up or self._detached:
            return []
        self._up = False
        try:
            self._stop_children()
            return remove_topology(self.names, tuple(self._extra_namespaces))
        finally:
            remove_state(self.names.run_id, self.state_dir)
            self._restore_signal_handlers()

    def detach(self) -> TopologyInfo:
        """Leave the topology up after this object is gone (`lab up`); `lab down` removes it."""
        info = self.info
        self._detached = True
        self._write_state(None, info)
        self._restore_signal_handlers()
        return info

    # -- more namespaces ----------------------------------------------------------------------

    @property
    def extra_namespaces(self) -> tuple[str, ...]:
        """The namespaces `add_namespace` made, in order."""
        return tuple(self._extra_namespaces)

    def add_namespace(self, suffix: str) -> str:
        """Make the namespace `lab-<run id>-<suffix>`, owned by this topology; return its name.

        It has IPv6 disabled, loopback up and nothing else: wire it as the exercise needs, and
        give its links the `lab` prefix (e.g. `lab<id>a`) so teardown and `lab clean` know them.
        It is recorded in the state file *before* it is created, so a crash in between still
        leaves a record, and it is removed by `down()` (normal exit, exception or signal), by
        `lab down` and by `lab clean` like the topology's own two namespaces; a concurrent test
        session's leak check spares it while this process runs.
        Raises ValueError for a bad suffix, FileExistsError if the name is taken, RuntimeError
        if the topology is not up (or detached: then no one would remove it).
        """
        name = extra_namespace_name(self.names.run_id, suffix)
        if not self._up or self._detached:
            raise RuntimeError("add_namespace needs a topology that is up and not detached")
        with self._extra_lock:
            if name in self._extra_namespaces or name in list_namespaces():
                raise FileExistsError(f"namespace {name} already exists")
            self._extra_namespaces.append(name)
            self._write_state(Owner.current(), self._info)

        def create() -> None:
            _netns.create(name)
            disable_ipv6(name)
            with NetNS(name, flags=0) as ns:
                ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")

        _netlink(create)
        return name

    # -- signals ------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        self._handler_pid = os.getpid()
        for signum in _HANDLED_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        # The previous handlers stay recorded: a later topology may have chained to ours, and
        # _on_signal must still hand the signal on. Only a handler that is still ours is replaced.
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous_handlers.items():
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._handler_pid:
            # A forked child (pyroute2 forks helpers and stops them with SIGTERM) inherits this
            # handler; it must die as it expects, not tear down the parent's topology.
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        self.down()  # also restores the previous handlers
        if callable(previous):
            previous(signum, frame)  # e.g. Python's default SIGINT handler: KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signum)  # now the default action: the process ends by signum
        # SIG_IGN: the signal was ignored before us; it still is.

    # -- using the namespaces -----------------------------------------------------------------

    def run_in_server(self, fn: Callable[[], T]) -> T:
        return run_in_namespace(self.names.server_ns, fn)

    def run_in_client(self, fn: Callable[[], T]) -> T:
        return run_in_namespace(self.names.client_ns, fn)

    def popen_server(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process in the server namespace; it is stopped at teardown if still running."""
        process = popen_in_namespace(self.names.server_ns, args, **kwargs)
        self._children.append(process)
        return process

    def popen_client(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        process = popen_in_namespace(self.names.client_ns, args, **kwargs)
        self._children.append(process)
        return process

    def _stop_children(self) -> None:
        children, self._children = self._children, []
        for process in children:
            if process.poll() is None:
                process.terminate()
        for process in children:
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
