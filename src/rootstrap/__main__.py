"""Entry point: ``rootstrap`` and ``python -m rootstrap``.

The verbs that start containers take a lean path that never imports typer, httpx or rich:
``run IMAGE /bin/true`` has a budget of a few tens of milliseconds (DESIGN.md, Targets)."""

from __future__ import annotations

import sys

# Verbs served by rootstrap.cli.lean (argparse only); every other verb goes through typer.
LEAN_VERBS = frozenset({"run", "boot", "shell"})
# Global options that take a value, so the verb can be found behind them.
_VALUED = frozenset({"--store", "--cache-dir"})


def _verb(argv: list[str]) -> str | None:
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if _verb(argv) in LEAN_VERBS:
        from rootstrap.cli.lean import main as lean_main

        return lean_main(argv)
    from rootstrap.cli import main as typer_main

    return typer_main(argv)


if __name__ == "__main__":
    sys.exit(main())
