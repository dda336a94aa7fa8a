"""`lab put`: upload a file over FTP (see lab.ftp.cli for where it runs and exit codes)."""

from __future__ import annotations

import argparse

from lab.ftp import cli


def configure(parser: argparse.ArgumentParser) -> None:
    cli.configure_put(parser)


def run(args: argparse.Namespace) -> int:
    return cli.run_put(args)
