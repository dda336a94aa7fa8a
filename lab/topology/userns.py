"""Rootless mode: an ordinary user's live commands run in a private user namespace.

As an ordinary user, `lab get` (and every other live command) enters, before it builds anything,
a new *user* namespace that maps only the user's own uid and gid to root (so no /etc/subuid and
no setuid helper are needed; `setgroups` is denied, as the kernel demands for such a map) and a
new *mount* namespace with a private tmpfs over /run (where named network namespaces, /run/netns,
and the lab's state, /run/lab, live), then runs the command as PID 1 of a new *PID* namespace.
Inside, the process holds every capability over the namespaces it creates, so the topology code
runs unchanged. The entry point is `enter`, called through `lab.cli.userns.prepare`, the one hook
the CLI dispatcher calls after parsing the command (so it knows which command, and `--iface`).

Why ctypes `unshare(2)` in this process rather than re-executing under util-linux `unshare`:
- the command keeps its open files, its terminal, its environment and its parsed arguments; a
  re-exec would have to rebuild how it was started (venv, PYTHONPATH, `python -m lab` or the
  console script, a notebook kernel) and parse the arguments twice;
- no dependence on util-linux's version or its options (`--map-users`, `--kill-child` vary, and
  `--map-users` needs newuidmap, which is not installed everywhere);
- the one constraint, that a process with threads may not enter a user namespace (EINVAL), is
  met because the dispatcher calls its hook before any thread starts (imports start none);
  `enter` checks /proc/self/task and refuses clearly if that ever stops being true. (It is
  also why Jupyter must be started inside, with `lab rootless`: a kernel has threads.)

The processes, after `prepare`:
- the *supervisor* (the original process, in the new user and mount namespaces) forks the
  command into the new PID namespace and only waits for it, forwarding SIGINT, SIGTERM, SIGHUP
  and SIGQUIT sent to it alone (not the terminal's: those reach the command directly, see
  `wait_forwarding`), and exits with its status. It cannot itself run the command: after
  unshare(CLONE_NEWPID) a process may no longer start threads, and the lab uses threads;
- the *command* is PID 1 of the PID namespace, with PR_SET_PDEATHSIG=SIGKILL towards the
  supervisor. PID 1 ignores signals it has no handler for, so it gets handlers for SIGTERM,
  SIGHUP and SIGQUIT that exit as those signals would (forked helpers restore the default);
  SIGINT has Python's own (KeyboardInterrupt);
- the *holder*, forked before the PID namespace, sleeps with PR_SET_PDEATHSIG=SIGKILL, and is
  told to stay only when the command left a topology up on purpose (below).

Nothing outlives the command, even after SIGKILL of any of them, because nothing is tied to the
host: the network namespaces are bind mounts in the private mount namespace, which disappears
with its last process, taking the namespaces and their veth with it; when the command ends,
however it ends, the kernel kills every other process of its PID namespace (the embedded FTP
server, the student's code, servers started by tests); when the supervisor is killed, the
command and the holder get SIGKILL. Temporary files (the embedded server's root) go to $TMPDIR,
pointed into the private tmpfs.

`lab up` (and `lab exercise start`) leave a topology up on purpose. As root that is a state file
and named namespaces on the host; here, when the command ends with a detached topology, the
supervisor records the holder in a registry the user owns ($XDG_RUNTIME_DIR/lab, else
/tmp/lab-UID) and tells it to stay (its death signal cleared): it alone keeps the mount
namespace, and so the topology, alive. `lab down RUN` and `lab clean` run as the user read that
registry and kill the holder, which removes everything; `lab rootless --join RUN CMD` runs CMD in
the holder's namespaces.

Which commands enter, and what `down`/`clean` do as a user, is the CLI's business: `lab.cli.userns`
(the people's side) decides, and calls `enter`, `holders`, `stop_holder` and `join_holder` here.

Where user namespaces are refused, `RootlessRefusedError` carries one line: what was found (one of
kernel.unprivileged_userns_clone=0, user.max_user_namespaces=0, Ubuntu's
kernel.apparmor_restrict_unprivileged_userns=1, a seccomp filter) and the fix; the CLI exits 77.

Limits: only the user's own ids exist inside, so servers that switch to another account must be
told to stay root (lab.ftp.servers does it for vsftpd and proftpd; tcpdump needs -Z root);
`--iface` uses one of the host's interfaces, which no user namespace can grant: root-only.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import select
import signal
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MS_NOEXEC = 0x8
PR_SET_PDEATHSIG = 1

RUN_DIR = Path("/run")
PRIVATE_TMP = RUN_DIR / "lab-tmp"


class RootlessRefusedError(PermissionError):
    """User namespaces are refused here; the message says what was found and the fix."""


class RootlessUnavailableError(RuntimeError):
    """The process cannot enter a namespace now (it already has threads): a bug in the caller."""


# -- where we are ----------------------------------------------------------------------------


def uid_map(path: Path = Path("/proc/self/uid_map")) -> list[tuple[int, int, int]]:
    """The lines of a uid_map: (inside, outside, count)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return [(int(a), int(b), int(c)) for a, b, c in (line.split() for line in lines if line)]


