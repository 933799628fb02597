"""The verified archive: a signed Release and the Packages indexes it vouches for.

    archive = open_archive(recipe, mirrors=[...], arch="amd64", http=http, cache_dir=cache)
    archive.release.codename, archive.mirror, archive.index.best("bash")

Everything a later stage uses comes through here, so everything here is verified: the Release
against the recipe's keyring (release.py, signature.py), each index against the Release
(indexfetch.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rootstrap.archive.index import IndexTable
from rootstrap.archive.indexfetch import fetch_index
from rootstrap.archive.keyrings import find_keyring
from rootstrap.archive.packages import Package, PackageIndex
from rootstrap.archive.release import HttpLike, Release, ReleasePolicy, fetch_release
from rootstrap.archive.signature import load_keyring
from rootstrap.errors import DownloadError, RootstrapError, VerificationError
from rootstrap.recipes import Recipe, for_codename

log = logging.getLogger(__name__)

__all__ = ["Archive", "Release", "ReleasePolicy", "open_archive", "open_release"]


@dataclass(frozen=True)
class Archive:
    """A verified archive: the recipe it stands for, where it came from, what it holds."""

    recipe: Recipe
    mirror: str
    release: Release
    index: PackageIndex
    pockets: tuple[Release, ...] = ()
    tables: tuple[IndexTable, ...] = field(default=(), repr=False)

    def stanza(self, package: Package) -> str:
        """PACKAGE's stanza as its index has it (the text ``apt-cache show`` prints)."""
        for table in self.tables:
            if table.origin == package.origin:
                raw = table.raw(package)
                if raw:
                    return raw.decode("utf-8", "replace").rstrip("\n")
        return "\n".join(f"{k}: {v}" for k, v in package.fields.items())


def open_release(
    http: HttpLike,
    mirrors: Sequence[str],
    suite: str,
    certs: list[Any] | None,
    *,
    policy: ReleasePolicy,
    keyring_names: str,
) -> tuple[str, Release]:
    """The first mirror whose Release for SUITE verifies, and that Release (HAZARDS 15).

    Each mirror's file is verified on its own; a failure is never "fixed" with another
    mirror's bytes (CVE-2018-0501). Raises the first mirror's error when all fail.
    """
    errors: list[RootstrapError] = []
    for mirror in mirrors:
        try:
            return mirror, fetch_release(
                http, mirror, suite, certs, policy=policy, keyring_names=keyring_names
            )
        except (VerificationError, DownloadError) as exc:
            if len(mirrors) > 1:
                log.warning("%s", exc)
            errors.append(exc)
    first = errors[0]
    if len(errors) > 1:
        first.message = f"{first.message} (and {len(errors) - 1} other mirror(s) failed too)"
        first.args = (first.message,)
    raise first


def open_archive(
    recipe: Recipe,
    *,
    mirrors: list[str],
    arch: str,
    http: HttpLike,
    cache_dir: Path,
    components: Sequence[str] | None = None,
    pockets: Sequence[str] = (),
    keyrings: Sequence[Path] | None = None,
    insecure: bool = False,
    policy: ReleasePolicy | None = None,
) -> Archive:
    """Verify RECIPE's Release on the first good mirror and load its indexes for ARCH.

    An alias recipe (``stable``) becomes the real one through the signed Codename. POCKETS
    (``bookworm-updates``) are further suites, each verified the same way, merged into one
    index where the highest version wins. Cost: ~40 ms plus the indexes (~1 s each for
    bookworm main cold, ~0.05 s cached). Raises KeyringError, VerificationError,
    IntegrityError, ArchiveIndexError or DownloadError; writes only below CACHE_DIR.
    """
    policy = policy or ReleasePolicy(insecure=insecure)
    if insecure and not policy.insecure:
        policy = replace(policy, insecure=True)
    # --keyring, else the host's, else a fetched copy in the cache (rootstrap.archive.keyrings).
    paths = find_keyring(recipe, keyrings or (), cache_dir=cache_dir, required=not policy.insecure)
    certs: list[Any] | None
    if policy.insecure and not paths:
        certs = None
    else:
        certs = load_keyring(paths)
    keyring_names = ", ".join(str(p) for p in paths)
    mirror, release = open_release(
        http, mirrors, recipe.suite, certs, policy=policy, keyring_names=keyring_names
    )
    recipe = for_codename(recipe, release.codename)
    ordered = [mirror, *(m for m in mirrors if m != mirror)]
    wanted = list(components) if components else list(recipe.components)
    suites: list[tuple[str, Release]] = [(recipe.suite, release)]
    extra: list[Release] = []
    for pocket in pockets:
        _pocket_mirror, pocket_release = open_release(
            http, ordered, pocket, certs, policy=policy, keyring_names=keyring_names
        )
        suites.append((pocket, pocket_release))
        extra.append(pocket_release)
    tables: list[IndexTable] = []
    for suite, rel in suites:
        for component in wanted:
            tables.append(
                fetch_index(
                    http, rel, component, arch, mirrors=ordered, cache_dir=cache_dir, suite=suite
                )
            )
    index = PackageIndex.from_sources(tables, arch)
    return Archive(
        recipe=recipe,
        mirror=mirror,
        release=release,
        index=index,
        pockets=tuple(extra),
        tables=tuple(tables),
    )
