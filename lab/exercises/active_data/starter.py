"""Exercise `active-data`: download a small file in active mode, every segment by hand.

Complete `download`. The checker runs it in the client namespace of a fresh topology with an FTP
server on lab.server_ip:lab.server_port, and captures every frame. `lab` holds what ftp-login had
(iface, client_mac, client_ip, client_port, server_mac, server_ip, server_port, user, password)
and lab.data_port, the port on which you will accept the server's data connection, and
lab.file_name, the file to fetch.

Active mode (RFC 959): you announce an address with PORT, then send RETR; the *server* opens the
data connection to you (its SYN comes to lab.data_port), sends the file and closes it (FIN).
"""

from __future__ import annotations

from types import SimpleNamespace


def download(lab: SimpleNamespace) -> bytes:
    """Log in, PORT, RETR; accept the data connection, receive the file, close; return the file."""
    # TODO: start from your ftp-login solution;
    #       PORT h1,h2,h3,h4,p1,p2: your IP, and lab.data_port = p1 * 256 + p2;
    #       from PORT on (this server connects before it answers 200; others on RETR),
    #       wait for the server's SYN on lab.data_port, answer SYN-ACK (your ISN,
    #       ack = its ISN + 1), and acknowledge every data segment; when its FIN comes, ACK it
    #       (the FIN takes one sequence number) and send your own FIN;
    #       read the 150 and 226 replies on the control connection (acknowledging them too).
    raise NotImplementedError("download")
