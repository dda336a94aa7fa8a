"""lab.capture.writer: the one writev loop (`write_all`) that captures and downloads use."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from lab.capture import writer
from lab.capture.writer import IOV_MAX, write_all


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
