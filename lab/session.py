"""A running lab stack in one object: topology (or an existing interface), host, link, tap, runtime.

Every live use of the hand-built stack (the FTP client, `lab get`, the live demo, tests, notebooks)
needs the same five pieces put together in the same order and taken apart in the reverse order,
even on failure: namespaces, an AF_PACKET link on the client veth end, a pcapng tap around it, a
`Host` that owns the lab address, and the `Runtime` thread. `LabStack` does that once.

Two ways in:
- `LabStack.on_topology(...)` builds its own `Topology` (server namespace with the kernel at
  198.18.0.1 and 2001:2::1, client namespace whose veth end has no kernel address) and tears it
  down after. The stack is dual-stack there: 198.18.0.2 and 2001:2::2 (and its fe80:: address
  from the MAC); the link's BPF filter is widened to the IPv6 multicast MACs the host listens
  to (`ipv6_multicast_macs`: all-nodes and its solicited-node groups), since Neighbor
  Discovery, unlike ARP, never uses broadcast.
- `LabStack.on_interface(ifname, "198.18.5.2/24", gateway=...)` puts the stack on an interface
  that already exists (one the user made, typically inside a namespace of their own). The stack
  takes the given address with the interface's own MAC; the kernel must not also own that address
  on that interface (it would answer our peers with RST). Nothing about the interface is changed.

Both accept `impairment=Impairment(...)`: the AF_PACKET link is then wrapped in an `ImpairedLink`
(the same seeded schedule in each direction, each with its own RNG) *beneath* the capture tap, so
the tap records what our stack sent (before outbound faults) and what it received (after inbound
ones), and every applied fault, with the schedule and its seed, is written into the capture's frame
comments (`annotate_frames`): the run can be reproduced, and explained, from its capture alone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.host import Host
from lab.host.host import DEFAULT_MTU, load_encoder
from lab.link.impair import ImpairedLink, annotate_frames
from lab.link.impairment import Impairment
from lab.link.packet import PacketLink
from lab.link.sniffer import FrameSniffer
from lab.link.tap import CaptureTap
from lab.runtime import FrameCallback, Runtime, annotate_transitions
from lab.tcp.connection import TcpConfig
from lab.tcp.endpoint import TcpEndpoint
from lab.topology import Topology

CAPTURE_DIR = Path("captures/runs")
KERNEL_CLIENT_IP = "198.18.0.3"  # the kernel's own address on the client veth in kernel mode
KERNEL_CLIENT_IP6 = "2001:2::3"  # its IPv6 twin (2001:2::2 is the lab stack's)


def default_capture_path(kind: str, directory: Path = CAPTURE_DIR) -> Path:
    """captures/runs/<UTC timestamp>-<kind>.pcapng. The folder is made only when the capture is
    written (`PcapngWriter`): a command refused for privileges leaves nothing behind."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = directory / f"{stamp}-{kind}.pcapng"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{stamp}-{kind}-{n}.pcapng"
    return path


def endpoint_secrets(seed: int | None) -> dict[str, Any]:
    """The ISN key and port-choice seed of a live endpoint.

    Live by default they are fresh random values: RFC 6528 wants the ISN function keyed by a
    secret, and RFC 6056 wants ephemeral ports an off-path attacker cannot guess. A `seed` makes a
    run reproducible instead (tests, notebooks): both are then derived from it.
    """
    if seed is None:
        return {"isn_key": os.urandom(16), "rng_seed": int.from_bytes(os.urandom(8), "big")}
    return {"isn_key": f"lab-session-{seed}".encode(), "rng_seed": seed}


OFFLOAD_RECV_BUFFER = 4 << 20
# Both modes ACK a backlog of frames once (TcpConfig.ack_batch), unless a quarter of the window
# is unacknowledged: the sender's window never waits on a held ACK.
OFFLOAD_ACK_BATCH = OFFLOAD_RECV_BUFFER // 4
FAITHFUL_ACK_BATCH = TcpConfig().recv_buffer // 4


