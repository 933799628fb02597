"""Filesystem calls Python 3.11 lacks: renameat2(RENAME_NOREPLACE), syncfs, and friends.

A no-replace rename is what makes "build under a hidden name, then publish" atomic: plain
os.rename() silently replaces an empty directory (HAZARDS 68). Standard library + ctypes only.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

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


def rename_exchange(a: Path, b: Path) -> None:
    """Atomically swap the entries A and B (renameat2 RENAME_EXCHANGE); both must exist."""
    rc = _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(b))


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


@contextlib.contextmanager
def new_file(path: Path, *, replace: bool = False) -> Iterator[BinaryIO]:
    """Write the file PATH whole or not at all: the block writes to the file object it gets;
    leaving the block normally fsyncs it, gives it the name PATH and fsyncs the directory.

    Until then the data lives in an unnamed inode (O_TMPFILE) that vanishes with its last
    descriptor, so a writer killed midway, even by SIGKILL, leaves nothing behind (HAZARDS
    118). Where the filesystem has no O_TMPFILE, a hidden ``.#NAME.xxxx`` file, removed on
    any error but a kill. FileExistsError if PATH exists, unless REPLACE."""
    named: Path | None = None
    try:
        fd = os.open(path.parent, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        named = path.with_name(f".#{path.name}.{secrets.token_hex(4)}")
        fd = os.open(named, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    out = os.fdopen(fd, "wb")
    try:
        yield out
        out.flush()
        os.fsync(out.fileno())
        if named is not None:
            (os.replace if replace else rename_noreplace)(named, path)
            named = None
        else:
            _link_unnamed(out.fileno(), path, replace)
        fsync_dir(path.parent)
    finally:
        out.close()
        if named is not None:
            with contextlib.suppress(OSError):
                named.unlink()


def _link_unnamed(fd: int, path: Path, replace: bool) -> None:
    """Name the O_TMPFILE file FD as PATH: linkat(2) through /proc/self/fd with
    AT_SYMLINK_FOLLOW (no CAP_DAC_READ_SEARCH needed, unlike AT_EMPTY_PATH). os.link uses
    linkat only when given a directory fd, hence the one for PATH's directory."""
    source = f"/proc/self/fd/{fd}"
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not replace:
            try:
                os.link(source, path.name, dst_dir_fd=parent, follow_symlinks=True)
            except OSError as exc:  # named as rename_noreplace names it: the destination
                raise OSError(exc.errno, exc.strerror, str(path)) from None
            return
        # linkat cannot replace: a hidden name first, then rename over PATH.
        temp = f".#{path.name}.{secrets.token_hex(4)}"
        os.link(source, temp, dst_dir_fd=parent, follow_symlinks=True)
        try:
            os.rename(temp, path.name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=parent)
            raise
    finally:
        os.close(parent)


def is_enospc(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


# --- Inode flags, btrfs subvolumes, statx birth time, mounts (store additions) ---
#
# Python has no wrappers for these; the numbers come from <linux/fs.h>, <linux/btrfs.h> and
# <linux/stat.h> (stable kernel ABI, same on x86_64 and arm64). Opening a path inside an image:
# rootstrap.linux.inroot.open_in_root.


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (kind << 8) | nr


_IOC_WRITE, _IOC_READ = 1, 2
FS_IOC_GETFLAGS = _ioc(_IOC_READ, ord("f"), 1, 8)
FS_IOC_SETFLAGS = _ioc(_IOC_WRITE, ord("f"), 2, 8)
FS_IMMUTABLE_FL = 0x10

BTRFS_SUPER_MAGIC = 0x9123683E
BTRFS_FIRST_FREE_OBJECTID = 256  # the inode number of every subvolume's root directory
_BTRFS = 0x94
_VOL_ARGS = 4096  # sizeof(struct btrfs_ioctl_vol_args) == sizeof(..._v2)
BTRFS_IOC_SUBVOL_CREATE = _ioc(_IOC_WRITE, _BTRFS, 14, _VOL_ARGS)
BTRFS_IOC_SNAP_DESTROY = _ioc(_IOC_WRITE, _BTRFS, 15, _VOL_ARGS)
BTRFS_IOC_SNAP_CREATE_V2 = _ioc(_IOC_WRITE, _BTRFS, 23, _VOL_ARGS)
BTRFS_IOC_SUBVOL_GETFLAGS = _ioc(_IOC_READ, _BTRFS, 25, 8)
BTRFS_IOC_SUBVOL_SETFLAGS = _ioc(_IOC_WRITE, _BTRFS, 26, 8)
BTRFS_SUBVOL_RDONLY = 1 << 1

_libc.fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
_libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]


