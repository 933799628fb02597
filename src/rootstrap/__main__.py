"""Entry point: ``rootstrap`` and ``python -m rootstrap``.

Parses the global options (once, for both doors: cli/options.parse_globals), finds the verb in
the registry (cli/verbs.py) and calls its door inside the one error boundary (cli.guard). The
lean door never imports typer, httpx or rich: ``run IMAGE /bin/true`` has a budget of a few
tens of milliseconds (docs/decisions.md, Targets; tests/integration/test_cli.py pins what it
imports).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # only mypy needs the names below (the lean path skips typing)
if TYPE_CHECKING:
    from rootstrap.cli.options import Globals


def main(argv: list[str] | None = None) -> int:
    from rootstrap.cli import guard
    from rootstrap.cli.options import Globals

    own = argv is None  # this process is ours: run/boot may skip the interpreter's teardown
    args = sys.argv[1:] if argv is None else list(argv)
    g = Globals()
    return guard(lambda: _route(args, g, own), g)


def _route(argv: list[str], g: Globals, own: bool) -> int:
    import os

    from rootstrap.cli.options import parse_globals
    from rootstrap.cli.verbs import BY_NAME, top_help
    from rootstrap.errors import UsageError

    p = parse_globals(argv, g)
    if p.help or not argv:
        # Bare 'rootstrap' asks for nothing: the help goes to stderr with exit 2, as before.
        print(top_help(), end="", file=sys.stdout if p.help else sys.stderr)
        return 0 if p.help else 2
    if not p.rest:
        raise UsageError("a verb is needed", hint="see 'rootstrap --help'")
    name, args = p.rest[0], p.rest[1:]
    verb = BY_NAME.get(name)
    if verb is None:
        raise UsageError("no such verb", subject=name, hint="see 'rootstrap --help'")
    if verb.door == "typer":
        from rootstrap.cli.app import door

        return door(verb, args, g)
    import importlib

    code: int = importlib.import_module(f"rootstrap.cli.{verb.module}").main(name, args, g)
    if own and name in ("run", "boot"):
        # Skip interpreter teardown (tens of ms with ctypes loaded); nothing is left to
        # flush but stdio.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
