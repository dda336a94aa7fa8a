"""Replay memory stays bounded on captures of many connections (issue 12, item 4).

Flows whose two streams reached their FIN are archived out of memory (`lab.replay.archive`).
The capture of many flows is like the bench's (`python -m bench replay_throughput --flows N`):
small HTTP-like connections, each closed with FIN both ways. Archiving must change no result: the
same capture and FTP sessions replayed with every complete flow archived at once (its last ACK
then comes late and brings it back) and with none archived give the same report.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest
from test_replay import Conn, ftp_capture

import lab.replay.flows as flows_module
from lab.capture.reader import CaptureReader
from lab.capture.writer import PacketRecord, pcap_bytes
from lab.replay.report import replay_capture


def many_flows(path: Path, count: int) -> None:
    """`count` connections (handshake, a request, a reply, FIN both ways), each from its own
    client address and port."""
    out: list[PacketRecord] = []
    clock = [1_700_000_000_000_000_000]
    for i in range(count):
        client = (f"198.18.{128 + (i >> 16) % 64}.{(i >> 8) & 255}", 1024 + i % 60000)
        conn = Conn(out, clock, client, ("198.18.0.1", 80), isn_c=i, isn_s=7 * i)
        conn.open()
        conn.send(True, b"GET / HTTP/1.0\r\n\r\n")
        conn.send(False, b"HTTP/1.0 200 OK\r\n\r\nhello")
        conn.close()
    path.write_bytes(pcap_bytes(out))


FLOWS = 20_000
# Traced peak before archiving: 55 MB for 20,000 flows (2.7 KB each); with it about 6 MB.
PEAK_BOUND = 16 << 20


def test_twenty_thousand_closed_flows_replay_within_a_memory_bound(tmp_path: Path) -> None:
    capture = tmp_path / "flows.pcap"
    many_flows(capture, FLOWS)
    tracemalloc.start()
    try:
        result = replay_capture(capture)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BOUND, f"peak {peak / 1e6:.1f} MB for {FLOWS} flows"
    assert result.status == "complete"
    assert len(result.table.flows) == FLOWS
    assert result.table.flows.archived >= FLOWS - flows_module.ARCHIVE_AFTER_FLOWS - 1
    flow = result.table.flows[FLOWS - 1]  # read back from the archive
    assert flow.index == FLOWS - 1
    assert (flow.c2s.delivered, flow.s2c.delivered) == (18, 24)
    assert flow.closed
    assert flow.handshake_complete


def _ftp_among_many_flows(tmp_path: Path) -> Path:
    """Three FTP downloads, then 300 closed flows, then the FTP capture's packets again shifted
    in time so a few late packets hit flows archived long before."""
    ftp = [
        PacketRecord(p.timestamp_ns, p.data)
        for p in CaptureReader(io.BytesIO(ftp_capture(repeat=3)))
    ]
    many = tmp_path / "many.pcap"
    many_flows(many, 300)
    start = ftp[-1].timestamp_ns + 1_000_000
    others = [PacketRecord(start + i * 1_000, p.data) for i, p in enumerate(CaptureReader(many))]
    late = [PacketRecord(others[-1].timestamp_ns + 1_000, p.data) for p in others[:12]]
    path = tmp_path / "mixed.pcap"
    path.write_bytes(pcap_bytes(ftp + others + late))
    return path


def _report(path: Path, out: Path) -> tuple[str, int, int]:
    result = replay_capture(path, out_dir=out)
    report = json.dumps(result.report, sort_keys=True).replace(str(out), "OUT")
    return report, result.table.flows.archived, result.table.flows.restored


@pytest.mark.parametrize("after_flows", [0, 5])
def test_archiving_flows_changes_no_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_flows: int
) -> None:
    path = _ftp_among_many_flows(tmp_path)
    monkeypatch.setattr(flows_module, "ARCHIVE_AFTER_FLOWS", 1 << 30)
    monkeypatch.setattr(flows_module, "ARCHIVE_AFTER_NS", 1 << 62)
    kept, none_archived, _ = _report(path, tmp_path / "kept")
    assert none_archived == 0
    monkeypatch.setattr(flows_module, "ARCHIVE_AFTER_FLOWS", after_flows)
    archived_report, archived, restored = _report(path, tmp_path / "archived")
    assert archived >= 300 - after_flows  # the FTP data flows too
    assert restored >= 2  # flows 0 and 1, by the late packets (with 0: every last ACK too)
    assert archived_report == kept
    report = json.loads(kept)
    assert [t["complete"] for s in report["ftp_sessions"] for t in s["transfers"]] == [True] * 3
    assert sorted(p.name for p in (tmp_path / "archived").iterdir()) == sorted(
        p.name for p in (tmp_path / "kept").iterdir()
    )
