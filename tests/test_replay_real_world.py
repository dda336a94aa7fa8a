"""`lab replay` on what real-world captures hold (issue 12): loopback link types, checksum-offload
patterns, data connections whose SYN was not captured, streams, compressed files, damaged
framing, SITE replies, non-FTP flows, output paths, many flows and many captures.

Every capture here is synthetic, built with the fast codec, so each test names the exact
pattern it pins down.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.capture.writer import PacketRecord, pcap_bytes, pcapng_bytes
from lab.cli.main import main as lab_main
from lab.cli.replay import exit_code_of
from lab.replay.report import replay_capture
from lab.wire.checksum import ones_complement_sum
from lab.wire.fast import encode_tcp
from lab.wire.frame import Ipv4Header, Ipv6Header, TcpFrame
from lab.wire.segment import Flags, Segment
from lab.wire.seq import seq_add

CLIENT = "198.18.0.2"
SERVER = "198.18.0.1"
ROOT = Path(__file__).resolve().parent.parent

Edit = Callable[[bytes], bytes]


def _keep(frame: bytes) -> bytes:
    return frame


@dataclass
class Tcp:
    """One synthetic connection; `edit` rewrites each Ethernet frame (link layer, checksums)."""

    out: list[PacketRecord]
    clock: list[int]
    c: tuple[str, int]
    s: tuple[str, int]
    edit: Edit = _keep
    isn_c: int = 1000
    isn_s: int = 7_000_000
    nxt: dict[bool, int] = field(default_factory=dict)

    def packet(self, from_client: bool, flags: Flags, payload: bytes = b"") -> None:
        src, dst = (self.c, self.s) if from_client else (self.s, self.c)
        seg = Segment(
            src[1],
            dst[1],
            self.nxt[from_client],
            self.nxt.get(not from_client, 0),
            flags,
            65535,
            (),
            payload,
        )
        ip = Ipv6Header(src[0], dst[0]) if ":" in src[0] else Ipv4Header(src[0], dst[0])
        frame = encode_tcp(TcpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", ip, seg))
        self.clock[0] += 1_000_000
        self.out.append(PacketRecord(self.clock[0], self.edit(frame)))

    def open(self, *, with_syn: bool = True) -> None:
        """The handshake; without SYN, nothing at all: the capture starts with the data."""
        self.nxt = {True: seq_add(self.isn_c, 1), False: seq_add(self.isn_s, 1)}
        if with_syn:
            self.nxt = {True: self.isn_c, False: 0}
            self.packet(True, Flags.SYN)
            self.nxt[True] = seq_add(self.isn_c, 1)
            self.nxt[False] = self.isn_s
            self.packet(False, Flags.SYN | Flags.ACK)
            self.nxt[False] = seq_add(self.isn_s, 1)
            self.packet(True, Flags.ACK)

    def send(self, from_client: bool, data: bytes) -> None:
        self.packet(from_client, Flags.ACK | Flags.PSH, data)
        self.nxt[from_client] = seq_add(self.nxt[from_client], len(data))

    def close(self) -> None:
        for side in (False, True):
            self.packet(side, Flags.FIN | Flags.ACK)
            self.nxt[side] = seq_add(self.nxt[side], 1)
        self.packet(False, Flags.ACK)


CONTENT = bytes(range(256)) * 12


def session(
    *,
    edit: Edit = _keep,
    mode: str = "passive",
    data_ports: tuple[int, int] = (41000, 50000),
    data_syn: bool = True,
    extra: list[tuple[bytes, bytes]] | None = None,
    client: str = CLIENT,
    server: str = SERVER,
) -> list[PacketRecord]:
    """One FTP download of CONTENT. `data_ports` is (client port, server port) of the data flow;
    `data_syn=False` leaves the data connection's handshake out of the capture."""
    out: list[PacketRecord] = []
    clock = [1_700_000_000_000_000_000]
    ctl = Tcp(out, clock, (client, 40000), (server, 21), edit)
    ctl.open()
    ctl.send(False, b"220 ready\r\n")
    ctl.send(True, b"USER anonymous\r\n")
    ctl.send(False, b"230 Logged in\r\n")
    for command, reply in extra or []:
        ctl.send(True, command)
        ctl.send(False, reply)
    cport, sport = data_ports
    if mode == "passive":
        ctl.send(True, b"PASV\r\n")
        h = server.replace(".", ",")
        ctl.send(False, f"227 Entering Passive Mode ({h},{sport >> 8},{sport & 255})\r\n".encode())
        data = Tcp(out, clock, (client, cport), (server, sport), edit, isn_c=5, isn_s=90_000)
    else:
        h = client.replace(".", ",")
        ctl.send(True, f"PORT {h},{cport >> 8},{cport & 255}\r\n".encode())
        ctl.send(False, b"200 PORT ok\r\n")
        # active: the FTP server connects from `sport` to the client's announced port
        data = Tcp(out, clock, (server, sport), (client, cport), edit, isn_c=90_000, isn_s=5)
    ctl.send(True, b"RETR file.bin\r\n")
    ctl.send(False, f"150 Opening data connection ({len(CONTENT)} bytes)\r\n".encode())
    data.open(with_syn=data_syn)
    from_server = mode == "passive"
    for i in range(0, len(CONTENT), 1000):
        data.send(not from_server, CONTENT[i : i + 1000])
    data.close()
    ctl.send(False, b"226 Transfer complete\r\n")
    ctl.send(True, b"QUIT\r\n")
    ctl.send(False, b"221 Bye\r\n")
    ctl.close()
    return out


