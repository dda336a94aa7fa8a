"""The `lab` command: one subcommand per module, imported only when it runs.

Each entry names a module of `lab.cli` that provides `configure(parser)` and `run(args) -> int`
(or `configure_VERB` and `run_VERB` when one module serves several commands). Importing lazily
keeps `lab --help` instant and lets commands that need Scapy or pyroute2 load them only then.

What every command shares is done here, so the subcommand modules need not repeat it:
- `-v/--verbose` and `-q/--quiet` are accepted before the command (`lab -v get URL`) and after it
  (`lab get -v URL`) with the same meaning. A command that defines them itself keeps its own
  definition; for the others they are added to its parser. Either way the command sees
  `args.verbose` and `args.quiet` (booleans), set when the flag appeared in either place.
- Each subcommand's help ends with examples (`EXAMPLES`) and its exit status (`EXIT_STATUS`),
  appended to whatever epilog the module wrote itself.
- `use_colour(stream)` is the one rule for colour and progress bars: only on a terminal, and never
  when NO_COLOR is set (https://no-color.org) or TERM is "dumb".
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from lab.cli.errors import ExitCode, UsageError, exit_code_for

# name -> (module, one-line help). "module:verb" names a module serving several commands, with
# `configure_VERB(parser)` and `run_VERB(args)`; a plain module has `configure` and `run`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("lab.cli.demo", "two in-memory TCP endpoints move 1 MB under loss and reordering"),
    "replay": ("lab.cli.replay", "recover FTP dialogues and files from a pcap/pcapng capture"),
    "reenact": ("lab.cli.reenact", "redo a captured FTP session live and compare replies"),
    "up": ("lab.cli.topology:up", "build the lab topology (namespaces, veth) and leave it up"),
    "down": ("lab.cli.topology:down", "tear down a topology made by `lab up`"),
    "clean": ("lab.cli.topology:clean", "remove lab namespaces, links and tables left by a crash"),
    "doctor": ("lab.cli.doctor", "report what this machine allows (root, netns, AF_PACKET, tools)"),
    "exercise": ("lab.cli.exercise", "exercises graded from the wire: list, show, start, check"),
    "get": ("lab.cli.ftp:get", "download a file over FTP with the hand-built stack (active mode)"),
    "put": ("lab.cli.ftp:put", "upload a file over FTP with the hand-built stack"),
    "ls": ("lab.cli.ftp:ls", "list an FTP directory with the hand-built stack"),
    "ping": ("lab.cli.ping", "ping from the hand-built stack (ARP, IPv4, ICMP echo)"),
    "connect": ("lab.cli.connect", "TCP from the hand-built stack: send stdin, print replies"),
    "notebook": ("lab.cli.notebook", "run a teaching notebook headless and print its output"),
    "rootless": ("lab.cli.rootless", "run a command inside the lab's user namespace"),
    "script": ("lab.cli.script", "packetdrill-style scripts against the lab and the kernel"),
}

# Examples shown at the end of `lab COMMAND --help`; each one is run by hand for the README.
# Commands marked "as root" build network namespaces.
EXAMPLES: dict[str, list[str]] = {
    "demo": [
        "lab demo                                  # 1 MB, 5% loss, 5% reordering, seed 1",
        "lab demo --size 200k --loss 20% --delay 10ms --seed 7 --json",
        "lab demo --live                           # as root: FTP download on the wire",
    ],
    "replay": [
        "lab replay captures/peer/ftp_retr.pcap",
        "lab replay captures/peer/ftp_retr.pcap --out files/ --json report.json",
        "lab replay captures/peer/ftp_retr.pcap --json -   # the JSON report on stdout",
    ],
    "reenact": [
        "lab reenact captures/tools-pyftpdlib-curl-active.pcap            # as root",
        "lab reenact captures/tools-pyftpdlib-curl-passive.pcap --json -  # as root",
    ],
    "up": ["lab up                   # as root; prints the run id", "lab up --json"],
    "down": ["lab down 3f2a1c          # the run id `lab up` printed", "lab down"],
    "clean": ["lab clean", "lab clean --all          # also topologies whose owner still runs"],
    "doctor": ["lab doctor", "lab doctor --json"],
    "exercise": [
        "lab exercise list",
        "lab exercise start reassembly ~/tcp-lab",
        "lab exercise check reassembly ~/tcp-lab --json",
    ],
    "get": [
        "lab get ftp://198.18.0.1/hello.txt                       # as root",
        "lab get -v --passive ftp://198.18.0.1/1M.bin -o /tmp/1M.bin",
        "lab get --json --loss 5% --reorder 2% --seed 7 ftp://198.18.0.1/pub/10M.bin -o /tmp/a",
    ],
    "put": [
        "lab put README.md ftp://198.18.0.1/                      # as root",
        "lab put --json /tmp/1M.bin ftp://lab:lab@198.18.0.1/copy.bin",
        "lab put --dup 1% --corrupt 0.5% --seed 3 /tmp/1M.bin ftp://198.18.0.1/noisy.bin",
    ],
    "ls": [
        "lab ls ftp://198.18.0.1/                                 # as root",
        "lab ls --mlsd ftp://198.18.0.1/pub/",
    ],
    "ping": [
        "lab ping                 # as root: 4 requests to 198.18.0.1",
        "lab ping -c 2 --json",
    ],
    "connect": [
        "echo hello | lab connect 198.18.0.1 7          # as root: a kernel echo server",
        "lab connect -v --no-server 198.18.0.1 21 </dev/null   # refused: RST, exit 1",
    ],
    "notebook": ["lab notebook list", "lab notebook run 01 --mode offline"],
    "rootless": [
        "lab rootless jupyter lab notebooks/     # as a user: notebooks in live mode",
        "lab rootless                            # a shell where `ip netns` is the lab's",
    ],
    "script": [
        "lab script tests/conformance/*.pkt            # the lab's TCP, in memory",
        "lab script --strict tests/conformance/*.pkt   # every segment sent must be listed",
        "lab script --against both --json tests/conformance/passive-open.pkt   # as root",
    ],
}

# What each command's exit status means; the common codes are in the top-level help.
EXIT_STATUS: dict[str, str] = {
    "demo": "0 the bytes arrived intact and both sides closed, 1 they did not, 2 usage",
    "replay": "0 every FTP transfer complete, 1 some incomplete, 2 usage or unreadable capture",
    "reenact": "0 every reply code matches, 1 some differ, 2 usage or no FTP session, "
    "77 no privileges",
    "up": "0 up, 1 the topology could not be built, 2 usage, 77 no privileges",
    "down": "0 removed, 1 no such topology, 2 usage, 77 no privileges",
    "clean": "0 cleaned, 2 usage, 77 no privileges",
    "doctor": "0 everything required is present, 1 something required is missing, 2 usage",
    "exercise": "0 ok (check: every criterion passed), 1 a criterion failed, "
    "2 usage (unknown exercise, no student file), 77 no privileges",
    "get": "0 done, 1 FTP or network error, 2 usage, 3 transfer incomplete (NAME.part kept), "
    "4 timeout, 77 no privileges, 130 interrupted",
    "put": "0 done, 1 FTP or network error, 2 usage, 3 transfer incomplete, 4 timeout, "
    "77 no privileges, 130 interrupted",
    "ls": "0 done, 1 FTP or network error, 2 usage, 4 timeout, 77 no privileges, 130 interrupted",
    "ping": "0 at least one reply, 1 none, 2 usage, 77 no privileges",
    "connect": "0 done, 1 refused, reset or unreachable, 2 usage, 4 connect timeout, "
    "77 no privileges, 130 interrupted",
    "notebook": "0 every cell ran, 1 a cell raised, 2 usage (no such notebook)",
    "rootless": "the command's own exit status, 77 user namespaces refused, "
    "127 the command could not be started",
    "script": "0 every run passed or was skipped with a reason, 1 a script failed, 2 bad input, "
    "130 interrupted",
}

TOP_EPILOG = """\
examples:
  lab demo                                   the hand-built TCP in memory, no privileges needed
  lab replay captures/peer/ftp_retr.pcap     FTP dialogue and files recovered from a capture
  lab doctor                                 what this machine allows, and what to do about it
  lab -v get ftp://198.18.0.1/hello.txt      as root: FTP over the hand-built stack, dialogue shown
  lab COMMAND --help                         options, examples and exit status of one command

