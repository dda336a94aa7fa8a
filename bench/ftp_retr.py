"""One RETR via the hand-built stack (fast, Scapy codecs) and kernel sockets (our client, ftplib).

The same file is fetched in active mode from the embedded pyftpdlib server in the lab topology by
four clients, alternated round by round so that a slow moment of the machine hits all of them:

- `lab fast`: `lab.ftp.Client` over the hand-built stack, frames packed with `struct`;
- `lab scapy`: the same, frames built with Scapy layers (the teaching path; it may get a smaller
  file, `--scapy-mb`, and is then compared per MB);
- `kernel`: `lab.ftp.Client` over kernel sockets;
- `ftplib`: the standard library's client over kernel sockets.

The kernel clients run in the client namespace from 198.18.0.4, an address added beside the lab
stack on the same veth, so every variant crosses the same wire to the same server. Every download
is checked against the file's sha256. Ratios are seconds per MB relative to `kernel` (our client
on the kernel's TCP), the fairest comparison of the stacks since the FTP code is the same.

Needs root (namespaces, AF_PACKET), or `lab rootless` as a user; without, says so, returns 0.

Measured (2026-11-25, 2 cores, `--size-mb 50 --scapy-mb 10 --rounds 2`, medians):
lab fast 16.3 MB/s (22.7x kernel's s/MB), lab scapy 2.7 MB/s (138x), kernel (our client)
370 MB/s (1.00), ftplib 396 MB/s (0.94); 0 retransmissions everywhere; every file sha256-checked.

    python -m bench ftp_retr [--size-mb 50] [--scapy-mb 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import ftplib
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench import live_skip_reason

if TYPE_CHECKING:
    from lab.ftp.transport import Transport

KERNEL_CLIENT_IP = "198.18.0.4"
VARIANTS = ("lab fast", "lab scapy", "kernel", "ftplib")


@dataclass(frozen=True, slots=True)
class Run:
    variant: str
    size: int
    seconds: float
    segments_in: int | None
    retransmissions: int | None

    @property
    def seconds_per_mb(self) -> float:
        return self.seconds / (self.size / 1e6)


def file_name(size: int) -> str:
    return f"bench-{size >> 20}M.bin"


def write_file(anon: Path, size: int) -> str:
    """The bench file (seeded bytes, as the embedded server's samples) and its sha256."""
    from lab.ftp.server import sample_bytes

    data = sample_bytes(file_name(size), size)
    anon.mkdir(parents=True, exist_ok=True)
    (anon / file_name(size)).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class Bench:
    """The topology, the embedded server and the clients; `run(variant, size)` times one RETR."""

    def __init__(self, topo: object, server_ip: str, port: int, outdir: Path) -> None:
        from lab.link.packet import PacketLink
        from lab.topology import Topology

        assert isinstance(topo, Topology)
        self.topo = topo
        self.server_ip = server_ip
        self.port = port
        self.outdir = outdir
        self.link = PacketLink.open_client_end(topo)

    def close(self) -> None:
        self.link.close()

    def run(self, variant: str, size: int, digest: str) -> Run:
        target = self.outdir / f"{variant.replace(' ', '-')}.bin"
        target.unlink(missing_ok=True)
        fetch: Callable[[Path, str], tuple[float, int | None, int | None]]
        if variant.startswith("lab"):
            fetch = self._lab(variant.split()[1])
        elif variant == "kernel":
            fetch = self._in_client_ns(self._kernel)
        else:
            fetch = self._in_client_ns(self._ftplib)
        seconds, segments, rexmits = fetch(target, file_name(size))
        if sha256_file(target) != digest:
            raise RuntimeError(f"{variant}: the downloaded file differs from the server's")
        target.unlink()
        return Run(variant, size, seconds, segments, rexmits)

    def _lab(self, codec: str) -> Callable[[Path, str], tuple[float, int | None, int | None]]:
        from lab.ftp.transport import LabTransport
        from lab.host import Host
        from lab.runtime import Runtime

        info = self.topo.info

        def fetch(target: Path, name: str) -> tuple[float, int | None, int | None]:
            host = Host(
                info.client_mac,
                info.client_ip,
                info.prefixlen,
                None,
                now=time.monotonic_ns() // 1000,
                codec=codec,
            )
            with Runtime(host, self.link) as runtime:
                return self._retrieve(LabTransport(runtime), target, name)

        return fetch

    def _kernel(self, target: Path, name: str) -> tuple[float, int | None, int | None]:
        from lab.ftp.transport import KernelTransport

        return self._retrieve(KernelTransport(), target, name)

    def _retrieve(
        self, transport: Transport, target: Path, name: str
    ) -> tuple[float, int | None, int | None]:
        """One RETR by our client over `transport`: seconds, segments in, retransmissions."""
        from lab.ftp.client import Client

        with Client(transport, timeout=30, data_timeout=30) as client:
            client.connect(self.server_ip, self.port)
            client.login()
            result = client.retrieve(name, target)
        stats = result.stats
        return (
            result.seconds,
            stats.segments_received if stats else None,
            stats.retransmissions if stats else None,
        )

    def _ftplib(self, target: Path, name: str) -> tuple[float, int | None, int | None]:
        with ftplib.FTP() as ftp:
            ftp.connect(self.server_ip, self.port, timeout=30)
            ftp.login()
            ftp.set_pasv(False)  # active mode, as the other variants
            ftp.voidcmd("TYPE I")
            started = time.monotonic()
            with open(target, "wb") as sink:
                ftp.retrbinary(f"RETR {name}", sink.write, blocksize=65536)
            seconds = time.monotonic() - started
        return seconds, None, None

    def _in_client_ns(
        self, fn: Callable[[Path, str], tuple[float, int | None, int | None]]
    ) -> Callable[[Path, str], tuple[float, int | None, int | None]]:
        return lambda target, name: self.topo.run_in_client(lambda: fn(target, name))


def report(runs: list[Run]) -> None:
    by_variant: dict[str, list[Run]] = {}
    for r in runs:
        by_variant.setdefault(r.variant, []).append(r)
    base = statistics.median(r.seconds_per_mb for r in by_variant["kernel"])
    print(
        f"{'variant':>10} {'MB':>6} {'runs':>4} {'median s':>9} {'s/MB':>8} {'MB/s':>8}"
        f" {'segs in':>8} {'rexmit':>6} {'x kernel':>9}"
    )
    for variant in VARIANTS:
        rs = by_variant.get(variant)
        if not rs:
            continue
        per_mb = statistics.median(r.seconds_per_mb for r in rs)
        seconds = statistics.median(r.seconds for r in rs)
        segs = rs[-1].segments_in
        rexmit = rs[-1].retransmissions
        print(
            f"{variant:>10} {rs[0].size / 1e6:>6.1f} {len(rs):>4} {seconds:>9.3f} {per_mb:>8.4f}"
            f" {1 / per_mb:>8.1f} {segs if segs is not None else '-':>8}"
            f" {rexmit if rexmit is not None else '-':>6} {per_mb / base:>9.2f}"
        )
    print("(x kernel: seconds per MB relative to lab.ftp.Client over kernel sockets)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ftp_retr", description=__doc__)
    parser.add_argument("--size-mb", type=int, default=50, help="file size (MiB) for most")
    parser.add_argument("--scapy-mb", type=int, default=None, help="file size for lab scapy")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    skipped = live_skip_reason("ftp_retr")
    if skipped is not None:
        print(skipped)
        return 0
    from lab.ftp.server import EmbeddedServer
    from lab.session import kernel_client
    from lab.topology import Topology

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    if "kernel" not in variants:
        variants.append("kernel")  # the reference of the ratios
    size = args.size_mb << 20
    scapy_size = (args.scapy_mb if args.scapy_mb is not None else args.size_mb) << 20
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        root = Path(tmp) / "server"
        digests = {s: write_file(root / "anon", s) for s in {size, scapy_size}}
        outdir = Path(tmp) / "out"
        outdir.mkdir()
        with (
            Topology() as topo,
            kernel_client(topo, capture=None, address=KERNEL_CLIENT_IP),
            EmbeddedServer(topo, root=root),
        ):
            bench = Bench(topo, topo.info.server_ip, 21, outdir)
            try:
                for round_ in range(args.rounds):
                    order = variants if round_ % 2 == 0 else variants[::-1]
                    for variant in order:
                        n = scapy_size if variant == "lab scapy" else size
                        r = bench.run(variant, n, digests[n])
                        runs.append(r)
                        print(
                            f"  round {round_ + 1} {variant:>10}: {n / 1e6:.1f} MB"
                            f" in {r.seconds:.3f} s ({n / 1e6 / r.seconds:.1f} MB/s)",
                            flush=True,
                        )
            finally:
                bench.close()
    report(runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