def default_tcp_config(offload: bool) -> TcpConfig:
    """The stack's TCP settings when the caller gives none.

    In offload mode the receive buffer is 4 MiB, as a Linux receiver's autotuning grows it
    (net.ipv4.tcp_rmem allows 6 MiB): with ~64 KB GRO-merged frames a 1 MiB window is only 16
    frames, and the sender kept stalling on our window updates. Measured on the live bench
    (`--recv-buffer`, offload, alternated): 1 MiB 0.41 of curl, 4 MiB 0.54-0.58. Faithful mode
    keeps TcpConfig's 1 MiB, the window the lessons show.

    Both modes ACK a backlog once (`ack_batch`: a quarter of the window), as Linux does since
    6.7 (commit 133c4c0d3717, "tcp: defer regular ACK while processing socket backlog", sysctl
    net.ipv4.tcp_backlog_ack_defer, on by default): segments that queued up while the
    receiver was busy (here: the frames the runtime's loop finds waiting in the ring, up to
    256 at a time) are acknowledged by one ACK at the end of that batch, or each time a
    quarter window is unacknowledged within it (256 full frames are 370 KB), instead of one
    per second segment, since ACKs are cumulative. A segment that arrives alone, with nothing
    queued behind it, is ACKed exactly as before (RFC 5681 4.2: at least every second
    full-sized segment, else the delayed-ACK timer). ACKs of out-of-order data, duplicates
    and FINs are never held, and a held ACK goes out before them, so the peer's
    duplicate-ACK counting is unchanged.
    Every ACK is a sendto() and a capture write in Python, and inside its sendto the veth
    runs the server's whole answer to it. Measured on the live bench (50 MiB RETR from
    vsftpd, alternated in one process, idle machine): faithful 58 -> 90 MB/s, 0.93 -> 0.60 s
    of CPU per run; offload (1 MiB, merged frames): a median transfer of 0.092-0.100 s with
    an ACK per frame against 0.075-0.076 s batched (512 KiB 0.078, 2 MiB 0.073), about 200
    ACKs instead of 840. The wire still carries MSS-sized data segments in faithful mode;
    what a student sees fewer of is the redundant ACKs a backlog would have produced
    back to back (the tests and `lab script` use `TcpConfig()`, which ACKs every second
    segment).
    """
    if offload:
        return TcpConfig(recv_buffer=OFFLOAD_RECV_BUFFER, ack_batch=OFFLOAD_ACK_BATCH)
    return TcpConfig(ack_batch=FAITHFUL_ACK_BATCH)


def capture_mode_comment(offload: bool) -> str:
    """The capture's section comment: which mode the stack ran in."""
    if offload:
        return (
            "lab stack, offload mode: GRO and rx checksumming on the client interface; inbound"
            " frames are written as the kernel handed them (GRO-merged ones marked)"
        )
    return "lab stack, faithful mode: offloads off, every frame as it crossed the wire"


def _now_us() -> int:
    return time.monotonic_ns() // 1000


@dataclass(frozen=True, slots=True)
class StackSettings:
    """How to run the stack, wherever it runs: what `on_topology` and `on_interface` share, handed
    on as one value instead of the same keywords forwarded twice."""

    codec: str = "fast"
    capture: Path | None = None
    tcp_config: TcpConfig | None = None
    seed: int | None = None
    observer: FrameCallback | None = None
    impairment: Impairment | None = None
    record: bool = True


@dataclass(frozen=True, slots=True)
class StackAddress:
    """Where the stack sits on its link: its MAC, IPv4 address and prefix, and gateway; and on
    a dual-stack link its IPv6 address, prefix and gateway (`ip6` None: IPv4 only)."""

    mac: str
    ip: str
    prefixlen: int
    gateway: str | None
    ip6: str | None = None
    prefixlen6: int = 64
    gateway6: str | None = None