def _raise_errno(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err), what)


def fs_type(fd: int) -> int:
    """The f_type magic of the filesystem holding FD (statfs(2)); one syscall."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes; f_type comes first
    if _libc.fstatfs(fd, buf) != 0:
        _raise_errno(f"fd {fd}")
    return int.from_bytes(buf.raw[: ctypes.sizeof(ctypes.c_long)], "little", signed=True)


def get_inode_flags(fd: int) -> int:
    """FS_IOC_GETFLAGS (chattr's flags). OSError ENOTTY/EOPNOTSUPP where unsupported."""
    buf = bytearray(8)
    fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
    return int.from_bytes(buf[:4], "little")


def set_inode_flags(fd: int, flags: int) -> None:
    """FS_IOC_SETFLAGS; the kernel reads an int despite the ioctl's declared long size."""
    fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags.to_bytes(8, "little"))


def is_btrfs_subvolume(fd: int) -> bool:
    """True if the directory FD is the root of a btrfs subvolume (fstat + fstatfs)."""
    return os.fstat(fd).st_ino == BTRFS_FIRST_FREE_OBJECTID and fs_type(fd) == BTRFS_SUPER_MAGIC


def _vol_args(name: str, fd: int = 0, flags: int = 0, v2: bool = False) -> bytearray:
    raw = os.fsencode(name)
    buf = bytearray(_VOL_ARGS)
    buf[0:8] = fd.to_bytes(8, "little", signed=True)
    if v2:  # struct btrfs_ioctl_vol_args_v2: fd, transid, flags, 4 x u64 union, name[4040]
        buf[16:24] = flags.to_bytes(8, "little")
        offset, room = 56, 4039
    else:  # struct btrfs_ioctl_vol_args: fd, name[4088]
        offset, room = 8, 4087
    if len(raw) > room or b"/" in raw:
        raise OSError(errno.EINVAL, "bad subvolume name", name)
    buf[offset : offset + len(raw)] = raw
    return buf


def btrfs_subvol_create(parent_fd: int, name: str) -> None:
    """Create an empty subvolume NAME in the directory PARENT_FD."""
    fcntl.ioctl(parent_fd, BTRFS_IOC_SUBVOL_CREATE, _vol_args(name))


def btrfs_snapshot(src_fd: int, parent_fd: int, name: str, *, readonly: bool = False) -> None:
    """Snapshot the subvolume SRC_FD as NAME in PARENT_FD (atomic; commits a transaction)."""
    flags = BTRFS_SUBVOL_RDONLY if readonly else 0
    fcntl.ioctl(parent_fd, BTRFS_IOC_SNAP_CREATE_V2, _vol_args(name, src_fd, flags, v2=True))


def btrfs_subvol_destroy(parent_fd: int, name: str) -> None:
    """Delete the subvolume NAME in PARENT_FD, contents included (ENOTEMPTY if it nests one)."""
    fcntl.ioctl(parent_fd, BTRFS_IOC_SNAP_DESTROY, _vol_args(name))


def btrfs_get_readonly(fd: int) -> bool:
    buf = bytearray(8)
    fcntl.ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, buf)
    return bool(int.from_bytes(buf, "little") & BTRFS_SUBVOL_RDONLY)


def btrfs_set_readonly(fd: int, readonly: bool) -> None:
    buf = bytearray(8)
    fcntl.ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, buf)
    flags = int.from_bytes(buf, "little") & ~BTRFS_SUBVOL_RDONLY
    flags |= BTRFS_SUBVOL_RDONLY if readonly else 0
    fcntl.ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, flags.to_bytes(8, "little"))


_STATX_BTIME = 0x800
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_EMPTY_PATH = 0x1000


def birth_time(fd: int) -> float | None:
    """The birth time of FD's inode from statx(2), or None where the filesystem keeps none.

    On btrfs a subvolume root's birth time is the subvolume's creation (otime)."""
    buf = ctypes.create_string_buffer(256)
    if _libc.statx(fd, b"", _AT_EMPTY_PATH | _AT_SYMLINK_NOFOLLOW, _STATX_BTIME, buf) != 0:
        return None
    mask = int.from_bytes(buf.raw[0:4], "little")
    if not mask & _STATX_BTIME:
        return None
    sec = int.from_bytes(buf.raw[80:88], "little", signed=True)
    nsec = int.from_bytes(buf.raw[88:92], "little")
    return sec + nsec / 1e9


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (proc(5)).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: Path) -> list[Path]:
    """Mount points strictly below PATH (from /proc/self/mountinfo), deepest first."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    found: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            point = _unescape_mountinfo(line.split(" ", 5)[4])
            if point.startswith(prefix):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)