def replay(tmp_path: Path, data: bytes, name: str = "cap.pcap"):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_bytes(data)
    return replay_capture(path, out_dir=tmp_path / "out")


def the_transfer(result) -> dict:  # type: ignore[no-untyped-def, type-arg]
    (t,) = [t for s in result.report["ftp_sessions"] for t in s["transfers"]]
    return t  # type: ignore[no-any-return]


# -- 1: link type 0 (BSD loopback / null) ----------------------------------------------------


def _null(byteorder: str) -> Edit:
    def edit(frame: bytes) -> bytes:
        family = 10 if frame[12:14] == b"\x86\xdd" else 2
        return family.to_bytes(4, byteorder) + frame[14:]  # type: ignore[arg-type]

    return edit


@pytest.mark.parametrize("byteorder", ["little", "big"])
@pytest.mark.parametrize("server", [SERVER, "2001:2::1"])
def test_null_loopback_capture_is_decoded_in_either_byte_order(
    tmp_path: Path, byteorder: str, server: str
) -> None:
    client = CLIENT if server == SERVER else "2001:2::2"
    records = session(edit=_null(byteorder), client=client, server=server)
    result = replay(tmp_path, pcap_bytes(records, linktype=0))
    t = the_transfer(result)
    assert t["complete"]
    assert t["bytes"] == len(CONTENT)
    assert exit_code_of(result) == 0


# -- 2: IPv4 header checksum 0 and a pseudo-header-only TCP checksum ---------------------------


def _offloaded(frame: bytes) -> bytes:
    """What tcpdump on the sender records: IP checksum 0, TCP checksum = pseudo-header sum."""
    b = bytearray(frame)
    ip = 14
    hlen = (b[ip] & 0x0F) * 4
    total = int.from_bytes(b[ip + 2 : ip + 4], "big")
    b[ip + 10 : ip + 12] = b"\0\0"
    pseudo = bytes(b[ip + 12 : ip + 20]) + bytes((0, 6)) + (total - hlen).to_bytes(2, "big")
    b[ip + hlen + 16 : ip + hlen + 18] = (ones_complement_sum(pseudo) & 0xFFFF).to_bytes(2, "big")
    return bytes(b)


def test_zero_ip_checksum_with_pseudo_header_tcp_checksum_is_offload_not_corruption(
    tmp_path: Path,
) -> None:
    result = replay(tmp_path, pcap_bytes(session(edit=_offloaded)))
    t = the_transfer(result)
    assert t["complete"], t["anomalies"]
    assert not [a for a in result.report["anomalies"] if a["kind"] == "bad_checksum"]
    assert exit_code_of(result) == 0


