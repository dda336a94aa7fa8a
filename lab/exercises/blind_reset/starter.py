"""Exercise `blind-reset`: inject RSTs into someone else's connection, from a third namespace.

Complete `attack`. The checker opens a TCP connection between the lab stack (the client,
lab.client_ip:lab.client_port) and the Linux kernel (the server, lab.server_ip:lab.server_port),
leaves it idle, and runs your code in a third namespace, the attacker's, routed to both through
the server namespace. You may send anything; your RSTs must claim to come from one end to reach
the other. For each target, send three RSTs, at least 0.6 s apart, in this order:

    "out-of-window"  a sequence number far outside the target's receive window
    "in-window"      inside the window, but not exactly the next expected byte
    "exact"          exactly the next byte the target expects (RCV.NXT)

`lab` gives you what a real blind attacker would have to guess:

    lab.lab_rcv_nxt, lab.lab_rcv_wnd        the lab stack's RCV.NXT and receive window
    lab.kernel_rcv_nxt, lab.kernel_rcv_wnd  the kernel's

Return what you expect each target to have done with each RST: "ignored", "challenge-ack" (it
answered the real peer with an ACK, RFC 5961 3.2) or "reset" (it dropped the connection), as
{"lab": {"out-of-window": ..., "in-window": ..., "exact": ...}, "kernel": {...}}.
The checker captures both links and compares your table with what happened.
"""

from __future__ import annotations

from types import SimpleNamespace


def attack(lab: SimpleNamespace) -> dict[str, dict[str, str]]:
    # TODO: scapy: send(IP(src=<the other end>, dst=<the target>) / TCP(sport=..., dport=...,
    #       flags="R", seq=...), verbose=False) sends at layer 3 through this namespace's route;
    #       remember that sequence numbers wrap modulo 2**32; time.sleep(0.6) between RSTs
    #       (Linux sends at most one challenge ACK per 0.5 s per connection).
    raise NotImplementedError("attack")
