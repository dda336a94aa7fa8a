"""Exercise `ftp-login`: log in to an FTP server with hand-made TCP segments, with Scapy.

Complete `login`. The checker runs it in the client namespace of a fresh topology, with an FTP
server on lab.server_ip:lab.server_port, and captures every frame. `lab` holds:

    lab.iface, lab.client_mac, lab.client_ip, lab.client_port    your side
    lab.server_mac, lab.server_ip, lab.server_port                the server
    lab.user, lab.password                                        the account

You play TCP as well as FTP: open the connection (see the handshake exercise), read the 220
greeting, send "USER ...\r\n", read the 331 reply, send "PASS ...\r\n", read the 230 reply. Every
byte the server sends must be acknowledged, with the right numbers, or its kernel resends it.
"""

from __future__ import annotations

from types import SimpleNamespace


def login(lab: SimpleNamespace) -> None:
    """Log in; return once the server's 230 reply has been received and acknowledged."""
    # TODO: start a sniffer first (scapy.sendrecv.AsyncSniffer with prn= and started_callback=):
    #       the 220 greeting arrives right after your ACK, before you could call sniff();
    #       keep two numbers: your next sequence number, and the server's (your ACK number);
    #       for every segment of data from the server: add its length to your ACK number and
    #       send an ACK; send each command with flags "PA" and advance your sequence number.
    raise NotImplementedError("login")
