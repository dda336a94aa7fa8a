"""Exercise `conformance`: reference solution."""

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
    """Out-of-order data, the SACK it earns, then the hole filled."""
    return HANDSHAKE + (
        "+0 < P. 1001:2001(1000) ack 1 win 1000\n"
        "+0 > . 1:1(0) ack 1 <nop,nop,sack 1001:2001>\n"
        "+0 ioctl(4, SIOCINQ, [0]) = 0\n"
        "+.1 < P. 1:1001(1000) ack 1 win 1000\n"
        "+0 > . 1:1(0) ack 2001\n"
        "+0 ioctl(4, SIOCINQ, [2000]) = 0\n"
    )
