"""Behaviour of `lab replay`: flows, reassembly anomalies, FTP sessions, saved files, exit codes.

Real captures from suricata-verify and zeek (captures/peer/) give known results; edge cases are
synthesized, either by rewriting a real capture's link layer (cooked, raw IP, pcapng) or by
building a small FTP session with the fast codec.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.capture.reader import CaptureReader
from lab.capture.writer import PacketRecord, pcap_bytes, pcapng_bytes
from lab.cli.main import main as lab_main
from lab.cli.replay import exit_code_of
from lab.replay import steps
from lab.replay.decode import decode_packet
from lab.replay.flows import FlowTable
from lab.replay.ftp import safe_name
from lab.replay.report import replay_capture
from lab.wire.fast import encode_tcp
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.segment import Flags, Segment
from lab.wire.seq import seq_add

PEER = Path(__file__).resolve().parent.parent / "captures" / "peer"
ACTIVE = PEER / "tests_ftp_ftp-download-active_input.pcap"
PASSIVE = PEER / "tests_ftp_ftp-download-passive_input.pcap"
IPV4_ALL = PEER / "tests_firewall_ruletype-firewall-116-ftp-all-data-ipv4_input.pcap"
IPV6_ALL = PEER / "tests_firewall_ruletype-firewall-117-ftp-all-data-ipv6_input.pcap"
ZEEK_IPV6 = PEER / "ftp_ipv6.pcap"


def transfers(result_report: dict) -> list[dict]:  # type: ignore[type-arg]
    return [t for s in result_report["ftp_sessions"] for t in s["transfers"]]


def flows_of(path: Path | bytes, policy: str = "first") -> FlowTable:
    table = FlowTable("last" if policy == "last" else "first")
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    for pkt in CaptureReader(source):
        table.process(pkt, decode_packet(pkt))
    table.finish()
    return table


def stream(half) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join(chunk for _, chunk in half.data.runs())


# -- synthetic sessions ---------------------------------------------------------------------------

CLIENT = "198.18.0.2"
SERVER = "198.18.0.1"


@dataclass
class Conn:
    """One synthetic TCP connection: tracks both sequence spaces, appends packets to `out`."""

    out: list[PacketRecord]
    clock: list[int]
    c: tuple[str, int]
    s: tuple[str, int]
    isn_c: int = 1000
    isn_s: int = 7_000_000
    nxt: dict[bool, int] = field(default_factory=dict)

    def packet(
        self,
        from_client: bool,
        flags: Flags,
        payload: bytes = b"",
        seq: int | None = None,
        corrupt: bool = False,
    ) -> None:
        src, dst = (self.c, self.s) if from_client else (self.s, self.c)
        seq = self.nxt[from_client] if seq is None else seq
        seg = Segment(
            src[1], dst[1], seq, self.nxt.get(not from_client, 0), flags, 65535, (), payload
        )
        frame = TcpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", Ipv4Header(src[0], dst[0]), seg)
        data = bytearray(encode_tcp(frame))
        if corrupt:
            data[-1] ^= 0xFF
        self.clock[0] += 1_000_000
        self.out.append(PacketRecord(self.clock[0], bytes(data)))

    def open(self) -> None:
        self.nxt = {True: self.isn_c, False: 0}
        self.packet(True, Flags.SYN)
        self.nxt[True] = seq_add(self.isn_c, 1)
        self.nxt[False] = self.isn_s
        self.packet(False, Flags.SYN | Flags.ACK)
        self.nxt[False] = seq_add(self.isn_s, 1)
        self.packet(True, Flags.ACK)

    def send(self, from_client: bool, data: bytes, **kw: object) -> None:
        self.packet(from_client, Flags.ACK | Flags.PSH, data, **kw)  # type: ignore[arg-type]
        self.nxt[from_client] = seq_add(self.nxt[from_client], len(data))

    def close(self, first_client: bool = True) -> None:
        for side in (first_client, not first_client):
            self.packet(side, Flags.FIN | Flags.ACK)
            self.nxt[side] = seq_add(self.nxt[side], 1)
        self.packet(first_client, Flags.ACK)


def ftp_capture(
    argument: str = "pub/file.bin",
    content: bytes = b"0123456789" * 300,
    *,
    announce: int | None = None,
    drop_data_segment: int | None = None,
    send_226: bool = True,
    data_isn: int = 20_000,
    corrupt_data_segment: int | None = None,
    repeat: int = 1,
    size_reply: int | None = None,
    restart: int = 0,
    refuse_first: bool = False,
    data_plan: list[tuple[int, bool, bytes | None]] | None = None,
    reset_data: bool = False,
) -> bytes:
    """A passive-mode FTP download as a classic pcap, with optional faults.

    `data_plan` replaces the in-order data segments: each (chunk index, corrupt, other bytes)
    sends the 1000-byte chunk at its own sequence number, in plan order, with a bad TCP
    checksum if `corrupt`, or with `other bytes` instead of the chunk's if given.
    """
    out: list[PacketRecord] = []
    clock = [1_700_000_000_000_000_000]
    ctl = Conn(out, clock, (CLIENT, 40000), (SERVER, 2121))
    ctl.open()
    ctl.send(False, b"220 synthetic FTP ready\r\n")
    ctl.send(True, b"USER anonymous\r\n")
    ctl.send(False, b"331 Password please\r\n")
    ctl.send(True, b"PASS x@y\r\n")
    ctl.send(False, b"230 Logged in\r\n")
    for i in range(repeat):
        port = 50000 + i
        if size_reply is not None:
            ctl.send(True, f"SIZE {argument}\r\n".encode())
            ctl.send(False, f"213 {size_reply}\r\n".encode())
        if restart:
            ctl.send(True, f"REST {restart}\r\n".encode())
            ctl.send(False, b"350 Restarting\r\n")
        ctl.send(True, b"PASV\r\n")
        ctl.send(
            False, f"227 Entering Passive Mode (198,18,0,1,{port >> 8},{port & 255}).\r\n".encode()
        )
        if refuse_first:
            ctl.send(True, b"RETR missing.txt\r\n")
            ctl.send(False, b"550 No such file\r\n")
        ctl.send(True, f"RETR {argument}\r\n".encode())
        size = len(content) if announce is None else announce
        ctl.send(False, f"150 Opening BINARY mode data connection ({size} bytes)\r\n".encode())
        data = Conn(out, clock, (CLIENT, 41000 + i), (SERVER, port), isn_c=5, isn_s=data_isn)
        data.open()
        if data_plan is not None:
            first_seq = data.nxt[False]
            for n, corrupt, other in data_plan:
                chunk = content[n * 1000 : n * 1000 + 1000] if other is None else other
                data.send(False, chunk, seq=seq_add(first_seq, n * 1000), corrupt=corrupt)
            data.nxt[False] = seq_add(first_seq, len(content))
        for n, start in enumerate(range(0, len(content), 1000) if data_plan is None else ()):
            chunk = content[start : start + 1000]
            if n == drop_data_segment:
                data.nxt[False] = seq_add(data.nxt[False], len(chunk))
                continue
            data.send(False, chunk, corrupt=n == corrupt_data_segment)
        if reset_data:
            data.packet(False, Flags.RST | Flags.ACK)
        else:
            data.close(first_client=False)
        if send_226:
            ctl.send(False, b"226 Transfer complete\r\n")
    ctl.send(True, b"QUIT\r\n")
    ctl.send(False, b"221 Bye\r\n")
    ctl.close()
    return pcap_bytes(out)


def replay_bytes(tmp_path: Path, data: bytes, name: str = "cap.pcap", **kw: object):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_bytes(data)
    return replay_capture(path, out_dir=tmp_path / "out", **kw)  # type: ignore[arg-type]


def test_without_digests_only_the_sha256_is_left_out(tmp_path: Path) -> None:
    """`lab replay` without `--json` shows no sha256: it is not computed, and
    nothing else changes (files saved, completeness, every other field)."""
    data = ftp_capture(corrupt_data_segment=1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = replay_bytes(tmp_path / "a", data)
    bare = replay_bytes(tmp_path / "b", data, digests=False)
    a, b = transfers(full.report), transfers(bare.report)
    saved = Path(a[0]["saved_as"]).read_bytes()
    assert [t["sha256"] for t in a] == [hashlib.sha256(saved).hexdigest()]
    assert [t["sha256"] for t in b] == [None]
    strip = [{k: v for k, v in t.items() if k not in ("sha256", "saved_as")} for t in a]
    assert strip == [{k: v for k, v in t.items() if k not in ("sha256", "saved_as")} for t in b]
    assert saved == Path(b[0]["saved_as"]).read_bytes()
    assert exit_code_of(full) == exit_code_of(bare)


def test_cli_quiet_without_json_saves_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    path.write_bytes(ftp_capture())
    assert lab_main(["replay", str(path), "--out", str(tmp_path / "q"), "-q"]) == 0
    assert (tmp_path / "q" / "file.bin").read_bytes() == b"0123456789" * 300


# -- real captures: FTP ---------------------------------------------------------------------------


@pytest.mark.parametrize(("capture", "mode"), [(ACTIVE, "active"), (PASSIVE, "passive")])
def test_download_recovers_file_whose_size_matches_the_150_reply(
    tmp_path: Path, capture: Path, mode: str
) -> None:
    result = replay_capture(capture, out_dir=tmp_path)
    assert exit_code_of(result) == 0
    ts = transfers(result.report)
    assert [t["command"] for t in ts] == ["NLST", "RETR", "NLST"]
    retr = ts[1]
    assert retr["argument"] == "index.html"
    assert retr["mode"] == mode
    assert retr["bytes"] == retr["expected_size"] == 39
    assert retr["complete"] is True
    assert retr["anomalies"] == []
    saved = Path(retr["saved_as"])
    assert saved.name == "index.html"
    assert saved.parent == tmp_path
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == retr["sha256"]
    assert saved.read_bytes() == b"uid=0(root) gid=0(root) groups=0(root)\n"


def test_dialogue_has_times_directions_and_lines() -> None:
    report = replay_capture(PASSIVE).report
    [session] = report["ftp_sessions"]
    assert session["server"] == "172.23.0.2:21"
    first = session["dialogue"][0]
    assert first["from"] == "server"
    assert first["line"].startswith("220")
    times = [d["t"] for d in session["dialogue"]]
    assert times == sorted(times)
    assert any(d["from"] == "client" and d["line"] == "PASV" for d in session["dialogue"])


def test_same_file_twice_is_saved_with_a_suffix_not_overwritten(tmp_path: Path) -> None:
    result = replay_capture(ZEEK_IPV6, out_dir=tmp_path)
    retrs = [t for t in transfers(result.report) if t["command"] == "RETR"]
    assert [Path(t["saved_as"]).name for t in retrs] == ["robots.txt", "robots.txt.1"]
    assert [t["mode"] for t in retrs] == ["passive", "active"]  # EPSV then EPRT, over IPv6
    assert all(t["bytes"] == t["expected_size"] == 77 for t in retrs)
    assert (tmp_path / "robots.txt").read_bytes() == (tmp_path / "robots.txt.1").read_bytes()


@pytest.mark.parametrize("capture", [IPV4_ALL, IPV6_ALL])
def test_every_transfer_command_is_matched_in_both_modes(capture: Path) -> None:
    result = replay_capture(capture)
    ts = transfers(result.report)
    seen = {(t["command"], t["mode"]) for t in ts}
    for cmd in ("STOR", "APPE", "STOU", "LIST", "NLST", "MLSD", "RETR"):
        assert (cmd, "active") in seen
        assert (cmd, "passive") in seen
    assert all(t["complete"] for t in ts)
    assert exit_code_of(result) == 0
    stor = next(t for t in ts if t["command"] == "STOR")
    client = result.report["ftp_sessions"][0]["client"].rsplit(":", 1)[0]
    assert stor["data_flow"].startswith(client)  # upload: the client sends the data


def test_control_connection_on_a_non_standard_port_is_recognised(tmp_path: Path) -> None:
    result = replay_bytes(tmp_path, ftp_capture())
    [session] = result.report["ftp_sessions"]
    assert session["server"] == f"{SERVER}:2121"
    [t] = session["transfers"]
    assert t["complete"] is True
    assert t["bytes"] == 3000


def test_capture_without_data_connections_reports_them_missing() -> None:
    result = replay_capture(PEER / "tests_ftp-epsv_input.pcap")
    ts = transfers(result.report)
    assert ts
    assert all(a["kind"] == "no_data_connection" for t in ts for a in t["anomalies"])
    assert exit_code_of(result) == 1


def test_overlong_reply_is_reported_not_fatal() -> None:
    result = replay_capture(PEER / "tests_ftp_ftp-too-long-response_ftp-too-long-response.pcap")
    [session] = result.report["ftp_sessions"]
    assert any(a.get("error") == "ReplyLineTooLongError" for a in session["anomalies"])


# -- real captures: TCP anomalies -----------------------------------------------------------------


def test_bad_checksum_copies_in_zeek_capture_never_decide_the_stream() -> None:
    # zeek's tcp_reassembly.pcap: every conflicting copy in it has a bad TCP checksum. They are
    # set aside, so the policy has nothing to decide and both policies recover the same bytes;
    # the bytes only a corrupted copy carried are listed as untrusted.
    first = flows_of(PEER / "tcp_reassembly.pcap", "first").flows[0]
    last = flows_of(PEER / "tcp_reassembly.pcap", "last").flows[0]
    assert first.c2s.bad_checksums == last.c2s.bad_checksums == 10
    assert first.c2s.conflicts == last.c2s.conflicts == []
    assert stream(first.c2s) == stream(last.c2s)
    assert first.c2s.retransmissions > 0
    assert first.c2s.superseded_bad_checksums >= 1
    assert first.c2s.untrusted_ranges
    assert first.c2s.untrusted_ranges == last.c2s.untrusted_ranges
    # no untrusted range overlaps a gap: they are the holes the bad copies filled
    for lo, hi in first.c2s.untrusted_ranges:
        assert all(hi <= a or lo >= b for a, b in first.c2s.gaps)


# chunk 1 held back, chunk 2 then a good copy of chunk 2 with other bytes, then chunk 1
CONFLICT_PLAN: list[tuple[int, bool, bytes | None]] = [(0, False, None), (2, False, None)]
CONFLICT_PLAN += [(2, False, b"X" * 1000), (1, False, None)]


@pytest.mark.parametrize("policy", ["first", "last"])
def test_policy_decides_conflicting_overlap_of_held_bytes(tmp_path: Path, policy: str) -> None:
    content = b"0123456789" * 300
    result = replay_bytes(tmp_path, ftp_capture(data_plan=CONFLICT_PLAN), policy=policy)
    [t] = transfers(result.report)
    conflicts = [a for a in t["anomalies"] if a["kind"] == "overlap_conflict"]
    assert conflicts == [
        {"kind": "overlap_conflict", "offset": 2000, "length": 1000, "winner": policy}
        | {"policy": policy}
    ]
    expected = content if policy == "first" else content[:2000] + b"X" * 1000
    assert Path(t["saved_as"]).read_bytes() == expected
    assert t["sha256"] == hashlib.sha256(expected).hexdigest()


def test_cli_policy_last_changes_the_recovered_file(tmp_path: Path) -> None:
    cap = tmp_path / "c.pcap"
    cap.write_bytes(ftp_capture(data_plan=CONFLICT_PLAN))
    got = {}
    for policy in ("first", "last"):
        out = tmp_path / policy
        code = lab_main(["replay", str(cap), "--out", str(out), "--policy", policy])
        assert code == 0
        got[policy] = (out / "file.bin").read_bytes()
    assert got["first"] != got["last"]
    assert got["last"].endswith(b"X" * 1000)


@pytest.mark.parametrize("policy", ["first", "last"])
@pytest.mark.parametrize(
    "plan",
    [
        # corrupted copy in order first, good retransmission after: the good one is kept
        [(0, False, None), (1, True, None), (1, False, None), (2, False, None)],
        # good copy held out of order, corrupted copy after it: `last` must not let it win
        [(0, False, None), (2, False, None), (2, True, None), (1, False, None)],
        # corrupted copy of the last chunk arrives after everything
        [(0, False, None), (1, False, None), (2, False, None), (2, True, None)],
    ],
)
def test_bad_checksum_copy_never_wins_over_a_good_copy(
    tmp_path: Path, policy: str, plan: list[tuple[int, bool, bytes | None]]
) -> None:
    content = b"0123456789" * 300
    result = replay_bytes(tmp_path, ftp_capture(data_plan=plan), policy=policy)
    [t] = transfers(result.report)
    assert Path(t["saved_as"]).read_bytes() == content
    assert t["complete"] is True
    assert Path(t["saved_as"]).name == "file.bin"
    bad = [a for a in t["anomalies"] if a["kind"] == "bad_checksum"]
    assert bad == [{"kind": "bad_checksum", "count": 1, "superseded": 1, "untrusted_ranges": []}]
    assert not any(a["kind"] == "overlap_conflict" for a in t["anomalies"])
    assert exit_code_of(result) == 0


def test_direction_whose_checksums_are_all_bad_is_still_recovered_with_bounded_memory() -> None:
    # A capture on a sending host whose offload the capture does not reveal: every data
    # segment's checksum is wrong. Beyond the bound (here 4000 bytes) they cannot all be set
    # aside; they are used, and every byte is listed as untrusted.
    content = bytes(range(256)) * 40  # 10240 bytes, 11 segments
    cap = ftp_capture(content=content, data_plan=[(n, True, None) for n in range(11)])
    table = FlowTable("first", capacity=4000)
    for pkt in CaptureReader(io.BytesIO(cap)):
        table.process(pkt, decode_packet(pkt))
        for f in table.flows:
            assert f.s2c.suspect_bytes <= 4000
    table.finish()
    half = table.flows[1].s2c
    # (the test corrupts a segment by flipping its last byte: those are the bytes recorded)
    seen = bytearray(content)
    for end in range(999, len(content), 1000):
        seen[end] ^= 0xFF
    seen[-1] ^= 0xFF
    assert stream(half) == bytes(seen)
    assert half.bad_checksums == 11
    assert half.bad_is_normal
    assert half.untrusted_ranges == [(0, len(content))]
    assert half.gaps == []


def test_many_small_bad_checksum_segments_are_bounded_in_number_too() -> None:
    out: list[PacketRecord] = []
    conn = Conn(out, [0], (CLIENT, 40000), (SERVER, 80))
    conn.open()
    for i in range(300):
        conn.send(True, bytes([i % 251, 7]), corrupt=True)  # the flip hits byte 7: seen as 0xF8
    conn.close()
    table = FlowTable("first")
    for pkt in CaptureReader(io.BytesIO(pcap_bytes(out))):
        table.process(pkt, decode_packet(pkt))
        assert len(table.flows[0].c2s.suspect) <= 64
    table.finish()
    half = table.flows[0].c2s
    assert stream(half) == b"".join(bytes([i % 251, 0xF8]) for i in range(300))
    assert half.bad_is_normal
    assert half.untrusted_ranges == [(0, 600)]


@settings(max_examples=40, deadline=None)
@given(
    order=st.permutations(range(6)),
    bad=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 12)), max_size=8),
    policy=st.sampled_from(["first", "last"]),
)
def test_any_mix_of_bad_copies_never_changes_a_file_with_good_copies(
    order: list[int], bad: list[tuple[int, int]], policy: str
) -> None:
    content = bytes(range(200)) * 30  # 6000 bytes, 6 chunks, each with one good copy
    plan: list[tuple[int, bool, bytes | None]] = [(n, False, None) for n in order]
    for chunk, where in bad:
        plan.insert(min(where, len(plan)), (chunk, True, None))
    table = flows_of(ftp_capture(content=content, data_plan=plan), policy)
    half = table.flows[1].s2c
    assert stream(half) == content
    assert half.untrusted_ranges == []
    assert half.bad_checksums == len(bad)
    assert half.conflicts == []


def test_bad_checksum_segment_steps_say_it_was_set_aside(tmp_path: Path) -> None:
    cap = tmp_path / "c.pcap"
    cap.write_bytes(ftp_capture(data_plan=[(0, False, None), (1, True, None), (1, False, None)]))
    flagged = [s for s in steps(cap) if "bad checksum" in s.events]
    assert len(flagged) == 1
    assert "set aside (not trusted)" in flagged[0].events
    assert flagged[0].push is None  # it never reached the reassembler


@pytest.mark.parametrize(
    ("capture", "kept", "discarded"),
    [
        ("eve-overlap-payload-01__tcp-overlap.pcap", b"GOOD", b"EVIL"),
        ("eve-overlap-payload-04-partial-overlap__tcp-overlap2.pcap", b"OOD", b"XXX"),
    ],
)
@pytest.mark.parametrize("policy", ["first", "last"])
def test_retransmission_conflicting_with_delivered_bytes_keeps_them(
    capture: str, kept: bytes, discarded: bytes, policy: str
) -> None:
    # Delivered bytes cannot be taken back: whatever the policy, the first copy stays.
    flow = flows_of(PEER / capture, policy).flows[0]
    assert stream(flow.c2s) == b"GOOD"
    [conflict] = flow.c2s.conflicts
    assert (conflict.kept, conflict.discarded, conflict.winner) == (kept, discarded, "first")


def test_overlap_conflict_reported_in_json_with_offset_length_and_winner() -> None:
    result = replay_capture(PEER / "eve-overlap-payload-01__tcp-overlap.pcap")
    anomalies = result.report["flows"][0]["anomalies"]["client_to_server"]
    assert {
        "kind": "overlap_conflict",
        "offset": 0,
        "length": 4,
        "winner": "first",
        "policy": "first",
    } in anomalies
    assert {"kind": "retransmission", "count": 1} in anomalies


@pytest.mark.parametrize(
    ("capture", "gap"),
    [
        ("eve-overlap-payload-05-gap__tcp-simple-gap2.pcap", (4, 8)),
        ("eve-payload-06-tcp-data-leading-gap__tcp-leading-gap.pcap", (0, 4)),
    ],
)
def test_suricata_gap_captures_report_the_missing_range(capture: str, gap: tuple[int, int]) -> None:
    flow = flows_of(PEER / capture).flows[0]
    assert flow.c2s.gaps == [gap]


def test_missing_syn_is_flagged_midstream() -> None:
    flow = flows_of(PEER / "tcp_missing-syn.pcap").flows[0]
    assert flow.midstream
    assert flow.s2c.delivered > 9000


def test_acknowledged_but_uncaptured_end_data_is_a_gap() -> None:
    flow = flows_of(PEER / "tcp_miss_end_data.pcap").flows[0]
    assert flow.s2c.gaps
    assert flow.s2c.gaps[-1][1] > flow.s2c.gaps[-1][0]


def test_rst_data_is_not_stream_data_but_is_counted() -> None:
    flow = flows_of(PEER / "bug-6244-tcp-rst-with-data__tcp-rst-with-data.pcap").flows[0]
    assert flow.reset
    assert flow.c2s.rst_data_bytes == len(b"Access Denied")
    assert stream(flow.c2s) == b""


def test_handshake_tracked_and_retransmissions_counted() -> None:
    flow = flows_of(PEER / "tcp_ssh-dups.pcap").flows[0]
    assert flow.handshake_complete
    assert flow.c2s.retransmissions > 0
    assert flow.s2c.retransmissions > 0
    assert not flow.c2s.conflicts


# -- synthesized from real captures: other link layers and formats --------------------------------


def _rewrite(path: Path, kind: str) -> bytes:
    """The same packets with another link layer / file format."""
    recs = []
    for p in CaptureReader(path):
        eth_type = p.data[12:14]
        ip = p.data[14:]
        if kind == "sll":
            hdr = struct.pack("!HHH", 0, 1, 6) + p.data[6:12] + b"\x00\x00" + eth_type
            recs.append(PacketRecord(p.timestamp_ns, hdr + ip))
        elif kind == "sll2":
            hdr = eth_type + b"\x00\x00" + struct.pack("!IHBB", 2, 1, 0, 6) + p.data[6:12] + b"\0\0"
            recs.append(PacketRecord(p.timestamp_ns, hdr + ip))
        elif kind in ("raw", "raw12", "ipv4"):
            recs.append(PacketRecord(p.timestamp_ns, ip))
        else:
            recs.append(PacketRecord(p.timestamp_ns, p.data, comment=f"frame {p.number}"))
    if kind == "sll":
        return pcap_bytes(recs, 113)
    if kind == "sll2":
        return pcap_bytes(recs, 276, endian=">", nanos=True)
    if kind in ("raw", "raw12", "ipv4"):
        return pcap_bytes(recs, {"raw": 101, "raw12": 12, "ipv4": 228}[kind])
    return pcapng_bytes(recs, (1,), endian=">")


@pytest.mark.parametrize("kind", ["sll", "sll2", "raw", "raw12", "ipv4", "pcapng"])
def test_rewritten_captures_give_the_same_transfers(tmp_path: Path, kind: str) -> None:
    reference = transfers(replay_capture(PASSIVE).report)
    result = replay_bytes(tmp_path, _rewrite(PASSIVE, kind))
    got = transfers(result.report)
    key = [(t["command"], t["bytes"], t["sha256"], t["complete"]) for t in reference]
    assert [(t["command"], t["bytes"], t["sha256"], t["complete"]) for t in got] == key


# -- synthesized sessions: faults -----------------------------------------------------------------


def test_path_traversal_in_retr_argument_is_made_safe(tmp_path: Path) -> None:
    result = replay_bytes(tmp_path, ftp_capture(argument="../../../etc/passwd"))
    [t] = transfers(result.report)
    saved = Path(t["saved_as"]).resolve()
    assert saved == (tmp_path / "out" / "passwd").resolve()
    assert saved.stat().st_mode & 0o111 == 0  # recovered files are never executable
    assert t["argument"] == "../../../etc/passwd"


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("..", "fallback"),
        ("/", "fallback"),
        ("", "fallback"),
        ("dir/.hidden", "hidden"),
        ("a\x00b\x07c.txt", "abc.txt"),
    ],
)
def test_safe_name_keeps_a_basename_only(argument: str, expected: str) -> None:
    assert safe_name(argument, "fallback") == expected


@pytest.mark.parametrize(
    "argument",
    ["é" * 200, "😀" * 100, "a" * 400, "x\u202e\ufefftxt.exe"],
    ids=["latin-200", "emoji-100", "ascii-400", "bidi-override"],
)
def test_very_long_or_odd_names_are_saved_within_name_max(tmp_path: Path, argument: str) -> None:
    # NAME_MAX is 255 bytes: 200 two-byte characters made writing the file fail (ENAMETOOLONG)
    result = replay_bytes(tmp_path, ftp_capture(argument=argument, repeat=2, drop_data_segment=1))
    saved = [Path(t["saved_as"]) for t in transfers(result.report)]
    assert len(saved) == 2
    assert saved[0] != saved[1]
    assert saved[1].name == saved[0].name[: -len(".part")] + ".1.part"
    for p in saved:
        assert p.parent == tmp_path / "out"
        assert p.exists()
        assert len(p.name.encode()) <= 255
        assert p.name.startswith(safe_name(argument, "x"))
        assert p.name.endswith(".part")  # a second one is NAME.1.part, never NAME.part.1
        assert p.name.isprintable()
    assert exit_code_of(result) == 1


def test_missing_data_segment_makes_a_part_file_with_the_gap(tmp_path: Path) -> None:
    result = replay_bytes(tmp_path, ftp_capture(drop_data_segment=1))
    assert exit_code_of(result) == 1
    [t] = transfers(result.report)
    assert t["complete"] is False
    assert t["saved_as"].endswith("file.bin.part")
    kinds = {a["kind"]: a for a in t["anomalies"]}
    assert kinds["gap"]["ranges"] == [[1000, 2000]]
    assert kinds["size_mismatch"]["expected"] == 3000
    assert t["bytes"] == 2000
    # never zero-filled: the file holds exactly the bytes captured
    assert (
        Path(t["saved_as"]).read_bytes()
        == (b"0123456789" * 300)[:1000] + (b"0123456789" * 300)[2000:]
    )


def test_size_announced_differently_is_a_size_mismatch(tmp_path: Path) -> None:
    result = replay_bytes(tmp_path, ftp_capture(announce=4000))
    [t] = transfers(result.report)
    [mismatch] = [a for a in t["anomalies"] if a["kind"] == "size_mismatch"]
    assert mismatch == {"kind": "size_mismatch", "expected": 4000, "source": "150", "bytes": 3000}
    assert t["complete"] is False


@pytest.mark.parametrize("send_226", [True, False])
def test_reset_data_connection_is_an_rst_anomaly(tmp_path: Path, send_226: bool) -> None:
    result = replay_bytes(tmp_path, ftp_capture(reset_data=True, send_226=send_226))
    [t] = transfers(result.report)
    assert {"kind": "rst", "from": [f"{SERVER}:50000"]} in t["anomalies"]
    assert t["bytes"] == 3000
    # all bytes and the server's 226: complete; a reset without 226 cannot be trusted to be
    assert t["complete"] is send_226
    assert exit_code_of(result) == (0 if send_226 else 1)
    [flow] = [f for f in result.report["flows"] if f["server"] == f"{SERVER}:50000"]
    assert flow["closed"] == "rst"
    assert any(a["kind"] == "rst" for a in flow["anomalies"]["server_to_client"])


def test_missing_226_is_reported(tmp_path: Path) -> None:
    result = replay_bytes(tmp_path, ftp_capture(send_226=False))
    [t] = transfers(result.report)
    assert any(a["kind"] == "no_226" for a in t["anomalies"])


def test_sequence_numbers_wrapping_around_2_32_reassemble(tmp_path: Path) -> None:
    result = replay_bytes(tmp_path, ftp_capture(data_isn=(1 << 32) - 1500))
    [t] = transfers(result.report)
    assert t["complete"] is True
    assert Path(t["saved_as"]).read_bytes() == b"0123456789" * 300


def test_bad_checksum_is_flagged_and_data_still_used(tmp_path: Path) -> None:
    # The only copy of bytes 2000..3000 is corrupted: used as a last resort rather than a hole,
    # listed as untrusted, and the transfer cannot be vouched for (.part, exit 1).
    result = replay_bytes(tmp_path, ftp_capture(corrupt_data_segment=2))
    [t] = transfers(result.report)
    assert {
        "kind": "bad_checksum",
        "count": 1,
        "superseded": 0,
        "untrusted_ranges": [[2000, 3000]],
    } in t["anomalies"]
    assert t["bytes"] == 3000
    assert t["complete"] is False
    assert t["saved_as"].endswith("file.bin.part")
    assert exit_code_of(result) == 1


def test_summary_says_how_many_bytes_only_bad_checksum_copies_gave(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cap = tmp_path / "c.pcap"
    cap.write_bytes(ftp_capture(corrupt_data_segment=2))
    assert lab_main(["replay", str(cap), "--out", str(tmp_path / "o")]) == 1
    out = capsys.readouterr().out
    assert "3000 bytes INCOMPLETE" in out
    assert "bad_checksum x1 (1000 B only from them: untrusted)" in out


def test_checksum_offload_frames_are_not_flagged() -> None:
    seg = Segment(40000, 21, 1, 0, Flags.ACK | Flags.PSH, 100, (), b"USER x\r\n")
    frame = TcpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", Ipv4Header(CLIENT, SERVER), seg)
    data = bytearray(encode_tcp(frame))
    # what the kernel hands the capture before the NIC fills the checksum: the pseudo-header sum
    from lab.wire.checksum import ipv4_pseudo_header_sum

    partial = ipv4_pseudo_header_sum(CLIENT, SERVER, 6, 20 + 8) & 0xFFFF
    data[14 + 20 + 16 : 14 + 20 + 18] = partial.to_bytes(2, "big")
    [pkt] = CaptureReader(io.BytesIO(pcap_bytes([PacketRecord(1, bytes(data))])))
    decoded = decode_packet(pkt)
    assert decoded.tcp is not None
    assert decoded.offloaded
    assert not decoded.bad_checksum
    data[14 + 20 + 16] ^= 0x55  # now it is simply wrong
    [pkt] = CaptureReader(io.BytesIO(pcap_bytes([PacketRecord(1, bytes(data))])))
    assert decode_packet(pkt).bad_checksum
    # ... unless the capture says the frame was outgoing
    out = pcapng_bytes([PacketRecord(1, bytes(data), direction="out")])
    [pkt] = CaptureReader(io.BytesIO(out))
    assert not decode_packet(pkt).bad_checksum


def test_snaplen_cut_packets_are_a_truncated_capture(tmp_path: Path) -> None:
    recs = list(CaptureReader(io.BytesIO(ftp_capture())))
    cut = [
        PacketRecord(p.timestamp_ns, p.data[:100] if len(p.data) > 1000 else p.data, len(p.data))
        for p in recs
    ]
    result = replay_bytes(tmp_path, pcap_bytes(cut, snaplen=100))
    [t] = transfers(result.report)
    kinds = {a["kind"] for a in t["anomalies"]}
    assert {"truncated_capture", "gap"} <= kinds
    assert t["complete"] is False
    assert any(a["kind"] == "truncated_capture" for a in result.report["anomalies"])


def test_reused_four_tuple_with_new_isn_is_a_new_flow() -> None:
    out: list[PacketRecord] = []
    clock = [0]
    for isn in (100, 900_000):
        conn = Conn(out, clock, (CLIENT, 40000), (SERVER, 80), isn_c=isn)
        conn.open()
        conn.send(True, b"hello")
        conn.close()
    table = flows_of(pcap_bytes(out))
    assert len(table.flows) == 2
    assert [stream(f.c2s) for f in table.flows] == [b"hello", b"hello"]


def test_two_sessions_transfers_in_order(tmp_path: Path) -> None:
    result = replay_bytes(tmp_path, ftp_capture(repeat=3))
    ts = transfers(result.report)
    assert len(ts) == 3
    assert [Path(t["saved_as"]).name for t in ts] == ["file.bin", "file.bin.1", "file.bin.2"]
    assert len({t["data_flow"] for t in ts}) == 3


# -- damaged input, exit codes, CLI ---------------------------------------------------------------


def test_truncated_file_is_reported_with_offset_and_exit_1(tmp_path: Path) -> None:
    data = ftp_capture()
    cut = data[: len(data) * 2 // 3]
    result = replay_bytes(tmp_path, cut)
    [problem] = [a for a in result.report["anomalies"] if a["problem"] == "truncated"]
    assert problem["kind"] == "truncated_capture"
    assert 24 <= problem["offset"] < len(cut)
    assert problem["packet"] >= 1
    assert exit_code_of(result) == 1


def test_bad_magic_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "not.pcap"
    bad.write_bytes(b"this is not a capture at all")
    assert lab_main(["replay", str(bad)]) == 2
    assert "bad_magic at offset 0" in capsys.readouterr().err
    assert lab_main(["replay", str(tmp_path / "missing.pcap")]) == 2


def test_cli_writes_json_schema_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "r.json"
    code = lab_main(["replay", str(ACTIVE), "--out", str(tmp_path / "f"), "--json", str(out_json)])
    assert code == 0
    report = json.loads(out_json.read_text())
    assert set(report) >= {"capture", "packets", "flows", "ftp_sessions", "anomalies"}
    assert report["packets"] == 63
    session = report["ftp_sessions"][0]
    assert set(session) >= {"server", "client", "dialogue", "transfers"}
    assert set(session["dialogue"][0]) == {"t", "from", "line"}
    t = session["transfers"][1]
    for k in ("command", "argument", "mode", "data_flow", "bytes", "sha256", "complete"):
        assert k in t
    assert set(t) >= {"saved_as", "anomalies"}
    assert re.fullmatch(r"172\.23\.0\.2:20>172\.23\.0\.3:\d+", t["data_flow"])
    assert "RETR index.html [active] 39 bytes complete" in capsys.readouterr().out


def _check_anomalies(anomalies: object) -> None:
    assert isinstance(anomalies, list)
    for a in anomalies:
        assert isinstance(a, dict)
        assert isinstance(a["kind"], str)
        if a["kind"] == "gap":
            assert all(isinstance(lo, int) and lo < hi for lo, hi in a["ranges"])
        if a["kind"] == "overlap_conflict" and "offset" in a:
            assert isinstance(a["offset"], int)
            assert isinstance(a["length"], int)
            assert a["winner"] in ("first", "last")
        if a["kind"] == "retransmission":
            assert isinstance(a["count"], int)
            assert a["count"] > 0


@pytest.mark.parametrize(
    "faults",
    [{}, {"drop_data_segment": 1}, {"send_226": False}, {"data_plan": CONFLICT_PLAN}],
    ids=["clean", "gap", "no-226", "conflict"],
)
def test_json_report_has_the_issues_schema_and_types(tmp_path: Path, faults: dict) -> None:  # type: ignore[type-arg]
    cap = tmp_path / "c.pcap"
    cap.write_bytes(ftp_capture(**faults))
    out_json = tmp_path / "r.json"
    lab_main(["replay", str(cap), "-q", "--out", str(tmp_path / "f"), "--json", str(out_json)])
    report = json.loads(out_json.read_text())
    assert report["capture"] == str(cap) or report["capture"].endswith("c.pcap")
    assert isinstance(report["packets"], int)
    assert report["packets"] > 0
    assert isinstance(report["flows"], list)
    assert len(report["flows"]) == 2
    _check_anomalies(report["anomalies"])
    [session] = report["ftp_sessions"]
    assert (session["server"], session["client"]) == (f"{SERVER}:2121", f"{CLIENT}:40000")
    for d in session["dialogue"]:
        assert set(d) == {"t", "from", "line"}
        assert isinstance(d["t"], float)
        assert d["from"] in ("client", "server")
        assert isinstance(d["line"], str)
        assert "\r" not in d["line"]
        assert "\n" not in d["line"]
    [t] = session["transfers"]
    assert (t["command"], t["argument"], t["mode"]) == ("RETR", "pub/file.bin", "passive")
    assert t["data_flow"] == f"{SERVER}:50000>{CLIENT}:41000"  # the data's sender>receiver
    assert isinstance(t["bytes"], int)
    assert re.fullmatch(r"[0-9a-f]{64}", t["sha256"])
    assert isinstance(t["complete"], bool)
    saved = Path(t["saved_as"])
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == t["sha256"]
    assert saved.name.endswith(".part") is (not t["complete"])
    _check_anomalies(t["anomalies"])


def test_pcapng_section_and_interface_comments_reach_the_json_report(tmp_path: Path) -> None:
    from lab.capture.writer import pcapng_idb, pcapng_packet, pcapng_shb

    recs = list(CaptureReader(io.BytesIO(ftp_capture())))
    data = pcapng_shb(comment="fault schedule: none") + pcapng_idb(1, comment="lab0")
    data += b"".join(pcapng_packet(PacketRecord(p.timestamp_ns, p.data)) for p in recs)
    result = replay_bytes(tmp_path, data, name="c.pcapng")
    assert result.report["format"] == "pcapng"
    assert result.report["capture_comments"] == [
        {"where": "section 1", "text": "fault schedule: none"},
        {"where": "interface 0 of section 1", "text": "lab0"},
    ]
    [t] = transfers(result.report)
    assert t["complete"] is True


def test_cli_incomplete_transfer_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "gap.pcap"
    path.write_bytes(ftp_capture(drop_data_segment=0))
    assert lab_main(["replay", str(path), "-q"]) == 1


def test_plot_option_plots_or_says_plots_are_not_available(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = lab_main(["replay", str(ACTIVE), "-q", "--plot", str(tmp_path / "p.png")])
    assert code == 0
    err = capsys.readouterr().err
    # lab.viz is part of the project: the pictures must really be written
    assert "written to" in err
    written = re.findall(r"(/\S+\.png)", err)
    assert written
    assert all(Path(p.rstrip(",")).stat().st_size > 1000 for p in written)


def test_steps_reject_an_unknown_policy_and_apply_last() -> None:
    with pytest.raises(ValueError, match="policy"):
        steps(PASSIVE, policy="lats")


def test_steps_policy_last_lets_the_later_held_copy_win(tmp_path: Path) -> None:
    cap = tmp_path / "c.pcap"
    cap.write_bytes(ftp_capture(data_plan=CONFLICT_PLAN))
    for policy in ("first", "last"):
        conflicts = [c for s in steps(cap, policy=policy) if s.push for c in s.push.conflicts]
        assert [(c.offset, c.length, c.winner) for c in conflicts] == [(2000, 1000, policy)]


def test_steps_yield_each_packet_with_reassembler_state() -> None:
    all_steps = list(steps(PASSIVE))
    assert len(all_steps) == 63
    data_steps = [s for s in all_steps if s.push is not None and s.push.delivered]
    assert data_steps
    s = data_steps[0]
    assert s.before is not None
    assert s.after is not None
    assert s.after.next_offset == s.before.next_offset + len(s.push.delivered)  # type: ignore[union-attr]
    assert s.flow_key is not None
    assert "syn" in all_steps[0].events
    assert all_steps[0].flow_key == all_steps[1].flow_key


# -- robustness -----------------------------------------------------------------------------------


_SMALL = ftp_capture(content=b"abc" * 200)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_SMALL) - 1), st.integers(0, 255)), max_size=12))
def test_mutated_capture_never_raises(
    tmp_path_factory: pytest.TempPathFactory, flips: list
) -> None:  # type: ignore[type-arg]
    data = bytearray(_SMALL)
    for pos, value in flips:
        data[pos] = value
    tmp = tmp_path_factory.mktemp("fuzz")
    result = replay_bytes(tmp, bytes(data))
    assert exit_code_of(result) in (0, 1, 2)
    json.dumps(result.report)


# -- differential against tshark ------------------------------------------------------------------

# Where we differ from tshark on purpose (name -> what is still compared):
DIFFERENT_BY_DESIGN = {
    # RFC 9293 3.5.3: data on a RST is diagnostic; tshark shows it as stream data
    "bug-6244-tcp-rst-with-data__tcp-rst-with-data.pcap": "nothing",
    # segments hundreds of MB beyond the window are refused (bounded memory); tshark appends them
    "ftp_bigtransfer.pcap": "nothing",
    # every conflicting copy has a bad TCP checksum: we never prefer it to a good copy (see
    # lab.replay.flows); tshark reassembles it even with tcp.check_checksum on, so its bytes
    # differ, but the same number of bytes comes out
    "tcp_reassembly.pcap": "length",
}
_MISSING = re.compile(rb"\[\d+ bytes missing in capture file\]\x00")


def _tshark_follow(path: Path, count: int) -> dict[int, tuple[dict[str, str], dict[int, bytes]]]:
    """Streams 0..count-1 as tshark follows them: {index: (nodes, {node: bytes})}, one run."""
    args = ["tshark", "-r", str(path), "-q"]
    for i in range(count):
        args += ["-z", f"follow,tcp,raw,{i}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    result = {}
    for block in out.split("Follow: tcp,raw")[1:]:
        index = int(re.search(r"Filter: tcp.stream eq (\d+)", block).group(1))  # type: ignore[union-attr]
        nodes = dict(re.findall(r"^Node (\d): (.*)$", block, re.M))
        data = {0: bytearray(), 1: bytearray()}
        started = False
        for line in block.split("\n"):
            if line.startswith("Node 1:"):
                started = True
                continue
            if started and line.strip() and not line.startswith("==="):
                data[1 if line.startswith("\t") else 0] += bytes.fromhex(line.strip())
        result[index] = (nodes, {k: _MISSING.sub(b"", bytes(v)) for k, v in data.items()})
    return result


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_recovered_streams_equal_tshark_follow() -> None:
    checked = 0
    for path in sorted(PEER.glob("*.pcap")):
        compare = DIFFERENT_BY_DESIGN.get(path.name, "bytes")
        if compare == "nothing":
            continue
        table = flows_of(path)
        followed = _tshark_follow(path, len(table.flows))
        for flow in table.flows:
            nodes, theirs = followed[flow.index]
            ours = {h.sender: stream(h) for h in (flow.c2s, flow.s2c)}
            for k in (0, 1):
                mine = ours[nodes[str(k)]]
                where = (path.name, flow.index, nodes[str(k)])
                if compare == "length":
                    assert len(mine) == len(theirs[k]), where
                else:
                    assert mine == theirs[k], where
                checked += 1
    assert checked > 100


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize(
    "faults",
    [{"data_isn": (1 << 32) - 1500}, {"drop_data_segment": 1}, {"repeat": 2}],
    ids=["seq-wrap", "gap", "two-transfers"],
)
def test_synthetic_streams_equal_tshark_follow(tmp_path: Path, faults: dict) -> None:  # type: ignore[type-arg]
    path = tmp_path / "s.pcap"
    path.write_bytes(ftp_capture(**faults))  # type: ignore[arg-type]
    table = flows_of(path)
    followed = _tshark_follow(path, len(table.flows))
    for flow in table.flows:
        nodes, theirs = followed[flow.index]
        ours = {h.sender: stream(h) for h in (flow.c2s, flow.s2c)}
        assert [ours[nodes[str(k)]] for k in (0, 1)] == [theirs[0], theirs[1]]


def test_cooked_outgoing_frames_with_offloaded_checksums_are_not_flagged() -> None:
    seg = Segment(40000, 21, 1, 0, Flags.ACK | Flags.PSH, 100, (), b"NOOP\r\n")
    frame = TcpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", Ipv4Header(CLIENT, SERVER), seg)
    ip = bytearray(encode_tcp(frame)[14:])
    ip[20 + 16] ^= 0xFF  # a checksum the NIC would have fixed
    for ptype, flagged in ((4, False), (0, True)):  # 4 = sent by us, 0 = to us
        hdr = struct.pack("!HHH", ptype, 1, 6) + bytes(8) + b"\x08\x00"
        [pkt] = CaptureReader(io.BytesIO(pcap_bytes([PacketRecord(1, hdr + bytes(ip))], 113)))
        decoded = decode_packet(pkt)
        assert decoded.tcp is not None
        assert decoded.bad_checksum is flagged


def test_completed_connections_release_their_reassemblers() -> None:
    out: list[PacketRecord] = []
    clock = [0]
    for i in range(20):
        conn = Conn(out, clock, (CLIENT, 40000 + i), (SERVER, 80))
        conn.open()
        for _ in range(20):
            conn.send(True, bytes(1000))
        conn.send(False, b"ok")
        conn.close()
        conn.packet(True, Flags.FIN | Flags.ACK, seq=seq_add(conn.nxt[True], -1))  # late FIN copy
    table = flows_of(pcap_bytes(out))
    assert len(table.flows) == 20
    for flow in table.flows:
        assert flow.c2s.retired
        assert flow.s2c.retired
        assert flow.c2s.reassembler is None
        assert flow.c2s.delivered == 20_000
        assert not flow.midstream
    assert table.flows[0].c2s.late_packets == 1


def test_size_reply_sets_the_expected_size(tmp_path: Path) -> None:
    result = replay_bytes(tmp_path, ftp_capture(size_reply=5000, announce=3000))
    [t] = transfers(result.report)
    assert t["expected_size"] == 5000
    [mismatch] = [a for a in t["anomalies"] if a["kind"] == "size_mismatch"]
    assert mismatch["source"] == "SIZE"
    ok = transfers(replay_bytes(tmp_path, ftp_capture(size_reply=3000), "ok.pcap").report)
    assert ok[0]["complete"] is True


def test_vlan_tagged_frames_are_decoded() -> None:
    packets = list(CaptureReader(PEER / "eve-overlap-payload-01__tcp-overlap.pcap"))
    assert all(p.data[12:14] == b"\x81\x00" for p in packets)
    assert all(decode_packet(p).tcp is not None for p in packets)


def test_data_that_starts_like_a_greeting_is_not_a_control_connection(tmp_path: Path) -> None:
    content = b"220 this text file starts like a greeting\r\n" * 40
    result = replay_bytes(tmp_path, ftp_capture(content=content))
    [session] = result.report["ftp_sessions"]
    [t] = session["transfers"]
    assert t["complete"] is True
    assert Path(t["saved_as"]).read_bytes() == content


def test_port_to_a_third_host_is_reported_as_foreign_address() -> None:
    result = replay_capture(PEER / "tests_ftp_ftp-bounce_test.pcap")
    anomalies = [a for s in result.report["ftp_sessions"] for a in s["anomalies"]]
    assert {
        "kind": "foreign_data_address",
        "command": "PORT",
        "address": "2.2.2.3:80",
        "client": "1.1.1.2",
    } in anomalies
    assert not any(
        a.get("address") == "1.1.1.2:59549" for a in anomalies
    )  # the honest PORT is not reported


def test_hostile_control_stream_gives_bounded_report(tmp_path: Path) -> None:
    out: list[PacketRecord] = []
    ctl = Conn(out, [0], (CLIENT, 40000), (SERVER, 21))
    ctl.open()
    ctl.send(False, b"220 hi\r\n")
    ctl.send(True, b"USER x\r\n")
    for _ in range(200):
        ctl.send(False, b"\n" * 1000)  # 200 000 lines that are not replies
    result = replay_bytes(tmp_path, pcap_bytes(out))
    [session] = result.report["ftp_sessions"]
    assert len(session["anomalies"]) <= 1001
    assert session["anomalies"][-1]["kind"] == "more_anomalies"
    assert len(session["dialogue"]) <= 20_000


def test_existing_files_and_symlinks_in_out_dir_are_never_written_through(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "file.bin").write_bytes(b"precious")
    target = tmp_path / "elsewhere"
    (out / "file.bin.1").symlink_to(target)
    result = replay_bytes(tmp_path, ftp_capture())
    [t] = transfers(result.report)
    assert Path(t["saved_as"]).name == "file.bin.2"
    assert (out / "file.bin").read_bytes() == b"precious"
    assert not target.exists()


def test_rest_offset_is_taken_off_the_size_expected(tmp_path: Path) -> None:
    # SIZE says 5000, REST 2000: the 3000 bytes moved are the whole remainder
    result = replay_bytes(tmp_path, ftp_capture(size_reply=5000, restart=2000))
    [t] = transfers(result.report)
    assert (t["restart_at"], t["expected_size"], t["bytes"]) == (2000, 3000, 3000)
    assert t["complete"] is True


def test_refused_command_does_not_take_the_next_transfers_data(tmp_path: Path) -> None:
    result = replay_bytes(tmp_path, ftp_capture(refuse_first=True))
    [t] = transfers(result.report)
    assert t["argument"] == "pub/file.bin"
    assert t["complete"] is True
    assert t["bytes"] == 3000


# -- synthesized with Scapy from a real tcpdump capture (curl against vsftpd) ---------------------

CURL_PASSIVE = (
    Path(__file__).resolve().parent.parent / "captures" / "tools-vsftpd-curl-passive.pcap"
)
DATA_PORT = 30085  # the server's passive port of `RETR data.bin` (200000 bytes) in that capture


def _edited_curl_capture(tmp_path: Path, edit: str) -> tuple[Path, list[tuple[int, int]]]:
    """The curl capture with its data.bin segments edited by Scapy; returns the path and each
    data segment's (stream offset, length) in the original order."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import rdpcap, wrpcap

    pkts = list(rdpcap(str(CURL_PASSIVE)))
    [synack] = [p for p in pkts if TCP in p and p[TCP].sport == DATA_PORT and p[TCP].flags.S]
    base = synack[TCP].seq + 1
    idx = [i for i, p in enumerate(pkts) if TCP in p and p[TCP].sport == DATA_PORT]
    idx = [i for i in idx if len(bytes(pkts[i][TCP].payload))]
    spans = [((pkts[i][TCP].seq - base) % (1 << 32), len(pkts[i][TCP].payload)) for i in idx]

    def seg(i: int, lo: int, hi: int, flip: bool = False):  # type: ignore[no-untyped-def]
        p = pkts[i].copy()
        data = bytes(p[TCP].payload)[lo:hi]
        if flip:
            data = bytes(b ^ 0xFF for b in data)
        p[TCP].remove_payload()
        p[TCP].seq = (p[TCP].seq + lo) % (1 << 32)
        del p[IP].len, p[IP].chksum, p[TCP].chksum
        return p.__class__(bytes(p / data))

    out = list(pkts)
    k = idx[10]
    if edit == "reorder":  # every other pair of data segments swapped
        for a, b in list(zip(idx[1::4], idx[2::4], strict=False)):
            out[a], out[b] = out[b], out[a]
    elif edit == "duplicates":  # ten segments repeated, one of them again much later
        for i in reversed(idx[5:15]):
            out.insert(i + 1, pkts[i])
        out.insert(idx[-1], pkts[idx[3]])
    elif edit == "overlap":  # one segment sent as two overlapping, consistent segments
        n = spans[10][1]
        out[k : k + 1] = [seg(k, 0, 2 * n // 3), seg(k, n // 3, n)]
    elif edit == "conflict":
        # segment 10 late, so segment 11 is held when its genuine copy arrives after a copy with
        # other bytes (and a valid checksum): a conflict the policy decides
        out[k] = seg(idx[11], 0, spans[11][1], flip=True)
        out.insert(idx[11] + 1, pkts[k])
    elif edit == "missing":
        del out[k]
    path = tmp_path / f"{edit}.pcap"
    wrpcap(str(path), out)
    return path, spans


def _data_bin(report: dict) -> dict:  # type: ignore[type-arg]
    [t] = [t for t in transfers(report) if t["argument"] == "data.bin"]
    return t  # type: ignore[no-any-return]


@pytest.mark.parametrize("edit", ["reorder", "duplicates", "overlap"])
def test_scapy_edited_capture_recovers_the_same_file(tmp_path: Path, edit: str) -> None:
    reference = _data_bin(replay_capture(CURL_PASSIVE).report)
    path, _ = _edited_curl_capture(tmp_path, edit)
    result = replay_capture(path, out_dir=tmp_path / "out")
    t = _data_bin(result.report)
    assert (t["bytes"], t["sha256"], t["complete"]) == (200000, reference["sha256"], True)
    assert Path(t["saved_as"]).name == "data.bin"
    assert exit_code_of(result) == 0
    kinds = {a["kind"]: a for a in t["anomalies"]}
    assert "gap" not in kinds
    assert "overlap_conflict" not in kinds
    if edit == "duplicates":
        assert kinds["retransmission"]["count"] == 11
    else:
        assert "retransmission" not in kinds


@pytest.mark.parametrize("policy", ["first", "last"])
def test_scapy_conflicting_overlap_is_reported_and_policy_picks_the_copy(
    tmp_path: Path, policy: str
) -> None:
    reference = _data_bin(replay_capture(CURL_PASSIVE, out_dir=tmp_path / "ref").report)
    genuine = Path(reference["saved_as"]).read_bytes()
    path, spans = _edited_curl_capture(tmp_path, "conflict")
    t = _data_bin(replay_capture(path, out_dir=tmp_path / "out", policy=policy).report)  # type: ignore[arg-type]
    offset, length = spans[11]
    conflicts = [a for a in t["anomalies"] if a["kind"] == "overlap_conflict"]
    assert conflicts == [
        {
            "kind": "overlap_conflict",
            "offset": offset,
            "length": length,
            "winner": policy,
            "policy": policy,
        }
    ]
    data = Path(t["saved_as"]).read_bytes()
    assert len(data) == 200000
    # `first` kept the early (flipped) copy, `last` the genuine one
    flipped = bytes(b ^ 0xFF for b in genuine[offset : offset + length])
    expected = (
        genuine if policy == "last" else genuine[:offset] + flipped + genuine[offset + length :]
    )
    assert data == expected
    assert (t["sha256"] == reference["sha256"]) is (policy == "last")


def test_scapy_missing_segment_is_a_gap_with_its_range_and_a_part_file(tmp_path: Path) -> None:
    path, spans = _edited_curl_capture(tmp_path, "missing")
    result = replay_capture(path, out_dir=tmp_path / "out")
    t = _data_bin(result.report)
    offset, length = spans[10]
    assert {"kind": "gap", "ranges": [[offset, offset + length]], "missing_bytes": length} in t[
        "anomalies"
    ]
    assert t["complete"] is False
    assert t["bytes"] == 200000 - length
    assert Path(t["saved_as"]).name == "data.bin.part"
    assert exit_code_of(result) == 1


def test_the_python_api_accepts_a_plain_string_for_the_output_folder(tmp_path: Path) -> None:
    from lab.replay.report import replay_capture

    result = replay_capture(
        "captures/tools-vsftpd-curl-passive.pcap", out_dir=str(tmp_path / "out")
    )
    assert exit_code_of(result) == 0
    assert (tmp_path / "out" / "data.bin").stat().st_size == 200_000


def test_a_corrupted_reply_filled_in_at_the_end_keeps_its_place_in_the_dialogue(
    tmp_path: Path,
) -> None:
    # One server reply on the control connection (curl against vsftpd) is damaged on the wire:
    # its TCP checksum fails, so replay sets it aside and uses it only to fill the hole at the
    # end. The replies held behind that hole must still be dated by their own capture times, so
    # the dialogue stays in order and every reply is matched to its command.
    source = Path("captures/tools-vsftpd-curl-passive.pcap")
    packets = list(CaptureReader(source))
    damaged_at = None
    records = []
    for pkt in packets:
        data = pkt.data
        if damaged_at is None and b"230 " in data:  # the reply to USER, mid-dialogue
            i = data.index(b"230 ") + 4
            data = data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1 :]  # flip a letter's case
            damaged_at = pkt.number
        records.append(PacketRecord(pkt.timestamp_ns, data))
    assert damaged_at is not None
    clean = replay_capture(source, out_dir=tmp_path / "clean").report
    result = replay_bytes(tmp_path, pcap_bytes(records, linktype=packets[0].linktype))
    report = result.report
    [session] = report["ftp_sessions"]
    [clean_session] = clean["ftp_sessions"]
    times = [line["t"] for line in session["dialogue"]]
    assert times == sorted(times)
    order = [(line["from"], line["line"][:3]) for line in session["dialogue"]]
    assert order == [(line["from"], line["line"][:3]) for line in clean_session["dialogue"]]
    kinds = {a["kind"] for a in session.get("anomalies", [])} | {
        a["kind"] for t in session["transfers"] for a in t["anomalies"]
    }
    assert "unsolicited_reply" not in kinds
    assert "no_226" not in kinds
    data_sha = {t["argument"]: t["sha256"] for t in clean_session["transfers"]}
    assert {t["argument"]: t["sha256"] for t in session["transfers"]} == data_sha


def test_a_cut_ipv6_segment_keeps_the_bytes_present() -> None:
    # The IPv6 decoder calls a payload length beyond the bytes present BAD_IPV6_PAYLOAD_LENGTH;
    # in a capture that is a cut packet (by the snap length, or recorded short), as for IPv4.
    from lab.wire.frame import Ipv6Header

    frame = TcpFrame(
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        Ipv6Header("2001:2::1", "2001:2::2"),
        Segment(40000, 21, 1000, 2000, Flags.ACK, 502, (), bytes(range(200)) * 5),
    )
    data = encode_tcp(frame)
    for orig_len in (len(data), 160):
        cut = PacketRecord(1, data[:160], orig_len)
        [pkt] = CaptureReader(io.BytesIO(pcap_bytes([cut], snaplen=160)))
        decoded = decode_packet(pkt)
        assert decoded.tcp is not None, orig_len
        assert decoded.missing_bytes == len(data) - 160
        assert decoded.tcp.segment.payload == frame.segment.payload[: 160 - 14 - 40 - 20]
