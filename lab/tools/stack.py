"""What `lab ping` and `lab connect` share with `lab get/put/ls`: now `lab.stack_options`.

Kept so that `from lab.tools.stack import ...` goes on working; the options, their checks, opening
the stack and the exit codes live in one place, `lab.stack_options` (see its docstring).
"""

from __future__ import annotations

from lab.stack_options import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    UsageError,
    add_stack_arguments,
    check_interface_arguments,
    open_stack,
    run_tool,
)

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "UsageError",
    "add_stack_arguments",
    "check_interface_arguments",
    "open_stack",
    "run_tool",
]
