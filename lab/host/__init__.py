"""The host layer, sans-IO: ARP, IPv4 (with fragment reassembly), ICMP around a TCP endpoint."""

from lab.host.host import (
    EchoReply,
    Encoder,
    Host,
    HostStats,
    IcmpError,
    OutgoingFrame,
    load_encoder,
)

__all__ = [
    "EchoReply",
    "Encoder",
    "Host",
    "HostStats",
    "IcmpError",
    "OutgoingFrame",
    "load_encoder",
]
