"""Exercises: each reference solution passes its checker, and a deliberately broken solution fails
it with the expected reason (proof that each checker can fail). Plus the `lab exercise` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cli.main import main as lab_main
from lab.exercises import CheckResult, all_exercises, load


def attempt(tmp_path: Path, name: str, source: str, mode: str = "live") -> CheckResult:
    exercise = load(name)
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / exercise.starter).write_text(source)
    if mode == "offline":
        assert exercise.check_offline is not None
        return exercise.check_offline(folder / exercise.starter, folder / ".lab-check")
    return exercise.check(folder / exercise.starter, folder / ".lab-check")


# The live exercises run in both modes: live (namespaces, root) and offline (the lab's own stack
# as the server on an in-memory wire, no privileges), graded by the same criteria.
@pytest.fixture(params=[pytest.param("live", marks=pytest.mark.privileged), "offline"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def failed(result: CheckResult) -> dict[str, str]:
    return {c.name.split(" ")[0]: c.reason for c in result.criteria if not c.passed}


def broken(name: str, old: str, new: str) -> str:
    source = load(name).source_of("solution")
    assert old in source, "the broken variant no longer matches the solution"
    return source.replace(old, new)


# -- reassembly --------------------------------------------------------------------------------


def test_reassembly_reference_solution_passes(tmp_path: Path) -> None:
    result = attempt(tmp_path, "reassembly", load("reassembly").source_of("solution"))
    assert result.passed, result.criteria
    assert len(result.criteria) == 3
    assert (tmp_path / "reassembly" / ".lab-check" / "reassembly-lossy.pcapng").stat().st_size


def test_reassembly_without_modular_arithmetic_fails_only_the_wraparound_session(
    tmp_path: Path,
) -> None:
    source = broken(
        "reassembly",
        "distance = (seq - self.initial_seq - self.next_offset) % MOD",
        "distance = seq - self.initial_seq - self.next_offset",
    )
    result = attempt(tmp_path, "reassembly", source)
    assert not result.passed
    reasons = failed(result)
    assert list(reasons) == ["wraparound"]
    assert "too late" in reasons["wraparound"]


def test_reassembly_that_delivers_past_a_hole_fails_as_too_early(tmp_path: Path) -> None:
    source = broken("reassembly", "if start > self.next_offset:", "if False:")
    reasons = failed(attempt(tmp_path, "reassembly", source))
    assert "lossy" in reasons
    assert "too early" in reasons["lossy"]


def test_reassembly_starter_fails_with_the_exception_it_raises(tmp_path: Path) -> None:
    result = attempt(tmp_path, "reassembly", load("reassembly").source_of("starter"))
    assert failed(result) == {"your": "it raised: NotImplementedError: push"}


def test_an_endless_loop_ends_the_attempt_not_the_checker(tmp_path: Path) -> None:
    from lab.exercises.harness import run_student

    student = tmp_path / "loop.py"
    student.write_text("while True:\n    pass\n")
    run = run_student("reassembly", student, {"sessions": []}, tmp_path / "w", timeout=1)
    assert not run.ok
    # stuck at the top level, in no call the checker made: where is "in <module>"
    assert run.error.startswith("timed out after 1 s")


def test_check_in_the_default_relative_folder_reports_what_the_starter_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As a student types it: no DIR, so a relative ./lab-reassembly; the attempt runs with the
    # student's folder as its working directory and must still find its task and report.
    monkeypatch.chdir(tmp_path)
    assert lab_main(["exercise", "start", "reassembly"]) == 0
    assert lab_main(["exercise", "check", "reassembly"]) == 1
    text = capsys.readouterr().out
    assert "it raised: NotImplementedError: push" in text
    assert "without a result" not in text


def test_reset_without_dir_cleans_the_default_folders_start_and_check_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert lab_main(["exercise", "start", "reassembly", "--json"]) == 0
    started = json.loads(capsys.readouterr().out)
    assert started == {
        "exercise": "reassembly",
        "file": "lab-reassembly/reassembly.py",
        "kept": False,
        "exit": 0,
    }
    assert lab_main(["exercise", "check", "reassembly"]) == 1
    assert (tmp_path / "lab-reassembly" / ".lab-check").exists()
    capsys.readouterr()
    assert lab_main(["exercise", "reset", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == ["lab-reassembly/.lab-check"]
    assert not (tmp_path / "lab-reassembly" / ".lab-check").exists()
    assert (tmp_path / "lab-reassembly" / "reassembly.py").exists()


def test_an_attempt_that_dies_without_reporting_shows_its_last_output(tmp_path: Path) -> None:
    from lab.exercises.harness import run_student

    student = tmp_path / "dies.py"
    student.write_text("import os\nprint('about to leave', flush=True)\nos._exit(3)\n")
    run = run_student("reassembly", student, {"sessions": []}, tmp_path / "w", timeout=10)
    assert not run.ok
    assert "about to leave" in run.error
    assert run.short_error().startswith("your code exited with status 3")


def test_check_reassembly_under_a_fault_schedule_of_the_students_choosing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.capture.reader import read_packets

    folder = tmp_path / "student"
    (folder).mkdir()
    (folder / "reassembly.py").write_text(load("reassembly").source_of("solution"))
    faults = ["--loss", "40%", "--reorder", "30%", "--dup", "10%", "--seed", "5"]
    assert lab_main(["exercise", "check", "reassembly", str(folder), "--json", *faults]) == 0
    report = json.loads(capsys.readouterr().out)
    names = [c["name"] for c in report["criteria"]]
    assert names[-1] == "impaired session (loss=40% reorder=30% dup=10% seed=5)"
    capture = folder / ".lab-check" / "reassembly-impaired.pcapng"
    first = next(iter(read_packets(capture)))
    assert first.comment == "impair: schedule loss=40% reorder=30% dup=10% seed=5"
    # The same seed makes the same session (the capture is the proof); another seed, another.
    before = capture.read_bytes()
    assert lab_main(["exercise", "check", "reassembly", str(folder), *faults]) == 0
    assert capture.read_bytes() == before
    assert lab_main(["exercise", "check", "reassembly", str(folder), *faults[:-1], "6"]) == 0
    assert capture.read_bytes() != before
    # A reassembler that delivers past a hole fails the new session too.
    source = broken("reassembly", "if start > self.next_offset:", "if False:")
    (folder / "reassembly.py").write_text(source)
    capsys.readouterr()
    assert lab_main(["exercise", "check", "reassembly", str(folder), *faults]) == 1
    assert "FAIL  impaired session" in capsys.readouterr().out


def test_fault_options_an_exercise_cannot_honour_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "student"
    assert lab_main(["exercise", "start", "reassembly", str(folder)]) == 0
    assert lab_main(["exercise", "check", "reassembly", str(folder), "--delay", "5ms"]) == 2
    assert "reassembly takes only --loss, --reorder, --dup, --seed, not --delay" in (
        capsys.readouterr().err
    )
    assert lab_main(["exercise", "check", "forensics", str(folder), "--loss", "5%"]) == 2
    assert "forensics takes no fault options (--loss)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        lab_main(["exercise", "check", "reassembly", str(folder), "--loss", "120%"])
    assert exit_.value.code == 2
    assert "'120%' is more than 100%" in capsys.readouterr().err


# -- forensics ---------------------------------------------------------------------------------


def test_an_offline_check_does_not_claim_to_have_captured_the_wire(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "student"
    assert lab_main(["exercise", "start", "forensics", str(folder)]) == 0
    assert lab_main(["exercise", "check", "forensics", str(folder)]) == 1
    text = capsys.readouterr().out
    assert "it raised: NotImplementedError: recover" in text
    assert "the capture you read: " in text
    assert "crossed the wire" not in text


def test_forensics_reference_solution_passes(tmp_path: Path) -> None:
    result = attempt(tmp_path, "forensics", load("forensics").source_of("solution"))
    assert result.passed, result.criteria
    assert result.capture is not None
    assert result.capture.exists()


def test_forensics_trusting_a_bad_checksum_recovers_a_wrong_byte(tmp_path: Path) -> None:
    source = broken(
        "forensics",
        "decode_ethernet(p.data)",
        "decode_ethernet(p.data, verify_checksums=False)",
    )
    reasons = failed(attempt(tmp_path, "forensics", source))
    assert list(reasons) == ["recovered"]
    assert "bad checksum" in reasons["recovered"]


def test_forensics_without_merging_touching_holes_names_the_wrong_ranges(tmp_path: Path) -> None:
    source = broken(
        "forensics",
        "        missing.append((i, j))\n",
        "        missing.append((i, j))\n        missing.append((j, j))\n",
    )
    reasons = failed(attempt(tmp_path, "forensics", source))
    assert list(reasons) == ["missing"]
    assert "you listed 4 range(s), the capture misses 2" in reasons["missing"]


def test_forensics_damage_is_what_replay_reports() -> None:
    """The checker's expected answer comes from lab.replay: two holes, one of two segments."""
    import tempfile

    from lab.exercises.forensics import MSS, damaged_capture, replay_answer

    raw, content = damaged_capture(7)
    with tempfile.NamedTemporaryFile(suffix=".pcapng") as f:
        f.write(raw)
        f.flush()
        name, gaps = replay_answer(Path(f.name))
    assert name == "quarterly-report.txt"
    assert sorted(b - a for a, b in gaps) == [MSS, 2 * MSS]
    assert all(a % MSS == 0 and b < len(content) for a, b in gaps)


