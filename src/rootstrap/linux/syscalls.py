"""Thin ctypes bindings for the namespace syscalls Python 3.11 lacks (x86_64 and aarch64).

Each wrapper raises ``OSError(errno, strerror, filename)`` on failure, so callers map it to a
RunnerError with the path it was about. Syscall numbers come from the kernel's unistd tables;
the new-mount-API numbers (428+) are the same on every architecture.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x100000

CLOSE_RANGE_CLOEXEC = 1 << 2

_ARCH = os.uname().machine
# (pivot_root, capset) per architecture; the rest below are shared numbers.
_NR = {"x86_64": (155, 126), "aarch64": (41, 91)}
if _ARCH not in _NR:  # pragma: no cover - only the two supported architectures run tests
    raise ImportError(f"rootstrap's runner does not support {_ARCH}")
NR_PIVOT_ROOT, NR_CAPSET = _NR[_ARCH]
NR_CLOSE_RANGE = 436
NR_MOUNT_SETATTR = 442

_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
_libc.prctl.argtypes = (
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
)
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    """mount(2); TARGET is usually ``/proc/self/fd/N`` of an O_PATH fd opened in-root."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount", target)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), "prctl")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(NR_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root", new_root)


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def mount_setattr(
    fd: int, attr_set: int, *, recursive: bool = False, userns_fd: int = 0, propagation: int = 0
) -> None:
    """Add mount attributes (e.g. MOUNT_ATTR_RDONLY) to the mount FD refers to, keeping the
    others: unlike MS_REMOUNT|MS_BIND it never trips over locked flags in a user namespace.
    MOUNT_ATTR_IDMAP takes USERNS_FD (a detached mount only, Linux 5.12); PROPAGATION is
    0 (unchanged) or one of MS_PRIVATE, MS_SLAVE, MS_SHARED, MS_UNBINDABLE."""
    attr = _MountAttr(attr_set, 0, propagation, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(
        _libc.syscall(
            NR_MOUNT_SETATTR,
            ctypes.c_int(fd),
            ctypes.c_char_p(b""),
            ctypes.c_uint(flags),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        "mount_setattr",
    )


def cloexec_range(first: int, last: int) -> None:
    """Mark fds FIRST..LAST close-on-exec (close_range(2) CLOSE_RANGE_CLOEXEC, Linux 5.11)."""
    _check(
        _libc.syscall(
            NR_CLOSE_RANGE,
            ctypes.c_uint(first),
            ctypes.c_uint(last),
            ctypes.c_uint(CLOSE_RANGE_CLOEXEC),
        ),
        "close_range",
    )


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.syscall(NR_CAPSET, ctypes.byref(header), data), "capset")


NR_OPEN_TREE = 428
NR_MOVE_MOUNT = 429
OPEN_TREE_CLONE = 1
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40


def open_tree(dirfd: int, path: str, *, recursive: bool = True) -> int:
    """A detached copy of the mount tree at PATH (or DIRFD itself for ""): a handle that,
    unlike an fd opened before unshare(CLONE_NEWNS), can be attached in the new namespace."""
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    if not path:
        flags |= AT_EMPTY_PATH
    fd = _check(
        _libc.syscall(
            NR_OPEN_TREE,
            ctypes.c_int(dirfd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.c_uint(flags),
        ),
        "open_tree",
        path or None,
    )
    # The clone joins the peer group of the mount it copies. On a systemd host "/" is
    # shared (mount_namespaces(7)), so without this every mount made inside the container
    # (proc, sys, dev, ...) propagated back into the host's namespace, and pivot_root into
    # the clone failed with EINVAL (pivot_root(2): new_root must not be shared).
    try:
        mount_setattr(fd, 0, recursive=True, propagation=MS_PRIVATE)
    except OSError:
        os.close(fd)
        raise
    return fd


def move_mount(tree_fd: int, to_fd: int, to_path: str = "") -> None:
    """Attach the detached TREE_FD at TO_PATH (relative to TO_FD, or TO_FD itself for "")."""
    flags = MOVE_MOUNT_F_EMPTY_PATH | (0 if to_path else MOVE_MOUNT_T_EMPTY_PATH)
    _check(
        _libc.syscall(
            NR_MOVE_MOUNT,
            ctypes.c_int(tree_fd),
            ctypes.c_char_p(b""),
            ctypes.c_int(to_fd),
            ctypes.c_char_p(os.fsencode(to_path)),
            ctypes.c_uint(flags),
        ),
        "move_mount",
        to_path or None,
    )