def test_zero_ip_checksum_with_a_wrong_tcp_checksum_is_still_bad(tmp_path: Path) -> None:
    def broken(frame: bytes) -> bytes:
        b = bytearray(_offloaded(frame))
        if len(b) > 54:  # data segments: a checksum that is neither right nor the pseudo sum
            b[14 + 20 + 16] ^= 0x55
        return bytes(b)

    result = replay(tmp_path, pcap_bytes(session(edit=broken)))
    assert [a for a in result.report["anomalies"] if a["kind"] == "bad_checksum"]


# -- 3: a data connection whose SYN was not captured -----------------------------------------


@pytest.mark.parametrize(
    ("mode", "ports"),
    [
        ("active", (40001, 20)),  # server connects from port 20: the port guess is backwards
        ("passive", (50001, 60002)),  # high ports on both sides
        ("passive", (60002, 50001)),
    ],
)
def test_data_connection_without_its_syn_is_matched_by_its_announced_endpoint(
    tmp_path: Path, mode: str, ports: tuple[int, int]
) -> None:
    result = replay(tmp_path, pcap_bytes(session(mode=mode, data_ports=ports, data_syn=False)))
    t = the_transfer(result)
    kinds = [a["kind"] for a in t["anomalies"]]
    assert "no_data_connection" not in kinds
    assert "midstream" in kinds
    assert t["bytes"] == len(CONTENT)
    assert (tmp_path / "out" / "file.bin.part").read_bytes() == CONTENT


# -- 9: SITE replies ---------------------------------------------------------------------------


@pytest.mark.parametrize("reply", [b"250 SITE CHMOD command ok.\r\n", b"550 Permission denied\r\n"])
def test_site_file_action_replies_are_expected(tmp_path: Path, reply: bytes) -> None:
    records = session(extra=[(b"SITE CHMOD 644 file.bin\r\n", reply)])
    result = replay(tmp_path, pcap_bytes(records))
    (s,) = result.report["ftp_sessions"]
    assert not [a for a in s["anomalies"] if a["kind"] == "unexpected_reply"]
    assert the_transfer(result)["complete"]


# -- 10: flows other than FTP ------------------------------------------------------------------


def test_every_other_tcp_flow_gets_a_line_with_bytes_state_and_anomalies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out: list[PacketRecord] = []
    clock = [1_700_000_000_000_000_000]
    web = Tcp(out, clock, (CLIENT, 45000), (SERVER, 80))
    web.open()
    web.send(True, b"GET / HTTP/1.0\r\n\r\n")
    web.send(False, b"HTTP/1.0 200 OK\r\n\r\nhello")
    web.send(False, b"HTTP/1.0 200 OK\r\n\r\nhello")  # sent again at a new seq: just bytes
    web.close()
    ssh = Tcp(out, clock, (CLIENT, 45001), (SERVER, 22))
    ssh.open()
    ssh.send(False, b"SSH-2.0-x\r\n")
    ssh.packet(True, Flags.RST | Flags.ACK)
    path = tmp_path / "other.pcap"
    path.write_bytes(pcap_bytes(out))
    assert lab_main(["replay", str(path)]) == 0
    text = capsys.readouterr().out
    assert "flow 0 198.18.0.2:45000 > 198.18.0.1:80: 18 B >, 48 B <, closed (FIN)" in text
    assert "flow 1 198.18.0.2:45001 > 198.18.0.1:22: 0 B >, 11 B <, reset" in text
    assert lab_main(["replay", str(path), "-q"]) == 0
    assert "flow 0" not in capsys.readouterr().out


# -- 5: output paths are checked before any work -----------------------------------------------


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "cap.pcap"
    path.write_bytes(pcap_bytes(session()))
    return path


def _bad_options(tmp_path: Path) -> list[list[str]]:
    afile = tmp_path / "afile"
    afile.write_text("x")
    return [
        ["--json", str(tmp_path)],
        ["--json", str(afile / "report.json")],
        ["--plot", str(afile / "p.png")],
        ["--plot", str(tmp_path / "p.bmpx")],
        ["--out", str(afile)],
    ]


