"""The host layer, sans-IO: ARP, IPv4 (with fragment reassembly), ICMP around a TCP endpoint."""

from lab.host.host import Encoder, Host, HostStats, IcmpError, load_encoder

__all__ = ["Encoder", "Host", "HostStats", "IcmpError", "load_encoder"]
