"""Where rootstrap keeps things unless told otherwise, and the variables that move them.

The global options ``--store DIR`` (env ``ROOTSTRAP_STORE``, default /var/lib/machines, where
machinectl looks) and ``--cache-dir DIR`` (env ``ROOTSTRAP_CACHE``, default
/var/cache/rootstrap): the option wins, then a non-empty variable, then the default. Every door
reads them here: the typer app, the lean verbs, list-images, the verb finder in __main__, and
the unit files (which leave ``--store`` out for the default store). Standard library only, like
rootstrap.errors: the lean path imports it.
"""

from __future__ import annotations

import os

DEFAULT_STORE = "/var/lib/machines"
DEFAULT_CACHE = "/var/cache/rootstrap"
STORE_ENV = "ROOTSTRAP_STORE"
CACHE_ENV = "ROOTSTRAP_CACHE"


def store_dir(given: str | os.PathLike[str] | None = None) -> str:
    """The image store: GIVEN (``--store``), else ``$ROOTSTRAP_STORE``, else the default."""
    return os.fspath(given) if given else os.environ.get(STORE_ENV) or DEFAULT_STORE


def cache_dir(given: str | os.PathLike[str] | None = None) -> str:
    """The download cache: GIVEN (``--cache-dir``), else ``$ROOTSTRAP_CACHE``, else the
    default."""
    return os.fspath(given) if given else os.environ.get(CACHE_ENV) or DEFAULT_CACHE
