"""One whole replay of a capture: flows, FTP sessions and the JSON report, as a value.

Reads the capture once, streaming (the reader, the decoder and the flow table hold no more than a
bounded window per flow), then reconstructs FTP from the finished flows. Ethernet/IPv4/TCP frames
go through `lab.replay.fastpath`; everything else through the full decoder. `ReplayResult` says
what was found (`status`: complete, incomplete, unreadable); `lab.cli.replay` turns that into an
exit code, and `lab.viz` draws it. The people's summary (`print_summary`) is made here too,
because `lab.replay.many` returns it from each worker with the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO

from lab.capture.reader import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_DLT12,
    CapturedPacket,
    CaptureProblem,
    CaptureReader,
    as_packet,
)
from lab.replay.fastpath import fast_ethernet_segment
from lab.replay.flows import Flow, FlowTable
from lab.replay.ftp import FtpSession, half_anomalies, reconstruct, session_json
from lab.tcp.reassembly import OverlapPolicy

Status = Literal["complete", "incomplete", "unreadable"]

# Faults after which the rest of the capture was not read (or not decoded).
STOPPING_PROBLEMS = ("truncated", "impossible_length", "bad_compression", "bad_magic")
SUPPORTED_LINKTYPES = frozenset(
    (
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW_DLT12,
        LINKTYPE_RAW,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    )
)


@dataclass(slots=True)
class ReplayResult:
    """Everything one replay found; `report` is the JSON document of issue 5."""

    capture: str
    reader: CaptureReader
    table: FlowTable
    sessions: list[FtpSession]
    packets: int
    start_ns: int
    unsupported_linktypes: dict[int, int] = field(default_factory=dict)  # link type: packets
    truncated_file: bool = False
    _cached_report: dict[str, Any] | None = None

    @property
    def report(self) -> dict[str, Any]:
        """The JSON document, made on first use: `lab replay -q` without `--json` never needs
        it, and on a capture of many flows it would be a quarter of the memory."""
        if self._cached_report is None:
            self._cached_report = _report(self, self.truncated_file)
        return self._cached_report

    @property
    def read_to_end(self) -> bool:
        """False when damage stopped the reading, or packets were of a link type not decoded."""
        stopped = any(self.reader.problem_counts.get(k) for k in STOPPING_PROBLEMS)
        return not stopped and not self.unsupported_linktypes

    @property
    def unreadable(self) -> bool:
        """Not a capture at all (no pcap or pcapng header could be read)."""
        return self.reader.unreadable

    @property
    def complete(self) -> bool:
        """Read to its end, and every transfer found is complete."""
        transfers = [t for s in self.sessions for t in s.transfers]
        return self.read_to_end and all(t.complete for t in transfers)

    @property
    def status(self) -> Status:
        """What the command line turns into an exit code (lab.cli.replay.exit_code_of)."""
        if self.unreadable:
            return "unreadable"
        return "complete" if self.complete else "incomplete"

    def damage_lines(self) -> list[str]:
        """One line per kind of capture damage, with counts (for stderr)."""
        lines = []
        firsts: dict[str, CaptureProblem] = {}
        for p in self.reader.problems:
            firsts.setdefault(p.kind, p)
        for kind, count in self.reader.problem_counts.items():
            first = firsts.get(kind)
            where = "" if first is None else f"; first {first.describe()}"
            lines.append(f"{kind} x{count}{where}")
        for linktype, count in sorted(self.unsupported_linktypes.items()):
            lines.append(f"unsupported_linktype x{count}: link type {linktype} is not decoded")
        return lines


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
    path: str | Path | BinaryIO,
    *,
    out_dir: str | Path | None = None,
    policy: OverlapPolicy = "first",
    name: str | None = None,
    digests: bool = True,
) -> ReplayResult:
    """Run the whole replay of one capture (a path, or a binary stream named `name`).

    `digests=False` skips each transfer's sha256 (its `sha256` stays ""): for a caller that
    shows no JSON report (`lab replay` without `--json`: the summary does not show it), hashing
    every recovered byte is work nobody reads (a tenth of the time of a large download)."""
    if out_dir is not None:
        out_dir = Path(out_dir)  # notebooks and scripts pass plain strings
    reader = CaptureReader(path)
    table = FlowTable(policy)
    packets = 0
    start = 0
    unsupported: dict[int, int] = {}
    segment = table.fast_segment
    fast_decode, ethernet = fast_ethernet_segment, LINKTYPE_ETHERNET  # locals: per packet
    try:
        for record in reader.records():
            if isinstance(record, CapturedPacket):
                ts, linktype, data = record.timestamp_ns, record.linktype, record.data
                orig_len = record.orig_len
            else:  # a classic pcap record: no packet object is made unless it is needed
                _number, ts, linktype, data, orig_len, _offset = record
            if not packets:
                start = ts
            packets += 1
            if linktype == ethernet:
                fast = fast_decode(data, orig_len)
                if fast is not None:  # plain TCP (or nothing replay uses): taken as is
                    if fast:
                        segment(ts, *fast)
                    continue
            # everything else through the full decoder (imported on first use: start-up time)
            from lab.replay.decode import decode_packet

            pkt = as_packet(record)
            decoded = decode_packet(pkt)
            if (
                decoded.frame is None
                and decoded.dropped is None
                and pkt.linktype not in SUPPORTED_LINKTYPES
            ):
                unsupported[pkt.linktype] = unsupported.get(pkt.linktype, 0) + 1
            table.process(pkt, decoded)
        table.finish()
        cut = any(p.kind == "truncated" for p in reader.problems)
        sessions = reconstruct(table, out_dir=out_dir, truncated_file=cut, digests=digests)
        capture = name if name is not None else str(path)
        result = ReplayResult(capture, reader, table, sessions, packets, start, unsupported, cut)
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
    seen: set[tuple[str, int, int | None]] = set()
    for p in result.reader.problems:
        kind = "truncated_capture" if p.kind in ("truncated", "snaplen_cut") else p.kind
        if (kind, p.offset, p.packet_number) in seen:
            continue  # one place cut short is one truncated_capture, however it was noticed
        seen.add((kind, p.offset, p.packet_number))
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
    for linktype, count in sorted(result.unsupported_linktypes.items()):
        anomalies.append({"kind": "unsupported_linktype", "linktype": linktype, "packets": count})
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


def _summarise_anomalies(anomalies: list[dict[str, Any]]) -> str:
    parts = []
    for a in anomalies:
        kind = a["kind"]
        if kind == "gap":
            parts.append(f"gap {a['missing_bytes']} B in {len(a['ranges'])} range(s)")
        elif kind == "bad_checksum" and a.get("untrusted_ranges"):
            untrusted = sum(hi - lo for lo, hi in a["untrusted_ranges"])
            parts.append(f"bad_checksum x{a['count']} ({untrusted} B only from them: untrusted)")
        elif kind in ("retransmission", "bad_checksum") and "count" in a:
            parts.append(f"{kind} x{a['count']}")
        elif kind == "size_mismatch":
            parts.append(f"size_mismatch (expected {a['expected']} from {a['source']})")
        elif kind == "overlap_conflict" and "offset" in a:
            parts.append(f"overlap_conflict @{a['offset']}+{a['length']} ({a['winner']} kept)")
        else:
            parts.append(kind)
    return ", ".join(parts)


def print_summary(result: ReplayResult, out: TextIO) -> None:
    r = result.report
    print(
        f"{r['capture']}: {r['format'] or 'unreadable'}, {r['packets']} packets, "
        f"{len(r['flows'])} TCP flows, {len(r['ftp_sessions'])} FTP session(s)",
        file=out,
    )
    for p in result.reader.problems[:20]:
        print(f"  capture: {p.describe()}", file=out)
    for s in r["ftp_sessions"]:
        print(f"FTP {s['client']} -> {s['server']} (flow {s['control_flow']})", file=out)
        for d in s["dialogue"][:200]:
            arrow = ">" if d["from"] == "client" else "<"
            print(f"  {d['t']:10.6f} {arrow} {d['line'][:120]}", file=out)
        if len(s["dialogue"]) > 200:
            print(f"  ... {len(s['dialogue']) - 200} more lines", file=out)
        for t in s["transfers"]:
            status = "complete" if t["complete"] else "INCOMPLETE"
            arg = f" {t['argument']}" if t["argument"] else ""
            print(
                f"  {t['command']}{arg} [{t['mode'] or '?'}] {t['bytes']} bytes {status}"
                f"{' -> ' + t['saved_as'] if t['saved_as'] else ''}",
                file=out,
            )
            if t["anomalies"]:
                print(f"      anomalies: {_summarise_anomalies(t['anomalies'])}", file=out)
        if s["anomalies"]:
            print(f"  session anomalies: {_summarise_anomalies(s['anomalies'])}", file=out)
    others = [f for f in r["flows"] if f["role"] == "other"]
    if others:
        print(f"{len(others)} other TCP flow(s)", file=out)
    for f in others[:MAX_FLOW_LINES]:
        print(f"  {flow_line(f)}", file=out)
    if len(others) > MAX_FLOW_LINES:
        print(f"  ... {len(others) - MAX_FLOW_LINES} more flows (all in --json)", file=out)


MAX_FLOW_LINES = 1000


def flow_line(f: dict[str, Any]) -> str:
    """One TCP flow for people: endpoints, bytes each way, state reached, anomaly counts."""
    if f["closed"] == "open":
        state = "established" if f["handshake"] else ("midstream" if f["midstream"] else "open")
    else:
        state = {"fin": "closed (FIN)", "rst": "reset"}[f["closed"]]
    counts: dict[str, int] = {}
    for side in ("client_to_server", "server_to_client"):
        for a in f["anomalies"][side]:
            if a["kind"] in ("rst", "midstream"):
                continue  # already in the state
            counts[a["kind"]] = counts.get(a["kind"], 0) + int(a.get("count", 1))
    anomalies = ", ".join(f"{k} x{n}" for k, n in counts.items()) or "none"
    return (
        f"flow {f['index']} {f['client']} > {f['server']}: {f['bytes_client_to_server']} B >,"
        f" {f['bytes_server_to_client']} B <, {state}, anomalies: {anomalies}"
    )
