"""AF_PACKET link: raw Ethernet frames in and out of one interface.

A link is a driver, not part of the sans-IO core: it blocks (with a timeout), reads the monotonic
clock and owns a socket. The core only sees the bytes.

Three kernel features keep Python from drowning in frames that are not ours:

* a classic BPF program attached with SO_ATTACH_FILTER runs in the kernel for every frame on the
  interface and accepts only frames sent to our MAC, plus broadcast ARP (how peers find us), plus,
  once a dual-stack host says which (`accept_multicast`), the IPv6 multicast MACs it listens to
  (its solicited-node groups and all-nodes: how v6 peers find us). Every other frame is discarded
  before it is queued, so it never wakes Python and never counts in PACKET_STATISTICS;
* PACKET_IGNORE_OUTGOING (Linux >= 4.20) stops the kernel from looping our own transmissions back
  to us (we also skip PACKET_OUTGOING frames ourselves where the option is missing);
* a large receive buffer (SO_RCVBUFFORCE, which as root may exceed net.core.rmem_max) absorbs bursts
  while Python is busy; what still overflows is reported by PACKET_STATISTICS as drops.

The socket is created with protocol 0, which receives nothing, then filtered, then bound with
ETH_P_ALL: binding first would let unfiltered frames slip into the queue before the filter exists.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import select
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lab.link.ring import LINK_MERGED_ROOM, RxRing, open_rx_ring

if TYPE_CHECKING:
    from lab.topology.topology import Topology

# Linux constants the socket module does not export on every Python version.
ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_CSUMNOTREADY = 1 << 3  # a local sender's frame whose checksum the NIC would fill in
TP_STATUS_CSUM_VALID = 1 << 7  # the kernel (or the NIC for it) verified the TCP/UDP checksum
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0

DEFAULT_RCVBUF = 8 * 1024 * 1024
USE_RX_RING = True  # receive through a TPACKET_V2 ring (lab.link.ring) where the kernel has one
MAX_FRAME = 65536  # offloads are off, but a buffer this size never truncates (lo has MTU 64K)
# struct tpacket_auxdata: status, len, snaplen (u32 each), mac, net, vlan_tci, vlan_tpid (u16)
_AUXDATA = struct.Struct("=IIIHHHH")
_AUXDATA_SPACE = socket.CMSG_SPACE(_AUXDATA.size)

# Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = 32-bit word at packet offset k
BPF_LD_H_ABS = 0x28  # BPF_LD | BPF_H | BPF_ABS: A = 16-bit half-word at packet offset k
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K: if A == k skip jt instructions, else skip jf
BPF_RET_K = 0x06  # BPF_RET | BPF_K: accept k bytes of the frame (0 = drop it)

BpfInstruction = tuple[int, int, int, int]  # (code, jt, jf, k)


def mac_to_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def bytes_to_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw[:6])


def our_frames_filter(mac: str, multicast: Sequence[str] = ()) -> list[BpfInstruction]:
    """The BPF program: accept frames to `mac` or to one of the `multicast` MACs, and broadcast
    ARP; drop everything else.

    `multicast` is what a dual-stack host listens to: IPv6 has no broadcast, so Neighbor
    Discovery reaches us at the Ethernet address of our solicited-node groups (33:33:ff and the
    last 24 bits of each of our v6 addresses, RFC 4861 7.2.1, RFC 2464 7) and of all-nodes
    (33:33:00:00:00:01). The lab stack computes them (`lab.session`); the link only matches MACs.

    One block of four instructions per accepted MAC (load bytes 0..3, compare, load bytes 4..5,
    compare), then the broadcast-ARP test, then accept and drop. Jump offsets are relative to
    the next instruction. Loads past the end of a short frame make the kernel drop it, which is
    what we want for runts.
    """
    accept, drop = 0x40000, 0
    # (code, jt target, jf target, k) with targets as absolute indexes; resolved below.
    wanted = list(dict.fromkeys(m.lower() for m in (mac, *multicast)))
    blocks = 4 * len(wanted)
    accept_at = blocks + 6
    drop_at = accept_at + 1
    program: list[tuple[int, int, int, int]] = []
    for i, address in enumerate(wanted):
        raw = mac_to_bytes(address)
        base = 4 * i
        program += [
            # A = destination MAC bytes 0..3 (network byte order, as BPF loads)
            (BPF_LD_W_ABS, 0, 0, 0),
            # this MAC's first four bytes? yes -> compare the rest; no -> the next block
            (BPF_JEQ_K, base + 2, base + 4, int.from_bytes(raw[:4], "big")),
            # A = destination MAC bytes 4..5
            (BPF_LD_H_ABS, 0, 0, 4),
            # its last two bytes? yes -> accept; no -> the next block
            (BPF_JEQ_K, accept_at, base + 4, int.from_bytes(raw[4:], "big")),
        ]
    program += [
        # broadcast (ff:ff:ff:ff:ff:ff) ARP: how IPv4 peers find us
        (BPF_LD_W_ABS, 0, 0, 0),
        (BPF_JEQ_K, blocks + 2, drop_at, 0xFFFFFFFF),
        (BPF_LD_H_ABS, 0, 0, 4),
        (BPF_JEQ_K, blocks + 4, drop_at, 0xFFFF),
        (BPF_LD_H_ABS, 0, 0, 12),
        (BPF_JEQ_K, accept_at, drop_at, ETH_P_ARP),  # other broadcasts (DHCP...) dropped
        (BPF_RET_K, 0, 0, accept),
        (BPF_RET_K, 0, 0, drop),
    ]
    resolved: list[BpfInstruction] = []
    for index, (code, jt, jf, k) in enumerate(program):
        if code == BPF_JEQ_K:
            jt, jf = jt - index - 1, jf - index - 1
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise ValueError(f"too many MACs for one classic BPF program: {len(wanted)}")
        resolved.append((code, jt, jf, k))
    return resolved


def assemble(program: list[BpfInstruction]) -> bytes:
    """Pack instructions as an array of struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}."""
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in program)


def attach_filter(sock: socket.socket, program: list[BpfInstruction]) -> None:
    """SO_ATTACH_FILTER takes a struct sock_fprog {u16 len; struct sock_filter *filter}."""
    code = ctypes.create_string_buffer(assemble(program))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


@dataclass(frozen=True, slots=True)
class LinkStats:
    """Counters of one link. `kernel_*` come from PACKET_STATISTICS and only count frames the
    BPF filter accepted; `kernel_drops` are those lost because the receive buffer was full."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    kernel_packets: int = 0
    kernel_drops: int = 0


