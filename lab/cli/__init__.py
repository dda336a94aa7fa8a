"""The command line: the only place that parses arguments, formats text for people and chooses
exit codes.

- `lab.cli.main`: the `lab` dispatcher (`main`), global flags, examples and exit-status help;
- `lab.cli.errors`: `ExitCode` (one IntEnum for every command), `UsageError`, and
  `exit_code_for`, the one mapping from `PrivilegeError`, `UsageError`, timeouts and network
  errors to a one-line message and an exit code;
- `lab.cli.stack_options` and `lab.cli.impairment`: the options of every live use of the
  hand-built stack, and the fault-injection options they include;
- `lab.cli.values`: the argparse types of addresses and of the paths a command writes (tried
  before any work); quantities are `lab.units`'s;
- one module per command: `demo` (and `live_demo`), `doctor`, `ftp` (get, put, ls),
  `topology` (up, down, clean), `replay`, `reenact`, `exercise`, `ping`, `connect`, `notebook`,
  `script`, `rootless`;
- `lab.cli.userns`: the hook that puts a user's live command in a private user namespace.

Nothing below this package imports it (tests/test_layers.py checks).
"""
