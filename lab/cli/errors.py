"""Exit codes and the one place that turns a failure into a message and an exit code.

Every command returns an `ExitCode` (an `int`, so `sys.exit` takes it). The codes mean the same in
every command; each command's help says which of them it uses:

    0 ok, 1 failure (or an incomplete result for replay/reenact/doctor/exercise),
    2 usage (bad option or argument; replay: unreadable capture), 3 transfer incomplete (get/put),
    4 timeout, 77 no privileges, 127 the command could not be started (rootless), 130
    interrupted, 141 the reader of the output went away.

`exit_code_for(command, exc)` is the single mapping from an exception to a one-line message on
stderr and a code: `PrivilegeError` and `PermissionError` -> 77, `UsageError` -> 2, a timeout ->
4, a network, FTP or topology error -> 1. Anything else is not ours to hide and is re-raised.
Lower layers raise typed errors and never choose exit codes.
"""

from __future__ import annotations

import enum
import sys


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    INCOMPLETE = 3
    TIMEOUT = 4
    NO_PRIVILEGES = 77
    NOT_FOUND = 127  # `lab rootless CMD`: CMD could not be started, as a shell reports it
    INTERRUPTED = 130
    BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `cat big | head`


class UsageError(ValueError):
    """Bad command-line input (exit 2)."""


def exit_code_for(command: str, exc: BaseException) -> ExitCode:
    """Print `exc` as one line for `lab COMMAND` and return its exit code; re-raise the unknown.

    Imports lazily: `lab --help` must not load pyroute2 or the FTP client."""
    from lab.ftp.client import FtpError, FtpTimeout
    from lab.runtime import Timeout
    from lab.topology import PrivilegeError, TopologyError
    from lab.topology.privileges import PRIVILEGE_MESSAGE

    if isinstance(exc, PrivilegeError):
        print(exc, file=sys.stderr)
        return ExitCode.NO_PRIVILEGES
    if isinstance(exc, PermissionError):  # AF_PACKET on --iface without CAP_NET_RAW
        print(f"lab {command}: {PRIVILEGE_MESSAGE} ({exc.strerror or exc})", file=sys.stderr)
        return ExitCode.NO_PRIVILEGES
    if isinstance(exc, UsageError):
        print(f"lab {command}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if isinstance(exc, (Timeout, FtpTimeout)):
        print(f"lab {command}: timeout: {exc}", file=sys.stderr)
        return ExitCode.TIMEOUT
    if isinstance(exc, (OSError, TopologyError, FtpError)):
        print(f"lab {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    raise exc
