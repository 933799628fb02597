"""One image as found in the store: its type, flags and times (no tree walk)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from rootstrap.linux import fsops


class ImageType(StrEnum):
    DIRECTORY = "directory"
    SUBVOLUME = "subvolume"
    RAW = "raw"


@dataclass(frozen=True)
class Image:
    """An entry of the store. ``path`` is the entry itself (maybe a symlink, see ``link``)."""

    name: str
    path: Path
    type: ImageType
    read_only: bool
    created: float | None  # birth time (btrfs: subvolume creation), None where unknown
    modified: float | None  # latest mtime of the top directory and its entries
    usage: int | None  # bytes allocated, None when not asked for
    link: str | None = None  # the symlink's target when the entry is a symlink (HAZARDS 80)

    @property
    def hidden(self) -> bool:
        return self.name.startswith(".")


UNSUPPORTED = (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


def dir_read_only(fd: int, subvolume: bool) -> bool:
    """The read-only state machined would report: the subvolume flag, else chattr +i."""
    try:
        if subvolume:
            return fsops.btrfs_get_readonly(fd)
        return bool(fsops.get_inode_flags(fd) & fsops.FS_IMMUTABLE_FL)
    except OSError:
        return False


def probe(name: str, path: Path) -> Image | None:
    """Describe the store entry PATH, or None if it is not an image (a stray file, a fifo).

    Cost: a handful of syscalls; no walk."""
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return None
    link = os.readlink(path) if stat.S_ISLNK(lst.st_mode) else None
    if stat.S_ISREG(lst.st_mode) or (link and path.is_file()):
        st = os.stat(path)
        return Image(
            name=name,
            path=path,
            type=ImageType.RAW,
            read_only=not st.st_mode & 0o222,
            created=None,
            modified=st.st_mtime,
            usage=st.st_blocks * 512,
            link=link,
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None  # a dangling symlink or not a directory
    try:
        subvolume = fsops.is_btrfs_subvolume(fd)
        created = fsops.birth_time(fd)
        modified = os.fstat(fd).st_mtime
        read_only = dir_read_only(fd, subvolume)
    finally:
        os.close(fd)
    return Image(
        name=name,
        path=path,
        type=ImageType.SUBVOLUME if subvolume else ImageType.DIRECTORY,
        read_only=read_only,
        created=created,
        modified=modified,
        usage=None,
        link=link,
    )


def set_dir_read_only(path: Path, read_only: bool) -> None:
    """Set the read-only state of the directory image PATH; OSError from the kernel as is."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if fsops.is_btrfs_subvolume(fd):
            fsops.btrfs_set_readonly(fd, read_only)
            return
        flags = fsops.get_inode_flags(fd)
        new = flags | fsops.FS_IMMUTABLE_FL if read_only else flags & ~fsops.FS_IMMUTABLE_FL
        if new != flags:
            fsops.set_inode_flags(fd, new)
    finally:
        os.close(fd)


def clear_immutable(path: Path) -> bool:
    """Drop chattr +i from the directory PATH; True if it was set (to restore it after)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            flags = fsops.get_inode_flags(fd)
            if flags & fsops.FS_IMMUTABLE_FL:
                fsops.set_inode_flags(fd, flags & ~fsops.FS_IMMUTABLE_FL)
                return True
        finally:
            os.close(fd)
    return False
