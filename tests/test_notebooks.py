"""The notebooks: stored without outputs, and each runs top to bottom in both modes.

Every notebook asserts what it teaches in its last code cell, so running it is its test. Offline
runs need nothing; live runs build namespaces and are marked privileged. Mode selection itself
(`lab.notebook`) is tested here too, since the notebooks are its only users.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab.notebook import choose_mode, off_the_event_loop
from lab.topology.privileges import CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, PrivilegeError
from lab.topology.userns import is_rootless

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
ALL_CAPS = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW) | (1 << CAP_SYS_ADMIN)


def test_there_are_notebooks() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == sorted({p.name[:2] for p in NOTEBOOKS})
    assert len(NOTEBOOKS) >= 2


def cells_with_outputs(nb: dict[str, Any]) -> list[int]:
    """Indexes of code cells that carry outputs or an execution count."""
    return [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    """Outputs make diffs unreadable: clear them (Jupyter: Edit > Clear All Outputs) first."""
    dirty = cells_with_outputs(json.loads(path.read_text()))
    assert not dirty, f"{path.name}: cells {dirty} have stored outputs or execution counts"


def test_the_output_check_catches_a_stored_output() -> None:
    clean: dict[str, Any] = {
        "cell_type": "code",
        "source": "1",
        "outputs": [],
        "execution_count": None,
    }
    text = {"cell_type": "markdown", "source": "# t"}
    ran = {**clean, "execution_count": 3}
    printed = {**clean, "outputs": [{"output_type": "stream", "name": "stdout", "text": "1"}]}
    assert cells_with_outputs({"cells": [text, clean]}) == []
    assert cells_with_outputs({"cells": [text, ran, clean, printed]}) == [1, 3]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_what_you_learn_and_closes_with_exercises(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    assert "What you will learn" in "".join(cells[0]["source"])
    assert "Exercises" in "".join(cells[-1]["source"])
    first_code = next(c for c in cells if c["cell_type"] == "code")
    assert "choose_mode()" in "".join(first_code["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_asserts_what_it_taught_in_its_last_code_cell(path: Path) -> None:
    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    last = "".join(code[-1]["source"])
    assert last.count("assert ") >= 3
    assert 'print(f"all checks passed ({MODE.mode})")' in last.splitlines()[-1]


def test_replay_notebook_replays_a_real_tcpdump_capture_of_curl_against_vsftpd() -> None:
    """Offline as well as live: the capture is shipped, and its files are checked against the
    SHA-256s curl's side computed when it was recorded (captures/tools-manifest.json)."""
    (path,) = [p for p in NOTEBOOKS if p.name.startswith("05_")]
    cells = json.loads(path.read_text())["cells"]
    source = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    root = path.parent.parent
    manifest = json.loads((root / "captures" / "tools-manifest.json").read_text())
    (entry,) = [
        c
        for c in manifest["captures"]
        if f'"{c["file"]}"' in source and (root / "captures" / c["file"]).exists()
    ]
    assert (entry["server"], entry["client"]) == ("vsftpd", "curl")
    assert 'manifest["captures"]' in source
    assert "EXPECTED" in source
    setup = "".join(cells[3]["source"])
    assert entry["file"] in setup
    assert "if MODE.live" not in setup


# -- mode selection ---------------------------------------------------------------------------


def test_mode_is_live_with_the_capabilities_and_offline_without() -> None:
    assert choose_mode({}, capabilities=ALL_CAPS).live
    offline = choose_mode({}, capabilities=1 << CAP_NET_RAW)
    assert offline.offline
    assert "CAP_SYS_ADMIN" in offline.reason
    assert offline.banner().startswith("mode: OFFLINE (")


def test_the_offline_banner_says_how_to_get_live_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lab.topology.userns.probe", lambda: (True, "ok"))
    user = choose_mode({}, capabilities=0, uid=1000).banner()
    assert user.startswith("mode: OFFLINE (no privileges for namespaces: ")
    assert user.endswith(
        "; for live mode, as an ordinary user, start Jupyter with: lab rootless jupyter lab "
        "notebooks/ (make notebooks does)"
    )
    assert "LAB_MODE=live" not in user  # it would only fail
    refusal = "rootless mode unavailable: unshare(CLONE_NEWUSER): x; found y; fix: z"
    monkeypatch.setattr("lab.topology.userns.probe", lambda: (False, refusal))
    refused = choose_mode({}, capabilities=0, uid=1000).banner()
    assert refused.endswith(f"; no live mode for this user: {refusal}")
    root = choose_mode({}, capabilities=0, uid=0).banner()
    assert "run Jupyter as root with CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN" in root