def is_rootless(path: Path = Path("/proc/self/uid_map")) -> bool:
    """Whether this process is root inside a user namespace that maps one ordinary user."""
    return any(
        inside == 0 and outside != 0 and count == 1 for inside, outside, count in uid_map(path)
    )


def outside_uid() -> int:
    """The user's uid on the host (this process's uid when not rootless)."""
    for inside, outside, count in uid_map():
        if inside == 0 and count == 1:
            return outside
    return os.getuid()


# -- why user namespaces are refused ----------------------------------------------------------


def _read(proc: Path, name: str) -> str | None:
    try:
        return (proc / name).read_text().strip()
    except OSError:
        return None


def _seccomp_mode(proc: Path) -> int:
    status = _read(proc, "self/status") or ""
    for line in status.splitlines():
        if line.startswith("Seccomp:"):
            with contextlib.suppress(ValueError):
                return int(line.split()[1])
    return 0


def explain_refusal(err: int, step: str, proc: Path = Path("/proc")) -> str:
    """One line: what refused the user namespace (found in `proc`) and what to do about it."""
    head = f"rootless mode unavailable: {step}: {os.strerror(err)}"
    if _read(proc, "sys/kernel/unprivileged_userns_clone") == "0":
        return (
            f"{head}; found kernel.unprivileged_userns_clone=0 (user namespaces disabled for "
            "ordinary users); fix: sudo sysctl -w kernel.unprivileged_userns_clone=1, or run lab "
            "as root"
        )
    if _read(proc, "sys/user/max_user_namespaces") == "0" or err == errno.ENOSPC:
        return (
            f"{head}; found user.max_user_namespaces=0 (no user namespaces allowed); fix: sudo "
            "sysctl -w user.max_user_namespaces=15000, or run lab as root"
        )
    if _read(proc, "sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return (
            f"{head}; found kernel.apparmor_restrict_unprivileged_userns=1 (Ubuntu's AppArmor "
            "restriction); fix: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or "
            "an AppArmor profile with `userns,` for this python, or run lab as root"
        )
    if _seccomp_mode(proc) == 2:
        return (
            f"{head}; found a seccomp filter on this process (a container's profile refusing "
            "unshare); fix: run the container with a seccomp profile that allows unshare and "
            "clone with CLONE_NEWUSER (docker: --security-opt seccomp=unconfined), or run lab as "
            "root"
        )
    return f"{head}; fix: allow unprivileged user namespaces on this machine, or run lab as root"


# -- entering ---------------------------------------------------------------------------------


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _mount(libc: ctypes.CDLL, source: str, target: str, fstype: str | None, flags: int) -> int:
    result: int = libc.mount(
        source.encode(),
        target.encode(),
        None if fstype is None else fstype.encode(),
        ctypes.c_ulong(flags),
        b"mode=0755" if fstype == "tmpfs" else None,
    )
    return 0 if result == 0 else ctypes.get_errno()