@dataclass
class LabStack:
    """The pieces of one live stack; use through `on_topology` or `on_interface`."""

    runtime: Runtime
    host: Host
    link: PacketLink
    tap: CaptureTap[PacketLink] | CaptureTap[ImpairedLink] | None  # None: not recording
    capture: Path | None  # None: not recording (`record=False`)
    topology: Topology | None = None
    codec: str = "fast"
    extra: dict[str, Any] = field(default_factory=dict)
    impaired: ImpairedLink | None = None  # the fault-injecting wrapper, when one was asked for

    @property
    def impairment(self) -> Impairment | None:
        """The schedule applied to the link (outbound; inbound is the same), or None."""
        return self.impaired.lanes["out"].impairment if self.impaired is not None else None

    def faults(self) -> dict[str, int]:
        """Faults applied so far, by kind ("drop", "reorder", ...), both directions together."""
        if self.impaired is None:
            return {}
        return dict(sorted(self.impaired.stats.faults.items()))

    @property
    def address(self) -> str:
        """The lab stack's IPv4 address."""
        return self.host.ip

    @property
    def address6(self) -> str | None:
        """The lab stack's IPv6 address (None: IPv4 only)."""
        return self.host.ip6

    def source_for(self, destination: str) -> str:
        """Our address of `destination`'s family (what `lab ping` says it pings from)."""
        if ":" in destination and self.host.ip6 is not None:
            return self.host.ip6
        return self.host.ip

    @property
    def server_ip(self) -> str | None:
        """The kernel's address in the server namespace (None on an existing interface)."""
        return self.topology.info.server_ip if self.topology is not None else None

    @property
    def server_ip6(self) -> str | None:
        """The server kernel's IPv6 address (None on an existing interface)."""
        return self.topology.info.server_ip6 if self.topology is not None else None

    def frames_captured(self) -> int:
        return self.tap.frames_written if self.tap is not None else 0

    def set_codec(self, name: str) -> None:
        """Switch the encoder of outgoing frames ("fast" or "scapy") while running: both give
        the same bytes, so connections carry on; only the cost per frame changes."""
        self.host.encode = load_encoder(name)
        self.codec = name

    @classmethod
    @contextlib.contextmanager
    def on_topology(
        cls,
        *,
        codec: str = "fast",
        capture: Path | None = None,
        tcp_config: TcpConfig | None = None,
        seed: int | None = None,
        observer: FrameCallback | None = None,
        impairment: Impairment | None = None,
        record: bool = True,
        offload: bool = False,
        topology: Topology | None = None,
    ) -> Iterator[LabStack]:
        """Build a topology and run the stack on its client end; everything is removed after.

        With `impairment`, the client's link injects that fault schedule in both directions.
        With `record=False` no capture is written (tests that only need a running stack); the
        `capture` argument is then ignored and `LabStack.capture` is None.
        `offload=True`: the client veth gets GRO and rx checksumming (`Topology(offload=True)`)
        and the link reads the kernel's checksum verdicts (`PacketLink.open(offload=True)`).
        `topology`: run on this topology (already up, left up) instead of building one."""
        if record and capture is None:
            capture = default_capture_path("lab")
        own = Topology(offload=offload) if topology is None else contextlib.nullcontext(topology)
        with own as topo:
            info = topo.info
            link = PacketLink.open_client_end(topo, offload=offload or topo.offload)
            try:
                settings = StackSettings(
                    codec, capture, tcp_config, seed, observer, impairment, record
                )
                place = StackAddress(
                    info.client_mac,
                    info.client_ip,
                    info.prefixlen,
                    None,
                    ip6=info.client_ip6 if topo.ipv6 else None,  # False: no IPv6 in the kernel
                    prefixlen6=info.prefixlen6,
                )
                with cls._running(link, place, settings, topology=topo) as stack:
                    yield stack
            finally:
                link.close()

    @classmethod
    @contextlib.contextmanager
    def on_interface(
        cls,
        ifname: str,
        addr: str,
        *,
        gateway: str | None = None,
        codec: str = "fast",
        capture: Path | None = None,
        tcp_config: TcpConfig | None = None,
        seed: int | None = None,
        observer: FrameCallback | None = None,
        impairment: Impairment | None = None,
        record: bool = True,
        offload: bool = False,
        addr6: str | None = None,
        gateway6: str | None = None,
    ) -> Iterator[LabStack]:
        """Run the stack on the existing interface `ifname` with `addr` ("IP/prefix"), and with
        `addr6` ("IPv6/prefix", None: IPv4 only) beside it.

        With `impairment`, the stack's side of the link injects that fault schedule in both
        directions (the interface itself is untouched: the faults live in this process).
        `record=False`: no capture, as in `on_topology`."""
        iface = ipaddress.IPv4Interface(addr)
        iface6 = ipaddress.IPv6Interface(addr6) if addr6 is not None else None
        if record and capture is None:
            capture = default_capture_path("lab")
        link = PacketLink.open(ifname, offload=offload)
        try:
            settings = StackSettings(codec, capture, tcp_config, seed, observer, impairment, record)
            place = StackAddress(
                link.mac,
                str(iface.ip),
                iface.network.prefixlen,
                gateway,
                ip6=str(iface6.ip) if iface6 is not None else None,
                prefixlen6=iface6.network.prefixlen if iface6 is not None else 64,
                gateway6=gateway6,
            )
            with cls._running(link, place, settings, topology=None) as stack:
                yield stack
        finally:
            link.close()

    @classmethod
    @contextlib.contextmanager
    def _running(
        cls,
        link: PacketLink,
        place: StackAddress,
        settings: StackSettings,
        *,
        topology: Topology | None,
    ) -> Iterator[LabStack]:
        codec, tcp_config, observer, impairment = (
            settings.codec,
            settings.tcp_config,
            settings.observer,
            settings.impairment,
        )
        capture = settings.capture if settings.record else None
        ip = place.ip
        if impairment is not None and link.offload:
            # The kernel's checksum verdict would have to travel with each frame through the
            # fault schedule (a corrupted frame must lose it): not done, so refused.
            raise ValueError("fault injection works in faithful mode only, not with --offload")
        impaired = ImpairedLink(link, impairment) if impairment is not None else None
        tap: CaptureTap[PacketLink] | CaptureTap[ImpairedLink] | None = None
        annotate: FrameCallback | None = None
        if capture is None:
            pass  # not recording: the runtime drives the link (or its impaired wrapper) directly
        elif impaired is not None:
            capture.parent.mkdir(parents=True, exist_ok=True)
            try:
                tap = CaptureTap(impaired, capture, ifname=link.ifname)
            except BaseException:
                impaired.close()  # its worker thread would outlive the failed start
                raise
            # The fault notes of each frame and its TCP transitions, in one comment.
            annotate = annotate_frames(tap, impaired)
        else:
            capture.parent.mkdir(parents=True, exist_ok=True)
            tap = CaptureTap(
                link,
                capture,
                ifname=link.ifname,
                comment=capture_mode_comment(link.offload),
                merged_above=DEFAULT_MTU if link.offload else None,
            )
            annotate = annotate_transitions(tap)
        endpoint = TcpEndpoint(
            ip,
            config=tcp_config if tcp_config is not None else default_tcp_config(link.offload),
            **endpoint_secrets(settings.seed),
        )
        host = Host(
            place.mac,
            ip,
            place.prefixlen,
            place.gateway,
            tcp=endpoint,
            codec=load_encoder(codec),
            now=_now_us(),
            ip6=place.ip6,
            prefix6=place.prefixlen6,
            gateway6=place.gateway6,
        )
        if host.ip6 is not None:
            link.accept_multicast(ipv6_multicast_macs(host))

        def both(direction: str, frame: bytes, transitions: list[str]) -> None:
            if annotate is not None:
                annotate(direction, frame, transitions)
            if observer is not None:
                observer(direction, frame, transitions)

        # One callback alone is handed over as it is: it runs for every frame.
        on_frame = both if annotate is not None and observer is not None else annotate or observer

        wire: CaptureTap[PacketLink] | CaptureTap[ImpairedLink] | ImpairedLink | PacketLink
        wire = tap if tap is not None else impaired if impaired is not None else link
        try:
            with Runtime(host, wire, on_frame=on_frame) as runtime:
                yield cls(runtime, host, link, tap, capture, topology, codec, impaired=impaired)
        finally:
            if impaired is not None:
                impaired.close()  # after the runtime stopped: nothing sends through it any more
            if tap is not None:
                tap.close()


