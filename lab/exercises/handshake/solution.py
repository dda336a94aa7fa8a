"""Reference solution of the `handshake` exercise (what `show --solution` prints)."""

from __future__ import annotations

import random
from types import SimpleNamespace

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.sendrecv import sendp, srp1


def handshake(lab: SimpleNamespace) -> None:
    eth = Ether(src=lab.client_mac, dst=lab.server_mac)
    ip = IP(src=lab.client_ip, dst=lab.server_ip)
    isn = random.getrandbits(32)
    syn = TCP(sport=lab.client_port, dport=lab.server_port, flags="S", seq=isn, window=64240)
    synack = srp1(eth / ip / syn, iface=lab.iface, timeout=3, retry=2, verbose=False)
    if synack is None or TCP not in synack:
        raise RuntimeError("no SYN-ACK from the server")
    reply = synack[TCP]
    if reply.flags & 0x12 != 0x12 or reply.ack != (isn + 1) % 2**32:
        raise RuntimeError(f"unexpected answer to the SYN: {reply.summary()}")
    ack = TCP(
        sport=lab.client_port,
        dport=lab.server_port,
        flags="A",
        seq=(isn + 1) % 2**32,
        ack=(reply.seq + 1) % 2**32,
        window=64240,
    )
    sendp(eth / ip / ack, iface=lab.iface, verbose=False)
