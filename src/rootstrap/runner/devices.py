"""The container's /dev: a runner-owned tmpfs with the minimal nodes, never image content.

Nodes are bind mounts of the host's own ``/dev/null`` etc. (no mknod of image-controlled paths;
the tmpfs is ``nodev`` so a node the payload mknods cannot be opened, HAZARDS 85), a new devpts
instance so ptys stay inside (86), and ``/dev/console`` bound to a pty allocated in that
instance with TIOCGPTPEER, never opened by path (runc CVE-2025-52565, HAZARDS 93).
"""

from __future__ import annotations

import fcntl
import os

from rootstrap.linux import syscalls
from rootstrap.runner.mounts import Mounter, fdpath

NODES = ("null", "zero", "full", "random", "urandom", "tty")
LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
TTY_GID = 5  # Debian's and systemd's fixed "tty" group (nspawn mounts devpts with gid=5)
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441

_FLAGS = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC


def populate(m: Mounter, *, pty: bool) -> tuple[int, int] | None:
    """Mount the private /dev; with PTY return (master, slave) of a pty in its devpts."""
    m.fs("dev", "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=0755,size=4m")
    dev = m.target("dev")
    devfd = os.open(fdpath(dev), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    os.close(dev)
    try:
        for name in NODES:
            os.close(
                os.open(
                    name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666, dir_fd=devfd
                )
            )
            m.bind(f"/dev/{name}", f"dev/{name}", readonly=False, recursive=False, kind="file")
        for name, target in LINKS:
            os.symlink(target, name, dir_fd=devfd)
        for name in ("pts", "shm"):
            os.mkdir(name, 0o755, dir_fd=devfd)
        m.fs("dev/shm", "tmpfs", _FLAGS, "mode=1777,size=50%")
        m.fs(
            "dev/pts",
            "devpts",
            syscalls.MS_NOSUID | syscalls.MS_NOEXEC,
            f"newinstance,ptmxmode=0666,mode=0620,gid={TTY_GID}",
        )
        if not pty:
            return None
        master = os.open("pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=devfd)
        fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        os.close(
            os.open(
                "console", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=devfd
            )
        )
        m.bind(fdpath(slave), "dev/console", readonly=False, recursive=False, kind="file")
        return master, slave
    finally:
        os.close(devfd)
