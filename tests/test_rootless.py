"""Rootless mode for real: as root (CI), the live lab is run under an ordinary account's uid.

Each command runs as the test student (`rootless_install.student_account`) from an installation
that account can read, in a work folder it owns. After each, nothing may be left: no process of
that account (a namespace lives only as long as a process holds it, so none is left either), no
holder in its registry, no lab link or namespace on the host, and every file written belongs to it.
Without root these tests cannot switch accounts and skip; `make test` as a user runs the live
tests themselves in rootless mode instead.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rootless_install import ReadableInstall, student_account

from lab.topology.clean import find_leftovers

pytestmark = pytest.mark.privileged

HANDSHAKE_SOLUTION = Path(__file__).resolve().parent.parent / "lab/exercises/handshake/solution.py"


@pytest.fixture(scope="module")
def student() -> pwd.struct_passwd:
    return student_account()


@pytest.fixture
def home(student: pwd.struct_passwd) -> Iterator[Path]:
    """A work folder of the student's own (pytest's tmp_path is not reachable by others)."""
    folder = Path(tempfile.mkdtemp(prefix="lab-student-"))
    folder.chmod(0o755)
    os.chown(folder, student.pw_uid, student.pw_gid)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_student(
    install: ReadableInstall,
    student: pwd.struct_passwd,
    home: Path,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        student_command(install, student, *args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=home,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(home), **(env or {})},
        check=False,
    )


def student_command(install: ReadableInstall, student: pwd.struct_passwd, *args: str) -> list[str]:
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    return [
        setpriv,
        f"--reuid={student.pw_uid}",
        f"--regid={student.pw_gid}",
        "--clear-groups",
        str(install.python),
        "-m",
        "lab",
        *args,
    ]


def processes_of(uid: int) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(f"{entry.name} {(entry / 'cmdline').read_bytes()!r}")
            except OSError:
                continue
    return found


def assert_nothing_left(student: pwd.struct_passwd, home: Path) -> None:
    deadline = time.monotonic() + 5  # a killed holder is reaped by init, not by us
    while processes_of(student.pw_uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(student.pw_uid) == []
    registry = Path(f"/tmp/lab-{student.pw_uid}")
    assert not registry.exists() or list(registry.iterdir()) == []
    others = [p for p in home.rglob("*") if p.lstat().st_uid != student.pw_uid]
    assert others == [], f"files not owned by the student: {others}"


def test_files_downloads_ping_connect_demo_and_exercise_as_a_student(
    readable_install: ReadableInstall, student: pwd.struct_passwd, home: Path
) -> None:
    from lab.ftp.server import sample_bytes

    expected = sample_bytes("1M.bin", 1 << 20)
    for name, extra in (("active.bin", ()), ("passive.bin", ("--passive",))):
        url = "ftp://198.18.0.1/1M.bin"
        result = as_student(readable_install, student, home, "get", *extra, url, "-o", name)
        assert result.returncode == 0, result.stderr
        assert (home / name).read_bytes() == expected
        assert ("passive mode" if extra else "active mode") in result.stdout

    result = as_student(readable_install, student, home, "ping", "-c", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 received" in result.stdout

    result = as_student(readable_install, student, home, "connect", "198.18.0.1", "7", stdin="hi\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"

    result = as_student(readable_install, student, home, "demo", "--live")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches the server file" in result.stdout

    folder = home / "hs"
    result = as_student(
        readable_install, student, home, "exercise", "start", "handshake", "hs", "--json"
    )
    assert result.returncode == 0, result.stderr
    started = json.loads(result.stdout)
    run_id, client_ns = started["topology"]["run_id"], started["topology"]["client_namespace"]
    assert started["run_there"] == (
        f"lab rootless --join {run_id} ip netns exec {client_ns} python3 ..."
    )
    # The hint works: the student's side of the topology, reached as it says.
    there = started["run_there"].split()[1:-2]  # lab ... python3 ... -> the lab arguments
    result = as_student(readable_install, student, home, *there, "ip", "-br", "addr")
    assert result.returncode == 0, result.stderr
    assert started["topology"]["client_interface"] in result.stdout
    shutil.copy(HANDSHAKE_SOLUTION, folder / "handshake.py")
    os.chown(folder / "handshake.py", student.pw_uid, student.pw_gid)
    result = as_student(readable_install, student, home, "exercise", "check", "handshake", "hs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5/5 criteria passed" in result.stdout
    result = as_student(readable_install, student, home, "exercise", "reset", "hs")
    assert result.returncode == 0, result.stderr
    assert list((home / "captures" / "runs").iterdir())  # captures land where they would as root
    assert_nothing_left(student, home)


def test_a_fast_kernel_get_is_captured_whole_in_a_user_namespace(
    readable_install: ReadableInstall, student: pwd.struct_passwd, home: Path, tmp_path: Path
) -> None:
    # The kernel moves 50 MB over the veth at 100-250 MB/s, faster than the sniffer writes; in a
    # user namespace the socket's buffer stops at net.core.rmem_max, and about a third of the
    # frames were missing from the capture. Replaying it must give the whole file back.
    args = ["get", "--kernel", "ftp://198.18.0.1/50M.bin", "-o", "k50.bin"]
    result = as_student(readable_install, student, home, *args, "--capture", "k50.pcapng", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["capture_drops"] == 0
    replayed = subprocess.run(
        [sys.executable, "-m", "lab", "replay", "-q", "--out", str(tmp_path / "replayed"),
         str(home / "k50.pcapng")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    recovered = [p for p in (tmp_path / "replayed").rglob("*") if p.is_file()]
    sizes = {p.name: p.stat().st_size for p in recovered}
    assert any(p.read_bytes() == (home / "k50.bin").read_bytes() for p in recovered), sizes
    assert_nothing_left(student, home)


def test_the_kernel_script_runner_skips_rootless_when_the_tun_device_is_root_only(
    readable_install: ReadableInstall, student: pwd.struct_passwd, home: Path
) -> None:
    if os.stat("/dev/net/tun").st_mode & 0o006 == 0o006:
        pytest.skip("/dev/net/tun is open to every user here (0666): nothing to refuse")
    script = home / "active-close.pkt"
    shutil.copy(Path(__file__).parent / "conformance" / "active-close.pkt", script)
    os.chown(script, student.pw_uid, student.pw_gid)
    result = as_student(
        readable_install, student, home,
        "rootless", str(readable_install.python), "-m", "lab", "script", "--against", "kernel",
        str(script),
    )  # fmt: skip
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[kernel]: skip (rootless mode: /dev/net/tun is crw------- (owner uid " in result.stdout
    assert "run lab script as root (sudo)" in result.stdout
    assert_nothing_left(student, home)


def test_up_keeps_a_holder_that_down_removes(
    readable_install: ReadableInstall, student: pwd.struct_passwd, home: Path
) -> None:
    up = as_student(readable_install, student, home, "up", "--json")
    assert up.returncode == 0, up.stderr
    run_id = json.loads(up.stdout)["run_id"]
    state = Path(f"/tmp/lab-{student.pw_uid}/{run_id}.json")
    assert json.loads(up.stdout)["state"] == str(state)  # not /run/lab: private to the command
    holder = json.loads(state.read_text())
    assert os.stat(f"/proc/{holder['holder_pid']}").st_uid == student.pw_uid
    # Nothing on the host: its /run/netns and its links know nothing of this topology.
    host = find_leftovers()
    assert not [n for n in (*host.namespaces, *host.links) if run_id in n]
    # The holder's own network namespaces exist: its mount namespace shows them under /run/netns.
    netns = Path(f"/proc/{holder['holder_pid']}/root/run/netns")
    assert sorted(p.name for p in netns.iterdir()) == [f"lab-{run_id}-cli", f"lab-{run_id}-srv"]
    joined = as_student(
        readable_install, student, home, "rootless", "--join", run_id, "ip", "netns"
    )
    assert joined.returncode == 0, joined.stderr
    assert f"lab-{run_id}-cli" in joined.stdout
    assert f"lab-{run_id}-srv" in joined.stdout
    down = as_student(readable_install, student, home, "down", run_id)
    assert down.returncode == 0, down.stderr
    assert f"removed lab-{run_id}-srv" in down.stdout
    again = as_student(readable_install, student, home, "down", run_id)
    assert again.returncode == 1
    up = as_student(readable_install, student, home, "up")
    assert up.returncode == 0, up.stderr
    state_line = next(line for line in up.stdout.splitlines() if line.startswith("state "))
    assert Path(state_line.removeprefix("state ")).parent == state.parent
    assert Path(state_line.removeprefix("state ")).exists()
    clean = as_student(readable_install, student, home, "clean")
    assert clean.returncode == 0
    assert "removed topology" in clean.stdout
    assert_nothing_left(student, home)


def test_sigkill_in_the_middle_of_a_get_leaves_nothing(
    readable_install: ReadableInstall, student: pwd.struct_passwd, home: Path
) -> None:
    args = ["get", "--rate", "2mbit", "ftp://198.18.0.1/1M.bin", "-o", "slow.bin"]
    process = subprocess.Popen(
        student_command(readable_install, student, *args),
        cwd=home,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    part = home / "slow.bin.part"
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.05)
    assert part.exists(), "the transfer never started"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.stderr is not None
    process.stderr.close()
    assert_nothing_left(student, home)  # the .part file is the student's, kept for --resume


# Counts the SIGINTs it gets: "ready", then, a second after the first, "SIGINT xN".
COUNT_SIGINTS = """
import signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda *_: got.append(time.monotonic()))
print("ready", flush=True)
while not got or time.monotonic() < got[0] + 1:
    time.sleep(0.02)
