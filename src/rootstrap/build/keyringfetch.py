"""Obtaining a keyring through Debian's own verified archive (``rootstrap keyring fetch ubuntu``).

    path = fetch_keyring(recipe, cache_dir=cache)   # into CACHE/keyrings, verified end to end

The trust chain is the one rootstrap.archive.keyrings describes: Debian's InRelease against the
host's Debian keyring, the index against the Release, the .deb against the index, and the file
read out of the .deb by rootstrap's own reader.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rootstrap.archive.keyrings import ANCHOR_SUITE, cached_keyring, find_keyring
from rootstrap.errors import DebError, KeyringError
from rootstrap.linux.arch import host_arch

if TYPE_CHECKING:
    from rootstrap.archive.http import Http
    from rootstrap.recipes import Recipe

log = logging.getLogger(__name__)

__all__ = ["fetch_keyring", "read_member"]

#: A keyring package is small (ubuntu-keyring: ~30 KiB); anything far larger is not one.
_MAX_KEYRING_FILE = 4 << 20


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
    from rootstrap.build.download import DebCache, fetch_all

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
    arch = arch or host_arch()
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

    from rootstrap.formats.deb import open_deb
    from rootstrap.formats.tarstream import REGULAR, SYMLINK, TarReader

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
    from rootstrap.archive.signature import load_keyring

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
