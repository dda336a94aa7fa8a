"""Replay throughput (MB/s of capture) against tcpflow, tshark, Scapy and dpkt; peak memory on 1 GB.

The input is synthesized, not recorded: a passive-mode FTP session (greeting, login, `TYPE I`,
`PASV`, `RETR big.bin`, 150, the data connection, 226, `QUIT`) whose data connection carries
`--size-mb` of payload in 1448-byte segments, one client ACK per two segments, as a Linux receiver
sends them. It is written straight to a classic pcap, streaming, with each segment's checksum
composed from precomputed payload sums (so writing 1 GB takes seconds, and nothing is held in
memory). The throughput capture is cached under `/tmp/lab-bench/`; the 1 GB one is deleted after
use.

Competitors, each in its own process, timed from fork to exit, with the peak RSS of that very
process (`os.wait4`):

- `lab replay`: `python -m lab replay CAPTURE --out DIR -q` (flows, reassembly, FTP, files saved);
- `tcpflow -r CAPTURE -o DIR`: reassembles every flow into files (C++);
- `tshark -q -z follow,tcp,raw,1`: dissects every packet and follows the data stream (stream 0 is
  the control connection: following the big one is the fair comparison; tshark dissects all
  packets whichever stream is followed);
- a Scapy `PcapReader` loop and a `dpkt` loop: parse every packet to TCP and add the payload
  length to a per-4-tuple counter. They neither reassemble nor write anything, so they are the
  cost of merely parsing the capture in Python with those libraries: a floor, not a peer.

Ratios are the competitor's time divided by `lab replay`'s (above 1: lab is faster). The memory
run replays a 1 GB capture with `lab replay` (no `--out`) and reports its peak RSS.

Figures seen (2 vCPU AMD EPYC VM shared with other jobs, load average 2.2-2.8, Python 3.11.7,
2026-12-05; best of 3 rounds; 72.0 MB capture holding a 64 MiB transfer; "time / lab" below 1
means that tool is faster than lab). Before issue 12's fast path, in the same conditions:

    lab replay             1.37     52.5       45 MB      1.00x
    tshark follow          0.59    123.0      288 MB      0.43x
    dpkt loop              0.72     99.8       28 MB      0.53x

After (same results: the recovered file's sha256 is checked, and `lab replay --json` of every
shipped capture is unchanged but for issue 12's own fixes):

    tool                seconds     MB/s   peak RSS time / lab
    lab replay             0.56    129.1       46 MB      1.00x
    tcpflow                0.12    620.7       28 MB      0.21x
    tshark follow          0.68    106.6      288 MB      1.21x
    scapy PcapReader       9.17      7.9       75 MB     16.44x
    dpkt loop              0.72     99.5       28 MB      1.30x
    (lab replay includes 0.08 s of interpreter start and imports; without it: 149.3 MB/s)

So lab replay was 2.4x faster than before (CPU time 1.2 s -> 0.42 s; wall time varies with the
load), ahead of tshark and of a bare dpkt parsing loop, still 5x slower than tcpflow. What made
it: a fast path that unpacks Ethernet, IPv4 and TCP with one precompiled struct into plain values
(`lab.replay.fastpath`), pcap records as tuples, non-TCP packets skipped, the full decoder
imported only when a packet needs it, and a bulk transfer's in-order segments joined into one
reassembler push (`FlowTable._bulk`). `int.from_bytes` (little-endian, twice as fast) and a
folded remainder are the fastest pure-Python checksum measured, ahead of `array('H')` and
`memoryview.cast` sums, so no dependency was added.

Second round (same machine, load average 1.7-1.9, 2026-12-05; three runs of the bench, each the
best of 2 rounds, medians shown; lab's three within 0.01 s):

    tool                seconds     MB/s   peak RSS time / lab
    lab replay             0.36    202.3       29 MB      1.00x
    tcpflow                0.10    708.8       29 MB      0.29x
    tshark follow          0.57    126.1      288 MB      1.64x
    scapy PcapReader       7.65      9.4       75 MB     21.8x
    dpkt loop              0.57    125.9       29 MB      1.62x
    (lab replay includes 0.07 s of interpreter start and imports; without it: 251 MB/s)

Against the code before the fast path (commit 570be52), run side by side in one script, three
rounds round-robin, medians (load average 1.2-1.8): 1.22 s -> 0.35 s (3.5x); with `--json` as
well, which computes each transfer's sha256, 1.26 s -> 0.40 s (3.2x). The same in CPU time.
Results unchanged: the recovered file's sha256 here, and `lab replay --json` of the 49 shipped
captures and of this capture byte for byte. What made it, biggest first:

- start-up 0.20 -> 0.07 s: `lab.cli.userns` imported pyroute2 (through `lab.topology`) for every
  command, and `lab.viz` the whole TCP connection; both now load on first use;
- `FlowTable.fast_segment`: an established flow found by its 4-tuple as the frame's 12 bytes (a
  cache emptied whenever the active flows change, addresses formatted only for a new flow);
  pure ACKs, bulk data and in-order data done there without the general path's events and
  `PushResult`; joined bulk data given to the reassembler and the store without copies;
- without `--json` no sha256 is computed (nothing shows it; ~0.035 s on 64 MiB), and with it the
  hash is taken while the file is written (one pass over the stream);
- the checksum of a full-sized segment summed from three 4,096-bit pieces, the fold with
  precomputed masks;
- classic pcap read in 1 MiB blocks, records sliced out of them.

Where the time goes now (in-process, CPU): reading 0.03 s, decoding with both checksums 0.13 s
(~2 us per data packet, mostly the TCP checksum), the flow table and the store 0.085 s (0.02 s
of it writing 64 MiB to the store's file), FTP reconstruction and the saved file 0.025 s
(0.05 s with the sha256), start-up 0.07 s (Python compiling lab's modules included: this
environment sets PYTHONDONTWRITEBYTECODE, so no .pyc is kept; the same for the code before).
The 1.15 GB memory run: peak RSS 31 MB, 6.2 s (184 MB/s).
`--flows 200000` measures the many-flows case: 80 MB peak RSS and 21 s (before issue 12's
archive: 607 MB, 23 s; the archive of finished flows, `lab.replay.archive`, brought it to
~101 MB, and the lazy imports to 80 MB).

    python -m bench replay_throughput [--size-mb 64] [--memory-gb 1] [--skip-memory]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lab.wire.checksum import internet_checksum, ones_complement_sum

CACHE = Path("/tmp/lab-bench")
SYNTH_VERSION = 1
MSS = 1448
CLIENT_IP, SERVER_IP = "198.18.0.2", "198.18.0.1"
CLIENT_MAC = bytes.fromhex("020000000002")
SERVER_MAC = bytes.fromhex("020000000001")
CONTROL_PORT, CLIENT_CONTROL_PORT = 21, 40000
DATA_PORT, CLIENT_DATA_PORT = 50000, 40001
_PAYLOADS = 251  # distinct payload chunks (prime, so chunk order does not repeat with ACK rhythm)


# -- synthesis ------------------------------------------------------------------------------------


def _ip4(address: str) -> bytes:
    return bytes(int(x) for x in address.split("."))


@dataclass(slots=True)
class _Side:
    ip: bytes
    mac: bytes
    port: int
    seq: int


class SessionWriter:
    """Writes Ethernet/IPv4/TCP packets of synthetic connections to a classic pcap, streaming."""

    def __init__(self, out: BinaryIO, start_ns: int = 1_764_000_000_000_000_000) -> None:
        self._out = out
        self._now = start_ns
        self._ip_id = 0
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        self.bytes_written = 24

    def packet(
        self,
        src: _Side,
        dst: _Side,
        flags: int,
        payload: bytes = b"",
        payload_sum: int | None = None,
        ack: int = 0,
        gap_ns: int = 10_000,
    ) -> None:
        tcp_len = 20 + len(payload)
        head = struct.pack(
            "!HHIIBBHHH", src.port, dst.port, src.seq, ack, 5 << 4, flags, 65535, 0, 0
        )
        pseudo = ones_complement_sum(src.ip + dst.ip + struct.pack("!HH", 6, tcp_len))
        body = payload_sum if payload_sum is not None else ones_complement_sum(payload)
        checksum = internet_checksum(head, pseudo + body)
        tcp = head[:16] + struct.pack("!H", checksum) + head[18:]
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, self._ip_id, 0x4000, 64, 6, 0, src.ip, dst.ip
        )
        ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
        frame_len = 14 + 20 + tcp_len
        self._now += gap_ns
        sec, ns = divmod(self._now, 1_000_000_000)
        self._out.write(
            struct.pack("<IIII", sec, ns, frame_len, frame_len)
            + dst.mac
            + src.mac
            + b"\x08\x00"
            + ip
            + tcp
        )
        if payload:
            self._out.write(payload)
        self.bytes_written += 16 + frame_len
        src.seq = (src.seq + len(payload) + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF


class _Connection:
    """Both sides of one synthetic TCP connection."""

    def __init__(self, w: SessionWriter, client: _Side, server: _Side) -> None:
        self.w, self.c, self.s = w, client, server

    def open(self) -> None:
        self.w.packet(self.c, self.s, 0x02)
        self.w.packet(self.s, self.c, 0x12, ack=self.c.seq)
        self.w.packet(self.c, self.s, 0x10, ack=self.s.seq)

    def say(self, from_client: bool, line: bytes) -> None:
        src, dst = (self.c, self.s) if from_client else (self.s, self.c)
        self.w.packet(src, dst, 0x18, line, ack=dst.seq)
        self.w.packet(dst, src, 0x10, ack=src.seq)

    def close(self, server_first: bool = True) -> None:
        a, b = (self.s, self.c) if server_first else (self.c, self.s)
        self.w.packet(a, b, 0x11, ack=b.seq)
        self.w.packet(b, a, 0x11, ack=a.seq)
        self.w.packet(a, b, 0x10, ack=b.seq)


def _payloads() -> list[tuple[bytes, int]]:
    out = []
    for i in range(_PAYLOADS):
        block = b"".join(
            hashlib.sha256(f"lab-bench {i} {j}".encode()).digest() for j in range(MSS // 32 + 1)
        )[:MSS]
        out.append((block, ones_complement_sum(block)))
    return out


def synthesize(path: Path, size: int) -> tuple[int, str]:
    """Write an FTP session transferring `size` bytes to `path`; (file size, sha256 of the data)."""
    chunks = _payloads()
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb", buffering=1 << 20) as f:
        w = SessionWriter(f)
        ctl = _Connection(
            w,
            _Side(_ip4(CLIENT_IP), CLIENT_MAC, CLIENT_CONTROL_PORT, 0x10000000),
            _Side(_ip4(SERVER_IP), SERVER_MAC, CONTROL_PORT, 0x20000000),
        )
        ctl.open()
        ctl.say(False, b"220 lab-bench FTP server ready\r\n")
        for command, reply in (
            (b"USER anonymous", b"331 Password please"),
            (b"PASS bench@", b"230 Logged in"),
            (b"TYPE I", b"200 Type set to I"),
            (b"PASV", b"227 Entering Passive Mode (198,18,0,1,195,80)."),
            (b"RETR big.bin", f"150 Opening BINARY data connection ({size} bytes)".encode()),
        ):
            ctl.say(True, command + b"\r\n")
            ctl.say(False, reply + b"\r\n")
        data = _Connection(
            w,
            _Side(_ip4(CLIENT_IP), CLIENT_MAC, CLIENT_DATA_PORT, 0x30000000),
            _Side(_ip4(SERVER_IP), SERVER_MAC, DATA_PORT, 0xFFF00000),  # wraps past 2**32
        )
        data.open()
        sent = 0
        n = 0
        while sent < size:
            block, block_sum = chunks[n % _PAYLOADS]
            if size - sent < MSS:
                block = block[: size - sent]
                block_sum = ones_complement_sum(block)
            w.packet(data.s, data.c, 0x10, block, block_sum, ack=data.c.seq, gap_ns=1_000)
            digest.update(block)
            sent += len(block)
            n += 1
            if n % 2 == 0:
                w.packet(data.c, data.s, 0x10, ack=data.s.seq, gap_ns=1_000)
        data.close()
        ctl.say(False, b"226 Transfer complete\r\n")
        ctl.say(True, b"QUIT\r\n")
        ctl.say(False, b"221 Bye\r\n")
        ctl.close()
        written = w.bytes_written
    return written, digest.hexdigest()


def cached_capture(size_mb: int) -> tuple[Path, str]:
    """The throughput capture, made once and kept in /tmp (with its data's sha256 beside it)."""
    path = CACHE / f"replay-{size_mb}MB-v{SYNTH_VERSION}.pcap"
    sha_file = path.with_suffix(".sha256")
    if path.is_file() and sha_file.is_file():
        return path, sha_file.read_text().strip()
    tmp = path.with_suffix(".partial")
    _, sha = synthesize(tmp, size_mb << 20)
    tmp.rename(path)
    sha_file.write_text(sha + "\n")
    return path, sha


# -- measuring ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measure:
    name: str
    seconds: float
    max_rss_kb: int
    ok: bool
    note: str = ""


def run_child(name: str, args: list[str], cwd: Path | None = None) -> Measure:
    """Run `args`, output discarded; wall time and the peak RSS of that process (wait4)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, text=True
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    ok = proc.returncode == 0
    note = "" if ok else f"exit {proc.returncode}: {err.strip()[-200:]}"
    return Measure(name, elapsed, usage.ru_maxrss, ok, note)


_SCAPY_LOOP = """
import sys
from collections import Counter
from scapy.all import PcapReader, TCP, IP
sizes = Counter()
for pkt in PcapReader(sys.argv[1]):
    if TCP in pkt:
        ip, tcp = pkt[IP], pkt[TCP]
        sizes[(ip.src, tcp.sport, ip.dst, tcp.dport)] += len(tcp.payload)
print(max(sizes.values()))
"""

_DPKT_LOOP = """
import sys
from collections import Counter
import dpkt
sizes = Counter()
with open(sys.argv[1], "rb") as f:
    for _ts, buf in dpkt.pcap.Reader(f):
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
            tcp = ip.data
            sizes[(ip.src, tcp.sport, ip.dst, tcp.dport)] += len(tcp.data)
print(max(sizes.values()))
"""


def competitors(capture: Path, work: Path) -> dict[str, Callable[[], Measure]]:
    py = sys.executable
    found: dict[str, Callable[[], Measure]] = {}

    def lab() -> Measure:
        out = work / "lab-out"
        shutil.rmtree(out, ignore_errors=True)
        return run_child(
            "lab replay", [py, "-m", "lab", "replay", str(capture), "--out", str(out), "-q"]
        )

    found["lab replay"] = lab
    if shutil.which("tcpflow"):

        def tcpflow() -> Measure:
            out = work / "tcpflow-out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            return run_child("tcpflow", ["tcpflow", "-r", str(capture), "-o", str(out)])

        found["tcpflow"] = tcpflow
    if shutil.which("tshark"):
        found["tshark follow"] = lambda: run_child(
            "tshark follow", ["tshark", "-r", str(capture), "-q", "-z", "follow,tcp,raw,1"]
        )
    found["scapy PcapReader"] = lambda: run_child(
        "scapy PcapReader", [py, "-c", _SCAPY_LOOP, str(capture)]
    )
    try:
        import dpkt  # noqa: F401

        found["dpkt loop"] = lambda: run_child("dpkt loop", [py, "-c", _DPKT_LOOP, str(capture)])
    except ImportError:
        pass
    return found


def _recovered_sha(out: Path) -> str | None:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.stat().st_size > 1 << 20)
    if len(files) != 1:
        return None
    digest = hashlib.sha256()
    with files[0].open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def throughput(size_mb: int, rounds: int) -> int:
    started = time.perf_counter()
    capture, sha = cached_capture(size_mb)
    size = capture.stat().st_size
    print(
        f"capture {capture} ({size / 1e6:.1f} MB, ready in {time.perf_counter() - started:.1f} s)"
    )
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        work = Path(tmp)
        runners = competitors(capture, work)
        best: dict[str, Measure] = {}
        for _ in range(rounds):  # round-robin, so a slow moment hits everyone
            for name, runner in runners.items():
                m = runner()
                if name not in best or (m.ok and m.seconds < best[name].seconds):
                    best[name] = m
                out = {"lab replay": "lab-out", "tcpflow": "tcpflow-out"}.get(name)
                if out is not None and _recovered_sha(work / out) != sha:
                    best[name] = Measure(name, m.seconds, m.max_rss_kb, False, "wrong sha256")
    startup = min(
        run_child("startup", [sys.executable, "-c", "import lab.cli.replay"]).seconds
        for _ in range(3)
    )
    lab = best["lab replay"]
    print(f"{'tool':18} {'seconds':>8} {'MB/s':>8} {'peak RSS':>10} {'time / lab':>10}")
    for name, m in best.items():
        rate = size / 1e6 / m.seconds
        ratio = m.seconds / lab.seconds
        status = "" if m.ok else f"  FAILED {m.note}"
        print(
            f"{name:18} {m.seconds:8.2f} {rate:8.1f} {m.max_rss_kb / 1024:8.0f} MB {ratio:9.2f}x"
            f"{status}"
        )
    print(
        f"(lab replay includes {startup:.2f} s of interpreter start and imports; without it:"
        f" {size / 1e6 / (lab.seconds - startup):.1f} MB/s; tcpflow and lab both verified by"
        " the sha256 of the recovered file)"
    )
    return 0 if all(m.ok for m in best.values()) else 1


def memory(size_gb: float) -> int:
    size = int(size_gb * (1 << 30))
    with tempfile.TemporaryDirectory(prefix="lab-bench-1g-", dir="/tmp") as tmp:
        capture = Path(tmp) / "big.pcap"
        started = time.perf_counter()
        written, _ = synthesize(capture, size)
        took = time.perf_counter() - started
        print(f"memory: {written / 1e9:.2f} GB capture written in {took:.1f} s")
        m = run_child("lab replay", [sys.executable, "-m", "lab", "replay", str(capture), "-q"])
        rate = written / 1e6 / m.seconds
        status = "" if m.ok else f"  FAILED {m.note}"
        print(
            f"memory: lab replay of {written / 1e9:.2f} GB: peak RSS {m.max_rss_kb / 1024:.0f} MB,"
            f" {m.seconds:.1f} s ({rate:.0f} MB/s){status}"
        )
    return 0 if m.ok else 1


def many_flows(path: Path, count: int) -> int:
    """`count` small HTTP-like connections (handshake, one request, one reply, FIN both ways),
    each from its own client address and port: the capture that grows replay's per-flow state."""
    with path.open("wb") as f:
        w = SessionWriter(f)
        server = _Side(_ip4(SERVER_IP), SERVER_MAC, 80, 1)
        for i in range(count):
            client_ip = bytes((198, 18, 128 + (i >> 16) % 64, (i >> 8) & 255))
            client = _Side(client_ip, CLIENT_MAC, 1024 + i % 60000, i)
            server.seq = 7 * i
            conn = _Connection(w, client, server)
            conn.open()
            conn.say(True, b"GET / HTTP/1.0\r\n\r\n")
            conn.say(False, b"HTTP/1.0 200 OK\r\n\r\nhello")
            conn.close()
        return w.bytes_written


def flows_memory(count: int) -> int:
    """Peak RSS of `lab replay -q` on `count` small flows (issue 12's goal: under 150 MB for
    200,000)."""
    with tempfile.TemporaryDirectory(prefix="lab-bench-flows-", dir="/tmp") as tmp:
        capture = Path(tmp) / "flows.pcap"
        written = many_flows(capture, count)
        m = run_child("lab replay", [sys.executable, "-m", "lab", "replay", str(capture), "-q"])
        status = "" if m.ok else f"  FAILED {m.note}"
        print(
            f"flows: lab replay of {count} flows ({written / 1e6:.0f} MB): peak RSS"
            f" {m.max_rss_kb / 1024:.0f} MB, {m.seconds:.1f} s{status}"
        )
    return 0 if m.ok else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench replay_throughput")
    parser.add_argument("--size-mb", type=int, default=64, help="throughput capture payload")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--memory-gb", type=float, default=1.0)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--flows", type=int, default=0, help="also measure peak RSS on this many small flows"
    )
    parser.add_argument("--only-flows", action="store_true", help="skip the throughput runs")
    args = parser.parse_args(argv)
    if args.only_flows:
        return flows_memory(args.flows or 200_000)
    if args.flows:
        flows_memory(args.flows)
    status = throughput(args.size_mb, args.rounds)
    if not args.skip_memory:
        status |= memory(args.memory_gb)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