print(f"SIGINT x{len(got)}", flush=True)
"""


def on_a_terminal(command: list[str], home: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start `command` as the foreground process group of a new terminal (what ^C reaches);
    the terminal's master end is returned to type into and read from."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()

    def take_the_terminal() -> None:  # after setsid (start_new_session)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        command,
        cwd=home,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    os.close(slave)
    return process, master


def read_until(master: int, wanted: bytes, timeout: float = 60) -> bytes:
    import select

    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 0.1)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every process of the terminal has gone
                break
            seen += chunk
    return seen


def test_a_sigint_reaches_the_command_once_from_the_terminal_or_from_kill(
    readable_install: ReadableInstall, student: pwd.struct_passwd, home: Path
) -> None:
    counter = home / "count_sigints.py"
    counter.write_text(COUNT_SIGINTS)
    os.chown(counter, student.pw_uid, student.pw_gid)
    command = student_command(readable_install, student, "rootless", "python3", str(counter))
    for how in ("terminal", "kill"):
        process, master = on_a_terminal(command, home)
        try:
            assert b"ready" in read_until(master, b"ready"), how
            if how == "terminal":
                os.write(master, b"\x03")  # ^C: the terminal signals its foreground group
            else:
                process.send_signal(signal.SIGINT)  # to the supervisor alone
            seen = read_until(master, b"SIGINT x")
            seen += read_until(master, b"\n", timeout=5)
            assert b"SIGINT x1" in seen, (how, seen)
            assert process.wait(30) == 0, how
        finally:
            os.close(master)
            if process.poll() is None:
                process.kill()
                process.wait()
    assert_nothing_left(student, home)


def test_ctrl_c_in_a_get_leaves_only_the_part_file_and_a_failure(
    readable_install: ReadableInstall, student: pwd.struct_passwd, home: Path
) -> None:
    args = ["get", "--rate", "2mbit", "ftp://198.18.0.1/1M.bin", "-o", "slow.bin"]
    process, master = on_a_terminal(student_command(readable_install, student, *args), home)
    part = home / "slow.bin.part"
    try:
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
            assert process.poll() is None
            read_until(master, b"\0", timeout=0.05)  # keep the terminal drained
        assert part.exists(), "the transfer never started"
        os.write(master, b"\x03")
        output = read_until(master, b"--resume", timeout=30)
        assert process.wait(30) != 0, output
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert b"Traceback" not in output, output
    assert b"kept in slow.bin.part (interrupted)" in output, output
    assert output.count(b"^C") == 1, output
    assert not (home / "slow.bin").exists()
    assert part.stat().st_uid == student.pw_uid
    assert_nothing_left(student, home)


# Run argv[3:] as uid argv[1], gid argv[2] inside a user namespace (ids 0-65535 mapped by us, root)
# whose user.max_user_namespaces is 0: what an ordinary user sees where user namespaces are refused.
REFUSING_NAMESPACE = """
import ctypes, os, sys
uid, gid, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
unshared_r, unshared_w = os.pipe()
mapped_r, mapped_w = os.pipe()
child = os.fork()
if child == 0:
    if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:  # CLONE_NEWUSER
        os._exit(90)
    os.write(unshared_w, b"u")
    os.read(mapped_r, 1)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    os.execv(command[0], command)
