"""The bootstrap verb."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rootstrap.errors import UsageError


def _split(values: list[str] | None) -> tuple[str, ...]:
    """Comma lists, repeatable: ``--include a,b --include c`` (the resolver's own parser)."""
    from rootstrap.resolve import split_names

    return tuple(split_names(values or []))


def register(app: typer.Typer) -> None:
    @app.command("bootstrap")
    def bootstrap_cmd(
        suite: Annotated[str, typer.Argument(help="recipe, codename, alias or recipe file")],
        name: Annotated[str | None, typer.Argument(help="image name in the store")] = None,
        variant: Annotated[
            str,
            typer.Option(help="extract, essential, required, minbase, buildd, important, standard"),
        ] = "important",
        include: Annotated[list[str] | None, typer.Option(help="extra packages, a,b")] = None,
        exclude: Annotated[list[str] | None, typer.Option(help="packages to leave out")] = None,
        mirror: Annotated[list[str] | None, typer.Option(help="mirror URL (repeatable)")] = None,
        components: Annotated[str | None, typer.Option(help="e.g. main,contrib")] = None,
        pockets: Annotated[str | None, typer.Option(help="e.g. bookworm-updates")] = None,
        arch: Annotated[str | None, typer.Option(help="the host's by default")] = None,
        keyring: Annotated[list[Path] | None, typer.Option(help="OpenPGP keyring")] = None,
        target: Annotated[Path | None, typer.Option(help="a directory outside the store")] = None,
        output: Annotated[Path | None, typer.Option(help="FILE.tar[.zst|.xz|.gz]")] = None,
        extract_only: Annotated[bool, typer.Option("--extract-only")] = False,
        hostname: Annotated[str | None, typer.Option()] = None,
        recommends: Annotated[bool, typer.Option("--recommends")] = False,
        boot_ready: Annotated[
            bool, typer.Option("--boot-ready", help="add an init and dbus for 'rootstrap boot'")
        ] = False,
        skip: Annotated[list[str] | None, typer.Option(help="phases to skip, a,b")] = None,
        insecure: Annotated[bool, typer.Option("--insecure", help="UNSIGNED archives")] = False,
        allow_expired_keys: Annotated[
            bool, typer.Option("--allow-expired-keys", help="snapshots signed by retired keys")
        ] = False,
        ignore_valid_until: Annotated[
            bool, typer.Option("--ignore-valid-until", help="snapshots past Valid-Until")
        ] = False,
        tree_cache: Annotated[
            bool,
            typer.Option(
                "--tree-cache/--no-tree-cache",
                help="reuse (and, from a second same build on, keep) the configured tree",
            ),
        ] = True,
    ) -> None:
        """Bootstrap SUITE into the store as NAME (or --target DIR, or --output FILE)."""
        from rootstrap.build import bootstrap
        from rootstrap.cli.app import settings

        if target is not None and output is not None:
            raise UsageError("--target and --output exclude each other")
        if name is None and target is None and output is None:
            raise UsageError("an image name is needed", hint="rootstrap bootstrap SUITE NAME")
        options = bootstrap.Options(
            suite=suite,
            name=name,
            variant=variant,
            include=_split(include),
            exclude=_split(exclude),
            mirrors=tuple(mirror or ()),
            components=_split([components] if components else None),
            pockets=_split([pockets] if pockets else None),
            arch=arch,
            keyrings=tuple(keyring or ()),
            target=target,
            output=output,
            extract_only=extract_only,
            hostname=hostname,
            recommends=recommends,
            boot_ready=boot_ready,
            skip=frozenset(_split(skip)),
            insecure=insecure,
            allow_expired_keys=allow_expired_keys,
            ignore_valid_until=ignore_valid_until,
            tree_cache=tree_cache,
            keep_failed=settings.debug,
        )
        quiet = settings.verbosity < 0

        def report(phase: str, seconds: float) -> None:
            if not quiet:
                print(f"{phase:>10}  {seconds:6.2f} s", file=sys.stderr)

        ctx = bootstrap.run(
            options, store=settings.store, cache_dir=settings.cache_dir, report=report
        )
        if not quiet:
            how = ", the configured tree from the cache" if ctx.restored else ""
            print(f"done: {ctx.result}  ({sum(ctx.timings.values()):.1f} s{how})", file=sys.stderr)
