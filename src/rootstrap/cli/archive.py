"""``rootstrap info SUITE [PACKAGE...]``: the verified Release, and stanzas like apt-cache show."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rootstrap.archive import Archive
    from rootstrap.archive.packages import Package
    from rootstrap.archive.release import Release


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def release_summary(release: Release, mirror: str) -> dict[str, Any]:
    """The verified Release as plain data (the ``--json`` shape)."""
    return {
        "origin": release.origin,
        "label": release.label,
        "suite": release.suite,
        "codename": release.codename,
        "version": release.version,
        "date": release.date.isoformat(),
        "valid_until": release.valid_until.isoformat() if release.valid_until else None,
        "components": list(release.components),
        "architectures": list(release.architectures),
        "acquire_by_hash": release.acquire_by_hash,
        "signed_by": list(release.fingerprints),
        "mirror": mirror,
        "url": release.url,
    }


def print_release(release: Release, mirror: str) -> None:
    rows = [
        ("Origin", release.origin),
        ("Label", release.label),
        ("Suite", release.suite),
        ("Codename", release.codename),
        ("Version", release.version),
        ("Date", _when(release.date)),
        ("Valid-Until", _when(release.valid_until)),
        ("Components", " ".join(release.components)),
        ("Architectures", " ".join(release.architectures)),
        ("Acquire-By-Hash", "yes" if release.acquire_by_hash else "no"),
        ("Signed-By", " ".join(release.fingerprints) or "UNVERIFIED (--insecure)"),
        ("Mirror", mirror),
        ("Release", release.url),
    ]
    width = max(len(k) for k, _v in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value or '-'}")


def _find(archive: Archive, names: list[str]) -> list[list[Package]]:
    """Every candidate of each NAME, or a clean error for the first unknown one."""
    from rootstrap.errors import ArchiveIndexError

    found = []
    components = sorted({t.origin.split("/")[-1] for t in archive.tables})
    where = f"{archive.recipe.suite} {' '.join(components)}"
    for name in names:
        candidates = archive.index.candidates(name)
        if not candidates:
            providers = sorted({p.name for p, _v in archive.index.providers(name)})
            hint = (
                f"a virtual package, provided by {', '.join(providers[:8])}"
                if providers
                else "check the spelling, or add a component with --components"
            )
            raise ArchiveIndexError(
                f"no such package in {where} ({archive.index.arch})", subject=name, hint=hint
            )
        found.append(candidates)
    return found


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info_cmd(
        suite: Annotated[str, typer.Argument(help="recipe, codename, alias or recipe file")],
        packages: Annotated[
            list[str] | None, typer.Argument(help="packages whose stanzas to show")
        ] = None,
        mirror: Annotated[list[str] | None, typer.Option(help="mirror URL (repeatable)")] = None,
        arch: Annotated[str | None, typer.Option(help="the host's by default")] = None,
        keyring: Annotated[
            list[Path] | None, typer.Option(help="OpenPGP keyring (repeatable)")
        ] = None,
        components: Annotated[str | None, typer.Option(help="e.g. main,contrib")] = None,
        pockets: Annotated[str | None, typer.Option(help="e.g. bookworm-updates")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
        insecure: Annotated[
            bool, typer.Option("--insecure", help="accept an unsigned Release (dangerous)")
        ] = False,
        allow_expired_keys: Annotated[
            bool, typer.Option("--allow-expired-keys", help="snapshot archives: expired keys")
        ] = False,
        ignore_valid_until: Annotated[
            bool, typer.Option("--ignore-valid-until", help="snapshot archives: old Releases")
        ] = False,
    ) -> None:
        """The verified Release of SUITE; with PACKAGEs, their stanzas (like apt-cache show).

        Fetches InRelease and verifies it against the recipe's keyring; with PACKAGEs also the
        Packages indexes (cached by SHA256 under --cache-dir)."""
        from rootstrap import recipes
        from rootstrap.archive import ReleasePolicy, open_archive, open_release
        from rootstrap.archive.http import Http
        from rootstrap.archive.keyrings import find_keyring
        from rootstrap.archive.signature import load_keyring
        from rootstrap.cli.app import settings
        from rootstrap.linux.arch import host_arch

        recipe = recipes.load(suite)
        # The keyring first: without one nothing can be verified, whichever the mirror.
        paths = find_keyring(
            recipe, keyring or (), cache_dir=settings.cache_dir, required=not insecure
        )
        arch = arch or host_arch()
        mirrors = recipes.choose_mirrors(recipe, arch, list(mirror or []))
        policy = ReleasePolicy(
            insecure=insecure,
            allow_expired_keys=allow_expired_keys,
            ignore_valid_until=ignore_valid_until,
        )
        names = list(packages or [])
        with Http() as http:
            if not names:
                certs = None if insecure and not paths else load_keyring(paths)
                used, release = open_release(
                    http,
                    mirrors,
                    recipe.suite,
                    certs,
                    policy=policy,
                    keyring_names=", ".join(map(str, paths)),
                )
                if as_json:
                    print(json.dumps({"release": release_summary(release, used)}, indent=2))
                else:
                    print_release(release, used)
                return
            archive = open_archive(
                recipe,
                mirrors=mirrors,
                arch=arch,
                http=http,
                cache_dir=settings.cache_dir,
                components=[c for c in (components or "").replace(",", " ").split()] or None,
                pockets=[p for p in (pockets or "").replace(",", " ").split()],
                keyrings=list(keyring) if keyring else None,
                policy=policy,
            )
        found = _find(archive, names)
        if as_json:
            data = {
                "release": release_summary(archive.release, archive.mirror),
                "packages": [
                    {
                        "name": p.name,
                        "version": p.version,
                        "architecture": p.architecture,
                        "origin": p.origin,
                        "fields": dict(p.fields),
                    }
                    for candidates in found
                    for p in candidates
                ],
            }
            print(json.dumps(data, indent=2))
            return
        print_release(archive.release, archive.mirror)
        for candidates in found:
            for package in candidates:
                print()
                print(archive.stanza(package))
