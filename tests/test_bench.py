"""The live benchmarks' skip line: why, and how an ordinary user runs them anyway."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from lab.topology.userns import probe

ROOT = Path(__file__).resolve().parent.parent  # where the bench package is


@pytest.mark.parametrize("name", ["ftp_retr", "live_speed", "stack_transfer"])
def test_a_live_benchmark_skipped_for_a_user_names_the_rootless_way(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    available, why = probe()
    module = importlib.import_module(f"bench.{name}")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert module.main([]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("skipped: needs root (network namespaces and AF_PACKET)"), line
    if available:
        assert line.endswith(f"lab rootless python -m bench {name}"), line
    else:
        assert why in line


@pytest.mark.parametrize("mode", ["faithful", "offload"])
def test_live_speed_recv_buffer_changes_only_the_window(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.session import default_tcp_config

    monkeypatch.syspath_prepend(str(ROOT))
    live_speed = importlib.import_module("bench.live_speed")
    config = live_speed.mode_tcp_config(mode, 512)
    default = default_tcp_config(mode == "offload")
    assert config.recv_buffer == 512 << 10
    assert config.ack_batch == default.ack_batch > 0  # the mode's ACK batching is kept