# -- the command -------------------------------------------------------------------------------


def test_exercise_list_names_every_exercise(capsys: pytest.CaptureFixture[str]) -> None:
    assert lab_main(["exercise", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [e.name for e in all_exercises()]
    assert {"reassembly", "forensics"} <= {r["name"] for r in rows}


@pytest.mark.parametrize("name", [e.name for e in all_exercises()])
def test_every_exercise_shows_its_texts_and_its_solution_only_when_asked(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exercise = load(name)
    assert exercise.goal
    assert exercise.background
    assert exercise.steps
    assert exercise.hints
    starter, solution = exercise.source_of("starter"), exercise.source_of("solution")
    assert starter != solution
    assert "NotImplementedError" in starter  # an untouched starter fails, and says where
    assert lab_main(["exercise", "show", name, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["steps"] == list(exercise.steps)
    assert "solution" not in shown
    assert lab_main(["exercise", "show", name, "--solution"]) == 0
    assert solution in capsys.readouterr().out


def test_show_hides_the_solution_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert lab_main(["exercise", "show", "reassembly"]) == 0
    text = capsys.readouterr().out
    assert "Goal:" in text
    assert "Hints:" in text
    assert "Reference solution" not in text
    assert lab_main(["exercise", "show", "reassembly", "--solution"]) == 0
    assert "distance = (seq - self.initial_seq" in capsys.readouterr().out


def test_start_copies_the_starter_and_check_grades_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "student"
    assert lab_main(["exercise", "start", "reassembly", str(folder)]) == 0
    written = (folder / "reassembly.py").read_text()
    assert written == load("reassembly").source_of("starter")
    assert "distance" not in written  # the solution stays hidden
    assert lab_main(["exercise", "check", "reassembly", str(folder)]) == 1
    assert "FAIL" in capsys.readouterr().out
    (folder / "reassembly.py").write_text(load("reassembly").source_of("solution"))
    assert lab_main(["exercise", "check", "reassembly", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    # start again keeps the student's work
    assert lab_main(["exercise", "start", "reassembly", str(folder)]) == 0
    assert "distance" in (folder / "reassembly.py").read_text()
    assert lab_main(["exercise", "reset", str(folder)]) == 0
    assert not (folder / ".lab-check").exists()
    assert (folder / "reassembly.py").exists()


@pytest.mark.parametrize("action", ["list", "show", "start", "check", "reset"])
def test_each_exercise_action_has_examples_and_an_exit_status_in_its_help(
    action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        lab_main(["exercise", action, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert f"lab exercise {action}" in text.split("examples:")[1]
    assert "exit status: 0" in text


def test_check_quiet_keeps_only_the_failures_and_verbose_adds_what_the_code_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "student"
    folder.mkdir()
    source = load("reassembly").source_of("solution") + '\nprint("student says hi")\n'
    (folder / "reassembly.py").write_text(source)
    assert lab_main(["-q", "exercise", "check", "reassembly", str(folder)]) == 0
    assert capsys.readouterr().out == "3/3 criteria passed\n"
    assert lab_main(["exercise", "check", "reassembly", str(folder)]) == 0
    normal = capsys.readouterr().out
    assert "PASS  in-order session" in normal
    assert "student says hi" not in normal
    assert lab_main(["exercise", "check", "-v", "reassembly", str(folder)]) == 0
    assert "what your code printed:\nstudent says hi\n" in capsys.readouterr().out
    (folder / "reassembly.py").write_text(load("reassembly").source_of("starter"))
    assert lab_main(["exercise", "check", "reassembly", str(folder), "-q"]) == 1
    quiet = capsys.readouterr().out
    assert quiet.startswith("FAIL  your code runs\n      it raised: NotImplementedError: push")
    assert "Traceback" not in quiet


def test_usage_errors_have_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lab_main(["exercise", "check", "reassembly", str(tmp_path / "nothing")]) == 2
    assert "run: lab exercise start reassembly" in capsys.readouterr().err
    assert lab_main(["exercise", "show", "no-such-thing"]) == 2
    assert "no exercise 'no-such-thing'" in capsys.readouterr().err


# -- live exercises (root: a topology per check) -----------------------------------------------


def test_arp_reference_solution_passes(tmp_path: Path, mode: str) -> None:
    result = attempt(tmp_path, "arp", load("arp").source_of("solution"), mode)
    assert result.passed, result.criteria
    assert [c.name for c in result.criteria] == [
        "ARP request on the wire",
        "request well-formed",
        "the server answered",
        "your answer",
    ]


def test_arp_guessing_without_asking_fails_for_want_of_a_request(tmp_path: Path, mode: str) -> None:
    source = broken(
        "arp",
        "    answered, _ = srp(",
        "    return str(lab.client_mac)\n    answered, _ = srp(",
    )
    reasons = failed(attempt(tmp_path, "arp", source, mode))
    assert "no ARP request for 198.18.0.1 crossed the wire" in reasons["ARP"]
    assert "which is not the server's MAC" in reasons["your"]


def test_arp_request_with_a_forged_sender_is_not_well_formed(tmp_path: Path, mode: str) -> None:
    source = broken("arp", "hwsrc=lab.client_mac,", 'hwsrc="02:00:00:00:00:99",')
    reasons = failed(attempt(tmp_path, "arp", source, mode))
    assert "sender MAC 02:00:00:00:00:99" in reasons["request"]


def test_ndp_reference_solution_passes(tmp_path: Path, mode: str) -> None:
    result = attempt(tmp_path, "ndp", load("ndp").source_of("solution"), mode)
    assert result.passed, result.criteria
    assert [c.name for c in result.criteria] == [
        "Neighbor Solicitation on the wire",
        "solicitation well-formed",
        "the server answered",
        "your answer",
    ]


def test_ndp_solicitation_with_hop_limit_64_is_dropped_unanswered(
    tmp_path: Path, mode: str
) -> None:
    # The hop limit of the SYN, copied: a forwarded-looking solicitation every host must ignore.
    source = broken("ndp", "dst=group, hlim=255)", "dst=group, hlim=64)")
    reasons = failed(attempt(tmp_path, "ndp", source, mode))
    assert "hop limit 64, not 255" in reasons["Neighbor"]
    assert "no Neighbor Advertisement" in reasons["the"]
    assert "RuntimeError: no Neighbor Advertisement from 2001:2::1" in reasons["your"]


def test_ndp_solicitation_to_all_nodes_is_not_well_formed(tmp_path: Path, mode: str) -> None:
    source = broken(
        "ndp",
        "    group = solicited_node_group(lab.server_ip6)",
        '    group = "ff02::1"',
    )
    reasons = failed(attempt(tmp_path, "ndp", source, mode))
    assert (
        "sent to ff02::1, not to 2001:2::1's solicited-node group ff02::1:ff00:1"
        in (reasons["solicitation"])
    )


def test_handshake_reference_solution_passes(tmp_path: Path, mode: str) -> None:
    result = attempt(tmp_path, "handshake", load("handshake").source_of("solution"), mode)
    assert result.passed, result.criteria
    established = next(c for c in result.criteria if c.name == "server in ESTABLISHED")
    whose = "/proc/net/tcp in the server namespace" if mode == "live" else "the lab's stack"
    assert established.reason.startswith(whose)
    assert "ESTABLISHED" in established.reason


def test_handshake_acknowledging_the_isn_itself_earns_a_rst(tmp_path: Path, mode: str) -> None:
    source = broken("handshake", "ack=(reply.seq + 1) % 2**32,", "ack=reply.seq,")
    reasons = failed(attempt(tmp_path, "handshake", source, mode))
    assert set(reasons) == {"ACK", "server", "no"}
    assert "(the server's ISN + 1)" in reasons["ACK"]
    assert "not ESTABLISHED" in reasons["server"]
    who = "the server's kernel" if mode == "live" else "the server (the lab's stack)"
    assert f"{who} sent a RST" in reasons["no"]


def test_handshake_starter_reports_the_missing_syn_and_the_exception(
    tmp_path: Path, mode: str
) -> None:
    reasons = failed(attempt(tmp_path, "handshake", load("handshake").source_of("starter"), mode))
    assert "no SYN" in reasons["SYN"]
    assert "NotImplementedError" in reasons["SYN"]


def test_ftp_login_reference_solution_passes(tmp_path: Path, mode: str) -> None:
    result = attempt(tmp_path, "ftp-login", load("ftp-login").source_of("solution"), mode)
    assert result.passed, result.criteria
    assert "logged in" in (tmp_path / "ftp-login" / ".lab-check" / "ftp-server.log").read_text()


def test_ftp_login_that_never_acks_the_replies_fails_on_acknowledgements(
    tmp_path: Path, mode: str
) -> None:
    source = broken(
        "ftp-login",
        '            self.send("A")  # new data or a retransmission: (re-)acknowledge what we have'
        + "\n",
        "",
    )
    reasons = failed(attempt(tmp_path, "ftp-login", source, mode))
    assert list(reasons) == ["acknowledgements"]
    assert "were never acknowledged" in reasons["acknowledgements"]


def test_active_data_reference_solution_passes(tmp_path: Path, mode: str) -> None:
    result = attempt(tmp_path, "active-data", load("active-data").source_of("solution"), mode)
    assert result.passed, result.criteria


def test_active_data_forgetting_that_fin_takes_a_number_fails_on_the_data_acks(
    tmp_path: Path,
    mode: str,
) -> None:
    source = broken(
        "active-data",
        "self.ack = (self.ack + len(payload) + fin) % MOD",
        "self.ack = (self.ack + len(payload)) % MOD",
    )
    reasons = failed(attempt(tmp_path, "active-data", source, mode))
    assert list(reasons) == ["data"]
    assert "its FIN but you acknowledged only" in reasons["data"]


@pytest.mark.privileged
def test_blind_reset_reference_solution_passes_and_the_stack_matches_the_kernel(
    tmp_path: Path,
) -> None:
    result = attempt(tmp_path, "blind-reset", load("blind-reset").source_of("solution"))
    assert result.passed, result.criteria
    comparison = result.criteria[-1]
    assert "lab: out-of-window ignored, in-window challenge-ack, exact reset" in comparison.reason
    assert (
        "kernel: out-of-window ignored, in-window challenge-ack, exact reset" in comparison.reason
    )


def test_blind_reset_expecting_rfc_793_behaviour_is_contradicted_by_the_wire(
    tmp_path: Path,
    mode: str,
) -> None:
    source = broken(
        "blind-reset",
        '"in-window": "challenge-ack"',
        '"in-window": "reset"',  # RFC 793: any RST in the window was accepted
    )
    reasons = failed(attempt(tmp_path, "blind-reset", source, mode))
    assert list(reasons) == ["your"]
    assert "lab/in-window: you expected 'reset', the wire shows 'challenge-ack'" in reasons["your"]


def test_blind_reset_offline_compares_the_lab_stack_with_itself_and_says_so(
    tmp_path: Path,
) -> None:
    result = attempt(tmp_path, "blind-reset", load("blind-reset").source_of("solution"), "offline")
    assert result.passed, result.criteria
    comparison = result.criteria[-1]
    assert comparison.name == "the lab row matches the kernel row"
    assert "the kernel row is the lab stack playing the server" in comparison.reason
    assert "compares the lab stack with itself" in comparison.reason
    assert "lab: out-of-window ignored, in-window challenge-ack, exact reset" in comparison.reason


def _rst(number: int, time_ns: int, seq: int) -> object:
    from lab.exercises.harness import WireFrame
    from lab.wire.frame import Ipv4Header, TcpFrame
    from lab.wire.segment import Flags, Segment

    segment = Segment(40000, 7, seq, 0, Flags.RST, 0, (), b"")
    ip = Ipv4Header("198.18.0.2", "198.18.0.1")
    frame = TcpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", ip, segment)
    return WireFrame(number, True, frame, time_ns)


def test_blind_reset_dates_a_reset_by_the_interval_the_watcher_saw_it_die_in() -> None:
    from lab.exercises.blind_reset import _probes

    ends = {"kernel": ("198.18.0.1", 7)}
    numbers = {"kernel": (1000, 65536)}
    ms = 1_000_000
    attack = [_rst(1, 100 * ms, 1000 + 500), _rst(2, 700 * ms, 1000)]  # in-window, then exact

    def outcomes(gone: int, alive: int) -> list[str]:
        probes = _probes(attack, [], numbers, ends, {"kernel": gone}, {"kernel": alive})  # type: ignore[arg-type]
        return [p.outcome for p in probes]

    # Seen alive 2 ms before the exact RST, gone 3 ms after: the exact RST did it.
    assert outcomes(703 * ms, 698 * ms) == ["ignored", "reset"]
    # The watcher was starved: last seen alive before the RST, seen gone 2 s later. The death
    # is still in that interval, and the exact RST is the last one sent in it.
    assert outcomes(2700 * ms, 690 * ms) == ["ignored", "reset"]
    # Seen alive well after the exact RST's reaction window: something else ended it.
    assert outcomes(2700 * ms, 1500 * ms) == ["ignored", "ignored"]


@pytest.mark.privileged
def test_blind_reset_catches_a_lab_stack_that_stops_sending_challenge_acks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The comparison with the kernel can fail: the lab stack of the checker (in this process)
    # silently drops an in-window RST instead of challenging it, while the kernel still does.
    from lab.tcp.connection import Connection

    monkeypatch.setattr(Connection, "_challenge_ack", lambda self, now, why: None)
    reasons = failed(attempt(tmp_path, "blind-reset", load("blind-reset").source_of("solution")))
    assert "lab: out-of-window ignored, in-window ignored, exact reset" in reasons["the"]
    assert "kernel: out-of-window ignored, in-window challenge-ack, exact reset" in reasons["the"]


@pytest.mark.privileged
@pytest.mark.parametrize("name", [e.name for e in all_exercises() if e.check_offline is not None])
def test_a_live_exercise_names_its_criteria_alike_offline(name: str, tmp_path: Path) -> None:
    # Graded by the same criteria in both modes, under the same names: who played the server
    # (the kernel, or the lab's stack offline) is said in the reasons.
    solution = load(name).source_of("solution")
    (tmp_path / "live").mkdir()
    (tmp_path / "offline").mkdir()
    live = attempt(tmp_path / "live", name, solution, "live")
    offline = attempt(tmp_path / "offline", name, solution, "offline")
    assert live.passed, live.criteria
    assert offline.passed, offline.criteria
    assert [c.name for c in offline.criteria] == [c.name for c in live.criteria]


def test_blind_reset_names_its_criteria_alike_in_both_modes(tmp_path: Path, mode: str) -> None:
    # One exercise in both modes: the same criteria and the same row labels, live or offline, so
    # a student's table, a grader reading --json and these tests need not know the mode.
    result = attempt(tmp_path, "blind-reset", load("blind-reset").source_of("starter"), mode)
    assert [c.name for c in result.criteria] == [
        "out-of-window RST to both ends",
        "in-window RST to both ends",
        "exact RST to both ends",
        "your table matches the wire",
        "the lab row matches the kernel row",
    ]
    assert "lab: out-of-window -, in-window -, exact -; kernel: " in result.criteria[3].reason


def test_blind_reset_starter_says_what_is_missing_not_what_a_dash_means(
    tmp_path: Path, mode: str
) -> None:
    reasons = failed(
        attempt(tmp_path, "blind-reset", load("blind-reset").source_of("starter"), mode)
    )
    raised = "(your code raised: NotImplementedError: attack)"
    assert reasons["exact"] == f"no exact RST reached either end {raised}"
    assert reasons["your"].startswith("attack() raised NotImplementedError: attack, not a table")
    assert "'-'" not in reasons["your"]
    assert reasons["the"].startswith("nothing to compare for lab/out-of-window")


@pytest.mark.privileged
def test_start_of_a_live_exercise_leaves_a_topology_that_reset_removes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.topology import list_namespaces

    folder = tmp_path / "live"
    assert lab_main(["exercise", "start", "handshake", str(folder)]) == 0
    record = json.loads((folder / ".lab-exercise.json").read_text())
    run_id = record["run_id"]
    assert f"lab-{run_id}-cli" in list_namespaces()
    from lab.topology.userns import is_rootless

    # As root the hint is sudo's; inside the lab's user namespace (make test as a user) it joins
    # the run's namespaces through lab rootless.
    way = f"lab rootless --join {run_id}" if is_rootless() else "sudo"
    assert f"run your code there: {way} ip netns exec lab-{run_id}-cli python3" in (
        capsys.readouterr().out
    )
    assert lab_main(["exercise", "reset", str(folder)]) == 0
    assert not any(run_id in name for name in list_namespaces())
    assert not (folder / ".lab-exercise.json").exists()
    assert (folder / "handshake.py").exists()


# -- from the parent folder, as `start` tells the student to check -----------------------------


@pytest.mark.parametrize(
    ("name", "how"),
    [
        pytest.param(e.name, how, marks=[pytest.mark.privileged] if how == "live" else [])
        for e in all_exercises()
        for how in (("live", "offline") if e.privileged else ("offline",))
    ],
)
def test_every_reference_solution_passes_when_checked_from_the_parent_folder(
    name: str,
    how: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `lab exercise start NAME` prints `lab exercise check NAME lab-NAME`: a relative DIR, checked
    # from the folder above it, while the attempt itself runs inside DIR.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAB_MODE", how)
    exercise = load(name)
    assert lab_main(["exercise", "start", name]) == 0
    out = capsys.readouterr().out
    assert f"lab exercise check {name} lab-{name}" in out
    assert ("offline mode" in out) == (exercise.privileged and how == "offline")
    (tmp_path / f"lab-{name}" / exercise.starter).write_text(exercise.source_of("solution"))
    try:
        assert lab_main(["exercise", "check", name, f"lab-{name}"]) == 0, capsys.readouterr()
    finally:
        lab_main(["exercise", "reset", f"lab-{name}"])


def test_list_says_which_mode_each_exercise_runs_in(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.exercises import offline

    monkeypatch.setattr(offline, "live_available", lambda: False)  # no root, no user namespaces
    assert lab_main(["exercise", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(offline: no root here, the lab's stack plays the server)")
    assert lines[5] == "reassembly   Reassembly: the receiver's side of TCP"
    monkeypatch.setattr(offline, "live_available", lambda: True)
    assert lab_main(["exercise", "list", "--json"]) == 0
    modes = {row["name"]: row["mode"] for row in json.loads(capsys.readouterr().out)}
    assert modes["arp"] == "live"
    assert modes["forensics"] == "offline"
    monkeypatch.setenv("LAB_MODE", "offline")
    assert lab_main(["exercise", "list", "--json"]) == 0
    assert {row["mode"] for row in json.loads(capsys.readouterr().out)} == {"offline"}


def test_check_offline_flag_runs_a_live_exercise_without_privileges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.topology import privileges

    monkeypatch.setattr(privileges, "effective_capabilities", lambda: 0)
    folder = tmp_path / "student"
    assert lab_main(["exercise", "start", "arp", str(folder)]) == 0  # offline: no topology
    (folder / "arp.py").write_text(load("arp").source_of("solution"))
    assert lab_main(["exercise", "check", "arp", str(folder), "--offline", "-q"]) == 0
    assert capsys.readouterr().out.endswith("4/4 criteria passed\n")
    monkeypatch.setenv("LAB_MODE", "live")  # forced live without privileges: an error
    assert lab_main(["exercise", "check", "arp", str(folder)]) == 77


def test_an_endless_loop_is_reported_with_the_call_it_was_stuck_in(tmp_path: Path) -> None:
    from lab.exercises.harness import run_student

    student = tmp_path / "reassembly.py"
    student.write_text(
        "class Reassembler:\n"
        "    def __init__(self, initial_seq):\n"
        "        self.isn = initial_seq\n"
        "    def push(self, seq, data):\n"
        "        while True:\n"
        "            pass\n"
    )
    task = {"sessions": [{"initial_seq": 1000, "segments": [[1000, "6869"]]}]}
    run = run_student("reassembly", student, task, tmp_path / "w", timeout=2)
    assert not run.ok
    assert run.error == (
        "timed out after 2 s: still running in push (reassembly.py line 5: `while True:`), "
        "called as push(seq=1000, data=b'hi')"
    )


def test_reassembly_feedback_names_the_kind_of_segment_and_its_offset(tmp_path: Path) -> None:
    source = broken(
        "reassembly",
        "            data = data[self.next_offset - offset :]\n"
        "            offset = self.next_offset\n",
        "            return b''\n",
    )
    reason = failed(attempt(tmp_path, "reassembly", source))["lossy"]
    assert "that segment is an overlapping retransmission: its first 233 bytes were " in reason
    assert "(stream offset 2911: seq - initial_seq mod 2**32)" in reason


def test_reassembly_segment_kinds() -> None:
    from lab.exercises.reassembly import Session, segment_kind

    isn = (1 << 32) - 100
    s = Session(
        "t",
        "",
        isn,
        b"x" * 400,
        ((isn - 50, b"s" * 20), (isn, b"a" * 50), (isn + 40, b"b" * 20), (isn + 80, b"c" * 40),
         ((isn + 200) % (1 << 32), b"d" * 10), ((isn + 60) % (1 << 32), b"e" * 5),
         ((isn + 4_200_000) % (1 << 32), b"f")),
    )  # fmt: skip
    assert segment_kind(s, 0, 0).startswith("a stale segment from before the stream's start")
    assert segment_kind(s, 1, 50).startswith("a stale duplicate")
    assert segment_kind(s, 2, 50).startswith("an overlapping retransmission: its first 10 bytes")
    assert segment_kind(s, 3, 60).startswith("out of order: it starts 20 bytes beyond the hole")
    assert "wrap past 2**32 to 0" in segment_kind(s, 3, 60)
    assert "numbered after the wrap" in segment_kind(s, 4, 60)
    assert segment_kind(s, 5, 60).startswith("the next bytes in order")
    assert segment_kind(s, 6, 60).startswith("beyond the window")


def test_loss_100_percent_is_explained_not_silently_passed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "reassembly.py").write_text(load("reassembly").source_of("solution"))
    assert lab_main(["exercise", "check", "reassembly", str(folder), "--loss", "100%"]) == 0
    out = capsys.readouterr().out
    assert "PASS  impaired session (loss=100% seed=" in out
    assert "; every segment lost once and only its retransmission arrives)" in out


# -- conformance -------------------------------------------------------------------------------


def test_conformance_reference_solution_passes(tmp_path: Path) -> None:
    result = attempt(tmp_path, "conformance", load("conformance").source_of("solution"))
    assert result.passed, result.criteria


def test_conformance_script_that_accepts_any_options_catches_nothing(tmp_path: Path) -> None:
    source = broken("conformance", "<nop,nop,sack 1001:2001>", "<...>")
    reasons = failed(attempt(tmp_path, "conformance", source))
    assert set(reasons) == {"catches"}
    assert "passes your script too" in reasons["catches"]


def test_conformance_wrong_sack_block_fails_against_the_lab(tmp_path: Path) -> None:
    source = broken("conformance", "sack 1001:2001", "sack 1:2001")
    reasons = failed(attempt(tmp_path, "conformance", source))
    assert "passes" in reasons
    assert "options <nop,nop,sack 1001:2001>" in reasons["passes"]


def test_conformance_syntax_error_names_the_line(tmp_path: Path) -> None:
    source = broken("conformance", "+0 ioctl(4, SIOCINQ, [0]) = 0", "+0 getsockopt(4) = 0")
    reasons = failed(attempt(tmp_path, "conformance", source))
    assert reasons == {"in": "your script:11: unsupported call 'getsockopt'"}


def test_conformance_starter_reports_what_is_missing(tmp_path: Path) -> None:
    reasons = failed(attempt(tmp_path, "conformance", load("conformance").source_of("starter")))
    assert "NotImplementedError" in reasons["your"]