def unshare_user_and_mounts(proc: Path = Path("/proc")) -> None:
    """Enter new user and mount namespaces, map our ids to root, and put a private tmpfs on
    /run. Raises RootlessRefusedError with one line."""
    if _thread_count() > 1:
        raise RootlessUnavailableError(
            "cannot enter a user namespace: this process already has threads"
        )
    uid, gid = os.getuid(), os.getgid()
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    libc = _libc()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        raise RootlessRefusedError(
            explain_refusal(ctypes.get_errno(), "unshare(CLONE_NEWUSER)", proc)
        )
    try:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    except OSError as exc:
        raise RootlessRefusedError(
            explain_refusal(exc.errno or errno.EPERM, "uid_map", proc)
        ) from exc
    err = _mount(libc, "none", "/", None, MS_REC | MS_PRIVATE)
    if err:
        raise RootlessRefusedError(explain_refusal(err, "mount --make-rprivate /", proc))
    # Opened in the new mount namespace (a bind mount's source must be in the caller's), before
    # the tmpfs hides it: $XDG_RUNTIME_DIR lives under /run, and is bound back in below.
    keep_fd = _open_runtime_dir(runtime)
    for source, target, fstype, mflags in (
        ("tmpfs", str(RUN_DIR), "tmpfs", MS_NOSUID | MS_NODEV),
        # Shared: the command's own mount namespace (below) then adds its network namespaces'
        # bind mounts here too, where the holder of a `lab up` topology keeps them.
        ("none", str(RUN_DIR), None, MS_SHARED),
    ):
        err = _mount(libc, source, target, fstype, mflags)
        if err:
            raise RootlessRefusedError(explain_refusal(err, f"mount {target}", proc))
    for directory in (RUN_DIR / "netns", RUN_DIR / "lab", PRIVATE_TMP):
        directory.mkdir(mode=0o755, exist_ok=True)
    PRIVATE_TMP.chmod(0o1777)  # as /tmp: servers that check their root is reachable by others
    if keep_fd is not None:  # $XDG_RUNTIME_DIR lives under /run: show it through again
        with contextlib.suppress(OSError):
            os.makedirs(runtime, mode=0o700, exist_ok=True)
        if _mount(libc, f"/proc/self/fd/{keep_fd}", runtime, None, MS_BIND | MS_REC):
            del os.environ["XDG_RUNTIME_DIR"]  # not shown through: the registry goes to /tmp
        os.close(keep_fd)
    os.environ["TMPDIR"] = str(PRIVATE_TMP)
    tempfile.tempdir = None  # recomputed from TMPDIR on next use


def _open_runtime_dir(runtime: str) -> int | None:
    if not runtime.startswith(str(RUN_DIR) + "/"):
        return None
    try:
        return os.open(runtime, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return None


# -- the supervisor, the command and the holder ----------------------------------------------


def _die_with_parent(alive: int) -> None:
    """In a forked child: SIGKILL when the parent dies; `alive` reads EOF if it already has."""
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    ready, _, _ = select.select([alive], [], [], 0)
    if ready:
        os._exit(1)


def _own_proc() -> None:
    """In the command (PID 1 of its PID namespace): a mount namespace of its own with a /proc
    of that PID namespace, so that /proc/PID means the pids the command sees (os.getpid(), a
    child's pid: code opens /proc/PID/ns/net of a child it started). /run stays shared with the
    supervisor's namespace. Where /proc cannot be mounted (a container that masks parts of it),
    the host's stays: /proc/self still works, only /proc/PID of a child does not."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNS) == 0:
        _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _spawn_holder() -> tuple[int, int]:
    """Fork the process that may later hold a detached topology: (its pid, the pipe to it).

    It sleeps until the supervisor writes "hold" (then it stays, owning the mount namespace and
    so the topology) or the pipe closes (then it ends); it dies with the supervisor meanwhile."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child != 0:
        os.close(read_end)
        return child, write_end
    try:  # pragma: no cover - the forked holder
        os.close(write_end)
        _die_with_parent(read_end)
        os.setsid()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_IGN)
        _detach_stdio(keep=read_end)
        message = b""
        while chunk := os.read(read_end, 64):
            message += chunk
        if message == b"hold":
            _libc().prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
            while True:
                signal.pause()
    finally:
        os._exit(0)


def _detach_stdio(keep: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)


_command_pid = 0


