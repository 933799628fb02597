"""Locks on images: a writable user holds LOCK_EX, a read-only user LOCK_SH, never blocking.

The lock is a flock(2) on the image directory itself (an O_DIRECTORY fd), so it follows the
inode through renames (HAZARDS 105) and dies with the holder's fd (104): no stale lock file ever
needs deleting. Creating a new name takes a second lock on ``/run/rootstrap/locks/name-NAME`` so
two clones or imports to one name serialize (102); the no-replace rename decides the winner.

Standard library only: the runner imports this module.
"""

from __future__ import annotations

import errno
import fcntl
import os
from types import TracebackType

from rootstrap.errors import ImageBusy, StoreError

# A string, not a pathlib.Path: `rootstrap run` imports this module, and pathlib (with the
# fnmatch, re and urllib it pulls in) costs ~8 ms of its start-up budget.
LOCK_DIR = "/run/rootstrap/locks"


class ImageLock:
    """A held lock; release it with :meth:`release` or a ``with`` block."""

    def __init__(self, fd: int, what: str) -> None:
        self.fd = fd
        self.what = what

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ImageLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _flock(fd: int, exclusive: bool, what: str, busy: str) -> ImageLock:
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise ImageBusy(busy, subject=what, hint="is it running? see 'rootstrap list'") from exc
        raise StoreError(f"cannot lock: {exc.strerror}", subject=what) from exc
    return ImageLock(fd, what)


def lock_image(path: str | os.PathLike[str], *, exclusive: bool) -> ImageLock:
    """Lock the image directory PATH (never following a symlink at PATH itself).

    Raises ImageBusy at once when another holder conflicts."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise StoreError(f"cannot open image: {exc.strerror}", subject=os.fspath(path)) from exc
    return _flock(fd, exclusive, os.fspath(path), "image is busy (in use by another command)")


def lock_name(name: str) -> ImageLock:
    """Serialize the creators of one image name (clone, import, bootstrap, rename target)."""
    os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
    path = os.path.join(LOCK_DIR, f"name-{name}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return _flock(fd, True, name, "another command is creating an image of this name")
