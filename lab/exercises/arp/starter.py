"""Exercise `arp`: find the server's MAC address by asking the wire, with Scapy.

Complete `resolve`. The checker runs it inside the client namespace of a fresh lab topology and
captures every frame on the link. `lab` tells you where you are:

    lab.iface       the client's interface (send your frames here)
    lab.client_mac  your MAC address
    lab.client_ip   your IPv4 address (the kernel does not own it: you do)
    lab.server_ip   the address whose MAC you want
"""

from __future__ import annotations

from types import SimpleNamespace


def resolve(lab: SimpleNamespace) -> str:
    """Return the server's MAC address as "aa:bb:cc:dd:ee:ff", learnt from an ARP reply."""
    # TODO: build an Ethernet broadcast frame carrying an ARP request (op 1, "who-has")
    #       for lab.server_ip, from lab.client_mac / lab.client_ip;
    #       send it on lab.iface and wait for the reply (scapy: srp, with iface= and timeout=);
    #       return the sender hardware address of the reply.
    raise NotImplementedError("resolve")
