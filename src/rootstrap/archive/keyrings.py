"""Finding and obtaining the keyring an archive's Release is verified with.

    paths = find_keyring(recipe, given, cache_dir=cache)   # --keyring, host, cache, or an error

The order is the user's word first: ``--keyring`` always wins; then the recipe's keyrings as
installed on the host (``/usr/share/keyrings/ubuntu-archive-keyring.gpg`` from the
``ubuntu-keyring`` package, as debootstrap's ``scripts/gutsy`` and mkosi use); then a copy that
rootstrap.build.keyringfetch put under the cache directory; else a clean KeyringError whose
hint names what works on this host.

No Ubuntu key is shipped or downloaded from an unverified place. Debian carries the
``ubuntu-keyring`` package from trixie on, so the Ubuntu key is obtained with its trust anchored
in the host's Debian archive keyring: trixie's InRelease is verified against it, the Packages
index against the Release, the .deb against the index, and the keyring file is read from that
.deb by rootstrap's own reader (no host dpkg, no apt). Debian's archive keyring is itself what
the host's apt already trusts.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rootstrap.errors import KeyringError

if TYPE_CHECKING:
    from rootstrap.recipes import Recipe

log = logging.getLogger(__name__)

__all__ = ["ANCHOR_SUITE", "cached_keyring", "find_keyring", "keyring_hint"]

#: The Debian suite whose archive carries the other distributions' keyring packages
#: (ubuntu-keyring entered Debian's main archive for trixie).
ANCHOR_SUITE = "trixie"
#: Where fetched keyrings live, under the cache directory.
KEYRING_DIR = "keyrings"


def cached_keyring(recipe: Recipe, cache_dir: Path) -> Path:
    """Where rootstrap.build.keyringfetch keeps RECIPE's keyring under CACHE_DIR (may not exist)."""
    name = recipe.keyrings[0].name if recipe.keyrings else f"{recipe.distribution}-keyring.gpg"
    return cache_dir / KEYRING_DIR / name


def find_keyring(
    recipe: Recipe,
    given: Sequence[Path] = (),
    *,
    cache_dir: Path | None = None,
    required: bool = True,
) -> list[Path]:
    """The keyring files to verify RECIPE's Release with. Costs a few stats.

    GIVEN (``--keyring``) always wins and is returned as is (load_keyring reports a missing or
    bad file). Else the recipe's keyrings present on the host; else the copy under CACHE_DIR.
    When none is found: KeyringError with the exact hint if REQUIRED, else ``[]`` (for
    ``--insecure``, which may proceed without one).
    """
    if given:
        return list(given)
    on_host = [path for path in recipe.keyrings if path.is_file()]
    if on_host:
        return on_host
    if cache_dir is not None:
        cached = cached_keyring(recipe, cache_dir)
        if cached.is_file():
            log.info("using the keyring fetched earlier: %s", cached)
            return [cached]
    if not required:
        return []
    wanted = str(recipe.keyrings[0]) if recipe.keyrings else recipe.name
    raise KeyringError(
        f"no {recipe.distribution} archive keyring on this host",
        subject=wanted,
        hint=keyring_hint(recipe),
    )


def keyring_hint(recipe: Recipe) -> str:
    """What the user can do to get RECIPE's keyring here, best first. Runs apt-cache (~0.2 s)."""
    ways = []
    package = recipe.keyring_package
    if package and _host_can_install(package):
        ways.append(f"run 'apt-get install {package}'")
    if package and recipe.distribution != "debian":
        # fetch_keyring obtains it through Debian's signed archive (trixie on).
        ways.append(f"run 'rootstrap keyring fetch {recipe.distribution}'")
    ways.append("pass --keyring FILE")
    return ", or ".join(ways)


def _host_can_install(package: str) -> bool:
    """True when the host's apt has an installation candidate for PACKAGE."""
    apt_cache = shutil.which("apt-cache")
    if apt_cache is None:
        return False
    try:
        done = subprocess.run(
            [apt_cache, "policy", package],
            capture_output=True,
            text=True,
            timeout=20,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    for line in done.stdout.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate":
            return value.strip() not in ("", "(none)")
    return False
