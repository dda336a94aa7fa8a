"""lab.capture.writer: the streaming pcapng writer's batches, and the one writev loop
(`write_all`) that captures and downloads use."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from lab.capture import writer
from lab.capture.reader import read_packets
from lab.capture.writer import IOV_MAX, PcapngWriter, write_all


def test_write_all_writes_every_piece_in_order(tmp_path: Path) -> None:
    pieces = [bytes([i % 251]) * (i % 97) for i in range(3 * IOV_MAX + 5)]  # some empty
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        write_all(fd, pieces)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(pieces)


def test_write_all_goes_on_where_a_short_write_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(5)
    real_writev = os.writev
    calls = []

    def short_writev(fd: int, buffers: list[bytes | memoryview]) -> int:
        # The kernel may write less than asked (a signal, a full disk's last blocks): here
        # at most a random few bytes, often ending inside a piece.
        joined = b"".join(buffers)
        calls.append(len(buffers))
        return real_writev(fd, [joined[: rng.randrange(1, 50)]])

    monkeypatch.setattr(writer.os, "writev", short_writev)
    pieces = [rng.randbytes(rng.randrange(0, 60)) for _ in range(200)]
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        write_all(fd, pieces)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(pieces)
    assert len(calls) > 1
    assert max(calls) <= IOV_MAX


def test_write_all_fails_instead_of_spinning_when_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer.os, "writev", lambda fd, buffers: 0)
    with pytest.raises(OSError, match="wrote nothing"):
        write_all(3, [b"abc"])


@pytest.mark.parametrize("to_file", [True, False], ids=["path", "file-object"])
def test_blocks_of_every_size_reach_the_file_in_order_and_flush_makes_them_readable(
    to_file: bool, tmp_path: Path
) -> None:
    # Small blocks are joined in batches, merged ones kept as they are until a megabyte waits:
    # a run long enough to cross both bounds several times, in both orders, and a flush in
    # the middle after which the file already holds every block written.
    sizes = ([60, 1514] * 200 + [65_226] * 20) * 3 + [4096, 4097, 61]
    frames = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    path = tmp_path / "blocks.pcapng"
    buffer = io.BytesIO()
    writer = PcapngWriter(path if to_file else buffer, ifname="lab0")

    def written() -> list[bytes]:
        source = path if to_file else io.BytesIO(buffer.getvalue())
        return [p.data for p in read_packets(source)]

    half = len(frames) // 2
    for i, frame in enumerate(frames[:half]):
        writer.write(frame, 1_000 + i, direction="in")
    writer.flush()
    assert written() == frames[:half]
    for i, frame in enumerate(frames[half:], start=half):
        writer.write(frame, 1_000 + i, direction="out", comment="merged" if i % 2 else None)
    if to_file:
        writer.close()
    else:
        writer.flush()
    assert written() == frames