def _exit_on(signum: int, frame: object) -> None:
    """PID 1 of a namespace ignores signals it has no handler for: make SIGTERM/SIGHUP end the
    command as they would anywhere else (context managers and finally blocks still run).

    A forked child inherits this handler (pyroute2 forks helpers and stops them with SIGTERM):
    there it must die as it expects, not unwind a copy of the command's stack (which would tear
    down the topology)."""
    if os.getpid() != _command_pid:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
        return
    # Once: a second copy (`kill -TERM -PGID` reaches the command directly and through the
    # supervisor) must not interrupt the unwinding the first one started.
    signal.signal(signum, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _supervise() -> int | None:
    """Fork the command as PID 1 of a new PID namespace and wait for it; None in the command.

    Why a PID namespace: when its first process dies, the kernel kills every process in it, so
    nothing the command started (servers, the student's code) outlives it; and the command dies
    with this supervisor (PR_SET_PDEATHSIG), which itself does nothing but wait."""
    holder, to_holder = _spawn_holder()
    libc = _libc()
    if libc.unshare(CLONE_NEWPID) != 0:
        raise RootlessRefusedError(explain_refusal(ctypes.get_errno(), "unshare(CLONE_NEWPID)"))
    alive_r, alive_w = os.pipe()
    # Blocked from before the fork: a ^C in between is then waited for, not a KeyboardInterrupt
    # in this process (the command unblocks them at once).
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})
    command = os.fork()
    if command == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(alive_w)
        os.close(to_holder)
        _die_with_parent(alive_r)
        os.close(alive_r)
        _own_proc()
        global _command_pid
        _command_pid = os.getpid()
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, _exit_on)
        return None
    os.close(alive_r)
    code = os.waitstatus_to_exitcode(wait_forwarding(command))
    code = 128 - code if code < 0 else code
    try:
        if _keep_detached(holder):
            os.write(to_holder, b"hold")
    except OSError as exc:  # e.g. a /tmp/lab-UID that is not ours: the topology goes
        print(f"lab: cannot keep the topology up: {exc}", file=sys.stderr)
        code = code or 1
    os.close(to_holder)
    return code


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
SI_KERNEL = 0x80  # siginfo si_code of a signal the kernel sent: the terminal's ^C, ^\, hangup


