"""Reference solution of the `ndp` exercise (what `show --solution` prints)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether
from scapy.sendrecv import srp


def solicited_node_group(address: str) -> str:
    """ff02::1:ff00:0/104 plus the address's last 24 bits (RFC 4291 2.7.1)."""
    low = socket.inet_pton(socket.AF_INET6, address)[13:]
    return socket.inet_ntop(socket.AF_INET6, bytes.fromhex("ff02" + "00" * 9 + "01ff") + low)


def group_mac(group: str) -> str:
    """33:33 plus the group's last 32 bits (RFC 2464 7)."""
    return (b"\x33\x33" + socket.inet_pton(socket.AF_INET6, group)[12:]).hex(":")


def resolve(lab: SimpleNamespace) -> str:
    group = solicited_node_group(lab.server_ip6)
    request = (
        Ether(src=lab.client_mac, dst=group_mac(group))
        / IPv6(src=lab.client_ip6, dst=group, hlim=255)
        / ICMPv6ND_NS(tgt=lab.server_ip6)
        / ICMPv6NDOptSrcLLAddr(lladdr=lab.client_mac)
    )
    answered, _ = srp(request, iface=lab.iface, timeout=2, retry=2, verbose=False)
    for _, reply in answered:
        if ICMPv6ND_NA in reply and ICMPv6NDOptDstLLAddr in reply:
            return str(reply[ICMPv6NDOptDstLLAddr].lladdr)
    raise RuntimeError(f"no Neighbor Advertisement from {lab.server_ip6}")
