"""One whole replay of a capture: flows, FTP sessions and the JSON report, as a value.

Reads the capture once, streaming (the reader, the decoder and the flow table hold no more than a
bounded window per flow), then reconstructs FTP from the finished flows. `ReplayResult` says what
was found (`complete`, `unreadable`); `lab.cli.replay` turns that into text and an exit code, and
`lab.viz` draws it, so this module knows neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.capture.reader import CaptureReader
from lab.replay.decode import decode_packet
from lab.replay.flows import Flow, FlowTable
from lab.replay.ftp import FtpSession, half_anomalies, reconstruct, session_json
from lab.tcp.reassembly import OverlapPolicy


@dataclass(slots=True)
class ReplayResult:
    """Everything one replay found; `report` is the JSON document of issue 5."""

    capture: str
    reader: CaptureReader
    table: FlowTable
    sessions: list[FtpSession]
    packets: int
    start_ns: int
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def unreadable(self) -> bool:
        """The capture could not be read at all (not a pcap/pcapng, or cut in its header)."""
        return self.reader.unreadable

    @property
    def complete(self) -> bool:
        """Every FTP transfer found arrived whole (vacuously true when there is none)."""
        return all(t.complete for s in self.sessions for t in s.transfers)


def _flow_json(
    flow: Flow, roles: dict[int, str], policy: OverlapPolicy, cut: bool
) -> dict[str, Any]:
    state = "rst" if flow.reset else ("fin" if flow.closed else "open")
    return {
        "index": flow.index,
        "client": flow.key.client,
        "server": flow.key.server,
        "role": roles.get(flow.index, "other"),
        "packets": flow.packets,
        "bytes_client_to_server": flow.c2s.delivered,
        "bytes_server_to_client": flow.s2c.delivered,
        "handshake": flow.handshake_complete,
        "midstream": flow.midstream,
        "closed": state,
        "anomalies": {
            "client_to_server": half_anomalies(flow.c2s, flow, policy, cut),
            "server_to_client": half_anomalies(flow.s2c, flow, policy, cut),
        },
    }


def replay_capture(
    path: str | Path, *, out_dir: str | Path | None = None, policy: OverlapPolicy = "first"
) -> ReplayResult:
    """Run the whole replay of one capture file."""
    if out_dir is not None:
        out_dir = Path(out_dir)  # notebooks and scripts pass plain strings
    reader = CaptureReader(path)
    table = FlowTable(policy)
    packets = 0
    start = 0
    try:
        for pkt in reader:
            if packets == 0:
                start = pkt.timestamp_ns
            packets += 1
            table.process(pkt, decode_packet(pkt))
        table.finish()
        cut = any(p.kind == "truncated" for p in reader.problems)
        sessions = reconstruct(table, out_dir=out_dir, truncated_file=cut)
        result = ReplayResult(str(path), reader, table, sessions, packets, start)
        result.report = _report(result, cut)
    finally:
        table.store.close()
    return result


def _report(result: ReplayResult, cut: bool) -> dict[str, Any]:
    table = result.table
    roles: dict[int, str] = {}
    for s in result.sessions:
        roles[s.control.index] = "ftp-control"
        for t in s.transfers:
            if t.data_flow is not None:
                roles[t.data_flow.index] = "ftp-data"
    anomalies: list[dict[str, Any]] = []
    for p in result.reader.problems:
        kind = "truncated_capture" if p.kind in ("truncated", "snaplen_cut") else p.kind
        anomalies.append(
            {
                "kind": kind,
                "problem": p.kind,
                "offset": p.offset,
                "packet": p.packet_number,
                "detail": p.detail,
            }
        )
    if table.bad_checksum_packets:
        anomalies.append({"kind": "bad_checksum", "count": table.bad_checksum_packets})
    return {
        "capture": result.capture,
        "format": result.reader.format,
        "packets": result.packets,
        "tcp_packets": table.tcp_packets,
        "policy": table.policy,
        "start": result.start_ns / 1e9,
        "flows": [_flow_json(f, roles, table.policy, cut) for f in table.flows],
        "ftp_sessions": [session_json(s, result.start_ns) for s in result.sessions],
        "anomalies": anomalies,
        "capture_comments": [
            {"where": where, "text": text} for where, text in result.reader.file_comments
        ],
    }
