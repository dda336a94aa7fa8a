"""Exercise `ndp`: find the server's MAC address for its IPv6 address, with Scapy.

IPv6 has no ARP. Complete `resolve`: send a Neighbor Solicitation (RFC 4861 4.3) and read the
Neighbor Advertisement that answers it. The checker runs it inside the client namespace of a
fresh lab topology and captures every frame on the link. `lab` tells you where you are:

    lab.iface       the client's interface (send your frames here)
    lab.client_mac  your MAC address
    lab.client_ip6  your IPv6 address (the kernel does not own it: you do)
    lab.server_ip6  the address whose MAC you want
"""

from __future__ import annotations

from types import SimpleNamespace


def resolve(lab: SimpleNamespace) -> str:
    """Return the server's MAC address as "aa:bb:cc:dd:ee:ff", learnt from an advertisement."""
    # TODO: the solicitation goes to the target's solicited-node multicast group,
    #       ff02::1:ff followed by the last 24 bits of lab.server_ip6 (RFC 4291 2.7.1), whose
    #       Ethernet address is 33:33 followed by the group's last 32 bits (RFC 2464 7);
    #       build Ether / IPv6 / ICMPv6ND_NS(tgt=...) / ICMPv6NDOptSrcLLAddr(lladdr=...)
    #       from lab.client_mac and lab.client_ip6 (mind the hop limit: RFC 4861 7.1);
    #       send it on lab.iface and wait for the answer (scapy: srp, with iface= and timeout=);
    #       return the MAC in the advertisement's target link-layer address option.
    raise NotImplementedError("resolve")
