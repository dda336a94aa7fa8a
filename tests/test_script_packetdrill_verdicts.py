"""`lab script --against kernel` gives packetdrill's verdict (issue 11's acceptance).

Each case is a short script of our own, after the same passive open; its verdict is what real
packetdrill (google/packetdrill 2c4001c, built here, run in a `lab-` namespace on 198.18.x
with `--tolerance_usecs=25000`) gave on Linux 6.18: "pass", "fail", or "error" for a script
packetdrill refuses to run (here: bad input, exit 2). Both run with packetdrill's default
verdicts (no --strict). Root only: the kernel runner needs a TUN device in a namespace.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli.main import main

HEADER = """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 10>
+.1 < . 1:1(0) ack 1 win 1000
+0 accept(3, ..., ...) = 4
"""

# name -> (packetdrill's verdict, the lines after HEADER)
CASES: dict[str, tuple[str, str]] = {
    "ok-data": ("pass", "+0 write(4, ..., 1000) = 1000\n+0 > P. 1:1001(1000) ack 1\n"),
    "bad-ack": ("fail", "+0 write(4, ..., 1000) = 1000\n+0 > P. 1:1001(1000) ack 2\n"),
    "bad-ret": ("fail", "+0 write(4, ..., 1000) = 999\n"),
    "bad-win": ("fail", "+0 < P. 1:11(10) ack 1 win 1000\n+0~+.2 > . 1:1(0) ack 11 win 1\n"),
    "missing": ("fail", "+0 > P. 1:1001(1000) ack 1\n"),
    "late": ("fail", "+0 write(4, ..., 1000) = 1000\n+.05 > P. 1:1001(1000) ack 1\n"),
    "unlisted-then-end": (
        "pass",
        "+0 write(4, ..., 1000) = 1000\n+.1 < . 1:1(0) ack 1001 win 1000\n",
    ),
    "unlisted-then-gt": (
        "fail",
        "+0 write(4, ..., 1000) = 1000\n"
        "+.1 < . 1:1(0) ack 1001 win 1000\n"
        "+0 write(4, ..., 10) = 10\n"
        "+0 > P. 1001:1011(10) ack 1\n",
    ),
    "rto-range": (
        "pass",
        "+0 `sysctl -q net.ipv4.tcp_early_retrans=0`\n"
        "+0 write(4, ..., 1000) = 1000\n"
        "+0 > P. 1:1001(1000) ack 1\n"
        "+.2~+.4 > P. 1:1001(1000) ack 1\n",
    ),
    "rto-too-early": (
        "fail",
        "+0 `sysctl -q net.ipv4.tcp_early_retrans=0`\n"
        "+0 write(4, ..., 1000) = 1000\n"
        "+0 > P. 1:1001(1000) ack 1\n"
        "+.1 > P. 1:1001(1000) ack 1\n",
    ),
    "loose-3000": ("pass", "+0 write(4, ..., 3000) = 3000\n+0 > P. 1:3001(3000) ack 1\n"),
    "loose-2500-wrong": ("fail", "+0 write(4, ..., 3000) = 3000\n+0 > P. 1:2501(2500) ack 1\n"),
    "blocking-read-ok": (
        "pass",
        "+0...0.2 read(4, ..., 10) = 10\n+.2 < P. 1:11(10) ack 1 win 1000\n",
    ),
    "blocking-read-late": (
        "fail",
        "+0...0.1 read(4, ..., 10) = 10\n+.2 < P. 1:11(10) ack 1 win 1000\n",
    ),
    "ecr-unknown": ("fail", "+0 < P. 1:11(10) ack 1 win 1000 <nop,nop,TS val 5 ecr 77>\n"),
    "eisconn": (
        "pass",
        "+0 connect(4, ..., ...) = -1 EISCONN (Transport endpoint is already connected)\n",
    ),
    "noack-dropped": ("pass", "+0 < - 1:11(10) win 1000\n+.1 ioctl(4, SIOCINQ, [0]) = 0\n"),
    "opts-unaligned": ("error", "+0 < P. 1:11(10) ack 1 win 1000 <mss 1000,sackOK>\n"),
    "star-inbound": ("error", "* < P. 1:11(10) ack 1 win 1000\n"),
}
EXIT_STATUS = {"pass": 0, "fail": 1, "error": 2}


@pytest.mark.privileged
@pytest.mark.kernel_runner
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_verdict_is_packetdrills(name: str, tmp_path: Path) -> None:
    verdict, body = CASES[name]
    script = tmp_path / f"{name}.pkt"
    script.write_text(HEADER + body)
    assert main(["script", "--against", "kernel", str(script)]) == EXIT_STATUS[verdict]
