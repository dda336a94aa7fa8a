"""One line per frame, for people: what a notebook, an exercise or a trace prints for a frame value.

The words follow tcpdump's where it has them ("who has X tell Y", "X is at M"), because those
are what students meet in every capture tool; IPv6 Neighbor Discovery reads like ARP on purpose
("NS who has 2001:2::2 tell 2001:2::1", "NA 2001:2::2 is at 02:..."), so that the one can be
learnt from the other. Formatted here, at the top, from frame values (lab.wire stays free of
text for people); nothing parses these lines back.
"""

from __future__ import annotations

from lab.viz.records import endpoint
from lab.wire.frame import (
    ArpFrame,
    Dropped,
    Frame,
    IcmpFrame,
    Icmpv6Frame,
    Ipv6Header,
    NeighborAdvertisement,
    NeighborSolicitation,
    OtherFrame,
    TcpFrame,
)

__all__ = ["describe_frame"]

_ICMP_TYPES = {
    0: "echo reply",
    3: "destination unreachable",
    8: "echo request",
    11: "time exceeded",
}
_ICMPV6_TYPES = {
    1: "destination unreachable",
    2: "packet too big",
    3: "time exceeded",
    4: "parameter problem",
    128: "echo request",
    129: "echo reply",
    133: "router solicitation",
    134: "router advertisement",
    137: "redirect",
}
# RFC 4443 3.1 and RFC 792's codes, in the words of `ping`.
_ICMPV6_UNREACHABLE = {
    0: "no route",
    1: "administratively prohibited",
    2: "beyond scope of source address",
    3: "address unreachable",
    4: "port unreachable",
    5: "source address failed policy",
    6: "reject route",
}
_ICMP_UNREACHABLE = {
    0: "net unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    4: "fragmentation needed",
}


def describe_frame(frame: Frame | Dropped) -> str:
    """A one-line summary of a decoded frame (or of a decoder's drop)."""
    match frame:
        case TcpFrame(ip=ip, segment=seg):
            family = "IP6" if isinstance(ip, Ipv6Header) else "IP"
            return (
                f"{family} {endpoint(ip.src, seg.src_port)} > {endpoint(ip.dst, seg.dst_port)}"
                f" [{seg.flag_string()}] seq={seg.seq} ack={seg.ack} win={seg.window}"
                f" len={len(seg.payload)}"
            )
        case ArpFrame():
            if frame.op == 1:
                return f"ARP who has {frame.target_ip} tell {frame.sender_ip}"
            if frame.op == 2:
                return f"ARP {frame.sender_ip} is at {frame.sender_mac}"
            return f"ARP op {frame.op} {frame.sender_ip} > {frame.target_ip}"
        case IcmpFrame():
            return _icmp("ICMP", frame, _ICMP_TYPES, _ICMP_UNREACHABLE, 3, (0, 8))
        case Icmpv6Frame():
            return _icmp("ICMP6", frame, _ICMPV6_TYPES, _ICMPV6_UNREACHABLE, 1, (128, 129))
        case NeighborSolicitation():
            if frame.ip.src == "::":
                return f"NS who has {frame.target} (duplicate address detection)"
            via = f" ({frame.source_lladdr})" if frame.source_lladdr else ""
            return f"NS who has {frame.target} tell {frame.ip.src}{via}"
        case NeighborAdvertisement():
            flags = [
                name
                for name, on in (
                    ("router", frame.router),
                    ("solicited", frame.solicited),
                    ("override", frame.override),
                )
                if on
            ]
            where = f" is at {frame.target_lladdr}" if frame.target_lladdr else ""
            said = f" [{', '.join(flags)}]" if flags else ""
            return f"NA {frame.target}{where}{said}"
        case OtherFrame():
            if frame.protocol is None:
                return f"ethertype 0x{frame.ethertype:04x}"
            family = "IP6" if frame.ethertype == 0x86DD else "IP"
            return f"{family} protocol {frame.protocol}"
        case Dropped():
            detail = f" ({frame.detail})" if frame.detail else ""
            return f"dropped: {frame.reason.value}{detail}"


def _icmp(
    family: str,
    frame: IcmpFrame | Icmpv6Frame,
    types: dict[int, str],
    unreachable: dict[int, str],
    unreachable_type: int,
    echo_types: tuple[int, int],
) -> str:
    name = types.get(frame.icmp_type, f"type {frame.icmp_type}")
    text = f"{family} {frame.ip.src} > {frame.ip.dst}: {name}"
    if frame.icmp_type in echo_types:
        return f"{text} id={frame.rest >> 16} seq={frame.rest & 0xFFFF} len={len(frame.payload)}"
    if frame.icmp_type == unreachable_type:
        text += f", {unreachable.get(frame.code, f'code {frame.code}')}"
        if family == "ICMP" and frame.code == 4:
            text += f" (next-hop MTU {frame.rest & 0xFFFF})"
        return text
    if family == "ICMP6" and frame.icmp_type == 2:
        return f"{text}, mtu {frame.rest}"
    return f"{text} code {frame.code}" if frame.code else text