class PacketLink:
    """A link on one interface through an AF_PACKET socket (needs CAP_NET_RAW)."""

    def __init__(
        self,
        sock: socket.socket,
        ifname: str,
        mac: str,
        *,
        offload: bool = False,
        ring: RxRing | None = None,
    ) -> None:
        self._sock = sock
        self._ring = ring  # None: one recvfrom per frame
        self.ifname = ifname
        self.mac = mac
        # Offload mode: the socket has PACKET_AUXDATA on, and `checksum_verified` says, for the
        # frame `receive` returned last, whether the kernel vouched for its TCP/UDP checksum.
        self.offload = offload
        self.checksum_verified = False
        self.multicast: tuple[str, ...] = ()  # multicast MACs also accepted (accept_multicast)
        self._buffer = bytearray(MAX_FRAME)
        self._frames_in = self._frames_out = self._bytes_in = self._bytes_out = 0
        self._kernel_packets = self._kernel_drops = 0
        self._poll_in = select.poll()
        self._poll_in.register(sock.fileno(), select.POLLIN)
        self._poll_out = select.poll()
        self._poll_out.register(sock.fileno(), select.POLLOUT)

    @classmethod
    def open(
        cls,
        ifname: str,
        *,
        mac: str | None = None,
        namespace: str | None = None,
        rcvbuf: int = DEFAULT_RCVBUF,
        offload: bool = False,
        ring: bool | None = None,
    ) -> PacketLink:
        """Open a filtered link on `ifname` (in `namespace`, if given) for frames to `mac`.

        `mac` defaults to the interface's own address. The socket is created inside the
        namespace and keeps it; the calling thread never changes namespace. `offload=True`
        (for an interface with GRO and rx checksumming on) asks for PACKET_AUXDATA with every
        frame, so that the kernel's checksum verdict reaches the host (`checksum_verified`).
        """
        if namespace is None:
            sock, mac = _open_socket(ifname, mac, rcvbuf)
        else:
            from lab.topology.netns import run_in_namespace

            sock, mac = run_in_namespace(namespace, lambda: _open_socket(ifname, mac, rcvbuf))
        if offload:
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        rx_ring = None
        if USE_RX_RING if ring is None else ring:
            # The ring is the receive buffer now: as large as `rcvbuf` asks.
            rx_ring = open_rx_ring(sock, rcvbuf, offload=offload, merged_room=LINK_MERGED_ROOM)
        return cls(sock, ifname, mac, offload=offload, ring=rx_ring)

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, frame: bytes) -> None:
        """Transmit one complete Ethernet frame (no FCS); waits if the send buffer is full."""
        while True:
            try:
                sent = self._sock.send(frame)
            except BlockingIOError:
                self._poll_out.poll(1000)
                continue
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._poll_out.poll(10)
                continue
            break
        self._frames_out += 1
        self._bytes_out += sent

    def receive(self, timeout: float) -> bytes | None:
        """The next frame for us, or None if none arrives within `timeout` seconds (0: poll).

        With `timeout` 0 (how the runtime drains the socket once the selector said "readable")
        no poll(2) is made: the non-blocking read answers "nothing" by itself, one system call
        per frame instead of two (the poll cost a tenth of the receive path, measured)."""
        if self._ring is not None:
            return self._receive_from_ring(timeout)
        deadline = time.monotonic() + timeout if timeout > 0 else 0.0
        while True:
            if deadline:
                remaining = max(0.0, deadline - time.monotonic())
                if not self._poll_in.poll(int(remaining * 1000 + 0.999)):
                    return None
            try:
                if self.offload:
                    size, address = self._receive_with_auxdata()
                else:
                    size, address = self._sock.recvfrom_into(self._buffer)
            except BlockingIOError:
                if not deadline:
                    return None
                continue
            if address[2] == PACKET_OUTGOING:  # our own frame, where IGNORE_OUTGOING is missing
                continue
            self._frames_in += 1
            self._bytes_in += size
            with memoryview(self._buffer) as view:
                return bytes(view[:size])  # one copy (slicing the bytearray made two)

    def _receive_from_ring(self, timeout: float) -> bytes | None:
        """`receive` through the TPACKET_V2 ring (`lab.link.ring`): its slot headers carry the
        same checksum verdict as PACKET_AUXDATA (tp_status). The clock is read only when the
        ring is empty and a timeout asks to wait: not for every frame of a burst."""
        ring = self._ring
        assert ring is not None
        deadline = 0.0
        while True:
            taken = ring.take()
            if taken is not None:
                frame, status = taken
                if self.offload:
                    self.checksum_verified = bool(
                        status & (TP_STATUS_CSUM_VALID | TP_STATUS_CSUMNOTREADY)
                    )
                self._frames_in += 1
                self._bytes_in += len(frame)
                return frame
            if timeout <= 0:
                return None
            if not deadline:
                deadline = time.monotonic() + timeout
            remaining = max(0.0, deadline - time.monotonic())
            if not self._poll_in.poll(int(remaining * 1000 + 0.999)):
                return None

    def _receive_with_auxdata(self) -> tuple[int, tuple[Any, ...]]:
        """recvmsg with the tpacket_auxdata control message; sets `checksum_verified`.

        A GRO-merged frame carries the first segment's TCP checksum field (rewritten as a
        pseudo-header sum), which does not cover the merged payload: only this verdict says
        whether the kernel checked the segments it merged. CSUMNOTREADY marks a frame from a
        local sender whose checksum offload would fill the field in later: not a corruption."""
        size, ancillary, _flags, address = self._sock.recvmsg_into([self._buffer], _AUXDATA_SPACE)
        verified = False
        for level, kind, data in ancillary:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                status = _AUXDATA.unpack_from(data)[0]
                verified = bool(status & (TP_STATUS_CSUM_VALID | TP_STATUS_CSUMNOTREADY))
        self.checksum_verified = verified
        return size, address

    def stats(self) -> LinkStats:
        """Counters so far. Reading PACKET_STATISTICS resets the kernel's, so we accumulate."""
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        packets, drops = struct.unpack("=II", raw)
        self._kernel_packets += packets
        self._kernel_drops += drops
        return LinkStats(
            frames_in=self._frames_in,
            frames_out=self._frames_out,
            bytes_in=self._bytes_in,
            bytes_out=self._bytes_out,
            kernel_packets=self._kernel_packets,
            kernel_drops=self._kernel_drops,
        )

    def accept_multicast(self, macs: Sequence[str]) -> None:
        """Also take frames to these multicast MACs (a dual-stack host's IPv6 groups).

        The filter is replaced in place (SO_ATTACH_FILTER swaps programs atomically: no frame
        is seen unfiltered), and the interface is asked to pass the groups up
        (PACKET_ADD_MEMBERSHIP): a veth passes every frame anyway, a real NIC filters multicast
        in hardware and would drop them. Membership ends with the socket."""
        self.multicast = tuple(dict.fromkeys(m.lower() for m in macs))
        attach_filter(self._sock, our_frames_filter(self.mac, self.multicast))
        with contextlib.suppress(OSError):  # not fatal: a veth needs no membership
            index = interface_index(self._sock, self.ifname)
            for mac in self.multicast:
                request = struct.pack("iHH8s", index, PACKET_MR_MULTICAST, 6, mac_to_bytes(mac))
                self._sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, request)

    @classmethod
    def open_client_end(
        cls, topology: Topology, *, rcvbuf: int = DEFAULT_RCVBUF, offload: bool | None = None
    ) -> PacketLink:
        """An AF_PACKET link on a topology's client veth end, filtered for the client MAC;
        reading the kernel's checksum verdicts when `offload` (default: the topology's mode).

        Here rather than on `Topology`: the link layer knows the topology, not the reverse."""
        return cls.open(
            topology.names.client_if,
            mac=topology.info.client_mac,
            namespace=topology.names.client_ns,
            rcvbuf=rcvbuf,
            offload=topology.offload if offload is None else offload,
        )

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
        self._sock.close()

    def __enter__(self) -> PacketLink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a `size`-byte receive buffer; returns what the socket got (as the kernel counts:
    twice the bytes asked, for its bookkeeping).

    SO_RCVBUFFORCE may exceed net.core.rmem_max, but only with CAP_NET_ADMIN over the host's
    user namespace: in the lab's user namespace (rootless mode) it is refused, and SO_RCVBUF
    gives the largest buffer allowed instead (`size` capped at rmem_max), not the default."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted: int = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return granted


