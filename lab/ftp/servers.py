"""FTP servers no one here wrote (vsftpd, proftpd), run inside the lab's server namespace.

The embedded pyftpdlib server (`lab.ftp.server`) proves the client against a server we chose;
these two prove it against the daemons people actually run, with their own reply wording,
multi-line banners, LIST formats and active-mode habits (vsftpd connects from port 20, proftpd
from an ephemeral port).

Each daemon gets a config file generated into a private directory, never the system's
`/etc`: an anonymous read-only root with sample files, an `incoming/` directory where anonymous
uploads are allowed, a passive port range, and logs beside the config. Both run in the
foreground (`background=NO`, `proftpd --nodaemon`) in a new session, so `stop()` ends the
daemon and every per-connection child it forked by signalling the process group we created,
and nothing else.

Finding the binaries: vsftpd and proftpd-core conflict as Debian packages (both provide
`ftp-server`), so `.ci/system-packages` installs proftpd and unpacks vsftpd's .deb under
`/opt/lab-vsftpd`. `find_vsftpd()` / `find_proftpd()` look there and on PATH; a missing binary
becomes a skip reason in the tests, not an error.

No PAM, no chroot trouble: vsftpd's local users and proftpd's PAM module are off (anonymous
logins need neither), vsftpd's sandbox and namespace isolation are off (they fail in some
containers), and the anonymous roots are owned by root and not writable, which both daemons
insist on before they chroot.

Both families: each daemon listens on `address` (IPv4) and `address6` (IPv6, None: v4 only).
vsftpd cannot listen on two sockets, so it gets `listen_ipv6=YES` (with `listen=NO`, they are
exclusive) on the wildcard `::`, and takes IPv4 clients through v4-mapped addresses (the
namespace keeps net.ipv6.bindv6only=0); proftpd gets `UseIPv6 on` and both addresses as its
`DefaultAddress`, bound tightly. A daemon is ready only once it greets on every address.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from lab.ftp.server import ServerStartError  # one error for any server that did not start
from lab.topology.netns import popen_in_namespace, run_in_namespace

VSFTPD_UNPACKED = Path("/opt/lab-vsftpd/usr/sbin/vsftpd")
UPLOAD_DIR = "incoming"


def sample_files() -> dict[str, bytes]:
    """Files of the anonymous root: a small text, and binaries whose every byte value occurs
    (a CRLF or high-bit mangling anywhere changes the hash)."""
    pattern = bytes(range(256))
    return {
        "readme.txt": b"Files for the lab's FTP client interop tests.\r\n",
        "small.bin": (pattern * 16)[:3000],
        "one-mb.bin": pattern * 4096,
    }


def _find(name: str, unpacked: Path | None = None) -> Path | None:
    if unpacked is not None and os.access(unpacked, os.X_OK):
        return unpacked
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    return Path(found) if found else None


def find_vsftpd() -> Path | None:
    return _find("vsftpd", VSFTPD_UNPACKED)


def find_proftpd() -> Path | None:
    return _find("proftpd")


def anonymous_user() -> str:
    """The account anonymous sessions run as: `ftp` (made by the proftpd package) or `nobody`."""
    for name in ("ftp", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("neither an 'ftp' nor a 'nobody' account exists")


@dataclass(frozen=True, slots=True)
class RunningServer:
    """Where a started daemon listens and what it serves."""

    kind: str
    address: str
    port: int
    root: Path  # the anonymous root; uploads land in root / UPLOAD_DIR
    files: Mapping[str, bytes]
    passive_ports: tuple[int, int]
    active_source_port: int | None  # where active-mode data connections come from, if fixed
    address6: str | None = None  # its IPv6 address, when it listens there too

    @property
    def upload_dir(self) -> Path:
        return self.root / UPLOAD_DIR


def _wait_listening(
    namespace: str, address: str, port: int, process: subprocess.Popen[bytes], timeout: float
) -> None:
    """Connect until the daemon greets us with a 220 line (then say QUIT)."""

    def greet() -> bool:
        try:
            with socket.create_connection((address, port), timeout=1) as sock:  # v4 or v6
                banner = sock.recv(512)
                with contextlib.suppress(OSError):
                    sock.sendall(b"QUIT\r\n")
                    sock.recv(512)
                return banner.startswith(b"220")
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"exited with status {process.returncode}")
        if run_in_namespace(namespace, greet):
            return
        time.sleep(0.05)
    raise ServerStartError(f"not greeting on {address}:{port} after {timeout} s")


class DaemonFtpServer:
    """A third-party FTP daemon in a namespace, configured from scratch in `workdir`.

    >>> with Vsftpd(topo.names.server_ns, tmp_path) as server:   # doctest: +SKIP
    ...     fetch(server.address, server.port, "readme.txt")
    """

    kind: ClassVar[str] = ""
    default_port: ClassVar[int] = 21
    default_passive: ClassVar[tuple[int, int]] = (30000, 30099)
    # Rootless mode (lab.topology.userns) maps one uid: a daemon runs there only if it can be
    # told to stay the mapped root instead of switching to `ftp` or `nobody`.
    stays_root_rootless: ClassVar[bool] = False

    def __init__(
        self,
        namespace: str,
        workdir: Path | None = None,
        *,
        address: str = "198.18.0.1",
        address6: str | None = "2001:2::1",
        port: int | None = None,
        passive_ports: tuple[int, int] | None = None,
        files: Mapping[str, bytes] | None = None,
    ) -> None:
        self.namespace = namespace
        self._own_workdir = workdir is None
        # The anonymous user must be able to reach the root before the chroot (proftpd checks),
        # so the default directory is world-traversable, unlike pytest's tmp_path (mode 0700).
        self.workdir = workdir if workdir is not None else Path(tempfile.gettempdir())
        self.address = address
        self.address6 = address6
        self.port = port if port is not None else self.default_port
        self.passive_ports = passive_ports or self.default_passive
        self.files = dict(files if files is not None else sample_files())
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.kind}.log"

    # -- to be provided by each daemon ----------------------------------------------------------

    @classmethod
    def binary(cls) -> Path | None:
        raise NotImplementedError

    def config(self, user: str) -> str:
        raise NotImplementedError

    def command(self, binary: Path, config: Path) -> list[str]:
        raise NotImplementedError

    def active_source_port(self) -> int | None:
        raise NotImplementedError

    # -- common ---------------------------------------------------------------------------------

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this daemon cannot run here (for pytest.skip), or None."""
        if cls.binary() is None:
            return f"{cls.kind} is not installed (run .ci/system-packages as root)"
        if os.geteuid() != 0:
            return f"{cls.kind} needs root to chroot and bind port 20/21"
        from lab.topology.userns import is_rootless

        if is_rootless() and not cls.stays_root_rootless:
            return f"{cls.kind} switches to an unprivileged account, which rootless mode lacks"
        return None

    def _prepare_tree(self, user: str) -> None:
        """Root-owned read-only anonymous root, and an upload directory the anonymous user owns."""
        entry = pwd.getpwnam(user)
        if self._own_workdir:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"lab-{self.kind}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        for parent in self.workdir.resolve().parents:
            if not parent.stat().st_mode & 0o001:
                raise ServerStartError(
                    f"{parent} is not traversable by others: {user} could not reach the root"
                )
        os.chmod(self.workdir, 0o755)  # the daemon's unprivileged children read below it
        self.root.mkdir(exist_ok=True)
        os.chmod(self.root, 0o755)
        for name, data in self.files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.chmod(path, 0o644)
        upload = self.root / UPLOAD_DIR
        upload.mkdir(exist_ok=True)
        os.chown(upload, entry.pw_uid, entry.pw_gid)
        os.chmod(upload, 0o755)
        empty = self.workdir / "empty"
        empty.mkdir(exist_ok=True)
        os.chmod(empty, 0o755)

    def start(self, timeout: float = 10.0) -> RunningServer:
        binary = self.binary()
        if binary is None:
            raise ServerStartError(f"{self.kind} binary not found")
        from lab.topology.userns import is_rootless

        user = "root" if is_rootless() else anonymous_user()  # rootless: the only account
        self._prepare_tree(user)
        config = self.workdir / f"{self.kind}.conf"
        config.write_text(self.config(user))
        output = open(self.workdir / f"{self.kind}.out", "wb")  # noqa: SIM115 - the child owns it
        try:
            self.process = popen_in_namespace(
                self.namespace,
                self.command(binary, config),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches the children
                cwd=self.workdir,
            )
        finally:
            output.close()
        try:
            for address in (self.address, *((self.address6,) if self.address6 else ())):
                _wait_listening(self.namespace, address, self.port, self.process, timeout)
        except ServerStartError as exc:
            self.stop()
            raise ServerStartError(f"{self.kind}: {exc}\n{self.log_tail()}") from None
        except BaseException:
            # Anything else while waiting (the namespace removed under us, Ctrl-C): the daemon
            # is already running in its own session, and nobody else would ever stop it.
            self.stop()
            raise
        return RunningServer(
            kind=self.kind,
            address=self.address,
            port=self.port,
            root=self.root,
            files=dict(self.files),
            passive_ports=self.passive_ports,
            active_source_port=self.active_source_port(),
            address6=self.address6,
        )

    def stop(self) -> None:
        """SIGTERM to the daemon's process group (its pid: we made it a group leader), then
        SIGKILL after two seconds."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Children the leader forked may outlive it for a moment; the group id is still ours.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        text = ""
        for path in (self.workdir / f"{self.kind}.out", self.log_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Vsftpd(DaemonFtpServer):
    """vsftpd 3 in standalone mode; active-mode data connections from port 20.

    Rootless, `run_as_launching_user` keeps it the mapped root: no setgroups (denied in a user
    namespace that maps one uid), no switch to an account that does not exist there."""

    kind = "vsftpd"
    default_port = 21
    default_passive = (30000, 30099)
    stays_root_rootless = True

    @classmethod
    def binary(cls) -> Path | None:
        return find_vsftpd()

    def active_source_port(self) -> int:
        return 20

    def command(self, binary: Path, config: Path) -> list[str]:
        return [str(binary), str(config)]

    def config(self, user: str) -> str:
        low, high = self.passive_ports
        # Dual stack: one "::" socket (v4 clients arrive v4-mapped); v4 only: as before.
        listen: dict[str, str] = (
            {"listen": "NO", "listen_ipv6": "YES"}
            if self.address6
            else {"listen": "YES", "listen_ipv6": "NO", "listen_address": self.address}
        )
        options = {
            **listen,
            "listen_port": str(self.port),
            "background": "NO",
            # The seccomp sandbox and the clone() isolation fail in some containers.
            "seccomp_sandbox": "NO",
            "isolate": "NO",
            "isolate_network": "NO",
            "anonymous_enable": "YES",
            "no_anon_password": "YES",
            "ftp_username": user,
            "anon_root": str(self.root),
            "write_enable": "YES",
            "anon_upload_enable": "YES",
            "anon_mkdir_write_enable": "YES",
            "anon_other_write_enable": "NO",
            "anon_umask": "022",
            "local_enable": "NO",  # local users would need PAM
            "tcp_wrappers": "NO",
            "connect_from_port_20": "YES",
            "ftp_data_port": "20",
            "port_enable": "YES",
            "pasv_enable": "YES",
            "pasv_min_port": str(low),
            "pasv_max_port": str(high),
            "secure_chroot_dir": str(self.workdir / "empty"),
            "nopriv_user": "nobody",
            "hide_ids": "NO",
            "xferlog_enable": "YES",
            "xferlog_std_format": "NO",
            "log_ftp_protocol": "YES",
            "vsftpd_log_file": str(self.log_path),
            "dirmessage_enable": "NO",
            "use_localtime": "NO",
            "ftpd_banner": "lab vsftpd ready",
        }
        from lab.topology.userns import is_rootless

        if is_rootless():
            options.update({"run_as_launching_user": "YES", "nopriv_user": "root"})
        return "".join(f"{key}={value}\n" for key, value in options.items())


class Proftpd(DaemonFtpServer):
    """ProFTPD in standalone mode; active-mode data connections from an ephemeral port.

    Rootless, it runs as the mapped root (`User root`, anonymous `RootLogin on`)."""

    kind = "proftpd"
    default_port = 2121
    default_passive = (30100, 30199)
    stays_root_rootless = True

    @classmethod
    def binary(cls) -> Path | None:
        return find_proftpd()

    def active_source_port(self) -> int | None:
        return None  # an ephemeral port (observed with 1.3.8 running as root), not L-1

    def command(self, binary: Path, config: Path) -> list[str]:
        # --nodaemon: stay in the foreground; -4: IPv4 only (when no IPv6 address is asked for).
        family = [] if self.address6 else ["-4"]
        return [str(binary), "--nodaemon", *family, "-c", str(config)]

    def config(self, user: str) -> str:
        from lab.topology.userns import is_rootless

        low, high = self.passive_ports
        w = self.workdir
        # Rootless: stay the mapped root (its failed setgroups calls are only logged), let the
        # anonymous login be root, and skip /etc/ftpusers, which lists root.
        rootless = is_rootless()
        daemon, group = ("root", "root") if rootless else ("nobody", "nogroup")
        server_extra = "UseFtpUsers off\n" if rootless else ""
        anon_extra = "  RootLogin on\n" if rootless else ""
        return f"""\
ServerName "lab proftpd"
ServerIdent on "lab proftpd ready"
ServerType standalone
DefaultServer on
UseIPv6 {"on" if self.address6 else "off"}
DefaultAddress {self.address}{" " + self.address6 if self.address6 else ""}
SocketBindTight on
Port {self.port}
PassivePorts {low} {high}
User {daemon}
Group {group}
{server_extra}Umask 022
MaxInstances 30
UseReverseDNS off
WtmpLog off
RequireValidShell off
AllowOverwrite on
PidFile {w}/proftpd.pid
ScoreboardFile {w}/proftpd.scoreboard
DelayTable none
SystemLog {w}/proftpd.log
TransferLog {w}/xferlog
<Anonymous {self.root}>
  User {user}
  Group {group}
{anon_extra}  UserAlias anonymous {user}
  RequireValidShell off
  <Limit WRITE>
    DenyAll
  </Limit>
  <Directory {self.root}/{UPLOAD_DIR}>
    <Limit READ WRITE>
      AllowAll
    </Limit>
  </Directory>
</Anonymous>
"""