def ipv6_multicast_macs(host: Host) -> list[str]:
    """The Ethernet addresses a dual-stack host must receive besides its own: all-nodes, and
    the solicited-node group of each of its v6 addresses (global and link-local), where
    Neighbor Discovery and DAD reach it (RFC 4861 7.2.1, RFC 2464 7). The host says which
    (`Host.accepted_macs`); its MAC and broadcast the filter takes anyway."""
    return sorted(m for m in host.accepted_macs if m.startswith("33:33:"))


# -- the kernel on the client end (for `--kernel` and comparisons) -----------------------------


@dataclass(frozen=True, slots=True)
class KernelSide:
    """The kernel as client on the topology's client veth: its namespace and addresses."""

    namespace: str
    address: str
    sniffer: FrameSniffer | None  # None: not recording
    address6: str | None = None  # None: the kernel client has no IPv6

    @property
    def frames(self) -> int:
        """Frames recorded so far (0 when not recording)."""
        return self.sniffer.frames if self.sniffer is not None else 0

    @property
    def drops(self) -> int:
        """Frames missing from the recording so far: the kernel could not queue them."""
        return self.sniffer.drops if self.sniffer is not None else 0


@contextlib.contextmanager
def kernel_client(
    topology: Topology,
    *,
    capture: Path | None,
    address: str = KERNEL_CLIENT_IP,
    address6: str | None = KERNEL_CLIENT_IP6,
) -> Iterator[KernelSide]:
    """Give the client namespace's kernel `address` (and `address6`, None: no IPv6) on the veth
    for the duration, and record the veth's frames to `capture` (None: no recording).

    The lab stack keeps its own addresses (198.18.0.2, 2001:2::2) on the same MAC: frames for one
    are dropped by the other, because neither owns the other's address, so both may run side by
    side. For IPv6 the client kernel gets no link-local address (the lab stack's fe80:: address
    comes from the same MAC): see `lab.topology.topology.enable_client_kernel_ipv6`. Afterwards
    IPv6 is off on the veth again, as the topology made it.
    """
    from pyroute2 import NetNS

    from lab.topology.topology import IFA_F_NODAD, disable_ipv6, enable_client_kernel_ipv6

    names, info = topology.names, topology.info
    if not topology.ipv6:
        address6 = None  # a kernel without IPv6: the kernel client stays IPv4 only
    try:
        if address6 is not None:
            enable_client_kernel_ipv6(names.client_ns, names.client_if)
        with NetNS(names.client_ns, flags=0) as ns:
            index = ns.link_lookup(ifname=names.client_if)[0]
            ns.addr("add", index=index, address=address, prefixlen=info.prefixlen)
            if address6 is not None:
                ns.addr(
                    "add",
                    index=index,
                    address=address6,
                    prefixlen=info.prefixlen6,
                    flags=IFA_F_NODAD,
                )
        sniffer = (
            FrameSniffer(
                names.client_if, capture, namespace=names.client_ns, offload=topology.offload
            )
            if capture is not None
            else None
        )
    except BaseException:
        _remove_address(topology, address)
        with contextlib.suppress(Exception):
            disable_ipv6(names.client_ns, names.client_if)
        raise
    try:
        yield KernelSide(names.client_ns, address, sniffer, address6)
    finally:
        if sniffer is not None:
            sniffer.close()
        _remove_address(topology, address)
        if address6 is not None:
            with contextlib.suppress(Exception):
                disable_ipv6(names.client_ns, names.client_if)  # drops the v6 address with it


def _remove_address(topology: Topology, address: str) -> None:
    from pyroute2 import NetNS

    names, info = topology.names, topology.info
    with contextlib.suppress(Exception), NetNS(names.client_ns, flags=0) as ns:
        index = ns.link_lookup(ifname=names.client_if)[0]
        ns.addr("del", index=index, address=address, prefixlen=info.prefixlen)
