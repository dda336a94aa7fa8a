"""`lab ls`: list a directory over FTP (see lab.ftp.cli for where it runs and exit codes)."""

from __future__ import annotations

import argparse

from lab.ftp import cli


def configure(parser: argparse.ArgumentParser) -> None:
    cli.configure_ls(parser)


def run(args: argparse.Namespace) -> int:
    return cli.run_ls(args)
