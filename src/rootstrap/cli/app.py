"""The typer door: one typer app for the verbs cli/verbs.py routes here (those without a
start-up budget).

Each verb group lives in its own module with a ``register(app)`` function; only the module of
the verb asked for is imported and registered. The global options were parsed before the
verb (cli/options.parse_globals) and arrive as ``settings``; errors are handled by the one
boundary (rootstrap.cli.guard): this door only turns typer's own exits into exit codes.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
import typer.main

# typer bundles its own click (0.29), whose exceptions are not the click package's.
from typer import _click as click
from typer._click.exceptions import ClickException

from rootstrap.cli.options import Globals
from rootstrap.cli.verbs import DESCRIPTION, Verb
from rootstrap.paths import DEFAULT_CACHE, DEFAULT_STORE


@dataclass
class Settings:
    """The global options, shared by every verb of one invocation."""

    store: Path = Path(DEFAULT_STORE)
    cache_dir: Path = Path(DEFAULT_CACHE)
    verbosity: int = 0  # -1 quiet, 0 normal, 1 verbose
    debug: bool = False


settings = Settings()

app = typer.Typer(
    name="rootstrap",
    help=DESCRIPTION,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_registered: set[str] = set()


@app.callback()
def _group() -> None:
    # A callback keeps the app a group of verbs even when one module registered one verb.
    pass


def setup_logging(verbosity: int, debug: bool) -> None:
    level = (
        logging.DEBUG
        if debug
        else {-1: logging.ERROR, 0: logging.WARNING}.get(verbosity, logging.INFO)
    )
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)


def register(verb: Verb) -> None:
    """Register the verbs of VERB's module with the app (once)."""
    if verb.module not in _registered:
        importlib.import_module(f"rootstrap.cli.{verb.module}").register(app)
        _registered.add(verb.module)


def command(verb: Verb) -> click.Command:
    """The click command typer builds for VERB (a group for cache and keyring): what shell
    completion reads typer verbs' options from."""
    register(verb)
    group = typer.main.get_group(app)
    return group.commands[verb.name]


def door(verb: Verb, args: list[str], g: Globals) -> int:
    """Run typer VERB with ARGS under the global options G."""
    settings.store = Path(g.store)
    settings.cache_dir = Path(g.cache_dir)
    settings.verbosity = g.verbosity
    settings.debug = g.debug
    setup_logging(g.verbosity, g.debug)
    register(verb)
    try:
        result = app(args=[verb.name, *args], prog_name="rootstrap", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except ClickException as exc:
        exc.show()
        return 2
    except typer.Abort:
        raise KeyboardInterrupt from None
    return result if isinstance(result, int) else 0


def main(argv: list[str]) -> int:
    """The whole command line over ARGV (global options included), in this process: what
    tests call instead of a subprocess."""
    from rootstrap.__main__ import main as entry

    return entry(argv)
