"""Exercise `forensics`: recover a file and name its missing byte ranges from a damaged capture.

The checker synthesises (seeded) the capture of a passive-mode FTP download with the fast codec:
handshakes, the control dialogue, the data connection and the closes. Then it damages the data
stream as a bad capture point would: a few segments are never captured (one run of two adjacent
ones, so a hole spans segments), some appear twice, some out of order, and one is captured with a
flipped payload byte (its checksum fails) and captured again intact as a retransmission later.

The answer is graded against `lab.replay` on the same file, the reference for what a capture
holds: the missing ranges must be exactly the gaps replay finds, and every byte outside them must
be the file's. A solution that trusts a bad-checksum segment recovers a wrong byte.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from lab.capture.writer import PacketRecord, pcapng_bytes
from lab.exercises import CheckResult, Exercise
from lab.exercises.harness import run_student
from lab.wire.fast import encode_tcp
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.segment import Flags, Segment
from lab.wire.seq import seq_add

CLIENT, SERVER = "198.18.0.2", "198.18.0.1"
CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:02", "02:00:00:00:00:01"
DATA_PORT = 50_000
FILE_NAME = "quarterly-report.txt"
MSS = 1400


class _Connection:
    """One synthetic TCP connection; appends frames to a shared list of records."""

    def __init__(
        self, out: list[PacketRecord], clock: list[int], c_port: int, s_port: int, seed: int
    ) -> None:
        rng = random.Random(seed)
        self.out, self.clock = out, clock
        self.ports = {True: (c_port, s_port), False: (s_port, c_port)}
        self.nxt = {True: rng.getrandbits(32), False: rng.getrandbits(32)}

    def frame(
        self, from_client: bool, flags: Flags, payload: bytes = b"", seq: int | None = None
    ) -> bytes:
        src, dst = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        sport, dport = self.ports[from_client]
        seg = Segment(
            sport,
            dport,
            self.nxt[from_client] if seq is None else seq,
            self.nxt[not from_client] if Flags.ACK in flags else 0,
            flags,
            65535,
            (),
            payload,
        )
        macs = (CLIENT_MAC, SERVER_MAC) if from_client else (SERVER_MAC, CLIENT_MAC)
        return encode_tcp(TcpFrame(macs[0], macs[1], Ipv4Header(src, dst), seg))

    def emit(self, data: bytes) -> None:
        self.clock[0] += 250_000
        self.out.append(PacketRecord(self.clock[0], data))

    def open(self) -> None:
        self.emit(self.frame(True, Flags.SYN))
        self.nxt[True] = seq_add(self.nxt[True], 1)
        self.emit(self.frame(False, Flags.SYN | Flags.ACK))
        self.nxt[False] = seq_add(self.nxt[False], 1)
        self.emit(self.frame(True, Flags.ACK))

    def send(self, from_client: bool, data: bytes) -> None:
        self.emit(self.frame(from_client, Flags.ACK | Flags.PSH, data))
        self.nxt[from_client] = seq_add(self.nxt[from_client], len(data))

    def close(self, first_client: bool) -> None:
        for side in (first_client, not first_client):
            self.emit(self.frame(side, Flags.FIN | Flags.ACK))
            self.nxt[side] = seq_add(self.nxt[side], 1)
        self.emit(self.frame(first_client, Flags.ACK))


def file_content(seed: int, size: int = 48_000) -> bytes:
    rng = random.Random(f"forensics/file/{seed}")
    lines = []
    total = 0
    n = 0
    while total < size:
        line = f"{n:05d} region={rng.choice('NESW')} revenue={rng.randint(1000, 99999)}\n"
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines).encode()[:size]


def damaged_capture(seed: int) -> tuple[bytes, bytes]:
    """(pcapng bytes of the damaged capture, the file's true content)."""
    rng = random.Random(f"forensics/damage/{seed}")
    content = file_content(seed)
    out: list[PacketRecord] = []
    clock = [1_700_000_000_000_000_000]
    ctl = _Connection(out, clock, 40_000, 21, seed)
    ctl.open()
    p1, p2 = divmod(DATA_PORT, 256)
    dialogue = [
        (False, b"220 lab FTP server ready\r\n"),
        (True, b"USER student\r\n"),
        (False, b"331 Password required\r\n"),
        (True, b"PASS secret\r\n"),
        (False, b"230 Logged in\r\n"),
        (True, b"TYPE I\r\n"),
        (False, b"200 Type set to I\r\n"),
        (True, b"PASV\r\n"),
        (False, f"227 Entering Passive Mode (198,18,0,1,{p1},{p2})\r\n".encode()),
        (True, f"RETR {FILE_NAME}\r\n".encode()),
        (False, f"150 Opening BINARY mode data connection ({len(content)} bytes)\r\n".encode()),
    ]
    for from_client, line in dialogue:
        ctl.send(from_client, line)
    data = _Connection(out, clock, 40_001, DATA_PORT, seed + 1)
    data.open()
    segments: list[bytes] = []
    for offset in range(0, len(content), MSS):
        segments.append(data.frame(False, Flags.ACK | Flags.PSH, content[offset : offset + MSS]))
        data.nxt[False] = seq_add(data.nxt[False], len(content[offset : offset + MSS]))
    # The damage. Indices are chosen away from both ends, and apart from each other.
    n = len(segments)
    lost_run = rng.randrange(3, n // 3)
    lost_single = rng.randrange(n // 2, n - 8)
    bad = rng.randrange(n // 3 + 2, n // 2 - 1)
    lost = {lost_run, lost_run + 1, lost_single}
    order: list[bytes] = []
    for i, frame in enumerate(segments):
        if i in lost:
            continue
        if i == bad:
            mangled = bytearray(frame)
            mangled[-10] ^= 0x20  # a payload byte: only the TCP checksum can tell
            order.append(bytes(mangled))
            continue
        order.append(frame)
        if rng.random() < 0.08:
            order.append(frame)  # captured twice
    for _ in range(4):  # some neighbours swapped
        i = rng.randrange(1, len(order) - 1)
        order[i], order[i + 1] = order[i + 1], order[i]
    order.insert(min(len(order), order.index(segments[bad + 1]) + 5), segments[bad])  # resent
    for frame in order:
        data.emit(frame)
    data.close(first_client=False)
    ctl.send(False, b"226 Transfer complete\r\n")
    ctl.send(True, b"QUIT\r\n")
    ctl.send(False, b"221 Goodbye\r\n")
    ctl.close(first_client=True)
    return pcapng_bytes(out), content


def replay_answer(capture: Path) -> tuple[str, list[tuple[int, int]]]:
    """What `lab.replay` finds: the RETR argument and the data stream's gaps."""
    from lab.replay.report import replay_capture

    with tempfile.TemporaryDirectory() as tmp:
        result = replay_capture(capture, out_dir=Path(tmp))
    transfer = next(t for s in result.sessions for t in s.transfers if t.command == "RETR")
    assert transfer.data_half is not None
    return transfer.argument or "", [(a, b) for a, b in transfer.data_half.gaps]


def drive(module: ModuleType, task: dict[str, Any]) -> dict[str, Any]:
    name, content, missing = module.recover(task["capture"])
    return {
        "name": str(name),
        "content": bytes(content).hex(),
        "missing": [[int(a), int(b)] for a, b in missing],
    }


def _first_wrong_byte(got: bytes, want: bytes, missing: list[tuple[int, int]]) -> int | None:
    holes = sorted(missing)
    for i in range(min(len(got), len(want))):
        if got[i] != want[i] and not any(a <= i < b for a, b in holes):
            return i
    return None


def check(student_file: Path, workdir: Path, *, seed: int = 7) -> CheckResult:
    result = CheckResult("forensics")
    workdir.mkdir(parents=True, exist_ok=True)
    capture = workdir.resolve() / "forensics.pcapng"  # the attempt runs in another folder
    raw, content = damaged_capture(seed)
    capture.write_bytes(raw)
    result.capture = capture
    want_name, want_missing = replay_answer(capture)
    run = run_student("forensics", student_file, {"capture": str(capture)}, workdir, timeout=60)
    if not run.ok:
        result.student_error = run.error
        result.add("your code runs", False, f"it raised: {run.short_error()}")
        return result
    answer = run.result
    name = answer["name"]
    got = bytes.fromhex(answer["content"])
    missing = [(a, b) for a, b in answer["missing"]]
    result.add(
        "file name",
        name == want_name,
        f"{name!r} is the RETR argument"
        if name == want_name
        else f"you named {name!r}; look at the RETR command on the control connection",
    )
    if missing == want_missing:
        result.add(
            "missing ranges",
            True,
            f"{len(missing)} ranges, {sum(b - a for a, b in missing)} bytes, as lab replay finds",
        )
    else:
        extra = [r for r in missing if r not in want_missing]
        absent = [r for r in want_missing if r not in missing]
        detail = []
        if extra:
            detail.append(f"you list {extra[0]} but the capture holds bytes there")
        if absent:
            detail.append(
                f"{len(absent)} missing range(s) not listed, e.g. one near {absent[0][0]}"
            )
        result.add(
            "missing ranges",
            False,
            f"you listed {len(missing)} range(s), the capture misses {len(want_missing)}: "
            + "; ".join(detail),
        )
    if len(got) != len(content):
        result.add(
            "recovered bytes",
            False,
            f"the file is {len(content)} bytes long (see the 150 reply), you returned {len(got)}",
        )
    else:
        wrong = _first_wrong_byte(got, content, want_missing)
        result.add(
            "recovered bytes",
            wrong is None,
            f"every captured byte is right ({hashlib.sha256(got).hexdigest()[:12]}...)"
            if wrong is None
            else f"byte {wrong} is wrong; was it taken from a segment with a bad checksum?",
        )
    return result


EXERCISE = Exercise(
    name="forensics",
    title="Forensics: a file from a damaged capture",
    goal="Recover the file an FTP download carried, and name exactly the byte ranges lost.",
    background=(
        "A capture point loses packets (a full buffer, a busy disk), sees some twice (a SPAN port "
        "on both directions) and records damaged frames whose checksums fail. TCP sequence "
        "numbers tell where every captured byte belongs, so what is missing can be named "
        "precisely. Forensic tools report the holes rather than guess: a wrong byte presented as "
        "evidence is worse than an honest gap."
    ),
    steps=(
        "lab exercise start forensics [DIR]   (copies forensics.py into DIR)",
        "lab exercise check forensics [DIR] once: it writes DIR/.lab-check/forensics.pcapng; "
        "open it in Wireshark (Follow TCP Stream, tcp.analysis.lost_segment).",
        "Complete recover() in DIR/forensics.py.",
        "lab exercise check forensics [DIR]",
    ),
    hints=(
        "The control connection says which file (RETR) and where its data goes (the 227 reply: "
        "port = p1 * 256 + p2).",
        "Data offsets are sequence numbers minus (the SYN's sequence number + 1), modulo 2**32.",
        "lab.wire.fast.decode_ethernet checks the checksums for you (a bad one gives a Dropped).",
        "Merge touching missing ranges: report [a, c), not [a, b) and [b, c).",
    ),
    starter="forensics.py",
    privileged=False,
    check=check,
)
