"""FTP: the sans-IO protocol pieces (`lab.ftp.protocol`), shared by replay and the live client;
the servers (`server`, `servers`, and `scripted`, the offline one of the notebooks).

`lab.ftp.Client` (from `lab.ftp.client`) is loaded on first use, so that importing the protocol
module for replay does not pull in the runtime and the stack.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "Client":
        from lab.ftp.client import Client

        return Client
    raise AttributeError(f"module 'lab.ftp' has no attribute {name!r}")
