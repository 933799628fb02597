"""Fetching one Packages index against the signed Release, and the parsed-index cache.

Fetching (HAZARDS 16–20, 25). Each ``<component>/binary-<arch>/Packages`` the Release lists is
tried as xz, gz, zst, then plain, each by-hash first when the Release says ``Acquire-By-Hash``
(debootstrap and apt do the same: a by-hash file cannot change under us mid-sync), on every
mirror in turn: any bytes whose SHA256 the verified Release names are good, whoever serves
them. Size and SHA256 are checked while streaming (``Http.stream``), and the whole compressed
file is verified before a byte of it is decoded (:mod:`rootstrap.archive.inflate`); the
decompressed text is capped by the uncompressed size the Release lists (or a hard limit) and
hashed against it too, and parsed as it arrives (:mod:`rootstrap.archive.index`).

Cache: ``<cache>/indexes/<sha256>.packages`` (the uncompressed text, normalised) and
``<sha256>.table`` (marshal), keyed by the SHA256 the Release gives the uncompressed index (or
the compressed one when that is all it lists). Both are written under temporary names and
renamed once verified, so a file that exists was verified when written; the cache directory is
trusted like apt's lists directory. A warm load is one marshal read and an open file.

Separate from the parser because it is the only part that talks to mirrors and the disk.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rootstrap.archive.index import FORMAT, Builder, Chunker, FileText, IndexTable
from rootstrap.archive.inflate import PIECE, Capped, Corrupt, Inflater
from rootstrap.archive.release import FileEntry, HttpLike, Release
from rootstrap.errors import (
    ArchiveIndexError,
    DownloadError,
    IntegrityError,
    ResourceError,
    RootstrapError,
    VerificationError,
)

log = logging.getLogger(__name__)

__all__ = ["fetch_index", "index_path", "load_cached"]

HARD_CAP: Final = 1 << 30  # no Packages index comes near 1 GiB uncompressed (sid main: ~70 MB)
COMPRESSIONS: Final = (("xz", ".xz"), ("gz", ".gz"), ("zst", ".zst"), ("", ""))


@dataclass(frozen=True)
class _Source:
    url: str
    path: str  # relative to dists/<suite>/
    entry: FileEntry
    kind: str


def index_path(component: str, arch: str) -> str:
    return f"{component}/binary-{arch}/Packages"


def _sources(release: Release, bases: Sequence[str], component: str, arch: str) -> list[_Source]:
    """Every URL the index may come from, best first (HAZARDS 16, 19)."""
    path = index_path(component, arch)
    label = f"{component}/binary-{arch}"
    listed = [(kind, path + ext) for kind, ext in COMPRESSIONS if path + ext in release.files]
    provided = (not release.components or component in release.components) and (
        not release.architectures or arch in release.architectures or arch == "all"
    )
    if not provided or not listed:
        if any(path + ext in release.weak_only for _k, ext in COMPRESSIONS):
            raise VerificationError(
                f"Release provides only weak security information for {label} (no SHA256)",
                subject=release.url,
            )
        raise ArchiveIndexError(
            f"repository does not provide {label}",
            subject=release.url,
            hint=f"it has components {', '.join(release.components) or '?'} and architectures "
            f"{', '.join(release.architectures) or '?'}",
        )
    found = []
    for base in bases:
        for kind, rel in listed:
            entry = release.files[rel]
            if release.acquire_by_hash:
                found.append(
                    _Source(f"{base}/{component}/binary-{arch}/by-hash/SHA256/{entry.sha256}",
                            rel, entry, kind)
                )  # fmt: skip
            found.append(_Source(f"{base}/{rel}", rel, entry, kind))
    return found


def _cache_key(release: Release, component: str, arch: str, source: _Source) -> str:
    plain = release.files.get(index_path(component, arch))
    return plain.sha256 if plain else source.entry.sha256


def load_cached(cache_dir: Path, key: str, origin: str) -> IndexTable | None:
    """The parsed index cached under KEY, or None. Costs one marshal load (~20-40 ms for
    bookworm main) and an open(); the text is read only for stanzas asked for."""
    base = cache_dir / "indexes"
    try:
        with open(base / f"{key}.table", "rb") as f:
            # marshal.load(file) reads in tiny pieces (~20x slower here): read, then loads.
            table = marshal.loads(f.read())
        fd = os.open(base / f"{key}.packages", os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    text = FileText(fd)  # owns FD from here
    if not isinstance(table, dict) or table.get("format") != FORMAT or table.get("key") != key:
        text.close()
        return None
    if table.get("size") != len(text):
        text.close()
        return None
    return IndexTable(table, text, origin)


class _Failure:
    """Why one source failed; the last word goes to the most telling failure."""

    def __init__(self) -> None:
        self.mismatch: list[str] = []
        self.size: list[str] = []
        self.corrupt: list[str] = []
        self.other: list[RootstrapError] = []


def fetch_index(
    http: HttpLike,
    release: Release,
    component: str,
    arch: str,
    *,
    mirrors: Sequence[str],
    cache_dir: Path,
    suite: str,
) -> IndexTable:
    """The verified, parsed index of COMPONENT/binary-ARCH, from the cache or the mirrors.

    MIRRORS are tried in order (the Release's own mirror first); any bytes matching the
    Release's SHA256 are accepted. Cost: bookworm main amd64 ~0.9 s cold on 2 idle cores (one
    9 MB download, then ~0.8 s of xz in a forked child beside ~0.6 s of parsing here), ~0.07 s
    warm; memory: the compressed file plus a few MiB of chunks, and the table (~80 MiB peak).
    Raises ArchiveIndexError (not provided, unparseable), IntegrityError (Hash Sum mismatch,
    size), DownloadError; a failed fetch leaves nothing in the cache.
    """
    origin = f"{suite}/{component}"
    sweep_stale_temps(cache_dir / "indexes")
    bases = [f"{m.rstrip('/')}/dists/{suite}" for m in mirrors]
    sources = _sources(release, bases, component, arch)
    for key in dict.fromkeys(_cache_key(release, component, arch, s) for s in sources):
        cached = load_cached(cache_dir, key, origin)
        if cached is not None:
            log.debug("%s: index %s from the cache", origin, key[:12])
            return cached
    plain = release.files.get(index_path(component, arch))
    failure = _Failure()
    for source in sources:
        try:
            table = _fetch_one(http, source, plain, cache_dir, origin,
                               _cache_key(release, component, arch, source))  # fmt: skip
            _trim_heap()
            return table
        except _SourceFailed as exc:
            log.info("%s: %s", source.url, exc.reason)
            if exc.kind == "other":
                failure.other.append(exc.error or DownloadError(exc.reason, subject=source.url))
            else:
                getattr(failure, exc.kind).append(exc.reason)
    first = sources[0]
    tried = f"{len(sources)} source(s) tried"
    if failure.mismatch:
        raise IntegrityError(
            f"Hash Sum mismatch: {failure.mismatch[0]} ({tried})",
            subject=first.url,
            hint="the mirror may be mid-sync or tampered with; try again later or another mirror",
        )
    if failure.size:
        raise IntegrityError(
            f"{failure.size[0]} ({tried})",
            subject=first.url,
            hint="mirror sync in progress? try again later or another mirror",
        )
    if failure.corrupt:
        raise ArchiveIndexError(f"{failure.corrupt[0]} ({tried})", subject=first.url)
    if failure.other:
        # HAZARDS 36: no index, no bootstrap (apt would only warn and use old lists).
        error = failure.other[0]
        error.message = f"{error.message} ({tried})"
        error.args = (error.message,)
        raise error
    raise DownloadError(f"cannot fetch the index ({tried})", subject=first.url)


def sweep_stale_temps(directory: Path) -> list[str]:
    """Remove the temporary files (``.KEY.PID.TID[.table].tmp``) that a writer killed midway
    left in DIRECTORY, whose PID no longer runs; return their names. A SIGKILLed rootstrap
    runs no cleanup (HAZARDS 114), and an index already cached is never rewritten, so nothing
    else would ever remove them. A live writer's files are left alone. Cost: one scandir of a
    directory of a few dozen entries."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        parts = entry.name.split(".")
        if not (entry.name.startswith(".") and parts[-1] == "tmp" and len(parts) >= 5):
            continue
        try:
            pid = int(parts[2])
            os.kill(pid, 0)
            continue  # its writer still runs (or another user's process holds the pid)
        except ValueError:
            continue  # not a name we write
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(entry.path)
            removed.append(entry.name)
        except FileNotFoundError:
            pass
    return removed


