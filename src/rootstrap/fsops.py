"""Filesystem calls Python 3.11 lacks: renameat2(RENAME_NOREPLACE), syncfs, and friends.

A no-replace rename is what makes "build under a hidden name, then publish" atomic: plain
os.rename() silently replaces an empty directory (HAZARDS 68). Standard library + ctypes only.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_uint,
]
_libc.syncfs.argtypes = [ctypes.c_int]

AT_FDCWD = -100
RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename SRC to DST, failing with FileExistsError if DST exists in any form.

    Falls back to link+unlink semantics only for files when the filesystem lacks renameat2."""
    rc = _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(dst))


def syncfs(path: Path) -> None:
    """Flush the whole filesystem holding PATH (cheaper than fsync on every file of a tree)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_enospc(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)
