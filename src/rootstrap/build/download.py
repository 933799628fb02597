"""Turn a plan into verified .deb files: a content-addressed cache and parallel downloads.

The cache (``<cache-dir>/debs/``, default ``/var/cache/rootstrap``) is shared by concurrent runs.
A file's name comes only from the validated ``Package.deb_name`` (name, version, architecture),
never from the index's ``Filename``, and a file is trusted only after its size and SHA256 match
the signed index again (HAZARDS 47: debootstrap's ``get()`` re-validates too). Downloads go to
``<name>.partial`` under an flock, are verified, then renamed (HAZARDS 103: apt's ``partial/`` +
rename), so no reader ever sees a partial file.

A package is tried on each mirror in turn: a 404 means the mirror may be mid-sync, a hash
mismatch is never retried on the same mirror (HAZARDS 37, 46; apt's errAuthErr). Free space is
checked before the first byte (HAZARDS 106; apt's ``CheckFreeSpaceBeforeDownload``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from rootstrap.archive.http import Http, HttpStatusError, file_matches, human_size
from rootstrap.archive.packages import NAME_RE, Package
from rootstrap.errors import (
    ArchiveIndexError,
    DownloadError,
    IntegrityError,
    Interrupted,
    ResourceError,
    StoreError,
)

log = logging.getLogger(__name__)

__all__ = ["CacheEntry", "DebCache", "check_free_space", "fetch_all", "package_url"]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    name: str
    size: int


class DebCache:
    """The shared .deb cache under ROOT (``ROOT/debs``). Cheap to construct; creates nothing.

    Runs that use the cache hold a shared lock (:meth:`using`); :meth:`clean` takes it
    exclusively, so it never deletes a file another run is about to unpack.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "debs"

    def path_for(self, pkg: Package) -> Path:
        """Where PKG's .deb lives in the cache, named from ``deb_name`` only."""
        name = pkg.deb_name
        # deb_name is built from a validated name, version and architecture; check once more
        # that it is a single plain component, because it is the only thing that names a file.
        if not NAME_RE.match(pkg.name) or "/" in name or name.startswith(".") or "\0" in name:
            raise ArchiveIndexError(f"unsafe cache file name {name!r}", subject=pkg.name)
        return self.dir / name

    def verified(self, pkg: Package) -> Path | None:
        """PKG's cached file if its size and SHA256 match the index, else None. One full read."""
        path = self.path_for(pkg)
        return path if file_matches(path, pkg.size, pkg.sha256) else None

    def ensure(self) -> None:
        """Create the cache directory (mode 755)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        except OSError as exc:
            raise ResourceError(
                f"cannot create the download cache: {exc.strerror}",
                subject=str(self.dir),
                hint="choose another with --cache-dir or ROOTSTRAP_CACHE",
            ) from exc

    @contextlib.contextmanager
    def using(self) -> Iterator[None]:
        """Hold the cache's shared lock: :meth:`clean` waits for (or refuses) while it is held."""
        self.ensure()
        fd = self._open_lock()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _open_lock(self) -> int:
        path = self.root / "lock"
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ResourceError(
                f"cannot open the cache lock: {exc.strerror}",
                subject=str(path),
                hint="choose another cache with --cache-dir or ROOTSTRAP_CACHE",
            ) from exc

    def entries(self) -> list[CacheEntry]:
        """The complete .deb files in the cache, sorted by name (no hashing)."""
        if not self.dir.is_dir():
            return []
        found = []
        for entry in os.scandir(self.dir):
            if entry.name.endswith(".deb") and entry.is_file(follow_symlinks=False):
                found.append(CacheEntry(entry.name, entry.stat(follow_symlinks=False).st_size))
        return sorted(found, key=lambda e: e.name)

    def clean(self, keep: set[str] | None = None) -> int:
        """Remove cached files whose name is not in KEEP (all when None); return how many.

        Leftover ``.partial`` files are removed unless a download holds them. Raises StoreError
        when another run is using the cache (it holds the shared lock).
        """
        if not self.dir.is_dir():
            return 0
        fd = self._open_lock()
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(
                    "the download cache is in use by another run",
                    subject=str(self.root),
                    hint="wait for it to finish, then clean again",
                ) from None
            removed = 0
            for entry in os.scandir(self.dir):
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.name.endswith(".partial"):
                    if _remove_unlocked(Path(entry.path)):
                        removed += 1
                elif keep is None or entry.name not in keep:
                    os.unlink(entry.path)
                    removed += 1
            return removed
        finally:
            os.close(fd)


