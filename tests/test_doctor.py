"""`lab doctor`: an honest report here, and clear advice (no traceback) without privileges."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rootless_install import ReadableInstall

from lab.cli.doctor import Check, all_required_ok, print_report, ready_rootless

ROOT = Path(__file__).resolve().parent.parent


def doctor(
    *args: str, prefix: tuple[str, ...] = (), install: ReadableInstall | None = None
) -> subprocess.CompletedProcess[str]:
    """`lab doctor ARGS` under `prefix`; with `install`, from an installation any account can
    read (another account may reach neither this interpreter nor this clone)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    python, cwd = sys.executable, ROOT
    if install is not None:
        env.pop("PYTHONPATH")
        python, cwd = str(install.python), install.base
    return subprocess.run(
        [*prefix, python, "-m", "lab", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
        check=False,
    )


def by_name(report: dict[str, object]) -> dict[str, dict[str, object]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return {c["name"]: c for c in checks}


def test_report_says_what_is_missing_and_what_to_do() -> None:
    import io

    checks = [
        Check("CAP_NET_RAW", "missing", True, "absent", "run as root"),
        Check("tshark", "warning", False, "not found", "apt install tshark"),
    ]
    out = io.StringIO()
    print_report(checks, out)
    text = out.getvalue()
    assert "MISS  CAP_NET_RAW" in text
    assert "-> run as root" in text
    assert "-> apt install tshark" in text
    assert "cannot run here (missing: CAP_NET_RAW)" in text
    assert not all_required_ok(checks)
    assert all_required_ok(checks[1:])  # a missing optional tool does not fail the doctor


def test_an_ordinary_user_with_rootless_mode_is_ready_and_root_without_caps_is_not() -> None:
    import io

    checks = [
        Check("CAP_NET_RAW", "missing", True, "absent", "run as root"),
        Check("AF_PACKET", "missing", True, "Operation not permitted", "run as root"),
        Check("rootless mode", "ok", False, "available"),
        Check("python: scapy", "ok", True, "importable"),
    ]
    assert ready_rootless(checks, uid=1000)
    assert not ready_rootless(checks, uid=0)  # root never enters the user namespace
    refused = [*checks[:2], Check("rootless mode", "warning", False, "found a seccomp filter")]
    assert not ready_rootless(refused, uid=1000)
    no_scapy = [*checks[:3], Check("python: scapy", "missing", True, "not importable")]
    assert not ready_rootless(no_scapy, uid=1000)  # a user namespace grants no module
    out = io.StringIO()
    print_report(checks, out, uid=1000)
    assert "This machine can run the live lab in rootless mode" in out.getvalue()
    out = io.StringIO()
    print_report(checks, out, uid=0)
    assert "The live lab cannot run here (missing: CAP_NET_RAW, AF_PACKET)" in out.getvalue()


@pytest.mark.privileged
def test_doctor_on_this_machine_finds_everything_required() -> None:
    result = doctor("--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    checks = by_name(report)
    for name in ("CAP_NET_ADMIN", "CAP_NET_RAW", "network namespaces", "AF_PACKET", "veth"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["tshark"]["status"] == ("ok" if shutil.which("tshark") else "warning")
    text = doctor()
    assert text.returncode == 0
    assert "This machine can run the live lab." in text.stdout


def _dropped_prefixes() -> list[tuple[str, tuple[str, ...]]]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return []
    no_caps = (setpriv, "--inh-caps=-all", "--bounding-set=-all")
    nobody = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *no_caps[1:])
    return [("root-without-capabilities", no_caps), ("nobody", nobody)]


@pytest.mark.privileged
@pytest.mark.parametrize(
    ("who", "prefix"),
    _dropped_prefixes() or [pytest.param("", (), marks=pytest.mark.skip("no setpriv"))],
)
def test_doctor_without_privileges_gives_advice_and_no_traceback(
    who: str, prefix: tuple[str, ...], request: pytest.FixtureRequest
) -> None:
    install = request.getfixturevalue("readable_install") if who == "nobody" else None
    result = doctor(prefix=prefix, install=install)
    report = json.loads(doctor("--json", prefix=prefix, install=install).stdout)
    checks = by_name(report)
    # nobody is an ordinary user: where rootless mode works, the live lab is theirs (exit 0);
    # root without capabilities never uses it.
    rootless = who == "nobody" and checks["rootless mode"]["status"] == "ok"
    assert result.returncode == (0 if rootless else 1), result.stdout + result.stderr
    assert report["ok"] is rootless
    assert report["rootless"] is rootless
    assert "Traceback" not in result.stdout + result.stderr
    assert "MISS  CAP_NET_RAW" in result.stdout
    assert "MISS  AF_PACKET" in result.stdout
    assert "Operation not permitted" in result.stdout
    assert "-> run lab as root" in result.stdout
    if rootless:
        assert "This machine can run the live lab in rootless mode" in result.stdout
    else:
        assert "The live lab cannot run here" in result.stdout
    for name in ("CAP_NET_ADMIN", "CAP_NET_RAW", "network namespaces", "AF_PACKET"):
        assert checks[name]["status"] == "missing"
        assert checks[name]["advice"]


@pytest.mark.privileged
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv")
def test_a_probe_refused_for_want_of_net_admin_asks_for_it_not_for_a_module() -> None:
    # Root that may still unshare (CAP_SYS_ADMIN) but lacks CAP_NET_ADMIN and CAP_NET_RAW: the
    # namespace exists, creating the veth and the nft table is refused. That is a privilege to
    # grant; advising `modprobe veth` or `apt install nftables` would send the user astray.
    drop = "-net_admin,-net_raw"
    prefix = (str(shutil.which("setpriv")), f"--inh-caps={drop}", f"--bounding-set={drop}")
    result = doctor("--json", prefix=prefix)
    assert "Traceback" not in result.stdout + result.stderr
    checks = by_name(json.loads(result.stdout))
    assert checks["network namespaces"]["status"] == "ok"
    for name in ("veth", "nftables"):
        assert checks[name]["status"] == "missing", checks[name]
        assert "Operation not permitted" in str(checks[name]["detail"])
        assert "\n" not in str(checks[name]["detail"])  # one line: the report stays a table
        assert "CAP_NET_ADMIN" in str(checks[name]["advice"]), checks[name]
        assert "modprobe" not in str(checks[name]["advice"])


def test_doctor_finds_the_vsftpd_the_set_up_unpacked_off_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.cli import doctor as doctor_module
    from lab.ftp import servers

    unpacked = tmp_path / "opt" / "usr" / "sbin" / "vsftpd"
    unpacked.parent.mkdir(parents=True)
    unpacked.write_text("#!/bin/sh\n")
    unpacked.chmod(0o755)
    monkeypatch.setattr(servers, "VSFTPD_UNPACKED", unpacked)
    monkeypatch.setattr(doctor_module, "find_program", lambda name: None)
    monkeypatch.setattr(servers.shutil, "which", lambda *a, **k: None)
    checks = {c.name: c for c in doctor_module._tool_checks()}
    assert checks["vsftpd"].status == "ok"
    assert str(unpacked) in checks["vsftpd"].detail
    # proftpd is absent here, and the one real FTP server present is enough
    assert checks["proftpd"].status == "ok"
    assert "the other FTP server will do" in checks["proftpd"].detail
