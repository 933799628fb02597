"""The lean command line for run, boot and shell: argparse only, no typer (startup cost)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    print("error: not implemented yet", file=sys.stderr)
    return 1
