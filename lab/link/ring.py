"""A TPACKET_V2 receive ring: frames read from memory shared with the kernel, not one recvfrom each.

With PACKET_RX_RING the kernel copies every frame the socket's BPF filter accepts into a slot of a
ring mapped into our address space, with a small header (`struct tpacket2_hdr`) whose `tp_status`
says who owns the slot: TP_STATUS_KERNEL (0, free) or TP_STATUS_USER (ours to read). Reading a
frame is then a status test, one header unpack and one copy out of the mapping, and giving the
slot back is one store; the system call (and the Python socket machinery around it) happens only
when the ring is empty and we must wait (poll). Measured on the live bench it saved about a tenth
of the faithful receive path.

Why V2 and not V3: V3 hands whole blocks to user space when they are full or when a retire timer
expires (milliseconds), which would delay a lone handshake segment by that timer; V2 hands over
each frame as soon as it is written. The header's `tp_status` also carries TP_STATUS_CSUM_VALID,
the kernel's checksum verdict that offload mode needs (the same bit PACKET_AUXDATA gives).

A frame longer than a slot is truncated by the kernel (`tp_snaplen < tp_len`): the slot size must
hold the largest frame the link can see, 1514 bytes with offloads off, 64 KB with GRO on.
"""

from __future__ import annotations

import mmap
import socket
import struct

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V2 = 1
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1

# struct tpacket2_hdr: status, len, snaplen (u32), mac, net (u16), sec, nsec (u32), vlan_tci,
# vlan_tpid (u16), padding[4]
_HEADER = struct.Struct("=IIIHHIIHH4x")
_HEADER_START = struct.Struct("=IIIH")  # status, len, snaplen, mac: what `take` needs
_STATUS = struct.Struct("=I")
_REQUEST = struct.Struct("=IIII")  # struct tpacket_req: block size, blocks, frame size, frames
# The struct sockaddr_ll after the header, at TPACKET_ALIGN(sizeof(struct tpacket2_hdr)); its
# sll_pkttype (PACKET_HOST, PACKET_OUTGOING...) is byte 10.
_PKTTYPE_AT = 32 + 10
PAGE = mmap.PAGESIZE


def slot_size_for(largest_frame: int) -> int:
    """A slot holding the header, its alignment padding and `largest_frame` bytes (16-aligned)."""
    needed = 32 + 16 + largest_frame  # TPACKET2_HDRLEN plus sockaddr_ll room, then the frame
    return (needed + 15) & ~15


def open_rx_ring(
    sock: socket.socket, buffer_bytes: int, *, offload: bool, merged_room: int = 4
) -> RxRing | None:
    """The receive ring of a lab link or capture: 2 KB slots (one Ethernet frame each, two to a
    page) in `buffer_bytes`; in offload mode slots for GRO-merged frames of up to 64 KB, in
    `merged_room` times that room so that frames GRO did not merge still have space. None
    where the kernel refuses a ring (an old kernel, a sandbox): the caller reads with recvfrom
    instead.

    A capture sniffer of the kernel's own transfers keeps four times (32 MB, 481 slots): it
    must absorb what it falls behind a kernel receiving at 1 GB/s. The lab's link asks for
    twice (`LINK_MERGED_ROOM`)."""
    try:
        if offload:
            total = buffer_bytes * merged_room
            return RxRing(sock, slot_size=slot_size_for(65536), total_bytes=total)
        return RxRing(sock, slot_size=2048, total_bytes=buffer_bytes)
    except OSError:
        return None


LINK_MERGED_ROOM = 2
"""The lab link's offload ring: twice its 8 MiB, 240 slots, of which a 4 MiB receive window of
merged frames fills 64 (its TCP paces the sender, unlike a sniffer's kernel).

Why not more: every slot the kernel fills is a fresh part of the mapping for the cache and the
TLB, and a 64 KB slot spans 17 pages. Offload, 50 MiB RETR, alternated in one process (12 runs
each, load ~5, no drop in any run): a 32 MB ring (four times) gave 454 and 494 MB/s at 0.100
and 0.104 s of CPU per run; 16 MB 486 and 525 MB/s at 0.096; 8 MB 492 MB/s at 0.093 (left for
frames GRO did not merge)."""


class RxRing:
    """The receive ring of one AF_PACKET socket (set up before or after bind; Linux allows both)."""

    def __init__(self, sock: socket.socket, *, slot_size: int, total_bytes: int) -> None:
        # Blocks of whole pages; every slot lies within one block.
        block = max(PAGE, ((slot_size + PAGE - 1) // PAGE) * PAGE)
        per_block = block // slot_size
        blocks = max(1, total_bytes // block)
        self.slot_size = slot_size
        self.slots = per_block * blocks
        self._offsets = [b * block + i * slot_size for b in range(blocks) for i in range(per_block)]
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(
            SOL_PACKET, PACKET_RX_RING, _REQUEST.pack(block, blocks, slot_size, self.slots)
        )
        self._map = mmap.mmap(
            sock.fileno(), block * blocks, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        self._next = 0
        self.truncated = 0  # frames longer than a slot (cut by the kernel, dropped here)

    def take(self) -> tuple[bytes, int] | None:
        """The next frame and its tp_status, or None when the ring is empty (then poll)."""
        ring = self._map
        while True:
            offset = self._offsets[self._next]
            status, length, snaplen, mac = _HEADER_START.unpack_from(ring, offset)
            if not status & TP_STATUS_USER:
                return None
            start = offset + mac
            frame = ring[start : start + snaplen]
            _STATUS.pack_into(ring, offset, TP_STATUS_KERNEL)  # the slot goes back to the kernel
            self._next = (self._next + 1) % self.slots
            if snaplen < length:
                self.truncated += 1
                continue
            return frame, status

    def take_stamped(self) -> tuple[bytes, int, int] | None:
        """For a capture: the next frame, the kernel's receive time of it (ns since the epoch)
        and its sll_pkttype, or None when the ring is empty. A frame longer than a slot comes
        as the kernel cut it (and counts in `truncated`): a capture keeps what it saw."""
        ring = self._map
        offset = self._offsets[self._next]
        status, length, snaplen, mac, _net, sec, nsec, _tci, _tpid = _HEADER.unpack_from(
            ring, offset
        )
        if not status & TP_STATUS_USER:
            return None
        frame = ring[offset + mac : offset + mac + snaplen]
        pkttype = ring[offset + _PKTTYPE_AT]
        _STATUS.pack_into(ring, offset, TP_STATUS_KERNEL)
        self._next = (self._next + 1) % self.slots
        if snaplen < length:
            self.truncated += 1
        return frame, sec * 1_000_000_000 + nsec, pkttype

    def close(self) -> None:
        self._map.close()
