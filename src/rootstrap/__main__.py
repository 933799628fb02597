"""Entry point: ``rootstrap`` and ``python -m rootstrap``.

The verbs that start containers take a lean path that never imports typer, httpx or rich:
``run IMAGE /bin/true`` has a budget of a few tens of milliseconds (docs/decisions.md, Targets).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # only mypy needs the name below (the lean path skips typing)
if TYPE_CHECKING:
    from collections.abc import Callable

# Verbs served by rootstrap.cli.lean (its own hand-written parser, no typer, no argparse);
# every other verb goes through typer.
LEAN_VERBS = frozenset(
    {"run", "boot", "shell", "list", "poweroff", "reboot", "terminate", "kill"}
    | {"start", "stop", "login", "status", "enable", "disable", "show"}
)
# list-images (issue 7: 0.2 s with 50 images) is also served without typer, by cli/listing.py.
_LEAN_MODULES = {"list-images": "listing"}


def _verb(argv: list[str]) -> str | None:
    from rootstrap.paths import VALUED_GLOBALS  # the verb is found behind their values

    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in VALUED_GLOBALS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _lean_main(stem: str = "lean") -> Callable[[list[str]], int]:
    """The main function of rootstrap.cli.lean (a hand-written parser) or cli.listing
    (argparse); neither imports typer."""
    import importlib

    lean_main: Callable[[list[str]], int] = importlib.import_module(f"rootstrap.cli.{stem}").main
    return lean_main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = _verb(argv)
    if verb in LEAN_VERBS:
        return _lean_main()(argv)
    if verb in _LEAN_MODULES:
        return _lean_main(_LEAN_MODULES[verb])(argv)
    from rootstrap.cli.app import main as typer_main

    return typer_main(argv)


if __name__ == "__main__":
    sys.exit(main())
