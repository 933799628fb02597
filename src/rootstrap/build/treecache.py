"""The configured-tree cache: a bootstrapped tree, before its per-machine files, kept for the
next build of exactly the same thing (mkosi's ``Incremental=``, keyed more strictly).

A cold bootstrap spends its time creating ~7,000 files from xz-compressed .debs and running the
maintainer scripts; a second build of the same package set would redo both to the same result.
So after ``cleanup`` (guards gone, logs dropped) and before ``customize`` (hostname, hosts,
machine-id, resolv.conf, apt sources) the tree is saved, and a later build whose key matches
restores it instead of running extract, prepare, essential and install. A key is saved on its
second build (``offer``): the first only leaves a marker, so one-off builds cost nothing.

The key is everything that shapes the tree at that point: every planned package's name,
version, architecture and SHA256 in install order, the essential set, the architecture, the
recipe's merged-/usr policy and build hostname, and a digest of rootstrap's own code. A new
package version, another --include, or an upgraded rootstrap is a different key: the cache can
be stale only if a .deb with the same SHA256 differs, which the archive's signature rules out.

Per-machine state must not be shared between machines. What the configure stage writes for
one machine alone is either replaced by customize on every build (machine-id, hostname) or, for
state customize cannot regenerate (an SSH host key from ``--include openssh-server``, a random
seed), makes the tree unsaveable: ``SECRETS`` lists those paths.

On disk, ``CACHE/trees/KEY/``: ``dirs.tar.zst`` (every directory) and ``files-N.tar.zst`` (the
rest, split by parent directory so that N workers create files in different directories; a
hard link's names stay in one part). Written by GNU tar (pax, numeric owners, xattrs) into a
hidden directory renamed into place; read back with the dirfd-safe extractor. A damaged entry
is dropped and the build goes on the slow way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from multiprocessing.context import BaseContext
from pathlib import Path

from rootstrap.errors import RootstrapError, UnpackError
from rootstrap.linux import children

log = logging.getLogger("rootstrap.build.treecache")

FORMAT = 1
KEEP = 4  # trees kept; the least recently used goes first
SEEN = 256  # keys remembered as built once
PARTS = 2  # one per core of the machines this was measured on
LEVEL = 1  # zstd: 0.55 s of CPU for minbase's 194 MB (90 MB out); level 3 costs 2x the CPU
SECRETS = (
    "etc/ssh/ssh_host_*",
    "etc/ssl/private/*",
    "etc/dropbear/*_host_key",
    "etc/dropbear-initramfs/*_host_key",
    "var/lib/systemd/random-seed",
    "var/lib/systemd/credential.secret",
    "var/lib/dbus/machine-id",
)
MANIFEST = "manifest.json"
TAR = [
    "tar", "--create", "--file=-", "--format=posix", "--numeric-owner", "--xattrs",
    "--xattrs-include=*", "--no-recursion", "--null", "--verbatim-files-from",
]  # fmt: skip


class DamagedTree(RootstrapError):
    """A cached tree that cannot be read back (truncated, corrupted, unreadable)."""


@dataclass(frozen=True)
class Entry:
    """One cached tree: its directory and the parts in it."""

    path: Path
    dirs: Path
    files: tuple[Path, ...]


# --------------------------------------------------------------------------- the key


@cache
def code_digest() -> str:
    """SHA256 over rootstrap's own source files: a changed configure step is a new key."""
    package = Path(__file__).resolve().parents[1]  # the whole rootstrap package
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def tree_key(
    packages: Iterable[tuple[str, str, str, str]],
    essential: Sequence[str],
    *,
    arch: str,
    merged_usr: bool,
    hostname: str,
) -> str:
    """The key of the tree that PACKAGES (name, version, architecture, SHA256 in install
    order) configure into."""
    material = {
        "format": FORMAT,
        "code": code_digest(),
        "arch": arch,
        "merged_usr": merged_usr,
        "hostname": hostname,
        "packages": [list(p) for p in packages],
        "essential": list(essential),
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


# --------------------------------------------------------------------------- the store


class TreeCache:
    """``CACHE_DIR/trees``: saved trees by key."""

    def __init__(self, cache_dir: Path) -> None:
        self.dir = cache_dir / "trees"

    def find(self, key: str) -> Entry | None:
        """The entry for KEY if it is complete (every part the size its manifest says); a
        damaged one is dropped, so that the next build of KEY can save it again."""
        path = self.dir / key
        try:
            text = (path / MANIFEST).read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._damaged(key, exc.strerror or str(exc))
        try:
            sizes = json.loads(text)["sizes"]
            if not isinstance(sizes, dict):
                raise TypeError("sizes is not an object")
            files = tuple(sorted(path / n for n in sizes if n.startswith("files-")))
            if "dirs.tar.zst" not in sizes or not files:
                raise KeyError("a part is missing from the manifest")
            for name, size in sizes.items():
                if (path / name).stat().st_size != size:
                    return self._damaged(key, f"{name} has the wrong size")
        except (ValueError, KeyError, TypeError) as exc:
            return self._damaged(key, f"bad manifest: {exc}")
        except OSError as exc:
            return self._damaged(key, f"{exc.filename}: {exc.strerror}")
        return Entry(path, path / "dirs.tar.zst", files)

    def _damaged(self, key: str, why: str) -> Entry | None:
        log.warning("%s: damaged, dropped (%s)", self.dir / key, why)
        self.drop(key)
        return None

    def drop(self, key: str) -> None:
        shutil.rmtree(self.dir / key, ignore_errors=True)

    def entries(self) -> list[Path]:
        try:
            return sorted(p for p in self.dir.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def clean(self) -> int:
        """Remove every saved tree and leftover; return how many trees went."""
        trees = self.entries()
        shutil.rmtree(self.dir, ignore_errors=True)
        return len(trees)

    def size(self) -> int:
        """Bytes the saved trees take."""
        return sum(f.stat().st_size for tree in self.entries() for f in tree.iterdir())

    def touch(self, entry: Entry) -> None:
        with contextlib.suppress(OSError):
            os.utime(entry.path)  # least recently used goes first in prune()

    def offer(self, root: Path, key: str) -> Path | None:
        """Save the tree ROOT as KEY if KEY was built once before, else remember it was.

        A tree is saved on its second build, not its first: saving costs a cold build ~1 s
        of two cores and ~90 MB, which a one-off package set would never pay back. A failed
        save costs the build nothing but a warning."""
        seen = self.dir / ".seen" / key
        if not seen.exists():
            try:
                seen.parent.mkdir(parents=True, exist_ok=True)
                seen.touch()
                _keep_newest(seen.parent, SEEN)
            except OSError as exc:
                log.warning("%s: %s", seen, exc.strerror)
            return None
        try:
            return self.save(root, key)
        except OSError as exc:
            log.warning("tree not cached: %s: %s", exc.filename or self.dir, exc.strerror)
        except RootstrapError as exc:
            log.warning("tree not cached: %s", exc)
        return None

    def save(self, root: Path, key: str) -> Path | None:
        """Save the tree ROOT as KEY; None (and a log line) when it holds a machine's secret.

        Written whole into a hidden directory, then renamed: a reader sees all or nothing.
        A concurrent build that saved the same key first wins; ours is discarded."""
        secret = find_secret(root)
        if secret is not None:
            log.info("tree not cached: it holds per-machine state (%s)", secret)
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        temp = self.dir / f".new-{secrets.token_hex(6)}"
        temp.mkdir(mode=0o700)
        # Held while we write: prune() removes a .new- directory nobody holds, i.e. the
        # leftover of a save that was killed (HAZARDS 121), and never one being written.
        held = _hold(temp)
        try:
            dirs, parts = partition(root, PARTS)
            lists = {"dirs.tar.zst": dirs} | {
                f"files-{i}.tar.zst": part for i, part in enumerate(parts)
            }
            _write_parts(root, temp, lists)
            sizes = {name: (temp / name).stat().st_size for name in lists}
            (temp / MANIFEST).write_text(json.dumps({"key": key, "sizes": sizes}))
            try:
                os.rename(temp, self.dir / key)
            except OSError as exc:  # ENOTEMPTY/EEXIST: another build saved it first
                log.debug("tree %s: kept the one saved first (%s)", key, exc.strerror)
                return self.dir / key
        finally:
            shutil.rmtree(temp, ignore_errors=True)
            os.close(held)
        self.prune()
        return self.dir / key

    def prune(self, keep: int = KEEP) -> None:
        """Keep the KEEP trees used last; remove the leftovers of killed saves (a ``.new-``
        directory whose lock nobody holds)."""
        with contextlib.suppress(FileNotFoundError):
            for path in self.dir.iterdir():
                if path.name.startswith(".new-"):
                    _remove_unheld(path)
        trees = sorted(self.entries(), key=_mtime, reverse=True)
        for path in trees[keep:]:
            shutil.rmtree(path, ignore_errors=True)


def _hold(directory: Path) -> int:
    """An fd of DIRECTORY with an exclusive flock on it (released when the fd closes)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _remove_unheld(directory: Path) -> None:
    """Remove DIRECTORY unless a save in progress holds it."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # being written by another build
    finally:
        os.close(fd)
    shutil.rmtree(directory, ignore_errors=True)


def _keep_newest(directory: Path, keep: int) -> None:
    names = sorted(directory.iterdir(), key=_mtime, reverse=True)
    for path in names[keep:]:
        path.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def find_secret(root: Path) -> str | None:
    """The first path of SECRETS present in ROOT (a symlink counts only if it is a file)."""
    for pattern in SECRETS:
        for path in root.glob(pattern):
            if path.is_symlink() and pattern == "var/lib/dbus/machine-id":
                continue  # the usual link to /etc/machine-id, which customize empties
            return str(path.relative_to(root))
    return None


# --------------------------------------------------------------------------- writing


def partition(root: Path, parts: int) -> tuple[list[bytes], list[list[bytes]]]:
    """Every directory of ROOT ("." first, parents before children), and the other entries
    in PARTS lists: whole directories' worth each, balanced by count, the names of one
    hard-linked file in the same list (tar links only within one archive)."""
    dirs: list[bytes] = [b"."]
    groups: list[list[bytes]] = []
    inodes: dict[tuple[int, int], int] = {}  # hard-linked inode -> its group
    links: list[tuple[bytes, int]] = []  # (name, group) of later names of such inodes
    stack = [b"."]
    while stack:
        top = stack.pop()
        group: list[bytes] = []
        number = len(groups)
        with os.scandir(os.path.join(bytes(root), top) if top != b"." else bytes(root)) as it:
            for entry in sorted(it, key=lambda e: e.name):
                name = entry.name if top == b"." else top + b"/" + entry.name
                if entry.is_dir(follow_symlinks=False):
                    dirs.append(name)
                    stack.append(name)
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    first = inodes.setdefault((st.st_dev, st.st_ino), number)
                    if first != number:
                        links.append((name, first))
                        continue
                group.append(name)
        groups.append(group)
    lists: list[list[bytes]] = [[] for _ in range(parts)]
    shard_of: dict[int, int] = {}
    for number in sorted(range(len(groups)), key=lambda n: len(groups[n]), reverse=True):
        lightest = min(range(parts), key=lambda i: len(lists[i]))
        shard_of[number] = lightest
        lists[lightest].extend(groups[number])
    for name, group_number in links:
        lists[shard_of[group_number]].append(name)  # after the first name: tar links to it
    return dirs, lists


def _write_parts(root: Path, into: Path, lists: dict[str, list[bytes]]) -> None:
    """One ``tar | zstd`` per list, all at once (the compressor releases the GIL)."""
    import zstandard

    errors: list[BaseException] = []

    def one(name: str, names: list[bytes]) -> None:
        listing = into / f".{name}.list"
        listing.write_bytes(b"".join(n + b"\0" for n in names))
        argv = [*TAR, f"--directory={root}", f"--files-from={listing}"]
        try:
            # tar is tied to this thread (rootstrap.linux.children), which waits for it
            # before it ends: it dies with a killed rootstrap, never with a live one.
            with (
                open(into / name, "xb") as out,
                children.start(argv, subject=name, stdout=children.PIPE) as tar,
            ):
                compressor = zstandard.ZstdCompressor(level=LEVEL, write_checksum=True)
                compressor.copy_stream(tar.stdout, out)
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)
        finally:
            listing.unlink(missing_ok=True)

    threads = [threading.Thread(target=one, args=item) for item in lists.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------- reading


def restore(entry: Entry, root: Path, max_bytes: int | None) -> None:
    """Rebuild the tree ENTRY into the empty directory ROOT.

    Directories first, then the file parts on one process each, then the directories again
    for the mtimes the file creates moved. Raises DamagedTree for a part that does not read
    back (the caller empties ROOT and builds the slow way); OSError as it comes (disk full)."""
    from rootstrap.unpack.extract import Policy

    policy = Policy(max_bytes=max_bytes, allow_devices=True, allow_pax=True)
    opened: list[int] = []
    try:
        for part in (entry.dirs, *entry.files):
            try:
                opened.append(os.open(part, os.O_RDONLY | os.O_CLOEXEC))
            except FileNotFoundError:  # `cache clean` since find()
                raise DamagedTree("removed while in use", subject=str(part)) from None
        _extract_part(opened[0], root, policy, entry.dirs.name)
        pairs = list(zip(opened[1:], entry.files, strict=True))
        # The workers die with us (HAZARDS 121): a killed build must not leave them
        # extracting into the hidden tree `rootstrap clean` is about to remove.
        with ProcessPoolExecutor(
            len(pairs),
            mp_context=_fork(),
            initializer=children.die_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = [
                pool.submit(_extract_in_worker, fd, str(root), policy, p.name) for fd, p in pairs
            ]
            failures = [f.result() for f in futures]
        for failure in failures:
            if failure is None:
                continue
            number, message, name = failure
            if number:
                raise OSError(number, os.strerror(number), name)
            raise DamagedTree(message, subject=name)
        os.lseek(opened[0], 0, os.SEEK_SET)
        _extract_part(opened[0], root, policy, entry.dirs.name)
    finally:
        for fd in opened:
            os.close(fd)


def _fork() -> BaseContext:
    import multiprocessing

    return multiprocessing.get_context("fork")


def _extract_in_worker(
    fd: int, root: str, policy: object, name: str
) -> tuple[int, str, str] | None:
    """In a worker: extract one part. A failure comes back as (errno, message, part): plain
    values pickle, our exceptions' keyword arguments would not."""
    try:
        _extract_part(fd, Path(root), policy, name)
    except DamagedTree as exc:
        return (0, exc.message, name)
    except OSError as exc:
        return (exc.errno or 0, exc.strerror or str(exc), str(exc.filename or name))
    return None


def _extract_part(fd: int, root: Path, policy: object, name: str) -> None:
    import zstandard

    from rootstrap.unpack.extract import Policy, extract_tar

    assert isinstance(policy, Policy)
    raw = os.fdopen(os.dup(fd), "rb")
    try:
        with zstandard.ZstdDecompressor().stream_reader(raw, closefd=True) as stream:
            extract_tar(stream, root, policy, subject=name)
    except zstandard.ZstdError as exc:
        raise DamagedTree(f"cannot read back: {exc}", subject=name) from exc
    except UnpackError as exc:
        if isinstance(exc.__cause__, OSError):
            raise exc.__cause__ from exc
        raise DamagedTree(f"cannot read back: {exc.message}", subject=name) from exc