exit status (each command's help says which it uses):
  0    ok
  1    failure, or an incomplete result (replay: a transfer incomplete; doctor: something missing)
  2    usage error (bad option or argument; replay: unreadable capture)
  3    transfer incomplete (get, put: the bytes so far are kept; --resume continues)
  4    timeout (get, put, ls, connect)
  77   no privileges (live commands need root: namespaces, raw sockets)
  130  interrupted (Ctrl-C)
  141  the reader of the output went away (`lab demo | head`)

-v/--verbose and -q/--quiet may come before or after COMMAND. Colours and progress bars appear
only on a terminal, and never with NO_COLOR set.
"""

GLOBAL_FLAGS = {"-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}


def version() -> str:
    from lab import __version__

    return __version__


def use_colour(stream: TextIO | None = None) -> bool:
    """Whether to write colour or draw progress bars on `stream` (stdout by default)."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


class CommandParser(argparse.ArgumentParser):
    """A parser whose usage errors are one line (the usage itself is in --help): a student sees
    what was wrong at once, never a traceback and never a screenful."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, for `lab --help`; commands are parsed by their own parsers."""
    parser = CommandParser(
        prog="lab",
        description="A raw-socket protocol lab: TCP/IP and FTP built by hand in user space.",
        epilog=TOP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="say more (see each command)")
    parser.add_argument("-q", "--quiet", action="store_true", help="say less (see each command)")
    parser.add_argument("--version", action="version", version=f"lab {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _leading_flags(
    args_list: list[str], parser: argparse.ArgumentParser
) -> tuple[dict[str, bool], list[str]]:
    """Split `lab [GLOBAL FLAGS] COMMAND ...`: the global flags seen, and COMMAND onwards.

    `-h`, `--version` and unknown options are handed to the top-level parser, which prints and
    exits (0 for help and version, 2 for an unknown option)."""
    flags = {"verbose": False, "quiet": False}
    i = 0
    while i < len(args_list) and args_list[i].startswith("-") and args_list[i] != "-":
        token = args_list[i]
        if token in GLOBAL_FLAGS:
            flags[GLOBAL_FLAGS[token]] = True
        elif len(token) > 2 and token[1] != "-" and set(token[1:]) <= {"v", "q"}:
            for letter in token[1:]:  # -vq
                flags[GLOBAL_FLAGS["-" + letter]] = True
        else:
            parser.parse_args([token])  # -h, --version: print and exit; others: usage error
            parser.error(f"unrecognized option {token!r}")
        i += 1
    return flags, args_list[i:]


def _add_global_flags(parser: argparse.ArgumentParser) -> None:
    """-v/-q on a command's parser (and its subcommands' parsers) unless it has its own.

    SUPPRESS as the default: a subparser's defaults would otherwise overwrite a value that its
    parent parser already set (`lab exercise -q check NAME`)."""
    group = parser.add_argument_group("global options")
    for short, long, text in (
        ("-v", "--verbose", "say more (also accepted before the command)"),
        ("-q", "--quiet", "say less (also accepted before the command)"),
    ):
        taken = any(o in parser._option_string_actions for o in (short, long))
        if not taken:
            group.add_argument(
                short, long, action="store_true", default=argparse.SUPPRESS, help=text
            )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_global_flags(child)


def _add_epilog(parser: argparse.ArgumentParser, name: str) -> None:
    """Append the command's examples and exit status to the epilog the module wrote, if any."""
    parts = [parser.epilog.rstrip("\n")] if parser.epilog else []
    if "examples:" not in (parser.epilog or "") and EXAMPLES.get(name):
        parts.append("examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name]))
    if "exit" not in (parser.epilog or "").lower() and name in EXIT_STATUS:
        parts.append(f"exit status: {EXIT_STATUS[name]}")
    parser.epilog = "\n\n".join(parts) + "\n"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


class Command:
    """One subcommand's module and the two functions that configure and run it."""

    def __init__(self, name: str) -> None:
        spec, self.help = COMMANDS[name]
        module_name, _, verb = spec.partition(":")
        self.name = name
        self.module = importlib.import_module(module_name)
        suffix = f"_{verb}" if verb else ""
        self.configure: Callable[[argparse.ArgumentParser], None] = getattr(
            self.module, "configure" + suffix
        )
        self.run: Callable[[argparse.Namespace], int] = getattr(self.module, "run" + suffix)


def command_parser(name: str) -> tuple[argparse.ArgumentParser, Command]:
    """The full parser of `lab NAME` and its command (its module imported here)."""
    command = Command(name)
    parser = CommandParser(prog=f"lab {name}", description=command.help)
    command.configure(parser)
    _add_epilog(parser, name)
    _add_global_flags(parser)
    return parser, command


def parse(argv: Sequence[str]) -> tuple[Command, argparse.Namespace] | None:
    """The command and its parsed arguments, None when no command was named.

    Help, --version and usage errors exit here (SystemExit 0 or 2), as argparse does."""
    top = build_parser()
    flags, rest = _leading_flags(list(argv), top)
    if not rest:
        return None
    name = rest[0]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r} (choose from {', '.join(COMMANDS)})")
    parser, command = command_parser(name)
    args = parser.parse_args(rest[1:])
    for flag, given in flags.items():
        setattr(args, flag, given or bool(getattr(args, flag, False)))
    return command, args


def main(argv: Sequence[str] | None = None) -> int:
    parsed = parse(sys.argv[1:] if argv is None else argv)
    if parsed is None:  # `lab` alone, or only global flags: what would you like to do?
        build_parser().print_help()
        return ExitCode.USAGE
    command, args = parsed
    try:
        from lab.cli.userns import prepare  # as a user: enter a private user namespace

        early = prepare(command.name, args)
        if early is not None:
            return early
        return int(command.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `lab demo | head`: the reader left; stop quietly, as cat does
        _silence_stdout()
        return ExitCode.BROKEN_PIPE
    except (UsageError, PermissionError) as exc:  # PrivilegeError is a PermissionError
        return exit_code_for(command.name, exc)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (tests): nothing will be flushed to a closed pipe


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