def _trim_heap() -> None:
    """Give the parse's freed heap back to the kernel (glibc's malloc_trim(3); ~2 ms).

    The parse's MiB-sized pieces and chunks come from the brk heap (glibc raises its mmap
    threshold after the first is freed) and the table's small objects land between them, so
    the heap cannot shrink from its top: measured, 16 MB of freed memory stayed resident after
    a cold bookworm load, for the rest of a bootstrap. Elsewhere than glibc: a no-op.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


class _SourceFailed(Exception):
    def __init__(self, kind: str, reason: str, error: RootstrapError | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.error = error


def _download(http: HttpLike, source: _Source) -> bytes:
    """SOURCE's compressed bytes, whole; Http.stream checks size and SHA256 against the Release
    before returning, so nothing is decoded or parsed from unverified bytes. Bounded by the
    signed size (bookworm main: 8.8 MB)."""
    blocks: list[bytes] = []
    received = 0
    expected = source.entry.size
    stream = http.stream(source.url, size=expected, sha256=source.entry.sha256,
                         max_size=expected)  # fmt: skip
    try:
        for block in stream:
            received += len(block)
            blocks.append(block)
    except IntegrityError as exc:
        if "announces" in exc.message or "cap" in exc.message:
            reason = f"unexpected size: {exc.message} (mirror sync in progress?)"
            raise _SourceFailed("size", reason, exc) from exc
        if received != expected or "more than" in exc.message:
            reason = (
                f"unexpected size: received {received} bytes, expected {expected} "
                "(mirror sync in progress?)"
            )
            raise _SourceFailed("size", reason, exc) from exc
        reason = (
            f"{source.path}: expected SHA256 {source.entry.sha256} ({expected} bytes), "
            f"received SHA256 {hashlib.sha256(b''.join(blocks)).hexdigest()} ({received} bytes) "
            f"from {source.url}"
        )
        raise _SourceFailed("mismatch", reason, exc) from exc
    except DownloadError as exc:
        raise _SourceFailed("other", exc.message, exc) from exc
    finally:
        # Closed here whatever happens: an abandoned response generator kept alive by a
        # traceback is otherwise closed by the garbage collector at a random moment, possibly
        # inside httpcore's pool lock in another request (a deadlock seen in tests).
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return b"".join(blocks)


def _fetch_one(
    http: HttpLike,
    source: _Source,
    plain: FileEntry | None,
    cache_dir: Path,
    origin: str,
    key: str,
) -> IndexTable:
    directory = cache_dir / "indexes"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResourceError(f"cannot create the cache: {exc.strerror}",
                            subject=str(directory)) from exc  # fmt: skip
    final = directory / f"{key}.packages"
    tmp = directory / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
    cap = plain.size if plain else min(HARD_CAP, 16 * PIECE + 32 * source.entry.size)
    data = _download(http, source)
    out = open(tmp, "wb")

    def lines_before(offset: int) -> int:
        out.flush()
        with open(tmp, "rb") as f:
            return f.read(offset).count(b"\n")

    builder = Builder(origin, lines_before)
    inflater = Inflater(source.kind, data, source.url, cap)
    del data  # the child has its copy; ours goes now
    try:
        chunker = Chunker(builder, out.write)
        with inflater:
            try:
                for piece in inflater.pieces():
                    chunker.feed((piece,))
                total, digest = inflater.finish()
            except Capped:
                raise _SourceFailed(
                    "size",
                    f"index decompresses to more than {cap} bytes "
                    f"({'as Release lists' if plain else 'hard limit'}); refusing",
                ) from None
            except Corrupt as exc:
                raise _SourceFailed(
                    "corrupt",
                    f"{exc} in {source.url} "
                    "(its SHA256 matches the Release: the archive itself is broken)",
                ) from exc
        if plain is not None:
            if total != plain.size:
                raise _SourceFailed(
                    "size", f"unexpected size: decompressed to {total} bytes, Release "
                    f"lists {plain.size} (mirror sync in progress?)")  # fmt: skip
            if digest != plain.sha256:
                raise _SourceFailed(
                    "mismatch", f"{source.path} decompressed: expected SHA256 {plain.sha256}, "
                    f"received SHA256 {digest} from {source.url}")  # fmt: skip
        chunker.feed((), final=True)
        out.flush()
        size = out.tell()
        out.close()
        table = builder.finish(key, size)
        table_tmp = tmp.with_suffix(".table.tmp")
        with open(table_tmp, "wb") as f:
            marshal.dump(table, f)
        os.replace(tmp, final)
        os.replace(table_tmp, directory / f"{key}.table")
    except BaseException:
        out.close()
        for path in (tmp, tmp.with_suffix(".table.tmp")):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        raise
    # The table just built, over the file just renamed (not a second copy read back).
    text = FileText(os.open(final, os.O_RDONLY | os.O_CLOEXEC))
    return IndexTable(table, text, origin, builder.by_name)
