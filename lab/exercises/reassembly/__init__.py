"""Exercise `reassembly`: write the receiver's reassembly function; no privileges needed.

The checker builds seeded sessions (`make_session`): a stream of numbered lines cut into segments
of varying size, with losses repaired by retransmissions that are sometimes cut differently from
the original (so they overlap what already arrived), reordering, duplicates, old segments from
before the stream's start, and an initial sequence number just below 2**32 so the numbers wrap.
Each session is also written as a pcapng capture in the work folder, for Wireshark.

Grading compares the student's output after every segment with `lab.tcp.reassembly.Reassembler`,
the reassembler the live stack and `lab replay` use: the same bytes must come out at the same
moment (a receiver that waits for the end, or delivers past a hole, fails with the segment number
where it went wrong).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from lab.capture.writer import PacketRecord, pcapng_bytes
from lab.exercises import CheckResult, Exercise
from lab.exercises.harness import run_student
from lab.link.impairment import Impairment
from lab.tcp.reassembly import Reassembler
from lab.wire.fast import encode_tcp
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.segment import Flags, Segment
from lab.wire.seq import seq_add

MSS = 1460


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    description: str
    initial_seq: int
    stream: bytes
    segments: tuple[tuple[int, bytes], ...]  # (seq, payload) in arrival order


def numbered_stream(size: int, tag: str) -> bytes:
    line = f"{tag} line %06d\n"
    count = size // len(line % 0) + 1
    return "".join(line % i for i in range(count)).encode()[:size]


def make_session(
    name: str,
    *,
    seed: int,
    size: int,
    initial_seq: int,
    loss: float = 0.0,
    reorder: float = 0.0,
    duplicate: float = 0.0,
    old: int = 0,
) -> Session:
    """A seeded session. Every byte arrives at least once, the last retransmissions at the end."""
    rng = random.Random(f"reassembly/{name}/{seed}")
    stream = numbered_stream(size, name)
    cuts = []
    offset = 0
    while offset < size:
        length = min(size - offset, rng.randint(200, MSS))
        cuts.append((offset, length))
        offset += length
    arrivals: list[tuple[int, int]] = []  # (offset, length) in arrival order
    lost: list[tuple[int, int]] = []
    for cut in cuts:
        if rng.random() < loss:
            lost.append(cut)
            if rng.random() < 0.5:  # retransmitted soon, sometimes merged with its neighbour
                start, length = cut
                extra = rng.randint(0, 600) if rng.random() < 0.5 else 0
                arrivals.append((start, min(size - start, length + extra)))
                lost.pop()
            continue
        arrivals.append(cut)
        if rng.random() < duplicate:
            arrivals.append(cut)
    for start, length in lost:  # the rest repaired at the end, re-cut around the hole
        lo = max(0, start - rng.randint(0, 300))
        hi = min(size, start + length + rng.randint(0, 300))
        arrivals.append((lo, hi - lo))
    # Reordering: some segments swap places with one a few positions later.
    for i in range(len(arrivals)):
        if rng.random() < reorder:
            j = min(len(arrivals) - 1, i + rng.randint(1, 6))
            arrivals[i], arrivals[j] = arrivals[j], arrivals[i]
    segments = [(seq_add(initial_seq, o), stream[o : o + n]) for o, n in arrivals]
    for _ in range(old):  # a stale segment from before the start (a retransmitted SYN's data?)
        at = rng.randrange(len(segments))
        segments.insert(at, (seq_add(initial_seq, -rng.randint(100, 5000)), b"stale" * 20))
    return Session(name, "", initial_seq, stream, tuple(segments))


def sessions() -> list[Session]:
    base = [
        ("in-order", "every segment once, in order", {}),
        (
            "lossy",
            "10% loss (repaired by overlapping retransmissions), 15% reordering, 5% duplicates, "
            "stale segments from before the start",
            {"loss": 0.10, "reorder": 0.15, "duplicate": 0.05, "old": 3},
        ),
        (
            "wraparound",
            "starts 20 000 bytes below 2**32, so sequence numbers wrap to 0; some reordering",
            {"reorder": 0.1, "duplicate": 0.02},
        ),
    ]
    out = []
    for i, (name, text, faults) in enumerate(base):
        isn = (1 << 32) - 20_000 if name == "wraparound" else 1_000_000 + i * 7919
        s = make_session(name, seed=i, size=120_000, initial_seq=isn, **faults)  # type: ignore[arg-type]
        out.append(Session(s.name, text, s.initial_seq, s.stream, s.segments))
    return out


def reference_deliveries(session: Session) -> list[int]:
    """Bytes delivered so far after each segment, by the lab's own reassembler."""
    r = Reassembler(session.initial_seq, capacity=1 << 22, max_holes=1 << 12)
    total = 0
    out = []
    for seq, data in session.segments:
        total += len(r.push(seq, data).delivered)
        out.append(total)
    return out