@pytest.mark.parametrize("which", range(5))
def test_bad_output_paths_are_one_line_usage_errors_before_any_work(
    tmp_path: Path, capture: Path, capsys: pytest.CaptureFixture[str], which: int
) -> None:
    options = _bad_options(tmp_path)[which]
    files = [] if options[0] == "--out" else ["--out", str(tmp_path / "files")]
    try:
        code = lab_main(["replay", str(capture), *options, *files])
    except SystemExit as exc:  # refused by the option's own type (lab.viz.paths.picture_path)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("lab replay: ")
    assert options[0] in err
    assert not (tmp_path / "files").exists()  # nothing was done


# -- 6: streams and directories --------------------------------------------------------------


def test_stdin_and_a_fifo_are_read_as_streams(tmp_path: Path, capture: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "lab", "replay", "-", "--json", "-"]
    done = subprocess.run(run, input=capture.read_bytes(), capture_output=True, env=env)
    assert done.returncode == 0, done.stderr
    (t,) = json.loads(done.stdout)["ftp_sessions"][0]["transfers"]
    assert t["complete"]
    assert t["bytes"] == len(CONTENT)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "replay", str(fifo), "--json", "-"],
        stdout=subprocess.PIPE,
        env=env,
    )
    with fifo.open("wb") as w:
        w.write(capture.read_bytes())
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert json.loads(out)["ftp_sessions"][0]["transfers"][0]["bytes"] == len(CONTENT)


def test_an_empty_directory_is_named_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert lab_main(["replay", str(tmp_path / "empty")]) == 2
    assert "empty: a directory with no capture files" in capsys.readouterr().err
    assert lab_main(["replay", str(tmp_path / "nothing.pcap")]) == 2
    assert "no such file" in capsys.readouterr().err


# -- 7: compressed captures --------------------------------------------------------------------


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress], ids=["gz", "xz"])
def test_compressed_captures_are_read_transparently(
    tmp_path: Path, compress: Callable[[bytes], bytes]
) -> None:
    data = pcapng_bytes(session())
    result = replay(tmp_path, compress(data), "cap.pcapng.z")
    assert the_transfer(result)["complete"]
    assert exit_code_of(result) == 0
    assert result.reader.compression in ("gzip", "xz")


