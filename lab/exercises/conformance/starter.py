"""Exercise `conformance`: write a packetdrill-style script that pins down SACK generation.

Complete `script`: return the text of a script (the language of `lab script`, see
tests/conformance/README.md). The checker runs it against the lab's TCP, which must pass it, and
against a lab whose receiver does not send SACK blocks, which your script must catch.

Your script plays the peer of a listening socket: the handshake is written for you below. Then
send data out of order, say what the socket must answer (an immediate duplicate ACK carrying a
SACK block), fill the hole, and check what the application can read.
"""

from __future__ import annotations

HANDSHAKE = """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <...>
+.1 < . 1:1(0) ack 1 win 1000
+0 accept(3, ..., ...) = 4
"""


def script() -> str:
    """The whole script, handshake included."""
    # TODO: 1. an inbound data segment that leaves a hole: `+0 < P. 1001:2001(1000) ack 1 win 1000`
    #       2. the duplicate ACK it must cause at once, with its SACK block (`<nop,nop,sack L:R>`)
    #       3. `ioctl(4, SIOCINQ, [n]) = 0`: how much can the application read now?
    #       4. fill the hole, expect the cumulative ACK, check SIOCINQ again.
    raise NotImplementedError("script")
