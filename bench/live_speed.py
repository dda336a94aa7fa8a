"""Live RETR from vsftpd: the lab stack against curl (the kernel), in faithful and offload modes.

One topology per mode, vsftpd in the server namespace serving a file of seeded bytes, and two
clients on the same client veth, alternated round by round so that a slow moment of the shared
machine hits both:

- `lab`: `lab.ftp.Client` over the hand-built stack (`LabStack.on_topology`, the same stack as
  `lab get`), codec `fast` (or `--codec`), capture ON (written to a temporary pcapng), active mode;
- `curl`: curl in the client namespace from 198.18.0.4 (an address beside the lab's on the same
  veth), active mode (`-P`), writing to /dev/null (the byte count is checked): the lab writes a
  file, so any difference in disk costs favours curl.

Both are timed on the transfer phase only, as Python's start-up would dominate otherwise:
curl as size / (time_total - time_pretransfer), the lab as bytes / `TransferResult.seconds`
(PORT, RETR, the data and the final reply: a little more than curl's phase, never less).
Every download is checked against the file's sha256.

Modes:
- `faithful`: every offload off on both veth ends; the wire carries MSS-sized segments;
- `offload`: the client veth gets GRO and rx checksumming (`Topology(offload=True)`), the lab's
  link reads PACKET_AUXDATA, merged frames of up to 64 KB reach both stacks.

After the timed rounds, one more lab run per mode is instrumented (not timed against curl) and
prints the cost per segment of each stage in microseconds: receive (the link's recvfrom and the
capture write), decode (frame bytes to values), TCP (host demultiplexing, the connection and its
reassembler) and application (reading the connection's buffer and writing the file).

Needs root (or `lab rootless` as a user) and vsftpd (see lab.ftp.servers); else says so, returns 0.

    python -m bench live_speed [--size-mb 50] [--rounds 3] [--modes faithful,offload]
        [--codec fast] [--recv-buffer KIB] [--no-stages] [--profile FILE]

Measured after frame-level header prediction and packed ACKs (lab.host.prediction,
lab.wire.fast.BareAckTemplate), on the slower machine of 2026-12-06 05:57 (load 4.4-4.6, other
engineers' tests and a busy loop running), this tree and main alternated, 3 bench runs of 3
rounds each: faithful lab CPU per 50 MiB run 0.79 s (0.69-1.13, 9 runs) against 1.13 s
(1.02-1.53); 64.2 MB/s against 44.7 (medians of 9); x curl per run 0.061, 0.049, 0.063 against
0.034, 0.075, 0.047 (curl 930-1100 MB/s). Per frame, medians of the 3 instrumented runs:
receive 4.9 us, decode 8.0, TCP 9.8, application 1.4, against 5.2, 9.2, 14.0, 1.7 (the "decode"
of a predicted frame is FramePrediction.take less the connection's part). Offload, alternated twice:
0.105-0.125 s of CPU against 0.110-0.161, 0.35 and 0.41 of curl against 0.26 and 0.53.

Earlier (2026-12-06 03:50, idle machine, load 0.02, --rounds 5): faithful lab 54.3 MB/s, curl
936 MB/s, 0.058 of curl (0.055-0.077 per round); offload lab 382 MB/s, curl 1050 MB/s, 0.36
(0.28-0.51 per round). Per frame, faithful: receive 3.6 us, decode 6.4, TCP 9.5, application 2.5;
offload (834 merged frames): 30.0, 12.7, 14.4, 46.7. The same machine gave the tree before this
round's work (c7c2241) 43 MB/s at 03:05, alternated with this work's first half (54-58 MB/s):
machines and days differ more than the rounds of one run, so compare trees side by side.

Measured after per-frame costs were cut again (2026-12-06 03:30, lightly loaded, load 1.0-1.2;
this tree and the one before it alternated, two full bench runs each, ranges over the two):
faithful lab 58.2-63.0 MB/s, curl 860-941, 0.067-0.068 of curl; the tree before: 54.0-55.4 MB/s,
curl 723-914, 0.059-0.077. The lab's CPU per 50 MiB run, medians of three alternated sessions of
12-15 runs per tree: 0.812, 0.839 and 0.875 s against 0.865, 0.910 and 0.988 s. Per frame,
faithful: receive 3.9-4.0 us, decode 6.4-6.5, TCP 9.5-9.8, application 1.7, against 4.7-5.5,
6.4-7.3, 10.1-11.6, 2.2-3.3. Offload in the same runs: 0.34-0.42 of curl against 0.40-0.45, its
per-round ratios (0.33-0.58) spread wider than the trees differ.

Measured after the receive path was trimmed (2026-12-06, other engineers' test suites running,
load 0.7-1.6; this tree and the one before it alternated, three bench runs each, medians):
faithful lab 47.6 MB/s, curl 573 MB/s, 0.085 of curl (0.077-0.088 per run); the tree before,
in between: 38.5 MB/s, curl 613, 0.064 (0.060-0.071). The lab's CPU per 50 MiB run: 0.98 s
(0.93-1.07, 9 runs) against 1.30 s (1.19-1.49). Per frame, faithful: receive 4.9 us, decode
6.8, TCP 10.9, application 1.9, against 5.2, 8.2, 13.4, 2.1. Not measured idle since.

Measured again on an idle machine (2026-12-05, after the bulk checksum moved to
lab.wire.checksum.checksum_verifies): faithful lab 58.2 MB/s, curl 988 MB/s, 0.059 of curl;
offload lab 571 MB/s, curl 1314 MB/s, 0.43 (0.40-0.50 per round). Per frame, faithful: receive
3.7 us, decode 6.2, TCP 9.6, application 1.3. Idle, curl gains far more than the lab does.

Measured (2026-12-05, 2 cores shared with five other engineers' test runs, Python 3.11.7,
defaults): faithful lab 49.3 MB/s, curl 605 MB/s, 0.081 of curl (0.055-0.090 over the day's runs,
as the load changed curl's speed more than the lab's); offload lab 586 MB/s, curl 973 MB/s, 0.60
(per-round medians 0.49-0.52 over the last runs). Per frame, faithful: receive 4.7 us, decode
8.4, TCP 10.9, application 1.5; offload (830 GRO-merged frames of ~60 KB): 20.3, 9.2, 17.5, 38.2
(offload's receive and application figures move by +-10 us between runs: they are mostly file
writes). The lab's CPU time per faithful run is the steadier figure: 0.93-1.06 s for 50 MiB.
Before the speed work, the same bench gave the faithful lab 24-26 MB/s (0.038-0.061 of curl),
and with GRO on the stack stalled on the merged frames; before payloads were kept by reference
(lab.tcp.recvbuf) and offload's receive buffer grew to 4 MiB, offload measured 322-380 MB/s
(0.37-0.43).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import live_skip_reason

CURL_IP = "198.18.0.4"
MODES = ("faithful", "offload")
FILE_NAME = "bench.bin"


@dataclass(frozen=True, slots=True)
class Run:
    mode: str
    client: str  # "lab" or "curl"
    size: int
    seconds: float  # transfer phase
    cpu: float | None = None  # lab only: CPU seconds of this process over the transfer phase

    @property
    def mb_per_s(self) -> float:
        return self.size / self.seconds / 1e6


@dataclass
class Stages:
    """Nanoseconds spent per stage, and the TCP segments (frames) they handled."""

    ns: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("receive", "decode", "TCP", "application"), 0)
    )
    segments: int = 0

    def per_segment_us(self) -> dict[str, float]:
        n = max(1, self.segments)
        return {name: value / n / 1000 for name, value in self.ns.items()}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def curl_retr(topo: Any, server_ip: str, size: int) -> float:
    """One curl RETR from the client namespace; seconds of the transfer phase."""
    command = [
        "curl",
        "--silent",
        "--show-error",
        "--interface",
        CURL_IP,
        "--ftp-port",
        CURL_IP,
        "--output",
        "/dev/null",
        "--write-out",
        "%{time_pretransfer} %{time_total} %{size_download}",
        f"ftp://{server_ip}/{FILE_NAME}",
    ]
    process = topo.popen_client(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=120)
    if process.returncode != 0:
        raise RuntimeError(f"curl failed ({process.returncode}): {err.decode().strip()}")
    pretransfer, total, received = (float(x) for x in out.split())
    if int(received) != size:
        raise RuntimeError(f"curl received {int(received)} bytes of {size}")
    return total - pretransfer


@contextlib.contextmanager
def instrumented(stages: Stages) -> Iterator[None]:
    """Time the stages of the live receive path by wrapping its functions (bench only)."""
    import lab.host.host as host_module
    from lab.link.packet import PacketLink
    from lab.link.tap import CaptureTap
    from lab.runtime import Socket

    # CPU time of the calling thread, not wall time: on a shared machine another process may
    # take the core in the middle of a stage, which says nothing about the stage's cost.
    clock = time.thread_time_ns
    originals: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        originals.append((owner, name, original))
        setattr(owner, name, make(original))

    def timed(stage: str, count: bool = False) -> Callable[[Any], Any]:
        def make(original: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = clock()
                result = original(*args, **kwargs)
                stages.ns[stage] += clock() - started
                if count and result is not None:
                    stages.segments += 1
                return result

            return wrapper

        return make

    # The tap's receive includes the link's, the capture write, and the frame count.
    wrap(CaptureTap, "receive", timed("receive", count=True))
    decode_started = [0]

    def make_decode(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            result = original(*args, **kwargs)
            spent = clock() - started
            stages.ns["decode"] += spent
            decode_started[0] += spent
            return result

        return wrapper

    wrap(host_module, "decode_ethernet", make_decode)
    wrap(host_module, "decode_unicast_tcp", make_decode)
    # Frame-level header prediction (lab.host.prediction) decodes and hands the header fields
    # to the connection in one call: its time but the connection's counts as decode.
    from lab.host.prediction import FramePrediction
    from lab.tcp.connection import Connection

    in_connection = [0]

    def make_connection(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            result = original(*args, **kwargs)
            in_connection[0] += clock() - started
            return result

        return wrapper

    def make_prediction(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before = in_connection[0]
            started = clock()
            result = original(*args, **kwargs)
            spent = clock() - started - (in_connection[0] - before)
            stages.ns["decode"] += spent
            decode_started[0] += spent
            return result

        return wrapper

    wrap(Connection, "receive_predicted", make_connection)
    wrap(FramePrediction, "take", make_prediction)

    def make_host(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before = decode_started[0]
            started = clock()
            result = original(*args, **kwargs)
            # Everything the host did but decoding: IP checks, demultiplexing, TCP.
            stages.ns["TCP"] += clock() - started - (decode_started[0] - before)
            return result

        return wrapper

    wrap(host_module.Host, "receive_frame", make_host)
    # The application: the FTP client's thread from RETR to the end (its CPU time, so waiting
    # for data costs nothing): Socket.recv's copy out of the connection and the file writes.
    from lab.ftp.client import Client

    def make_app(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return original(*args, **kwargs)
            finally:
                stages.ns["application"] += clock() - started

        return wrapper

    wrap(Client, "_transfer_in", make_app)
    del Socket
    del PacketLink  # the tap wraps it: timed through the tap
    try:
        yield
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


class ModeBench:
    """A topology in one mode with vsftpd serving the bench file; runs lab and curl RETRs."""

    def __init__(self, mode: str, data: bytes, digest: str, workdir: Path, codec: str) -> None:
        self.mode = mode
        self.data = data
        self.digest = digest
        self.workdir = workdir
        self.codec = codec
        self.tcp_config: Any = None  # None: the stack's default (as `lab get`)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ModeBench:
        from lab.ftp.servers import Vsftpd
        from lab.session import kernel_client
        from lab.topology import Topology

        try:
            self.topo = self._stack.enter_context(Topology(offload=self.mode == "offload"))
            server = Vsftpd(
                self.topo.names.server_ns,
                self.workdir / f"vsftpd-{self.mode}",
                files={FILE_NAME: self.data},
            )
            self.server = self._stack.enter_context(server)
            self._stack.enter_context(kernel_client(self.topo, capture=None, address=CURL_IP))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def curl(self) -> Run:
        seconds = curl_retr(self.topo, self.server.address, len(self.data))
        return Run(self.mode, "curl", len(self.data), seconds)

    def lab(self, *, stages: Stages | None = None, profile: cProfile.Profile | None = None) -> Run:
        from lab.ftp.client import Client
        from lab.ftp.transport import LabTransport
        from lab.session import LabStack

        target = self.workdir / "lab.bin"
        capture = self.workdir / f"lab-{self.mode}.pcapng"
        with contextlib.ExitStack() as stack:
            lab = stack.enter_context(
                LabStack.on_topology(
                    codec=self.codec,
                    capture=capture,
                    topology=self.topo,
                    tcp_config=self.tcp_config,
                )
            )
            if stages is not None:
                stack.enter_context(instrumented(stages))
            with Client(LabTransport(lab.runtime), timeout=30, data_timeout=30) as client:
                client.connect(self.server.address, self.server.port)
                client.login()
                if profile is not None:
                    profile.enable()
                cpu_started = time.process_time()
                try:
                    result = client.retrieve(FILE_NAME, target)
                finally:
                    cpu = time.process_time() - cpu_started
                    if profile is not None:
                        profile.disable()
        self._check(target, "lab")
        capture.unlink(missing_ok=True)
        return Run(self.mode, "lab", len(self.data), result.seconds, cpu)

    def _check(self, target: Path, who: str) -> None:
        if sha256_file(target) != self.digest:
            raise RuntimeError(f"{self.mode} {who}: the downloaded file differs from the server's")
        target.unlink()


def report(runs: list[Run], stages: dict[str, Stages]) -> None:
    print(
        f"\n{'mode':>9} {'client':>6} {'runs':>4} {'median s':>9} {'MB/s':>8} {'x curl':>7}"
        f" {'min':>6} {'max':>6}"
    )
    for mode in MODES:
        by_client = {
            client: [r for r in runs if r.mode == mode and r.client == client]
            for client in ("lab", "curl")
        }
        if not by_client["curl"]:
            continue
        curl_rate = statistics.median(r.mb_per_s for r in by_client["curl"])
        for client, rs in by_client.items():
            rates = [r.mb_per_s for r in rs]
            median = statistics.median(rates)
            print(
                f"{mode:>9} {client:>6} {len(rs):>4}"
                f" {statistics.median(r.seconds for r in rs):>9.3f} {median:>8.1f}"
                f" {median / curl_rate:>7.3f} {min(rates) / curl_rate:>6.3f}"
                f" {max(rates) / curl_rate:>6.3f}"
            )
        # Ratio per round (each lab run against the curl run beside it).
        pairs = [
            lab.mb_per_s / curl.mb_per_s
            for lab, curl in zip(by_client["lab"], by_client["curl"], strict=False)
        ]
        if pairs:
            print(
                f"{'':>9} lab/curl per round: {', '.join(f'{p:.3f}' for p in pairs)}"
                f" (median {statistics.median(pairs):.3f})"
            )
    print("(x curl: median MB/s of the transfer phase relative to curl's, same mode and link)")
    if stages:
        print(f"\n{'mode':>9} {'frames':>7}  per-frame cost of each stage (us)")
        for mode, s in stages.items():
            parts = "  ".join(f"{k} {v:6.1f}" for k, v in s.per_segment_us().items())
            print(f"{mode:>9} {s.segments:>7}  {parts}")
        print(
            "(one instrumented lab run per mode, CPU time of the thread doing each stage;"
            " the wrappers add about 1 us per call)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench live_speed", description=__doc__)
    parser.add_argument("--size-mb", type=int, default=50, help="file size in MiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--codec", default="fast", choices=("fast", "mixed", "scapy"))
    parser.add_argument("--recv-buffer", type=int, help="the lab's receive buffer, KiB")
    parser.add_argument(
        "--no-ring", action="store_true", help="one recvfrom per frame, no TPACKET_V2 ring"
    )
    parser.add_argument("--no-stages", action="store_true", help="skip the instrumented runs")
    parser.add_argument("--profile", type=Path, help="cProfile the last lab run into FILE")
    args = parser.parse_args(argv)
    skipped = live_skip_reason("live_speed")
    if skipped is not None:
        print(skipped)
        return 0
    from lab.ftp.server import sample_bytes
    from lab.ftp.servers import Vsftpd

    reason = Vsftpd.unavailable_reason()
    if reason is not None:
        print(f"skipped: {reason}")
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; known: {', '.join(MODES)}")
    if args.no_ring:
        import lab.link.packet

        lab.link.packet.USE_RX_RING = False
    size = args.size_mb << 20
    data = sample_bytes(FILE_NAME, size)
    digest = hashlib.sha256(data).hexdigest()
    runs: list[Run] = []
    stages: dict[str, Stages] = {}
    profile = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)  # vsftpd's unprivileged children read below it
        for mode in modes:
            with ModeBench(mode, data, digest, workdir, args.codec) as bench:
                if args.recv_buffer is not None:
                    from lab.tcp.connection import TcpConfig

                    bench.tcp_config = TcpConfig(recv_buffer=args.recv_buffer << 10)
                for round_ in range(args.rounds):
                    order = ("lab", "curl") if round_ % 2 == 0 else ("curl", "lab")
                    for client in order:
                        last = round_ == args.rounds - 1 and client == "lab"
                        r = (
                            bench.lab(profile=profile if last else None)
                            if client == "lab"
                            else bench.curl()
                        )
                        runs.append(r)
                        cpu = f", CPU {r.cpu:.3f} s" if r.cpu is not None else ""
                        print(
                            f"  {mode} round {round_ + 1} {client:>4}: {r.size / 1e6:.1f} MB"
                            f" in {r.seconds:.3f} s ({r.mb_per_s:.1f} MB/s{cpu})",
                            flush=True,
                        )
                if not args.no_stages:
                    stages[mode] = Stages()
                    bench.lab(stages=stages[mode])
    report(runs, stages)
    if profile is not None:
        profile.dump_stats(args.profile)
        print(f"profile of the last lab run(s): {args.profile}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
