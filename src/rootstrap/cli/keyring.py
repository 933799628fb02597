"""``rootstrap keyring fetch DISTRIBUTION``: obtain an archive keyring with its trust anchored."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rootstrap.errors import RecipeError

if TYPE_CHECKING:
    from rootstrap.recipes import Recipe


def _recipe_for(name: str) -> Recipe:
    """A recipe of distribution NAME (``ubuntu``), or the recipe SUITE names (``noble``)."""
    from rootstrap import recipes

    for path in recipes.available():
        recipe = recipes.load(str(path))
        if recipe.distribution == name:
            return recipe
    try:
        return recipes.load(name)
    except RecipeError as exc:
        known = sorted({recipes.load(str(p)).distribution for p in recipes.available()})
        raise RecipeError(
            "unknown distribution or suite", subject=name, hint=f"known: {', '.join(known)}"
        ) from exc


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Archive keyrings: obtain one with its trust anchored.")
    app.add_typer(group, name="keyring")

    @group.command("fetch")
    def fetch_cmd(
        distribution: Annotated[str, typer.Argument(help="ubuntu, or a suite such as noble")],
        mirror: Annotated[
            list[str] | None, typer.Option(help="Debian mirror URL to fetch it through")
        ] = None,
        anchor_keyring: Annotated[
            list[Path] | None,
            typer.Option(help="Debian keyring to verify with (default: the host's)"),
        ] = None,
    ) -> None:
        """Fetch DISTRIBUTION's archive keyring from Debian's archive into the cache.

        Debian's Release is verified with the host's Debian keyring, then the keyring package
        and the file in it; later runs find the copy without --keyring."""
        from rootstrap.build.keyringfetch import fetch_keyring
        from rootstrap.cli.app import settings

        recipe = _recipe_for(distribution)
        path = fetch_keyring(
            recipe,
            cache_dir=settings.cache_dir,
            mirrors=list(mirror or ()),
            anchor_keyrings=list(anchor_keyring or ()),
        )
        print(path)
        source = path.with_name(path.name + ".source")
        if settings.verbosity >= 0 and source.is_file():
            print(source.read_text().strip())
