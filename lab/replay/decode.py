"""From a captured packet to a TCP frame: link layers, checksums, and snaplen-cut packets.

The IP and TCP parsing is `lab.wire.fast` (the same bulk codec the live stack uses); this module
only strips the capture's link layer and decides what a failed checksum means:

* A capture taken on the sending host holds frames before the NIC computed their checksums
  (checksum offload). Their TCP checksum field then holds only the pseudo-header sum, and the
  capture often says the frame was outgoing (pcapng `epb_flags`, Linux cooked packet type 4 or a
  comment). Those frames are ours, not corrupted: they are decoded without a flag.
* Any other checksum failure is re-decoded without verification and flagged `bad_checksum`, so
  replay can report it and decide what its bytes are worth: `lab.replay.flows` never lets them
  override a good copy, and lists any byte only they supplied as untrusted (Wireshark, by
  default, does not check and reassembles them like any other).
* A snaplen-cut packet (or one shorter than its own IP length) cannot be checked nor fully
  decoded; it is padded to its IP length, decoded without verification, and only the payload
  bytes actually captured are kept (`missing_bytes` says how many were not), so its flow can
  report the loss precisely. Wireshark reads such packets the same way.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from lab.capture.reader import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_DLT12,
    CapturedPacket,
)
from lab.wire.checksum import ones_complement_sum
from lab.wire.fast import decode_ethernet, decode_ip
from lab.wire.frame import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_QINQ,
    ETHERTYPE_VLAN,
    Dropped,
    DropReason,
    Frame,
    TcpFrame,
)

SLL_HEADER_LEN = 16
SLL2_HEADER_LEN = 20
SLL_OUTGOING = 4  # packet type "sent by us" (packet(7))
_VLAN = frozenset((ETHERTYPE_VLAN, ETHERTYPE_QINQ, 0x9100))
_IP_ETHERTYPES = frozenset((ETHERTYPE_IPV4, ETHERTYPE_IPV6))
_CHECKSUM_REASONS = frozenset((DropReason.BAD_TCP_CHECKSUM, DropReason.BAD_IP_CHECKSUM))
# AF_INET (2) everywhere; AF_INET6 is 10 on Linux, 24 on NetBSD/OpenBSD, 28 on FreeBSD, 30 on macOS
_NULL_IP_FAMILIES = frozenset((2, 10, 24, 28, 30))


@dataclass(frozen=True, slots=True)
class DecodedPacket:
    """What replay knows about one captured packet.

    `frame` is the decoded frame (TCP or not) or None; `dropped` the decoder's verdict when it
    would not decode. `bad_checksum` is set only for checksum failures not explained by offload.
    `outgoing` says the capture marked the frame as sent by the capturing host.
    """

    frame: Frame | None
    dropped: Dropped | None = None
    bad_checksum: bool = False
    offloaded: bool = False
    outgoing: bool = False
    missing_bytes: int = 0  # payload bytes of a snaplen-cut packet that were not captured
    link: str = ""

    @property
    def tcp(self) -> TcpFrame | None:
        return self.frame if isinstance(self.frame, TcpFrame) else None


def _mac(raw: bytes) -> str:
    return raw.hex(":")


def _strip_link(pkt: CapturedPacket) -> tuple[int, str, str, bool, str] | Dropped | None:
    """(offset of the IP header, eth src, eth dst, outgoing, link name); None when not IP."""
    data = pkt.data
    lt = pkt.linktype
    outgoing = pkt.direction == "out" or (
        pkt.comment is not None and "out" in pkt.comment.lower().split()
    )
    if lt == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return Dropped(DropReason.TRUNCATED_ETHERNET, f"{len(data)} bytes")
        (etype,) = struct.unpack_from("!H", data, 12)
        off = 14
        while etype in _VLAN:
            if off + 4 > len(data):
                return Dropped(DropReason.TRUNCATED_ETHERNET, "VLAN tag cut")
            (etype,) = struct.unpack_from("!H", data, off + 2)
            off += 4
        if etype not in _IP_ETHERTYPES:
            return None
        return off, _mac(data[6:12]), _mac(data[0:6]), outgoing, "ethernet"
    if lt in (LINKTYPE_RAW, LINKTYPE_RAW_DLT12, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return 0, "", "", outgoing, "raw"
    if lt == LINKTYPE_LINUX_SLL:
        if len(data) < SLL_HEADER_LEN:
            return Dropped(DropReason.TRUNCATED_ETHERNET, f"cooked header cut at {len(data)}")
        ptype, _hatype, alen = struct.unpack_from("!HHH", data, 0)
        (proto,) = struct.unpack_from("!H", data, 14)
        if proto not in _IP_ETHERTYPES:
            return None
        src = _mac(data[6 : 6 + min(alen, 8)])
        return SLL_HEADER_LEN, src, "", outgoing or ptype == SLL_OUTGOING, "sll"
    if lt == LINKTYPE_LINUX_SLL2:
        if len(data) < SLL2_HEADER_LEN:
            return Dropped(DropReason.TRUNCATED_ETHERNET, f"cooked header cut at {len(data)}")
        (proto,) = struct.unpack_from("!H", data, 0)
        ptype, alen = data[10], data[11]
        if proto not in _IP_ETHERTYPES:
            return None
        src = _mac(data[12 : 12 + min(alen, 8)])
        return SLL2_HEADER_LEN, src, "", outgoing or ptype == SLL_OUTGOING, "sll2"
    if lt == LINKTYPE_NULL:
        if len(data) < 4:
            return Dropped(DropReason.TRUNCATED_ETHERNET, "loopback header cut")
        # The family is written in the capturing host's byte order: the reading that gives a
        # small number is the right one (the other is that number times 2**24).
        family = min(int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big"))
        if family not in _NULL_IP_FAMILIES:
            return None
        return 4, "", "", outgoing, "null"
    return None


def _ip_end(buf: bytes, off: int) -> int | None:
    """Where the IP packet at `off` ends according to its own length field."""
    if len(buf) < off + 1:
        return None
    version = buf[off] >> 4
    if version == 4 and len(buf) >= off + 4:
        return off + int.from_bytes(buf[off + 2 : off + 4], "big")
    if version == 6 and len(buf) >= off + 6:
        return off + 40 + int.from_bytes(buf[off + 4 : off + 6], "big")
    return None


def checksum_is_pseudo_header_only(buf: bytes, off: int) -> bool:
    """True when the TCP checksum field holds just the pseudo-header sum (checksum offload)."""
    try:
        version = buf[off] >> 4
        if version == 4:
            hlen = (buf[off] & 0x0F) * 4
            total = int.from_bytes(buf[off + 2 : off + 4], "big")
            if buf[off + 9] != 6:
                return False
            raw = buf[off + 12 : off + 20] + bytes((0, 6)) + (total - hlen).to_bytes(2, "big")
            tcp = off + hlen
        elif version == 6:
            plen = int.from_bytes(buf[off + 4 : off + 6], "big")
            if buf[off + 6] != 6:
                return False
            raw = buf[off + 8 : off + 40] + plen.to_bytes(4, "big") + bytes((0, 0, 0, 6))
            tcp = off + 40
        else:
            return False
        field = int.from_bytes(buf[tcp + 16 : tcp + 18], "big")
    except (IndexError, ValueError):
        return False
    partial = ones_complement_sum(raw) & 0xFFFF
    # 0x0000 and 0xFFFF are the same number in one's complement
    return field == partial or {field, partial} == {0, 0xFFFF}


def _ipv4_checksum_offloaded(buf: bytes, off: int) -> bool:
    """tcpdump on the sending host: IPv4 header checksum left 0 for the NIC to fill in, and a TCP
    checksum that is either right or (offloaded too) the bare pseudo-header sum."""
    if len(buf) < off + 20 or buf[off] >> 4 != 4 or buf[off + 10 : off + 12] != b"\0\0":
        return False
    if checksum_is_pseudo_header_only(buf, off):
        return True
    hlen = (buf[off] & 0x0F) * 4
    total = int.from_bytes(buf[off + 2 : off + 4], "big")
    if buf[off + 9] != 6 or hlen < 20 or total < hlen + 20 or off + total > len(buf):
        return False
    pseudo = buf[off + 12 : off + 20] + bytes((0, 6)) + (total - hlen).to_bytes(2, "big")
    return ones_complement_sum(pseudo + buf[off + hlen : off + total]) == 0xFFFF


# What a decoder says of a packet shorter than its own IP length field (IPv4 total length, IPv6
# payload length).
_CUT_REASONS = frozenset((DropReason.TRUNCATED_IP, DropReason.BAD_IPV6_PAYLOAD_LENGTH))


def decode_packet(pkt: CapturedPacket) -> DecodedPacket:
    """Decode one captured packet; never raises."""
    stripped = _strip_link(pkt)
    if stripped is None:
        return DecodedPacket(None)
    if isinstance(stripped, Dropped):
        return DecodedPacket(None, stripped)
    off, eth_src, eth_dst, outgoing, link = stripped
    data = pkt.data
    missing = 0
    result: Frame | Dropped | None = None
    if pkt.orig_len <= len(data):
        result = _decode(data, off, link, eth_src, eth_dst, verify=True)
    if result is None or (isinstance(result, Dropped) and result.reason in _CUT_REASONS):
        # Cut by the snap length, or shorter than its own IP length (a damaged capture, as
        # tshark reads it): pad to the IP length, decode unverified, keep the bytes present.
        end = _ip_end(data, off)
        if end is not None and end > len(data):
            missing = end - len(data)
            data = data + bytes(missing)
        result = _decode(data, off, link, eth_src, eth_dst, verify=missing == 0)
    if isinstance(result, Dropped) and result.reason in _CHECKSUM_REASONS:
        again = _decode(data, off, link, eth_src, eth_dst, verify=False)
        if isinstance(again, Dropped):
            return DecodedPacket(None, again, outgoing=outgoing, link=link)
        offloaded = outgoing or (
            result.reason == DropReason.BAD_TCP_CHECKSUM
            and checksum_is_pseudo_header_only(data, off)
        )
        if not offloaded and result.reason == DropReason.BAD_IP_CHECKSUM:
            offloaded = _ipv4_checksum_offloaded(data, off)
        return DecodedPacket(again, None, not offloaded, offloaded, outgoing=outgoing, link=link)
    if isinstance(result, Dropped):
        return DecodedPacket(None, result, outgoing=outgoing, link=link)
    if missing and isinstance(result, TcpFrame):
        seg = result.segment
        if missing > len(seg.payload):  # the cut is inside the headers: nothing to trust
            cut = Dropped(DropReason.TRUNCATED_TCP, f"packet cut {missing} bytes into headers")
            return DecodedPacket(None, cut, outgoing=outgoing, missing_bytes=missing, link=link)
        keep = len(seg.payload) - missing
        result = replace(result, segment=replace(seg, payload=seg.payload[:keep]))
    return DecodedPacket(result, None, outgoing=outgoing, missing_bytes=missing, link=link)


def _decode(
    data: bytes, off: int, link: str, eth_src: str, eth_dst: str, *, verify: bool
) -> Frame | Dropped:
    if link == "ethernet":
        return decode_ethernet(data, verify_checksums=verify)
    return decode_ip(data[off:], verify_checksums=verify, eth_src=eth_src, eth_dst=eth_dst)
