"""The typer command line: one app, one error boundary for every verb but the lean ones.

Each verb group lives in its own module with a ``register(app)`` function; this module owns the
global options. Errors are printed by :func:`rootstrap.cli.report`, shared with cli/lean.py."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

# typer bundles its own click (0.29), whose exceptions are not the click package's.
from typer._click.exceptions import ClickException

from rootstrap import paths
from rootstrap.cli import report
from rootstrap.errors import RootstrapError


@dataclass
class Settings:
    """The global options, shared by every verb of one invocation."""

    store: Path = Path(paths.DEFAULT_STORE)
    cache_dir: Path = Path(paths.DEFAULT_CACHE)
    verbosity: int = 0  # -1 quiet, 0 normal, 1 verbose
    debug: bool = False


settings = Settings()

app = typer.Typer(
    name="rootstrap",
    help="Bootstrap Debian and Ubuntu root filesystems, keep them as images, run and boot them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global(
    store: Annotated[
        Path | None, typer.Option("--store", help="Image store [env ROOTSTRAP_STORE]")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Download cache [env ROOTSTRAP_CACHE]")
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only errors")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="More detail")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks and debug logs")] = False,
) -> None:
    settings.store = Path(paths.store_dir(store))
    settings.cache_dir = Path(paths.cache_dir(cache_dir))
    settings.verbosity = -1 if quiet else 1 if verbose or debug else 0
    settings.debug = debug
    setup_logging(settings.verbosity, debug)


def setup_logging(verbosity: int, debug: bool) -> None:
    level = (
        logging.DEBUG
        if debug
        else {-1: logging.ERROR, 0: logging.WARNING}.get(verbosity, logging.INFO)
    )
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)


def _register_all() -> None:
    from rootstrap.cli import archive, bootstrap, cache, images, keyring, machines, resolve

    for module in (archive, resolve, bootstrap, cache, images, machines, keyring):
        module.register(app)


def main(argv: list[str]) -> int:
    """Run the typer app over ARGV; the one error boundary of the typer verbs."""
    debug = "--debug" in argv
    _register_all()
    try:
        result = app(args=argv, prog_name="rootstrap", standalone_mode=False)
    except RootstrapError as exc:
        return report(exc, debug)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except ClickException as exc:
        exc.show()
        return 2
    except typer.Abort:
        print("error: interrupted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    return result if isinstance(result, int) else 0