def test_lab_mode_forces_offline_even_as_root() -> None:
    mode = choose_mode({"LAB_MODE": "offline"}, capabilities=ALL_CAPS)
    assert mode.offline
    assert "LAB_MODE=offline" in mode.banner()


def test_lab_mode_live_without_capabilities_is_an_error_not_a_fallback() -> None:
    with pytest.raises(PrivilegeError, match="LAB_MODE=live"):
        choose_mode({"LAB_MODE": "live"}, capabilities=0)
    assert choose_mode({"LAB_MODE": " Live "}, capabilities=ALL_CAPS).live


def test_unknown_lab_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="'online'"):
        choose_mode({"LAB_MODE": "online"}, capabilities=ALL_CAPS)


def test_off_the_event_loop_runs_in_another_thread_and_passes_exceptions() -> None:
    import threading

    main = threading.get_ident()
    assert off_the_event_loop(threading.get_ident) != main
    with pytest.raises(ZeroDivisionError):
        off_the_event_loop(lambda: 1 // 0)


# -- running them -----------------------------------------------------------------------------


def execute(path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run the notebook in a fresh kernel; return the text each code cell printed."""
    # not importorskip: a missing extra would silently skip every notebook run in `make test`
    try:
        import nbclient
        import nbformat
    except ImportError as e:  # pragma: no cover - the `notebook` extra is part of `make test`
        pytest.fail(f"{e.name} is missing: pip install -e '.[notebook]' (make test does)")
    monkeypatch.setenv("LAB_MODE", mode)
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    texts = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            texts.append(
                "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            )
    return texts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_offline(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = execute(path, "offline", monkeypatch)
    assert texts[0].startswith("mode: OFFLINE (forced by LAB_MODE=offline)")
    assert "all checks passed (offline)" in texts[-1]


@pytest.mark.privileged
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_live(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = execute(path, "live", monkeypatch)
    rootless = "rootless, " if is_rootless() else ""  # as a user, inside `lab rootless`
    assert texts[0].startswith(f"mode: LIVE ({rootless}forced by LAB_MODE=live)")
    assert "all checks passed (live)" in texts[-1]


def _markdown(prefix: str) -> str:
    (path,) = [p for p in NOTEBOOKS if p.name.startswith(prefix)]
    cells = json.loads(path.read_text())["cells"]
    return "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def _code(prefix: str) -> str:
    (path,) = [p for p in NOTEBOOKS if p.name.startswith(prefix)]
    cells = json.loads(path.read_text())["cells"]
    return "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_notebook_1_names_the_address_range_for_what_it_is() -> None:
    text = _markdown("01_")
    assert "documentation range" not in text  # that is 192.0.2.0/24 and friends (RFC 5737)
    assert "RFC 2544" in text


@pytest.mark.parametrize("prefix", ["01_", "02_"])
def test_notebooks_that_show_fields_show_ports_as_numbers(prefix: str) -> None:
    code = _code(prefix)
    assert "numeric_ports()" in code
    assert code.index("numeric_ports()") < code.index(".show")


def test_notebook_3_prints_the_times_its_ladder_draws() -> None:
    code = _code("03_")
    assert "hop.departed_us - T0" in code
    assert "hop.time_us - T0" not in code


def test_notebook_5_gives_the_corrupted_replys_true_length() -> None:
    # The notebook corrupts the control connection's second server reply of this capture.
    import re

    from lab import replay
    from lab.replay.report import replay_capture

    capture = NOTEBOOKS[0].parent.parent / "captures" / "tools-vsftpd-curl-passive.pcap"
    control = replay_capture(capture).sessions[0].control.index
    replies = [
        step.segment.payload
        for step in replay.steps(capture)
        if step.flow is not None
        and step.flow.index == control
        and step.direction == "s2c"
        and step.segment.payload
    ]
    said = re.findall(r"in a (\d+)-byte reply", _markdown("05_"))
    assert said == [str(len(replies[1]))]


def test_kernel_vs_lab_offline_gives_no_speed_for_virtual_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offline, notebook 6's lab side ran on the in-memory wire's virtual clock: its duration is
    printed as virtual time, never as MB/s beside the kernel's real rate."""
    path = next(p for p in NOTEBOOKS if p.name.startswith("06_"))
    texts = execute(path, "offline", monkeypatch)
    timings = next(t for t in texts if "first to last data segment" in t)
    lab_line = next(line for line in timings.splitlines() if line.startswith("lab"))
    assert "virtual time (not a speed)" in lab_line
    assert "MB/s" not in lab_line
