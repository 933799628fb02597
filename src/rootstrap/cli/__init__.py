"""The command line: one registry of verbs (cli/verbs.py), two doors, one error boundary.

- the lean door: cli/options.py's one parser over its one option table, no typer, for the
  verbs whose start-up is measured (run, boot, start, show: cli/lean.py, cli/service.py,
  cli/show.py) and the machinectl-style ones (cli/running.py, cli/units.py, cli/listing.py),
  and shell completion (cli/complete.py);
- the typer door: cli/app.py, for every other verb.

rootstrap/__main__.py parses the global options once (cli/options.parse_globals), looks the
verb up in the registry and calls its door inside :func:`guard`. machines/ and below return
data or raise RootstrapError; only this package prints.

This module imports nothing but the standard library and rootstrap.errors: every verb loads it.
"""

from __future__ import annotations

import sys

from rootstrap.errors import RootstrapError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from rootstrap.cli.options import Globals


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


def guard(call: Callable[[], int], g: Globals) -> int:
    """Run CALL (a whole invocation, either door) and map what escapes it to an exit code:
    RootstrapError: its own (printed by :func:`report`; a traceback too with G's --debug),
    KeyboardInterrupt: 130, a closed stdout (BrokenPipeError): 141, as a shell reports
    SIGPIPE. The one error boundary of the command line."""
    try:
        return call()
    except RootstrapError as exc:
        return report(exc, g.debug)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