def test_a_cut_gzip_capture_is_reported_and_exits_1(tmp_path: Path) -> None:
    data = gzip.compress(pcap_bytes(session()))
    result = replay(tmp_path, data[: len(data) // 2], "cut.pcap.gz")
    kinds = {a["kind"] for a in result.report["anomalies"]}
    assert "bad_compression" in kinds
    assert exit_code_of(result) == 1


# -- 8: damage that stops reading is said, once per kind, and exits 1 ---------------------------


def test_a_record_claiming_4_gb_is_said_on_stderr_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(pcap_bytes(session()))
    data += struct.pack("<IIII", 1_700_000_100, 0, 0xFFFF_FFF0, 0xFFFF_FFF0) + b"\0" * 64
    path = tmp_path / "big.pcap"
    path.write_bytes(bytes(data))
    assert lab_main(["replay", str(path), "-q"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "impossible_length x1" in err[0]


def test_unsupported_link_type_is_said_with_its_count_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "147.pcap"
    path.write_bytes(pcap_bytes(session(), linktype=147))
    assert lab_main(["replay", str(path), "-q"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert f"unsupported_linktype x{len(session())}" in line
    assert "link type 147" in line


def _unpadded_pcapng(records: list[PacketRecord]) -> bytes:
    """pcapng whose packet blocks are not padded to 4 bytes (lengths not multiples of 4)."""
    out = bytearray(pcapng_bytes([]))
    for r in records:
        sec = r.timestamp_ns // 1000
        body = struct.pack("<IIIII", 0, sec >> 32, sec & 0xFFFFFFFF, len(r.data), len(r.data))
        body += r.data
        total = 12 + len(body)
        out += struct.pack("<II", 6, total) + body + struct.pack("<I", total)
    return bytes(out)


def test_pcapng_block_lengths_not_a_multiple_of_4_are_read_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = session()
    assert any(len(r.data) % 4 for r in records)
    path = tmp_path / "odd.pcapng"
    path.write_bytes(_unpadded_pcapng(records))
    result = replay_capture(path)
    assert the_transfer(result)["complete"]
    assert result.reader.problem_counts["bad_block"] == sum(len(r.data) % 4 != 0 for r in records)
    assert lab_main(["replay", str(path), "-q"]) == 0
    (line,) = capsys.readouterr().err.splitlines()
    assert "bad_block" in line


def test_a_cut_capture_lists_its_truncated_capture_once(tmp_path: Path) -> None:
    data = pcap_bytes(session())
    result = replay(tmp_path, data[:-30], "cut.pcap")
    cut = [a for a in result.report["anomalies"] if a["kind"] == "truncated_capture"]
    assert len(cut) == 1
    assert exit_code_of(result) == 1


# -- many captures ----------------------------------------------------------------------------


def _per_capture(document: dict) -> dict[str, tuple[int, object]]:  # type: ignore[type-arg]
    out = {}
    for c in document["captures"]:
        report = c["report"]
        shas = [t["sha256"] for s in report["ftp_sessions"] for t in s["transfers"]]
        out[Path(c["capture"]).name] = (c["exit_code"], shas, report["anomalies"], report["flows"])
    return out


def test_jobs_2_over_the_shipped_captures_matches_one_at_a_time(tmp_path: Path) -> None:
    captures = ROOT / "captures"
    one = tmp_path / "one.json"
    two = tmp_path / "two.json"
    code1 = lab_main(["replay", str(captures), "--json", str(one), "-q"])
    code2 = lab_main(["replay", str(captures), "--jobs", "2", "--json", str(two), "-q"])
    first, second = json.loads(one.read_text()), json.loads(two.read_text())
    assert code1 == code2 == first["exit_code"] == second["exit_code"]
    assert len(first["captures"]) > 40  # captures/ and captures/peer/, recursively
    assert _per_capture(first) == _per_capture(second)
    # and each equals a replay of that capture alone
    alone = replay_capture(ROOT / "captures" / "lab-get-passive-lossy.pcapng").report
    (entry,) = [
        c for c in first["captures"] if c["capture"].endswith("/lab-get-passive-lossy.pcapng")
    ]
    assert entry["report"] == alone


def test_worst_exit_code_wins_and_each_capture_has_its_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.pcap"
    good.write_bytes(pcap_bytes(session()))
    cut = tmp_path / "sub" / "cut.pcap"
    cut.parent.mkdir()
    cut.write_bytes(pcap_bytes(session())[:-30])
    (tmp_path / "notes.txt").write_text("not a capture")
    assert lab_main(["replay", str(tmp_path), "--json", "-"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert [(Path(c["capture"]).name, c["exit_code"]) for c in document["captures"]] == [
        ("good.pcap", 0),
        ("cut.pcap", 1),
    ]


def test_replay_many_runs_on_dasks_local_scheduler(tmp_path: Path) -> None:
    pytest.importorskip("dask.bag", reason="the lab[cluster] / test extra installs dask")
    from lab.replay import replay_many
    from lab.replay.many import dask_map

    for i in range(3):
        (tmp_path / f"c{i}.pcap").write_bytes(pcap_bytes(session(data_ports=(41000 + i, 50000))))
    mapper, close = dask_map(None)
    try:
        on_dask = replay_many([tmp_path], map=mapper)
    finally:
        close()
    local = replay_many([tmp_path])
    assert [o["report"] for o in on_dask] == [o["report"] for o in local]
    assert [o["status"] for o in on_dask] == ["complete", "complete", "complete"]


def test_dask_address_runs_the_captures_on_that_scheduler(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="lab[cluster] / test extra")
    good = tmp_path / "good.pcap"
    good.write_bytes(pcap_bytes(session()))
    report = tmp_path / "r.json"
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        code = lab_main(["replay", str(good), str(good), "--dask", address, "--json", str(report)])
    assert code == 0
    document = json.loads(report.read_text())
    assert [c["exit_code"] for c in document["captures"]] == [0, 0]
    assert document["captures"][0]["report"] == replay_capture(good).report
