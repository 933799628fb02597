"""Paths inside a root directory, on directory fds: resolution and removal.

Resolving a path *inside* a root means: as if the root were ``/``. Symlinks are followed, but an
absolute one restarts at the root, and ``..`` never climbs above it, at most 40 hops. This is the
one implementation of it; everything that opens a path in an image or a tree being built goes
through here:

- ``open_in_root(root_fd, path, flags)``: one file or directory (an image's os-release for the
  store and for boot);
- ``Resolver``: directory fds for the tar extractor and the dpkg database, creating what is
  missing, with one cached parent.

Both use ``openat2(RESOLVE_IN_ROOT)`` (Linux 5.6) and fall back to the same walk by hand, one
``O_NOFOLLOW`` open per component (systemd's ``chase()`` with ``CHASE_PREFIX_ROOT``,
docs/decisions.md, "Our own extractor"), where that syscall is filtered or missing. Never
``os.path.realpath`` on host paths (CPython CVE-2025-4517 and friends). (Two places refuse every
symlink instead of resolving it, a different contract on purpose: the runner's mount targets,
runner/mounts.py, HAZARDS 92, and the bootstrap's own writes, build/rootfiles.py, HAZARDS 63.)

``remove_tree`` is ``rm -rf`` that makes directories writable first, follows no symlink and
crosses no mount point. Both keep a constant number of fds open whatever the depth. Standard
library and rootstrap.errors only, and not pathlib at import: boot loads this module.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections import deque
from collections.abc import Callable

from rootstrap.errors import UnpackError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

MAX_HOPS = 40  # the kernel's MAXSYMLINKS

O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


_libc = ctypes.CDLL(None, use_errno=True)
_NR_OPENAT2 = 437  # the same on every architecture (added after the syscall tables were unified)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
# openat2 filtered by seccomp (EPERM, ENOSYS), missing (ENOSYS), or an older struct (E2BIG,
# EINVAL): resolve by hand from then on.
_NO_OPENAT2 = (errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL)
_openat2_works = True


def _openat2_in_root(root_fd: int, path: bytes, flags: int) -> int:
    """openat2(RESOLVE_IN_ROOT): symlinks and '..' resolved as if ROOT_FD were '/'."""
    how = (flags | os.O_CLOEXEC).to_bytes(8, "little") + bytes(8)
    how += (_RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS).to_bytes(8, "little")
    # syscall(2) is variadic and reads longs: pass longs, not ctypes' default 32-bit ints.
    c_long = ctypes.c_long
    fd = _libc.syscall(c_long(_NR_OPENAT2), c_long(root_fd), path, how, c_long(len(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


def open_in_root(root_fd: int, path: str | bytes, flags: int = os.O_RDONLY) -> int:
    """Open PATH inside the directory ROOT_FD as if ROOT_FD were '/' (see the module
    docstring) with open(2) FLAGS; the caller closes the fd. OSError as open(2) raises it
    (ENOENT, ENOTDIR, ELOOP beyond 40 hops, ...): an image's ``/etc/os-release ->
    ../usr/lib/os-release`` resolves inside the image, ``-> /etc/shadow`` too, never onto the
    host. Cost: one openat2, or one open per component and hop."""
    global _openat2_works
    raw = os.fsencode(path)
    if _openat2_works:
        try:
            return _openat2_in_root(root_fd, raw, flags)
        except OSError as exc:
            if exc.errno not in _NO_OPENAT2:
                raise
            _openat2_works = False
    if not raw:
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), "")  # as open(2)
    parts = tuple(raw.split(b"/"))
    for _hop in range(MAX_HOPS + 1):
        while parts and parts[-1] in (b"", b"."):
            parts = parts[:-1]
        if not parts or parts[-1] == b"..":
            # The directory itself: open it again, resolved, with FLAGS.
            dir_fd = _chase(root_fd, parts, create=False)
            try:
                return os.open(".", flags | os.O_CLOEXEC, dir_fd=dir_fd)
            finally:
                os.close(dir_fd)
        dir_fd = _chase(root_fd, parts[:-1], create=False)
        try:
            try:
                fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError as exc:
                # O_NOFOLLOW on a symlink: ELOOP, or ENOTDIR with O_DIRECTORY. Follow it below.
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                mode = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False).st_mode
                if not stat.S_ISLNK(mode):
                    raise
            else:
                if not (flags & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode)):
                    return fd
                os.close(fd)  # O_PATH|O_NOFOLLOW opened the link itself
            target = os.readlink(parts[-1], dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        parts = (
            tuple(target.split(b"/"))
            if target.startswith(b"/")
            else (*parts[:-1], *target.split(b"/"))
        )
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), os.fsdecode(raw))


def _chase(root_fd: int, parts: tuple[bytes, ...], *, create: bool) -> int:
    """Resolve the directory PARTS inside ROOT_FD by hand, one O_NOFOLLOW component at a time:
    an absolute symlink restarts at the root, '..' never climbs above it, 40 hops at most
    (systemd's chase with CHASE_PREFIX_ROOT). CREATE makes missing directories. Returns an
    O_PATH fd; holds at most two fds at a time."""
    todo: deque[bytes] = deque(parts)
    done: list[bytes] = []
    fd = os.open(".", O_PATH_DIR, dir_fd=root_fd)
    hops = 0
    try:
        while todo:
            comp = todo.popleft()
            if comp in (b"", b"."):
                continue
            if comp == b"..":
                if done:
                    done.pop()
                    os.close(fd)
                    fd = -1
                    fd = _walk_real(root_fd, done)
                continue
            try:
                nfd = os.open(comp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(comp, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile (or a dangling symlink: the open below tells)
                nfd = os.open(comp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            mode = os.fstat(nfd).st_mode
            if stat.S_ISDIR(mode):
                os.close(fd)
                fd = nfd
                done.append(comp)
            elif stat.S_ISLNK(mode):
                os.close(nfd)
                hops += 1
                if hops > MAX_HOPS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                target = os.readlink(comp, dir_fd=fd)
                if target.startswith(b"/"):
                    os.close(fd)
                    fd = -1
                    fd = os.open(".", O_PATH_DIR, dir_fd=root_fd)
                    done = []
                todo.extendleft(reversed(target.split(b"/")))
            else:
                os.close(nfd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def _walk_real(root_fd: int, comps: list[bytes]) -> int:
    # COMPS were real directories a moment ago: walk them again without following anything.
    fd = os.open(".", O_PATH_DIR, dir_fd=root_fd)
    for comp in comps:
        try:
            nfd = os.open(comp, O_PATH_DIR, dir_fd=fd)
        finally:
            os.close(fd)
        fd = nfd
    return fd


class Resolver:
    """Directory fds for member paths, resolved inside the root; one cached parent fd."""

    def __init__(self, root_fd: int, fail: Callable[[str], UnpackError]) -> None:
        self.root_fd = root_fd
        self._fail = fail
        self._key: tuple[bytes, ...] | None = None
        self._fd = -1
        #: whether the last parent() is setgid (new entries then take its group)
        self.parent_setgid = False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._key = -1, None

    def parent(self, parts: tuple[bytes, ...]) -> int:
        """The directory holding PARTS' last component (created in-root when missing).
        The fd belongs to the resolver: do not close it, and do not keep it."""
        key = parts[:-1]
        if key != self._key:
            fd = self.open_dir(key, create=True)
            self.close()
            self._key, self._fd = key, fd
            self.parent_setgid = bool(os.fstat(fd).st_mode & stat.S_ISGID)
        return self._fd

    def open_dir(self, parts: tuple[bytes, ...], *, create: bool) -> int:
        """An O_PATH fd of the directory PARTS resolves to inside the root. The caller closes it."""
        global _openat2_works
        if not parts:
            return os.open(".", O_PATH_DIR, dir_fd=self.root_fd)
        if _openat2_works:
            try:
                return _openat2_in_root(self.root_fd, b"/".join(parts), os.O_PATH | os.O_DIRECTORY)
            except OSError as exc:
                if exc.errno in _NO_OPENAT2:
                    _openat2_works = False  # seccomp'd or an old kernel: chase by hand
                elif exc.errno == errno.ENOENT and create:
                    pass  # chase creates the missing directories
                else:
                    raise self._error(exc, parts) from None
        try:
            return self.chase(parts, create=create)
        except OSError as exc:
            raise self._error(exc, parts) from None

    def _error(self, exc: OSError, parts: tuple[bytes, ...]) -> UnpackError:
        where = b"/".join(parts).decode("utf-8", "backslashreplace")
        if exc.errno == errno.ELOOP:
            return self._fail(f"more than {MAX_HOPS} symlinks resolving {where}")
        if exc.errno == errno.ENOTDIR:
            return self._fail(f"{where} is not a directory")
        if exc.errno == errno.ENAMETOOLONG:
            return self._fail(f"{where}: path too long")
        return self._fail(f"cannot open directory {where}: {exc.strerror}")

    def chase(self, parts: tuple[bytes, ...], *, create: bool) -> int:
        """Resolve PARTS inside the root by hand (openat2's fallback): an O_PATH fd."""
        return _chase(self.root_fd, parts, create=create)


def _open_walk(top_fd: int, comps: tuple[str, ...]) -> int:
    """Open the directory TOP_FD/COMPS without following symlinks, making each one searchable
    on the way (a 0000 directory must not stop its own removal; dpkg CVE-2025-6297)."""
    fd = os.dup(top_fd)
    try:
        for comp in comps:
            try:
                nfd = os.open(comp, O_DIR, dir_fd=fd)
            except PermissionError:
                os.chmod(comp, 0o700, dir_fd=fd, follow_symlinks=True)  # a dir, checked by lstat
                nfd = os.open(comp, O_DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def remove_tree(path: Path | str) -> None:
    """Remove PATH and everything below it, like ``rm -rf`` but: directories are made writable
    before they are emptied (mode 0000/0500 trees), symlinks are never followed, mount points
    are never crossed (UnpackError). Open fds stay constant whatever the depth. A missing PATH
    is fine. Cost: one pass, O(depth) opens per directory."""
    from pathlib import Path

    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    dev = st.st_dev
    top = os.open(path.parent, O_DIR)
    try:
        work: list[tuple[tuple[str, ...], bool]] = [((path.name,), False)]
        while work:
            comps, emptied = work.pop()
            if emptied:
                pfd = _open_walk(top, comps[:-1])
                try:
                    os.rmdir(comps[-1], dir_fd=pfd)
                finally:
                    os.close(pfd)
                continue
            fd = _open_walk(top, comps)
            try:
                dst = os.fstat(fd)
                if dst.st_dev != dev:
                    raise UnpackError(
                        "refusing to remove a mounted filesystem",
                        subject=str(path.parent.joinpath(*comps)),
                        hint="unmount it first",
                    )
                if stat.S_IMODE(dst.st_mode) & 0o700 != 0o700:
                    os.fchmod(fd, 0o700)
                subdirs = []
                for name in os.listdir(fd):
                    if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                        subdirs.append(name)
                    else:
                        os.unlink(name, dir_fd=fd)
            finally:
                os.close(fd)
            work.append((comps, True))
            work.extend(((*comps, name), False) for name in subdirs)
    finally:
        os.close(top)