def impaired_session(imp: Impairment) -> Session:
    """The extra session of `lab exercise check reassembly --loss ... --seed N`: the same
    construction as the built-in ones, with the rates and seed given on the command line."""
    s = make_session(
        "impaired",
        seed=imp.seed,
        size=120_000,
        initial_seq=(imp.seed * 2_654_435_761) % (1 << 32),  # anywhere, wrapping included
        loss=imp.loss,
        reorder=imp.reorder,
        duplicate=imp.duplicate,
    )
    # In the command line's words (a reorder delay means nothing here: arrival order is all).
    words = " ".join(
        f"{flag}={rate * 100:g}%"
        for flag, rate in (("loss", imp.loss), ("reorder", imp.reorder), ("dup", imp.duplicate))
        if rate
    )
    text = f"{words} seed={imp.seed}".strip()
    if imp.loss >= 1:
        # Not a bug: the receiver's side of a lossy path. TCP's sender repairs every loss, so
        # at 100% each segment arrives only as a retransmission, and the stream still completes.
        text += "; every segment lost once and only its retransmission arrives"
    return Session(s.name, text, s.initial_seq, s.stream, s.segments)


def write_capture(session: Session, path: Path, comment: str | None = None) -> None:
    """The session as frames from 198.18.0.1:20 to 198.18.0.2:40000, in arrival order
    (`comment` on the first frame: the schedule, so the session can be made again)."""
    records = []
    for i, (seq, data) in enumerate(session.segments):
        seg = Segment(20, 40000, seq, 1, Flags.ACK | Flags.PSH, 65535, (), data)
        frame = TcpFrame(
            "02:00:00:00:00:01",
            "02:00:00:00:00:02",
            Ipv4Header("198.18.0.1", "198.18.0.2", ident=i & 0xFFFF),
            seg,
        )
        records.append(
            PacketRecord(
                1_700_000_000_000_000_000 + i * 1_000_000,
                encode_tcp(frame),
                comment=comment if i == 0 else None,
            )
        )
    path.write_bytes(pcapng_bytes(records))


def drive(module: ModuleType, task: dict[str, Any]) -> list[int]:
    """In the child: run the student's Reassembler; return, after each segment, the length of
    what it returned (-1 if it returned something that is not bytes) and a hash of all of it."""
    import hashlib

    results: list[int] = []
    for session in task["sessions"]:
        r = module.Reassembler(session["initial_seq"])
        digest = hashlib.sha256()
        total = 0
        for seq, hex_data in session["segments"]:
            out = r.push(seq, bytes.fromhex(hex_data))
            if not isinstance(out, bytes | bytearray):
                results.append(-1)
                break
            digest.update(out)
            total += len(out)
            results.append(total)
        results.append(int.from_bytes(digest.digest()[:6], "big"))
    return results


WINDOW = 1 << 22  # the reference reassembler's capacity: data further ahead is refused


def segment_kind(session: Session, i: int, delivered: int) -> str:
    """What segment `i` is to a receiver that has delivered `delivered` bytes: stale,
    overlapping, in order, out of order or beyond the window, and whether its numbers wrapped.
    Why: "segment #57 went wrong" sends a student to Wireshark; "an overlapping retransmission
    whose first 300 bytes you had delivered" says which rule their code broke."""
    seq, data = session.segments[i]
    offset = (seq - session.initial_seq) % (1 << 32)
    if offset >= 1 << 31:
        offset -= 1 << 32  # behind the start: read as negative, as serial arithmetic does
    end = offset + len(data)
    if end <= 0:
        kind = "a stale segment from before the stream's start"
    elif end <= delivered:
        kind = "a stale duplicate: all of its bytes were delivered before"
    elif offset < delivered:
        old = delivered - offset
        kind = f"an overlapping retransmission: its first {old} bytes were delivered before"
    elif offset == delivered:
        kind = "the next bytes in order"
    elif offset - delivered >= WINDOW:
        kind = f"beyond the window: {offset - delivered} bytes past the next expected byte"
    else:
        ahead = offset - delivered
        kind = f"out of order: it starts {ahead} bytes beyond the hole at offset {delivered}"
    if seq + len(data) > 1 << 32:
        kind += "; its sequence numbers wrap past 2**32 to 0"
    elif seq < session.initial_seq and offset > 0:
        kind += "; numbered after the wrap (its seq is below the initial one)"
    return f"{kind} (stream offset {offset}: seq - initial_seq mod 2**32)"


