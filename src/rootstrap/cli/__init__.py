"""The command line. Two front doors share one way of printing errors:

- cli/app.py: the typer app, for every verb that is not on the start-up budget;
- cli/lean.py: no typer (a parser of its own), for run and boot, whose start-up time is a target
  (docs/decisions.md, Targets), and the door of the other typer-free verbs: cli/running.py (list,
  status, shell, login, poweroff, ...), cli/service.py (start, stop), cli/units.py (enable,
  disable), cli/show.py; cli/listing.py serves list-images.

This module imports nothing but the standard library and rootstrap.errors: the lean verbs load it.
"""

from __future__ import annotations

import sys

from rootstrap.errors import RootstrapError


def report(exc: RootstrapError, debug: bool) -> int:
    """Print EXC as ``error: ...`` and ``hint: ...`` (a traceback first with --debug); return
    its exit code. Every verb's errors go through here."""
    if debug:
        import traceback

        traceback.print_exc()
    print(f"error: {exc}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    return exc.exit_code
