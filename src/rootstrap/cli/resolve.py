"""``rootstrap resolve SUITE``: the install plan, without downloading a single .deb."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rootstrap.resolve import Plan


def _size(n: int) -> str:
    from rootstrap.archive.http import human_size

    return human_size(n)


def print_table(plan: Plan, *, quiet: bool = False) -> None:
    """One line per package in install order (name, version, arch, size, why), then totals."""
    rows = [
        (p.name, p.package.version, p.package.architecture, _size(p.package.size), str(p.reason))
        for p in plan.packages
    ]
    if not quiet:
        header = ("NAME", "VERSION", "ARCH", "SIZE", "WHY")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        for row in [header, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)), row[4])
        print()
    print(
        f"{len(plan)} packages ({len(plan.essential)} in the essential set), "
        f"download {_size(plan.download_size)}, installed {_size(plan.installed_size)}"
    )


def print_why(plan: Plan, name: str, *, as_json: bool) -> None:
    """The chain that pulled NAME in, seed first."""
    chain = plan.why(name)
    if as_json:
        steps = [
            {"package": r.package, "via": str(r.via), "parent": r.parent, "relation": r.relation}
            | ({"seed": r.seed} if r.seed else {})
            for r in chain
        ]
        print(json.dumps({"package": name, "chain": steps}, indent=2))
        return
    for depth, reason in enumerate(chain):
        planned = plan.get(reason.package)
        version = planned.package.version if planned else ""
        print(f"{'  ' * depth}{reason.package} {version}  ← {reason}")


VARIANT_HELP = "extract, custom, essential, required, minbase, buildd, important, standard"


def register(app: typer.Typer) -> None:
    @app.command("resolve")
    def resolve_cmd(
        suite: Annotated[str, typer.Argument(help="recipe, codename, alias or recipe file")],
        variant: Annotated[str, typer.Option(help=VARIANT_HELP)] = "important",
        include: Annotated[list[str] | None, typer.Option(help="extra packages, a,b")] = None,
        exclude: Annotated[list[str] | None, typer.Option(help="packages to leave out")] = None,
        recommends: Annotated[bool, typer.Option("--recommends")] = False,
        why: Annotated[str | None, typer.Option(help="print the chain that pulled PKG in")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
        mirror: Annotated[list[str] | None, typer.Option(help="mirror URL (repeatable)")] = None,
        arch: Annotated[str | None, typer.Option(help="the host's by default")] = None,
        components: Annotated[str | None, typer.Option(help="e.g. main,contrib")] = None,
        pockets: Annotated[str | None, typer.Option(help="e.g. bookworm-updates")] = None,
        keyring: Annotated[list[Path] | None, typer.Option(help="OpenPGP keyring")] = None,
    ) -> None:
        """The install plan for SUITE: names, versions, sizes, install order and why each is in.

        Fetches and verifies the Release and the Packages indexes (cached), downloads no .deb.
        """
        from rootstrap import recipes
        from rootstrap.archive import open_archive
        from rootstrap.archive.http import Http
        from rootstrap.cli.app import settings
        from rootstrap.linux.arch import host_arch
        from rootstrap.resolve import resolve, split_names

        recipe = recipes.load(suite)
        arch = arch or host_arch()
        mirrors = recipes.choose_mirrors(recipe, arch, list(mirror or []))
        with Http() as http:
            archive = open_archive(
                recipe,
                mirrors=mirrors,
                arch=arch,
                http=http,
                cache_dir=settings.cache_dir,
                components=split_names([components]) if components else None,
                pockets=split_names([pockets]) if pockets else (),
                keyrings=list(keyring) if keyring else None,
            )
        plan = resolve(
            archive.index,
            archive.recipe,
            variant=variant,
            include=include or (),
            exclude=exclude or (),
            recommends=recommends,
            arch=arch,
        )
        if why is not None:
            print_why(plan, why, as_json=as_json)
        elif as_json:
            data = plan.to_json()
            data["suite"] = archive.recipe.suite
            data["mirror"] = archive.mirror
            print(json.dumps(data, indent=2))
        else:
            print_table(plan, quiet=settings.verbosity < 0)
