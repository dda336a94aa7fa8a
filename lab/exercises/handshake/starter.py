"""Exercise `handshake`: open a TCP connection to the server's kernel by hand, with Scapy.

Complete `handshake`. The checker runs it inside the client namespace of a fresh lab topology, with
a kernel server listening on lab.server_ip:lab.server_port, and captures every frame. `lab` holds:

    lab.iface, lab.client_mac, lab.client_ip, lab.client_port    your side
    lab.server_mac, lab.server_ip, lab.server_port                the server

Nobody in your namespace owns lab.client_ip, so the kernel there will not answer for you (no RST
behind your back, no ARP replies either: the checker gave the server your MAC).
"""

from __future__ import annotations

from types import SimpleNamespace


def handshake(lab: SimpleNamespace) -> None:
    """SYN, read the SYN-ACK, ACK. Return once the ACK is sent."""
    # TODO: 1. send a SYN from lab.client_port with a sequence number of your choice (your ISN);
    #       2. receive the server's SYN-ACK (scapy: srp1 with iface= and timeout=);
    #       3. send the ACK: seq = your ISN + 1, ack = the server's ISN + 1.
    raise NotImplementedError("handshake")