def interface_index(sock: socket.socket, ifname: str) -> int:
    """The index of `ifname`, asked on `sock` (so in the socket's namespace, which
    socket.if_nametoindex, working in the calling thread's namespace, would not be)."""
    request = struct.pack("16s16x", ifname.encode())
    reply = fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, request)
    return int(struct.unpack_from("i", reply, 16)[0])


def interface_mac(sock: socket.socket, ifname: str) -> str:
    """The hardware address of `ifname`, asked on `sock` (so in the socket's namespace)."""
    request = struct.pack("16s16x", ifname.encode())
    reply = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, request)
    return bytes_to_mac(reply[18:24])  # ifr_name[16], then sockaddr: sa_family (2), sa_data


def _open_socket(ifname: str, mac: str | None, rcvbuf: int) -> tuple[socket.socket, str]:
    # Protocol 0: the socket receives nothing until bound with a protocol, after the filter.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        if mac is None:
            mac = interface_mac(sock, ifname)
        attach_filter(sock, our_frames_filter(mac))
        # Older kernels lack the option: receive() then skips PACKET_OUTGOING frames itself.
        with contextlib.suppress(OSError):
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        set_receive_buffer(sock, rcvbuf)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
        sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)  # reset: count from here on
    except BaseException:
        sock.close()
        raise
    return sock, mac
