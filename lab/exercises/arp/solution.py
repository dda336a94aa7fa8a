"""Reference solution of the `arp` exercise (what `show --solution` prints)."""

from __future__ import annotations

from types import SimpleNamespace

from scapy.layers.l2 import ARP, Ether
from scapy.sendrecv import srp


def resolve(lab: SimpleNamespace) -> str:
    request = Ether(dst="ff:ff:ff:ff:ff:ff", src=lab.client_mac) / ARP(
        op=1, hwsrc=lab.client_mac, psrc=lab.client_ip, pdst=lab.server_ip
    )
    answered, _ = srp(request, iface=lab.iface, timeout=2, retry=2, verbose=False)
    for _, reply in answered:
        return str(reply[ARP].hwsrc)
    raise RuntimeError(f"no ARP reply from {lab.server_ip}")
