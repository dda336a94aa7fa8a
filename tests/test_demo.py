"""`lab demo`: prints the handshake, the teardown, state transitions and totals; verifies bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cli.main import main
from lab.sim.transfer import Transfer, TransferResult


def run_demo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["demo", *args])
    return code, capsys.readouterr().out


def test_demo_prints_handshake_transitions_and_totals(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_demo(capsys, "--size", "100000", "--seed", "3")
    assert code == 0
    assert "client > server" in out
    assert "[S]" in out  # the SYN
    assert "[S.]" in out  # the SYN-ACK
    assert "SYN-SENT -> ESTABLISHED" in out
    assert "SYN-RECEIVED -> ESTABLISHED" in out
    assert "ESTABLISHED -> FIN-WAIT-1" in out
    assert "LAST-ACK -> CLOSED" in out
    assert "TIME-WAIT -> CLOSED" in out
    assert "retransmissions" in out
    assert "virtual time" in out
    assert "100000 of 100000 delivered" in out
    assert "verify          OK" in out


def test_demo_default_moves_a_megabyte_under_loss(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_demo(capsys)
    assert code == 0
    assert "1000000 of 1000000 delivered" in out
    assert "loss" in out


def test_demo_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    _, first = run_demo(capsys, "--size", "20000", "--seed", "5", "--loss", "0.1")
    _, second = run_demo(capsys, "--size", "20000", "--seed", "5", "--loss", "0.1")
    assert first == second


def test_demo_without_faults_reports_none(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_demo(capsys, "--size", "20000", "--loss", "0", "--reorder", "0")
    assert code == 0
    assert "faults          none" in out
    assert "20000 of 20000 delivered" in out


def test_demo_exits_1_when_the_bytes_differ(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Transfer.run

    def corrupted(self: Transfer, *args: object, **kwargs: object) -> TransferResult:
        result = original(self, *args, **kwargs)  # type: ignore[arg-type]
        result.received_by_server = result.received_by_server[:-1] + b"?"
        return result

    monkeypatch.setattr(Transfer, "run", corrupted)
    code, out = run_demo(capsys, "--size", "1000", "--loss", "0")
    assert code == 1
    assert "FAILED" in out


def test_demo_marks_lost_handshake_segments(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_demo(capsys, "--size", "20000", "--seed", "1", "--loss", "0.2")
    assert code == 0
    assert "(lost on the wire)" in out


def test_demo_shows_the_server_listening_from_the_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = run_demo(capsys, "--size", "5000", "--loss", "0", "--reorder", "0")
    assert code == 0
    lines = out.splitlines()
    listening = next(i for i, line in enumerate(lines) if "LISTEN on port 5001" in line)
    first_syn = next(i for i, line in enumerate(lines) if "[S]" in line)
    assert listening < first_syn
    assert lines[listening].split()[0] == "0.000"
    assert "CLOSED -> LISTEN" not in out  # not at the SYN's arrival, as if it only began then
    assert "LISTEN -> SYN-RECEIVED" in out


def test_verbose_narrates_each_recovery_event_and_totals_count_each_kind(
    capsys: pytest.CaptureFixture[str],
) -> None:

    assert main(["demo", "--size", "200000", "--seed", "3"]) == 0
    plain = capsys.readouterr().out
    assert main(["-v", "demo", "--size", "200000", "--seed", "3"]) == 0
    loud = capsys.readouterr().out
    assert "RTO after" not in plain
    told = [line for line in loud.splitlines() if line not in plain.splitlines()]
    # Seed 3 loses segments in every way the sender can notice: each kind is told, and the
    # totals and the JSON count exactly what was told.
    rtos = [line for line in told if "RTO after 1000 ms" in line and "backed off to 2000" in line]
    probes = [line for line in told if "tail-loss probe" in line]
    fast = [line for line in told if "fast retransmit" in line]
    losses = [line for line in told if "loss detected by" in line]
    assert rtos
    assert probes
    assert any("loss detected by three duplicate ACKs" in line for line in told)
    assert any("loss detected by the SACK scoreboard" in line for line in told)
    assert any("loss detected by RACK" in line for line in told)
    assert any("(fast recovery)" in line for line in told)

    def n(count: int, one: str, several: str) -> str:
        return f"{count} {one if count == 1 else several}"

    assert (
        f"  recovery        {n(len(losses), 'loss detected', 'losses detected')}, "
        f"{n(len(fast), 'fast retransmit', 'fast retransmits')}, {n(len(rtos), 'RTO', 'RTOs')}, "
        f"{n(len(probes), 'tail-loss probe', 'tail-loss probes')}," in plain
    )
    assert main(["demo", "--size", "200000", "--seed", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recovery"]["loss_detected"] == len(losses)
    assert report["recovery"]["rtos"] == len(rtos)
    assert report["recovery"]["tail_loss_probes"] == len(probes)
    assert report["recovery"]["fast_retransmits"] == len(fast)


def test_totals_say_why_each_segment_was_resent(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--size", "200000", "--seed", "3"]) == 0
    plain = capsys.readouterr().out
    assert (
        "  retransmissions 18 (13 fast retransmits, 1 after an RTO, "
        "4 resends of segments presumed lost)\n" in plain
    )
    assert main(["-v", "demo", "--size", "200000", "--seed", "3"]) == 0
    loud = capsys.readouterr().out
    # -v tells each resend that no other line announces: the four presumed lost, once each.
    resends = [line for line in loud.splitlines() if "  resend " in line]
    assert len(resends) == 4
    assert all(line.endswith(": presumed lost") for line in resends)


def test_a_transfer_that_gives_up_says_how_much_arrived(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "-q", "--size", "10k", "--delay", "100s"]) == 1
    out = capsys.readouterr().out
    assert "  verify          FAILED: only 0 of 10000 bytes arrived (the connection gave up)" in out


@pytest.mark.parametrize(
    "options",
    [
        *(["--size", "100000", "--seed", str(seed), "--loss", "10%"] for seed in range(1, 6)),
        # a handshake that never finishes: the server's children resend SYN,ACKs and give up
        ["--size", "10k", "--delay", "100s"],
    ],
    ids=" ".join,
)
def test_retransmissions_by_kind_add_up_to_the_retransmissions(
    options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    main(["demo", *options, "--json"])
    report = json.loads(capsys.readouterr().out)
    by_kind = report["retransmissions_by_kind"]
    assert set(by_kind) == {
        "fast_retransmit", "rto", "tail_loss_probe", "presumed_lost", "window_probe",
        "duplicate_syn",
    }  # fmt: skip
    assert sum(by_kind.values()) == report["retransmissions"] > 0


def test_plot_writes_the_three_pictures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:

    assert (
        main(["demo", "-q", "--size", "20000", "--seed", "2", "--plot", str(tmp_path / "d.png")])
        == 0
    )
    for kind in ("ladder", "tsg", "states"):
        assert (tmp_path / f"d-{kind}.png").read_bytes()[:4] == b"\x89PNG"
    assert "pictures written to" in capsys.readouterr().err


def test_recovery_totals_say_one_rto_and_several_probes() -> None:
    from lab.cli.demo import _recovery_text

    assert _recovery_text({"rtos": 1, "tail_loss_probes": 4}) == "1 RTO, 4 tail-loss probes"
    assert _recovery_text({"loss_detected": 1}) == "1 loss detected"
    assert _recovery_text({}) == "none needed"


@pytest.mark.parametrize("extra", [[], ["--delay", "100s"]])
def test_segment_totals_add_up_to_the_wire(
    extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # With a 100 s delay the client gives up, and its endpoint answers the server's late
    # SYN,ACKs with RSTs that no connection counts: the totals name them.
    main(["demo", "--size", "10000", *extra, "--json"])
    report = json.loads(capsys.readouterr().out)
    parts = ("segments_client", "segments_server", "segments_rst_no_connection")
    assert report["segments"] == sum(report[k] for k in parts)
    assert bool(report["segments_rst_no_connection"]) == bool(extra)