os.read(unshared_r, 1)
for name in ("uid_map", "gid_map"):
    with open(f"/proc/{child}/{name}", "w") as f:
        f.write("0 0 65536")
os.write(mapped_w, b"m")
sys.exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
"""


def test_a_refused_user_namespace_gives_one_line_and_77(
    readable_install: ReadableInstall, student: pwd.struct_passwd, home: Path
) -> None:
    script = [sys.executable, "-c", REFUSING_NAMESPACE, str(student.pw_uid), str(student.pw_gid)]
    lab = [str(readable_install.python), "-m", "lab"]
    result = subprocess.run(
        [*script, *lab, "ping"], capture_output=True, text=True, timeout=60, cwd=home
    )
    assert result.returncode == 77, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("lab ping: rootless mode unavailable: unshare(CLONE_NEWUSER)")
    assert "found user.max_user_namespaces=0" in result.stderr
    assert "fix: sudo sysctl -w user.max_user_namespaces=" in result.stderr
    doctor = subprocess.run(
        [*script, *lab, "doctor", "--json"], capture_output=True, text=True, timeout=60, cwd=home
    )
    row = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}["rootless mode"]
    assert row["status"] == "warning"
    assert "user.max_user_namespaces=0" in row["detail"]
    assert row["advice"].startswith("sudo sysctl -w user.max_user_namespaces=")


# Run argv[3:] as uid argv[1], gid argv[2] under a seccomp filter that refuses what a container's
# profile refuses (Docker's default does): unshare and clone asking for a new user namespace get
# EPERM, clone3 (whose flags a filter cannot read) ENOSYS, so that libc falls back to clone.
# x86_64 only: the syscall numbers below are its.
SECCOMP_REFUSING_USERNS = """
import ctypes, os, struct, sys
uid, gid, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
AUDIT_ARCH_X86_64, NR_CLONE, NR_UNSHARE, NR_CLONE3 = 0xC000003E, 56, 272, 435
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
LD_W_ABS, JEQ_K, JSET_K, RET_K = 0x20, 0x15, 0x45, 0x06
program = [
    (LD_W_ABS, 0, 0, 4),                  # 0: A = seccomp_data.arch
    (JEQ_K, 0, 6, AUDIT_ARCH_X86_64),     # 1: another ABI (x32, i386): allow (-> 8)
    (LD_W_ABS, 0, 0, 0),                  # 2: A = seccomp_data.nr
    (JEQ_K, 2, 0, NR_UNSHARE),            # 3: unshare -> 6
    (JEQ_K, 1, 0, NR_CLONE),              # 4: clone -> 6
    (JEQ_K, 4, 2, NR_CLONE3),             # 5: clone3 -> 10, anything else -> 8
    (LD_W_ABS, 0, 0, 16),                 # 6: A = low word of args[0] (the flags)
    (JSET_K, 1, 0, 0x10000000),           # 7: CLONE_NEWUSER set? -> 9
    (RET_K, 0, 0, ALLOW),                 # 8
    (RET_K, 0, 0, ERRNO | 1),             # 9: EPERM
    (RET_K, 0, 0, ERRNO | 38),            # 10: ENOSYS
]
code = b"".join(struct.pack("=HBBI", *i) for i in program)
buffer = ctypes.create_string_buffer(code)
fprog = struct.pack("@HP", len(program), ctypes.addressof(buffer))
fprog_buffer = ctypes.create_string_buffer(fprog)
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
os.setgroups([])
os.setresgid(gid, gid, gid)
os.setresuid(uid, uid, uid)
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: what lets a user install a filter
    sys.exit(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
if libc.prctl(22, 2, ctypes.addressof(fprog_buffer), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
    sys.exit(f"seccomp: {os.strerror(ctypes.get_errno())}")
os.execv(command[0], command)
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the test's filter has x86_64 numbers")
def test_a_seccomp_filter_refusing_user_namespaces_gives_one_line_and_77(
    readable_install: ReadableInstall, student: pwd.struct_passwd, home: Path
) -> None:
    script = [sys.executable, "-c", SECCOMP_REFUSING_USERNS]
    script += [str(student.pw_uid), str(student.pw_gid), str(readable_install.python), "-m", "lab"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    result = subprocess.run(
        [*script, "ping"], capture_output=True, text=True, timeout=60, cwd=home, env=env
    )
    assert result.returncode == 77, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "lab ping: rootless mode unavailable: unshare(CLONE_NEWUSER): Operation not permitted; "
        "found a seccomp filter on this process"
    ), result.stderr
    assert "fix: run the container with a seccomp profile that allows unshare" in result.stderr
    doctor = subprocess.run(
        [*script, "doctor", "--json"], capture_output=True, text=True, timeout=60, cwd=home, env=env
    )
    row = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}["rootless mode"]
    assert row["status"] == "warning"
    assert "found a seccomp filter" in row["detail"]
    assert "seccomp=unconfined" in row["advice"]


def test_iface_stays_root_only_and_doctor_has_a_rootless_row(
    readable_install: ReadableInstall, student: pwd.struct_passwd, home: Path
) -> None:
    result = as_student(
        readable_install, student, home, "get", "--iface", "lo", "--addr", "198.18.9.2/24",
        "ftp://198.18.9.1/x",
    )  # fmt: skip
    assert result.returncode == 77
    assert "--iface uses one of the host's interfaces, which only root may do" in result.stderr
    doctor = as_student(readable_install, student, home, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["rootless mode"]["status"] == "ok", checks["rootless mode"]
    assert doctor.returncode == 0, doctor.stdout  # a verdict: the live lab works, rootless
    assert json.loads(doctor.stdout)["rootless"] is True


def test_a_notebook_runs_live_as_a_student(
    readable_install: ReadableInstall, student: pwd.struct_passwd, home: Path
) -> None:
    notebook = readable_install.base / "src" / "notebooks" / "02_handshake_state_machine.ipynb"
    runner = home / "run_notebook.py"
    runner.write_text(
        "import sys, nbclient, nbformat\n"
        "nb = nbformat.read(sys.argv[1], as_version=4)\n"
        "nbclient.NotebookClient(nb, timeout=120, kernel_name='python3',\n"
        "    resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
        "texts = [''.join(o.get('text', '') for o in c.outputs if o.output_type == 'stream')\n"
        "         for c in nb.cells if c.cell_type == 'code']\n"
        "print(texts[0].splitlines()[0]); print(texts[-1])\n"
    )
    os.chown(runner, student.pw_uid, student.pw_gid)
    result = as_student(
        readable_install, student, home,
        "rootless", str(readable_install.python), str(runner), str(notebook), str(home),
        env={"LAB_MODE": "live"}, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("mode: LIVE (rootless, forced by LAB_MODE=live)")
    assert "all checks passed (live)" in result.stdout
    assert_nothing_left(student, home)