def _describe(session: Session, i: int) -> str:
    seq, data = session.segments[i]
    return f"segment #{i + 1} (seq={seq}, {len(data)} bytes)"


def check_impaired(student_file: Path, workdir: Path, imp: Impairment) -> CheckResult:
    """`check`, plus a session made with the command line's loss, reordering, duplicates, seed."""
    return check(student_file, workdir, extra=impaired_session(imp))


def check(student_file: Path, workdir: Path, *, extra: Session | None = None) -> CheckResult:
    import hashlib

    result = CheckResult("reassembly")
    all_sessions = sessions() + ([extra] if extra is not None else [])
    workdir.mkdir(parents=True, exist_ok=True)
    for s in all_sessions:
        comment = f"impair: schedule {s.description}" if s is extra else None
        write_capture(s, workdir / f"reassembly-{s.name}.pcapng", comment)
    task = {
        "sessions": [
            {"initial_seq": s.initial_seq, "segments": [[q, d.hex()] for q, d in s.segments]}
            for s in all_sessions
        ]
    }
    run = run_student("reassembly", student_file, task, workdir, timeout=60)
    if not run.ok:
        result.student_error = run.error
        result.add("your code runs", False, f"it raised: {run.short_error()}")
        return result
    values: list[int] = list(run.result)
    for s in all_sessions:
        expected = reference_deliveries(s)
        got, values = values[: len(s.segments)], values[len(s.segments) :]
        digest, values = (values[0] if values else None), values[1:]
        title = f"{s.name} session ({s.description})"
        if -1 in got:
            i = got.index(-1)
            result.add(
                title, False, f"push returned something other than bytes at {_describe(s, i)}"
            )
            continue
        for i, (mine, ref) in enumerate(zip(got, expected, strict=False)):
            if mine != ref:
                when = "too early (past a hole, or twice)" if mine > ref else "too late"
                before = expected[i - 1] if i else 0
                result.add(
                    title,
                    False,
                    f"after {_describe(s, i)} you had delivered {mine} bytes in all, a correct "
                    f"receiver {ref}: {when}; that segment is {segment_kind(s, i, before)}",
                )
                break
        else:
            if len(got) != len(expected):
                result.add(title, False, "fewer results than segments")
                continue
            want = int.from_bytes(hashlib.sha256(s.stream).digest()[:6], "big")
            if digest != want:
                result.add(
                    title,
                    False,
                    f"all {len(s.stream)} bytes came out at the right moments, but they are not "
                    "the stream's bytes (wrong order, or old bytes kept instead of new ones?)",
                )
            else:
                result.add(
                    title, True, f"{len(s.stream)} bytes byte-exact, each at the right moment"
                )
    return result


EXERCISE = Exercise(
    name="reassembly",
    title="Reassembly: the receiver's side of TCP",
    goal="Write the function that turns TCP segments, in any order, into the byte stream.",
    background=(
        "TCP numbers bytes, not segments. Segments can be lost and retransmitted (possibly cut "
        "differently), arrive out of order or twice. The receiver keeps what arrives beyond a "
        "hole and delivers bytes in order, each exactly once, as soon as they are contiguous "
        "(RFC 9293 3.10.7.4). Sequence numbers are 32-bit and wrap around: comparisons must be "
        "done modulo 2**32 (RFC 1982 serial number arithmetic)."
    ),
    steps=(
        "lab exercise start reassembly [DIR]   (copies reassembly.py into DIR)",
        "Complete Reassembler.push in DIR/reassembly.py.",
        "lab exercise check reassembly [DIR]   (the sessions are written to DIR/.lab-check/)",
        "lab exercise check reassembly [DIR] --loss 30% --reorder 20% --dup 5% --seed 3   "
        "(one more session, under a fault schedule of your choosing; a lost segment is "
        "retransmitted, as TCP's sender would, so even --loss 100% delivers every byte)",
    ),
    hints=(
        "Work in stream offsets: offset = (seq - initial_seq) mod 2**32, relative to what you "
        "have delivered, read as a signed number so that old segments are 'behind'.",
        "A retransmission may overlap bytes you already delivered: skip that part.",
        "Keep early data in a dict keyed by offset; after each push, deliver while the smallest "
        "held offset is not beyond the next expected byte.",
        "Open the session captures in Wireshark: Statistics > Flow Graph, or "
        "tcp.analysis.out_of_order.",
    ),
    starter="reassembly.py",
    privileged=False,
    check=check,
    check_impaired=check_impaired,
    impairment_options=("loss", "reorder", "dup", "seed"),
)