def wait_forwarding(command: int) -> int:
    """Wait for `command` (its wait status), passing it each of the FORWARDED signals sent to
    this supervisor, once.

    Signals are taken with sigwaitinfo, which says who sent each: one the terminal sent (^C,
    ^\\, a hangup; si_code SI_KERNEL) went to the whole foreground process group, the command
    included, so forwarding it would deliver it twice (a second ^C in the middle of the
    command's cleanup); one sent to this process alone (kill PID, a test's send_signal, a
    service manager) reaches the command only through us. (`lab rootless` waits for its own
    command the same way.) The signals stay blocked here afterwards: a ^C that comes as the
    command ends is the command's, not a KeyboardInterrupt in this waiting process."""
    waited = {*FORWARDED, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    while True:
        pid, status = os.waitpid(command, os.WNOHANG)
        if pid == command:
            return status
        info = signal.sigwaitinfo(waited)  # SIGCHLD (blocked before the check) wakes us too
        if info.si_signo != signal.SIGCHLD and info.si_code != SI_KERNEL:
            with contextlib.suppress(ProcessLookupError):
                os.kill(command, info.si_signo)


def _keep_detached(holder: int) -> bool:
    """Record `holder` for every topology the command left up (`lab up`); True if any."""
    from lab.topology.state import STATE_DIR, list_states, process_start_time

    detached = [r for r in list_states(STATE_DIR).values() if r is not None and r.owner is None]
    if not detached:
        return False
    for record in detached:
        entry = {
            "run_id": record.names.run_id,
            "holder_pid": holder,
            "start_time": process_start_time(holder),
            "names": list(record.all_names()),
        }
        holder_record(record.names.run_id).write_text(json.dumps(entry) + "\n")
        run = record.names.run_id
        print(
            f"rootless: topology {run} is held by pid {holder}; run a command in it with: "
            f"lab rootless --join {run} ip netns exec {record.names.client_ns} CMD; "
            f"remove it with: lab down {run}",
            file=sys.stderr,
        )
    return True


def join_holder(name: str) -> None:
    """Enter the user and mount namespaces of the holder of topology `name` (run id or one of
    its names), where its network namespaces are named; raises LookupError if there is none.

    setns(2) into a user namespace needs a single-threaded caller, as unshare does; entering the
    mount namespace moves us to its root directory, so the working directory is restored."""
    matches = [h for h in holders() if name in (h.run_id, *h.names) and h.is_alive()]
    if not matches:
        raise LookupError(f"no topology {name!r} held by lab up or lab exercise start")
    if _thread_count() > 1:
        raise RootlessUnavailableError("cannot join a user namespace: this process has threads")
    cwd = os.getcwd()
    libc = _libc()
    for kind, flag in (("user", CLONE_NEWUSER), ("mnt", CLONE_NEWNS)):
        fd = os.open(f"/proc/{matches[0].pid}/ns/{kind}", os.O_RDONLY)
        try:
            if libc.setns(fd, flag) != 0:
                raise OSError(ctypes.get_errno(), f"setns({kind})")
        finally:
            os.close(fd)
    with contextlib.suppress(OSError):
        os.chdir(cwd)


# -- the registry of holders ------------------------------------------------------------------


def _registry_candidates() -> list[Path]:
    uid = outside_uid() if is_rootless() else os.getuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    fallback = Path(f"/tmp/lab-{uid}")
    return [Path(runtime) / "lab", fallback] if runtime and os.path.isdir(runtime) else [fallback]


def registry_dir() -> Path:
    """Where this user's holders are recorded: $XDG_RUNTIME_DIR/lab, else /tmp/lab-UID.

    Created 0700 and checked to be a real directory of ours, so another user cannot plant one."""
    path = _registry_candidates()[0]
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a directory of ours: remove it and try again")
    return path


def holder_record(run_id: str) -> Path:
    """Where the holder of a user's topology `run_id` is recorded: the state file `lab up`
    names, which `lab down RUN` and `lab clean` read (/run/lab, where root's state lives, is in
    the command's private tmpfs and goes with it)."""
    return registry_dir() / f"{run_id}.json"


@dataclass(frozen=True, slots=True)
class Holder:
    """A process keeping a rootless topology alive, as recorded in the registry."""

    run_id: str
    pid: int
    start_time: int | None
    names: tuple[str, ...]
    path: Path

    def is_alive(self) -> bool:
        from lab.topology.state import process_start_time

        return self.start_time is not None and process_start_time(self.pid) == self.start_time


def holders(registry: Path | None = None) -> list[Holder]:
    """Every holder recorded for this user (alive or not), in `registry` or else in both places
    a registry may be (a shell without $XDG_RUNTIME_DIR records in /tmp/lab-UID)."""
    if registry is None:
        registry_dir()  # checks the first place is ours, creating it if need be
        places = [
            p for p in _registry_candidates() if p.is_dir() and p.lstat().st_uid == os.getuid()
        ]
    else:
        places = [registry]
    paths = sorted(path for place in places for path in place.glob("*.json"))
    found = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
            found.append(
                Holder(
                    str(data["run_id"]),
                    int(data["holder_pid"]),
                    data["start_time"],
                    tuple(data["names"]),
                    path,
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
    return found


def stop_holder(holder: Holder, timeout: float = 5.0) -> bool:
    """Kill `holder` (its namespace, and so the topology, goes with it); True if it was alive."""
    alive = holder.is_alive()
    if alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while holder.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
    holder.path.unlink(missing_ok=True)
    return alive


def enter() -> int | None:
    """Enter the private namespaces and fork the command; None in the command, which goes on
    inside, and in the supervisor the command's exit status (128 + N if killed by signal N).

    Raises RootlessRefusedError (one line: what refused it, and the fix) or
    RootlessUnavailableError (the process already has threads)."""
    unshare_user_and_mounts()
    return _supervise()


def probe(proc: Path = Path("/proc")) -> tuple[bool, str]:
    """Whether rootless mode works here, tried in a forked child (nothing here changes)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        text = "ok"
        try:
            os.close(read_end)
            unshare_user_and_mounts(proc=proc)
        except (RootlessRefusedError, RootlessUnavailableError) as exc:
            text = str(exc)
        except BaseException as exc:
            text = f"rootless mode unavailable: {exc}"
        finally:
            with contextlib.suppress(OSError):
                os.write(write_end, text.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode(errors="replace")
    os.waitpid(child, 0)
    return answer == "ok", answer
