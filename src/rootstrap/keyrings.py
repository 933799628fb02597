"""Finding and obtaining the keyring an archive's Release is verified with.

    paths = find_keyring(recipe, given, cache_dir=cache)   # --keyring, host, cache, or an error
    path = fetch_keyring(recipe, cache_dir=cache)          # obtain it through Debian's archive

The order is the user's word first: ``--keyring`` always wins; then the recipe's keyrings as
installed on the host (``/usr/share/keyrings/ubuntu-archive-keyring.gpg`` from the
``ubuntu-keyring`` package, as debootstrap's ``scripts/gutsy`` and mkosi use); then a copy that
:func:`fetch_keyring` put under the cache directory; else a clean KeyringError whose hint names
what works on this host.

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
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rootstrap.errors import DebError, KeyringError

if TYPE_CHECKING:
    from rootstrap.archive.http import Http
    from rootstrap.recipes import Recipe

log = logging.getLogger(__name__)

__all__ = ["ANCHOR_SUITE", "cached_keyring", "fetch_keyring", "find_keyring", "keyring_hint"]

#: The Debian suite whose archive carries the other distributions' keyring packages
#: (ubuntu-keyring entered Debian's main archive for trixie).
ANCHOR_SUITE = "trixie"
#: Where fetched keyrings live, under the cache directory.
KEYRING_DIR = "keyrings"
#: A keyring package is small (ubuntu-keyring: ~30 KiB); anything far larger is not one.
_MAX_KEYRING_FILE = 4 << 20


def cached_keyring(recipe: Recipe, cache_dir: Path) -> Path:
    """Where :func:`fetch_keyring` keeps RECIPE's keyring under CACHE_DIR (may not exist)."""
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


def fetch_keyring(
    recipe: Recipe,
    *,
    cache_dir: Path,
    http: Http | None = None,
    mirrors: Sequence[str] = (),
    arch: str | None = None,
    anchor: str = ANCHOR_SUITE,
    anchor_keyrings: Sequence[Path] = (),
) -> Path:
    """Obtain RECIPE's keyring from Debian's archive, verified, into CACHE_DIR; return its path.

    The Debian suite ANCHOR is opened with the host's Debian keyring (or ANCHOR_KEYRINGS) on
    MIRRORS (default: ``--mirror`` rules for Debian), RECIPE's ``keyring-package`` is found in
    its index, downloaded through the verified .deb cache, and the file named by the recipe's
    first keyring is read out of it. The result is checked to be an OpenPGP keyring and written
    atomically with a ``.source`` note of where it came from. Cost: Debian's main index (~1 s
    cold, cached by hash afterwards) plus one small download. Raises KeyringError,
    VerificationError, DownloadError or ArchiveIndexError, each naming its subject.
    """
    from rootstrap import recipes
    from rootstrap.archive import open_archive
    from rootstrap.archive.http import Http
    from rootstrap.fetch import DebCache, fetch_all

    if not recipe.keyring_package or not recipe.keyrings:
        raise KeyringError(
            "the recipe names no keyring package to fetch",
            subject=recipe.name,
            hint="pass --keyring FILE",
        )
    debian = recipes.load(anchor)
    if debian.distribution != "debian":
        raise KeyringError(f"{anchor} is not a Debian suite", subject=anchor)
    trust = find_keyring(debian, anchor_keyrings)
    arch = arch or _host_arch()
    chosen = recipes.choose_mirrors(debian, arch, list(mirrors))
    own_http = http is None
    client = http if http is not None else Http()
    try:
        archive = open_archive(
            debian,
            mirrors=chosen,
            arch=arch,
            http=client,
            cache_dir=cache_dir,
            components=["main"],
            keyrings=trust,
        )
        package = archive.index.best(recipe.keyring_package)
        if package is None:
            raise KeyringError(
                f"Debian {archive.recipe.codename} has no package {recipe.keyring_package}",
                subject=recipe.keyring_package,
                hint="pass --keyring FILE",
            )
        debs = fetch_all(client, [package], [archive.mirror], DebCache(cache_dir))
    finally:
        if own_http:
            client.close()
    deb = debs[package.name]
    member = str(recipe.keyrings[0]).lstrip("/")
    data = read_member(deb, member)
    dest = cached_keyring(recipe, cache_dir)
    _install(data, dest, subject=f"{deb.name}:/{member}")
    note = (
        f"{member} from {package.name} {package.version} ({package.sha256}), "
        f"Debian {archive.release.codename} Release of {archive.release.date.isoformat()} "
        f"signed by {' '.join(archive.release.fingerprints)} at {archive.mirror}\n"
    )
    dest.with_name(dest.name + ".source").write_text(note)
    log.info("fetched %s", note.strip())
    return dest


def read_member(deb: Path, member: str, *, hops: int = 8) -> bytes:
    """The content of regular file MEMBER (``usr/share/...``) in the .deb DEB.

    Symlinks inside the package are followed (relative or absolute, at most HOPS), never out
    of it. Reads the data member once, keeping only regular files of at most 4 MiB. Raises
    DebError naming the .deb when the file is absent or too large.
    """
    import posixpath

    from rootstrap.deb import open_deb
    from rootstrap.tarstream import REGULAR, SYMLINK, TarReader

    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    opened = open_deb(deb)
    with opened.data() as stream:
        reader = TarReader(stream, subject=deb.name, error=DebError)
        for tm in reader:
            name = posixpath.normpath("/" + tm.name.decode("utf-8", "surrogateescape"))
            if tm.type in REGULAR and tm.size <= _MAX_KEYRING_FILE:
                files[name] = b"".join(reader.data(tm))
            elif tm.type == SYMLINK:
                links[name] = tm.linkname.decode("utf-8", "surrogateescape")
    path = posixpath.normpath("/" + member)
    for _ in range(hops):
        if path in files:
            return files[path]
        if path not in links:
            break
        path = posixpath.normpath(posixpath.join(posixpath.dirname(path), links[path]))
    raise DebError(f"no file /{member.lstrip('/')} in the package", subject=deb.name)


def _install(data: bytes, dest: Path, *, subject: str) -> None:
    """Check DATA is an OpenPGP keyring, then write it to DEST atomically (mode 0644)."""
    from rootstrap.archive.release import load_keyring

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        try:
            load_keyring([Path(tmp)])
        except KeyringError as exc:
            raise KeyringError(exc.message, subject=subject) from exc
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _host_arch() -> str:
    import platform

    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "armv7l": "armhf"}.get(
        machine, machine
    )
