"""Replay of committed captures: real tools (curl, lftp, ftplib against vsftpd and pyftpdlib),
and sessions of our own hand-built stack (`lab get`, on a clean and on an impaired link).

The captures and `tools-manifest.json` are committed files made by `captures/make_captures.py`;
the manifest holds what each client moved, hashed on the client's side. Replay, which never saw
the clients, must recover every transfer byte for byte, complete, in order, in the right mode,
with no anomaly beyond those the manifest expects (the tools' own habits, such as lftp's
OPTS UTF8 before login). Our stack's captures ("lab_captures") come from its own tap; on the
lossy ones the inbound drops are absent and their retransmissions present, so replay must still
recover the whole file, and say it saw retransmissions. No privileges needed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab.capture.reader import CaptureReader
from lab.replay.decode import decode_packet
from lab.replay.flows import FlowTable
from lab.replay.report import replay_capture

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
MANIFEST = json.loads((CAPTURES / "tools-manifest.json").read_text())
ENTRIES = {e["file"]: e for e in MANIFEST["captures"]}
LAB_ENTRIES = {e["file"]: e for e in MANIFEST.get("lab_captures", [])}
ALL_ENTRIES = {**ENTRIES, **LAB_ENTRIES}
MAX_CAPTURE = 5 << 20


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_covers_every_client_server_and_mode() -> None:
    combos = {(e["server"], e["client"], e["mode"]) for e in ENTRIES.values()}
    assert combos == {
        (server, client, mode)
        for server in ("vsftpd", "pyftpdlib")
        for client in ("curl", "lftp", "ftplib")
        for mode in ("passive", "active")
    }


def test_our_stack_has_active_and_passive_captures_clean_and_lossy() -> None:
    kinds = {(e["mode"], e["impairment"] is not None) for e in LAB_ENTRIES.values()}
    assert kinds == {(mode, lossy) for mode in ("active", "passive") for lossy in (False, True)}
    for entry in LAB_ENTRIES.values():
        if entry["impairment"] is not None:
            assert "loss=" in entry["impairment"]
            assert "reorder=" in entry["impairment"]
            assert entry["faults"]["drop"] > 0
            assert entry["faults"]["reorder"] > 0


@pytest.mark.parametrize("name", sorted(ALL_ENTRIES))
def test_capture_is_the_recorded_file_and_small(name: str) -> None:
    path = CAPTURES / name
    assert path.stat().st_size == ALL_ENTRIES[name]["capture_bytes"] < MAX_CAPTURE
    assert sha256(path) == ALL_ENTRIES[name]["capture_sha256"]


def _session(report: dict[str, Any]) -> dict[str, Any]:
    (session,) = report["ftp_sessions"]
    return session  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_replay_recovers_every_transfer_with_the_clients_sha256(tmp_path: Path, name: str) -> None:
    entry = ENTRIES[name]
    result = replay_capture(CAPTURES / name, out_dir=tmp_path)
    assert result.complete
    assert not result.unreadable
    session = _session(result.report)
    assert session["server"].endswith(":21")
    got = session["transfers"]
    assert [(t["command"], t["argument"]) for t in got] == [
        (t["command"], t["argument"]) for t in entry["transfers"]
    ]
    for recovered, expected in zip(got, entry["transfers"], strict=True):
        assert recovered["bytes"] == expected["bytes"]
        assert recovered["sha256"] == expected["sha256"]
        assert recovered["complete"] is True
        assert recovered["anomalies"] == []
        assert recovered["mode"] == entry["mode"]
        saved = Path(recovered["saved_as"])
        assert saved.parent == tmp_path
        assert not saved.name.endswith(".part")
        assert sha256(saved) == expected["sha256"]


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_replay_reports_no_anomaly_beyond_the_expected_ones(name: str) -> None:
    entry = ENTRIES[name]
    report = replay_capture(CAPTURES / name).report
    assert report["anomalies"] == []
    assert _session(report)["anomalies"] == entry["expected_session_anomalies"]
    for flow in report["flows"]:
        assert flow["handshake"], flow
        assert not flow["midstream"], flow
        assert flow["closed"] == "fin", flow
        assert flow["anomalies"] == {"client_to_server": [], "server_to_client": []}, flow
    # one control flow and one data flow per transfer, nothing else
    roles = sorted(f["role"] for f in report["flows"])
    assert roles == ["ftp-control"] + ["ftp-data"] * len(entry["transfers"])


@pytest.mark.parametrize("name", sorted(LAB_ENTRIES))
def test_replay_of_our_stacks_capture_recovers_the_file_with_the_recorded_sha256(
    tmp_path: Path, name: str
) -> None:
    entry = LAB_ENTRIES[name]
    result = replay_capture(CAPTURES / name, out_dir=tmp_path)
    assert result.complete
    assert not result.unreadable
    report = result.report
    assert report["anomalies"] == []
    session = _session(report)
    assert session["server"] == "198.18.0.1:21"
    (recovered,) = session["transfers"]
    (expected,) = entry["transfers"]
    assert (recovered["command"], recovered["argument"]) == ("RETR", expected["argument"])
    assert recovered["bytes"] == expected["bytes"] == recovered["expected_size"]
    assert recovered["sha256"] == expected["sha256"]
    assert recovered["complete"] is True
    assert recovered["mode"] == entry["mode"]
    assert sha256(Path(recovered["saved_as"])) == expected["sha256"]
    kinds = {a["kind"] for a in recovered["anomalies"]}
    if entry["impairment"] is None:
        assert kinds == set()
    else:  # the server resent what the impaired link dropped before our stack saw it
        assert kinds == {"retransmission"}
        assert sum(a["count"] for a in recovered["anomalies"]) > 0
    for flow in report["flows"]:
        assert flow["handshake"], flow
        assert not flow["midstream"], flow
        assert flow["closed"] == "fin", flow
    assert sorted(f["role"] for f in report["flows"]) == ["ftp-control", "ftp-data"]


@pytest.mark.parametrize("name", sorted(LAB_ENTRIES))
def test_our_stacks_capture_carries_the_fault_schedule_in_its_comments(name: str) -> None:
    entry = LAB_ENTRIES[name]
    comments = "\n".join(p.comment or "" for p in CaptureReader(CAPTURES / name))
    assert "CLOSED -> SYN-SENT" in comments  # the stack's state transitions, always
    if entry["impairment"] is None:
        assert "impair:" not in comments
    else:
        schedule = entry["impairment"]
        assert f"impair: schedule out {schedule}; in {schedule}" in comments
        # The summary counted the faults up to the end of the transfer; the capture goes on to
        # the close of the control connection, which the schedule impairs too.
        for kind in ("drop", "reorder"):
            assert comments.count(f"impair: {kind} ") >= entry["faults"][kind] > 0


@pytest.mark.parametrize("name", sorted(ALL_ENTRIES))
def test_data_connections_are_opened_by_the_side_the_mode_says(name: str) -> None:
    report = replay_capture(CAPTURES / name).report
    server_ip = _session(report)["server"].rsplit(":", 1)[0]
    data = [f for f in report["flows"] if f["role"] == "ftp-data"]
    assert data
    for flow in data:  # a flow's "client" is the side that sent the SYN
        opener = flow["client"].rsplit(":", 1)[0]
        if ALL_ENTRIES[name]["mode"] == "active":
            assert opener == server_ip
            if ALL_ENTRIES[name]["server"] == "vsftpd":
                assert flow["client"].endswith(":20")  # vsftpd's connect_from_port_20
        else:
            assert opener != server_ip


def _tshark_follow(path: Path, count: int) -> dict[int, tuple[dict[str, str], dict[int, bytes]]]:
    """Streams 0..count-1 as `tshark -z follow,tcp,raw,N` gives them: {N: (nodes, {node: data})}."""
    args = ["tshark", "-r", str(path), "-q"]
    for i in range(count):
        args += ["-z", f"follow,tcp,raw,{i}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    result = {}
    for block in out.split("Follow: tcp,raw")[1:]:
        found = re.search(r"Filter: tcp.stream eq (\d+)", block)
        assert found is not None
        nodes = dict(re.findall(r"^Node (\d): (.*)$", block, re.M))
        data = {0: bytearray(), 1: bytearray()}
        started = False
        for line in block.split("\n"):
            if line.startswith("Node 1:"):
                started = True
                continue
            if started and line.strip() and not line.startswith("==="):
                data[1 if line.startswith("\t") else 0] += bytes.fromhex(line.strip())
        result[int(found.group(1))] = (nodes, {k: bytes(v) for k, v in data.items()})
    return result


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("name", sorted(ALL_ENTRIES))
def test_every_stream_equals_what_tshark_follows(name: str) -> None:
    path = CAPTURES / name
    table = FlowTable()
    for pkt in CaptureReader(path):
        table.process(pkt, decode_packet(pkt))
    table.finish()
    try:
        followed = _tshark_follow(path, len(table.flows))
        for flow in table.flows:
            nodes, theirs = followed[flow.index]
            ours = {
                h.sender: b"".join(chunk for _, chunk in h.data.runs())
                for h in (flow.c2s, flow.s2c)
            }
            assert [ours[nodes["0"]], ours[nodes["1"]]] == [theirs[0], theirs[1]], flow.index
    finally:
        table.store.close()
