"""The download cache verbs: ``rootstrap cache list`` and ``rootstrap cache clean``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

cache_app = typer.Typer(
    name="cache",
    help="Inspect or prune the shared .deb download cache and the configured trees (--cache-dir).",
    invoke_without_command=True,
    rich_markup_mode=None,
)


@cache_app.callback()
def _cache(ctx: typer.Context) -> None:
    # Print the help ourselves: typer's no_args_is_help raises past the CLI's error boundary.
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())


@cache_app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """List the cached .deb files and their sizes (no hashing)."""
    from rootstrap.archive.http import human_size
    from rootstrap.build.download import DebCache
    from rootstrap.build.treecache import TreeCache
    from rootstrap.cli.app import settings

    entries = DebCache(settings.cache_dir).entries()
    if as_json:
        print(json.dumps([{"name": e.name, "size": e.size} for e in entries], indent=2))
        return
    for entry in entries:
        print(f"{entry.name}\t{entry.size}")
    total = sum(e.size for e in entries)
    if settings.verbosity >= 0:
        print(f"{len(entries)} files, {human_size(total)} in {settings.cache_dir}", flush=True)
        trees = TreeCache(settings.cache_dir)
        if saved := trees.entries():
            print(f"{len(saved)} configured trees, {human_size(trees.size())}", flush=True)


@cache_app.command("clean")
def clean_cmd(
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="A cached file name to keep (repeatable)"),
    ] = None,
) -> None:
    """Remove cached .deb files (all, or all but --keep) and leftover partial downloads, and
    (without --keep) the configured trees.

    Refuses while another run is using the cache.
    """
    from rootstrap.archive.http import human_size
    from rootstrap.build.download import DebCache
    from rootstrap.build.treecache import TreeCache
    from rootstrap.cli.app import settings

    cache = DebCache(settings.cache_dir)
    kept = set(keep) if keep else None
    before = sum(e.size for e in cache.entries())
    removed = cache.clean(kept)
    after = sum(e.size for e in cache.entries())
    trees = TreeCache(settings.cache_dir)
    freed = dropped = 0
    if kept is None:  # --keep names .deb files: the trees stay
        freed = trees.size()
        dropped = trees.clean()
    if settings.verbosity >= 0:
        print(f"removed {removed} files, freed {human_size(before - after)}")
        if dropped:
            print(f"removed {dropped} configured trees, freed {human_size(freed)}")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
