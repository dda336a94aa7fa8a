"""The host layer, sans-IO: ARP, IPv4, ICMP, and Neighbor Discovery, IPv6, ICMPv6 (with fragment
reassembly for both) around a TCP endpoint."""

from lab.host.host import (
    AddressState,
    DuplicateAddress,
    DuplicateAddressError,
    EchoReply,
    Encoder,
    Host,
    HostStats,
    IcmpError,
    OutgoingFrame,
    load_encoder,
)

__all__ = [
    "AddressState",
    "DuplicateAddress",
    "DuplicateAddressError",
    "EchoReply",
    "Encoder",
    "Host",
    "HostStats",
    "IcmpError",
    "OutgoingFrame",
    "load_encoder",
]