def _remove_unlocked(path: Path) -> bool:
    """Remove PATH unless someone holds an flock on it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        os.unlink(path)
    finally:
        os.close(fd)
    return True


def package_url(mirror: str, pkg: Package) -> str:
    """PKG's URL on MIRROR (``Filename`` is relative to the archive root; checked by usable())."""
    return f"{mirror.rstrip('/')}/{quote(pkg.filename)}"


def check_free_space(directory: Path, need: int) -> None:
    """Raise ResourceError unless DIRECTORY's filesystem has NEED bytes free.

    ``f_bavail`` (what an unprivileged user may use), as apt's CheckFreeSpaceBeforeDownload:
    the blocks reserved for root are the system's margin, not ours."""
    st = os.statvfs(directory)
    have = st.f_bavail * st.f_frsize
    if need > have:
        raise ResourceError(
            f"not enough free space in {directory} (need {human_size(need)}, "
            f"have {human_size(have)})",
            subject=str(directory),
            hint="free some space, or point --cache-dir / ROOTSTRAP_CACHE at a larger filesystem",
        )


def fetch_all(
    http: Http,
    packages: Sequence[Package],
    mirrors: Sequence[str],
    cache: DebCache,
    *,
    workers: int = 8,
    on_ready: Callable[[Package, Path], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Path]:
    """Make every package's verified .deb available in CACHE; return {package name: path}.

    Cached files are re-verified (size + SHA256) and refetched when corrupt; missing ones are
    downloaded by WORKERS threads, each tried on MIRRORS in order. ON_READY(pkg, path) is called
    from a worker thread as soon as a file is verified, so the caller may unpack while the rest
    downloads. PROGRESS(bytes done, bytes total) is called from a worker after each package.
    The first failure stops the rest (in-flight downloads at their next chunk, keeping their
    prefix for a resume) and is raised: DownloadError, IntegrityError or ResourceError, each
    naming the URL or file; Interrupted on Ctrl-C, or when another thread sets STOP. Holds the
    cache's shared lock meanwhile.
    Cost: one hash per cached file; downloads are hashed while they stream.
    """
    if not mirrors:
        raise DownloadError("no mirror to download from")
    unique: dict[str, Package] = {}
    for pkg in packages:
        reason = pkg.usable()
        if reason:
            raise ArchiveIndexError(f"cannot download: {reason}", subject=pkg.name)
        unique.setdefault(pkg.name, pkg)
    todo = list(unique.values())
    total = sum(p.size for p in todo)
    with cache.using():
        # A stat is enough to count what is missing; hashing happens in the workers.
        need = 0
        for pkg in todo:
            try:
                if cache.path_for(pkg).stat().st_size == pkg.size:
                    continue
            except FileNotFoundError:
                pass
            need += pkg.size
        if need:
            check_free_space(cache.dir, need)

        results: dict[str, Path] = {}
        lock = threading.Lock()
        stop = stop or threading.Event()
        done = [0]

        def one(pkg: Package) -> None:
            if stop.is_set():
                return
            path = cache.verified(pkg)
            if path is None:
                path = _download(http, pkg, mirrors, cache, stop)
                if path is None:
                    return
            if on_ready is not None:
                on_ready(pkg, path)
            with lock:
                results[pkg.name] = path
                done[0] += pkg.size
                now = done[0]
            if progress is not None:
                progress(now, total)

        # Largest first: the long downloads start early and the tail is short.
        todo.sort(key=lambda p: p.size, reverse=True)
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fetch")
        futures: list[Future[None]] = [pool.submit(one, pkg) for pkg in todo]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except KeyboardInterrupt:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise Interrupted("interrupted while downloading") from None
        if any(f.done() and f.exception() is not None for f in futures):
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise _first_error(futures)
        pool.shutdown(wait=True)
        return {name: results[name] for name in unique if name in results}


def _first_error(futures: list[Future[None]]) -> BaseException:
    """The error to report: the first integrity/resource error, else the first error.

    Workers told to stop raise Interrupted; that is a consequence, never the cause."""
    errors = [e for f in futures if f.done() and not f.cancelled() and (e := f.exception())]
    errors = [e for e in errors if not isinstance(e, Interrupted)] or errors
    for kind in (ResourceError, IntegrityError):
        for exc in errors:
            if isinstance(exc, kind):
                return exc
    return errors[0]


def _download(
    http: Http, pkg: Package, mirrors: Sequence[str], cache: DebCache, stop: threading.Event
) -> Path | None:
    """Download PKG from the first mirror that serves it intact; None when told to stop."""
    dest = cache.path_for(pkg)
    failures: list[DownloadError | IntegrityError] = []
    for number, mirror in enumerate(mirrors, 1):
        if stop.is_set():
            return None
        url = package_url(mirror, pkg)
        try:
            http.download(url, dest, size=pkg.size, sha256=pkg.sha256, stop=stop)
            return dest
        except IntegrityError as exc:
            # HAZARDS 46: never retried on the same mirror; the partial file is gone.
            failures.append(exc)
        except ResourceError:
            raise
        except DownloadError as exc:  # 404 (mid-sync), other statuses, network faults
            failures.append(exc)
        if number < len(mirrors):
            # The next mirror is tried; a failure on the last one is the error itself, said
            # once (as is every other worker's, which the first error stops).
            log.warning("%s", failures[-1])
    last = failures[-1]
    if all(isinstance(e, HttpStatusError) and e.status in (404, 410) for e in failures):
        where = "the mirror" if len(mirrors) == 1 else f"any of {len(mirrors)} mirrors"
        raise DownloadError(
            f"{pkg.deb_name} not found on {where} (HTTP 404)",
            subject=last.subject,
            hint="the mirror may be mid-sync: wait a while and retry, or use another mirror",
        ) from last
    if len(failures) > 1:
        last.hint = f"tried {len(failures)} mirrors; " + (last.hint or "")
    raise last


class Background:
    """:func:`fetch_all` on a thread of its own, so unpacking can start with the first file.

    ``in_order(packages)`` yields each package's .deb as soon as it (and every one before it)
    is verified: the extractor consumes it lazily, and extraction order stays the plan's order
    whatever order the downloads finish in. A download failure is raised there, or by
    :meth:`result`.
    """

    def __init__(
        self, http: Http, packages: Sequence[Package], mirrors: Sequence[str], cache: DebCache
    ) -> None:
        self._ready: dict[str, Path] = {}
        self._done = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(http, packages, mirrors, cache), daemon=True
        )
        self._thread.start()

    def _run(
        self, http: Http, packages: Sequence[Package], mirrors: Sequence[str], cache: DebCache
    ) -> None:
        try:
            fetch_all(http, packages, mirrors, cache, on_ready=self._one, stop=self._stop)
        except BaseException as exc:  # handed to the consumer, never lost on this thread
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _one(self, package: Package, path: Path) -> None:
        with self._cond:
            self._ready[package.name] = path
            self._cond.notify_all()

    def wait(self, name: str) -> Path:
        """The verified .deb of NAME, waiting for it; raises the download's error."""
        with self._cond:
            while name not in self._ready and not self._done:
                self._cond.wait()
            if name in self._ready:
                return self._ready[name]
        raise self._error or DownloadError("download stopped", subject=name)

    def in_order(self, packages: Sequence[Package]) -> Iterator[Path]:
        for package in packages:
            yield self.wait(package.name)

    def stop(self) -> None:
        """Stop the downloads in flight (at their next chunk) and wait for the thread: the
        caller was interrupted or failed, and its download threads must not outlive it (they
        are not daemons: the interpreter would wait for them at exit)."""
        self._stop.set()
        self._thread.join()

    def result(self) -> dict[str, Path]:
        """Every .deb, once all are verified; raises the download's error."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return dict(self._ready)
