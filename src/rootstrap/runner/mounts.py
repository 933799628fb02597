"""In-root path resolution and the declarative mount plan.

Every mount target inside the image is opened component by component with
``O_PATH|O_NOFOLLOW`` starting from the root's fd, and the mount goes onto
``/proc/self/fd/N``: a symlink planted by the image can never redirect a mount onto a host
path (runc CVE-2019-19921, CVE-2023-27561, CVE-2025-52881; HAZARDS 92). Symlinks on the way
are refused, not followed. Sources come from the runner (host paths opened before the fork,
or the runner's own tmpfs), never from the image (runc CVE-2025-31133; HAZARDS 93).
"""

from __future__ import annotations

import errno
import os
import stat

from rootstrap.linux import syscalls

O_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class PlanError(Exception):
    """A mount plan that cannot be carried out; the message names the path."""


def fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def split(path: str) -> list[str]:
    """Components of an absolute in-container path; refuses ``..``."""
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise PlanError(f"{path}: '..' is not allowed in a container path")
    return parts


def open_in_root(rootfd: int, path: str, *, create: str | None = None, mode: int = 0o755) -> int:
    """Open PATH below ROOTFD as an O_PATH fd without following any symlink.

    CREATE is None (must exist), "dir" or "file": missing components are made as directories
    and the last one as CREATE. Raises PlanError for a symlink, a non-directory on the way or a
    missing path."""
    parts = split(path)
    fd = os.dup(rootfd)
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            try:
                nfd = os.open(name, O_PATH, dir_fd=fd)
            except FileNotFoundError:
                if create is None:
                    raise PlanError(f"{path}: no such file or directory in the image") from None
                try:
                    if last and create == "file":
                        os.close(
                            os.open(
                                name,
                                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                                0o644,
                                dir_fd=fd,
                            )
                        )
                    else:
                        os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise PlanError(f"{path}: cannot create mount point: {exc.strerror}") from exc
                nfd = os.open(name, O_PATH, dir_fd=fd)
            st = os.fstat(nfd)
            if stat.S_ISLNK(st.st_mode):
                os.close(nfd)
                where = "/" + "/".join(parts[: i + 1])
                raise PlanError(f"{where}: is a symlink in the image, refusing to mount over it")
            if not last and not stat.S_ISDIR(st.st_mode):
                os.close(nfd)
                raise PlanError(f"/{'/'.join(parts[: i + 1])}: must be a directory")
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def require_dir(rootfd: int, name: str, *, create: bool) -> None:
    """Check (and with CREATE, make) the top-level directory NAME of the image.

    /proc, /sys and /dev as a symlink or a file: "must be a directory" (HAZARDS 92)."""
    try:
        st = os.stat(name, dir_fd=rootfd, follow_symlinks=False)
    except FileNotFoundError:
        if not create:
            raise PlanError(f"/{name}: missing in a read-only image") from None
        try:
            os.mkdir(name, 0o755, dir_fd=rootfd)
        except FileExistsError:
            pass
        return
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise PlanError(f"/{name}: must be a directory (it is {kind})")


def make_mount_points(rootfd: int, points: list[tuple[str, str]], *, create: bool) -> None:
    """Check (with CREATE: make) each (path, "dir"|"file") below ROOTFD, in-root.

    The top-level /proc, /sys and /dev must be directories, never symlinks (HAZARDS 92)."""
    for name in ("proc", "sys", "dev"):
        require_dir(rootfd, name, create=create)
    for path, kind in points:
        if path.strip("/") in ("proc", "sys", "dev"):
            continue
        try:
            os.close(open_in_root(rootfd, path, create=kind if create else None))
        except PlanError:
            if path.strip("/") in ("run", "tmp"):
                continue  # optional: a read-only image without them simply gets none
            raise


class Mounter:
    """Carries out mounts below one root fd (inside the new mount namespace)."""

    def __init__(self, rootfd: int, writable: bool) -> None:
        self.rootfd = rootfd
        self.writable = writable

    def target(self, path: str, kind: str = "dir") -> int:
        return open_in_root(self.rootfd, path, create=kind if self.writable else None)

    def fs(self, path: str, fstype: str, flags: int, data: str | None = None) -> None:
        fd = self.target(path)
        try:
            syscalls.mount(fstype, fdpath(fd), fstype, flags, data)
        finally:
            os.close(fd)

    def bind(
        self, source: str, path: str, *, readonly: bool, recursive: bool = True, kind: str = "dir"
    ) -> None:
        """Bind SOURCE (a host path or ``/proc/self/fd/N``) onto PATH in the root."""
        fd = self.target(path, kind)
        try:
            flags = syscalls.MS_BIND | (syscalls.MS_REC if recursive else 0)
            syscalls.mount(source, fdpath(fd), None, flags)
        finally:
            os.close(fd)
        if readonly:
            self.readonly(path, recursive=recursive)

    def attach(self, tree: int, path: str, *, readonly: bool, kind: str = "dir") -> None:
        """Attach a detached mount tree (open_tree clone of a host path) at PATH."""
        fd = self.target(path, kind)
        try:
            syscalls.move_mount(tree, fd)
        finally:
            os.close(fd)
        if readonly:
            self.readonly(path)

    def readonly(self, path: str, *, recursive: bool = True) -> None:
        fd = open_in_root(self.rootfd, path)
        try:
            syscalls.mount_setattr(fd, syscalls.MOUNT_ATTR_RDONLY, recursive=recursive)
        finally:
            os.close(fd)

    def bind_self_readonly(self, path: str) -> None:
        fd = open_in_root(self.rootfd, path)
        try:
            syscalls.mount(fdpath(fd), fdpath(fd), None, syscalls.MS_BIND | syscalls.MS_REC)
        finally:
            os.close(fd)
        self.readonly(path)

    def exists(self, path: str) -> str | None:
        """ "dir", "file" or None for PATH in the root (never following symlinks)."""
        try:
            fd = open_in_root(self.rootfd, path)
        except PlanError:
            return None
        try:
            mode = os.fstat(fd).st_mode
        finally:
            os.close(fd)
        if stat.S_ISDIR(mode):
            return "dir"
        return None if stat.S_ISLNK(mode) else "file"


# nspawn mount_all() and runc's defaults: files hidden behind a read-only /dev/null, and
# directories behind an empty read-only tmpfs.
PROC_MASKED = (
    "kcore keys kallsyms kmsg timer_list timer_stats sched_debug latency_stats sysrq-trigger "
    "acpi scsi asound"
).split()
PROC_READONLY = "bus fs irq".split()


def mount_proc(m: Mounter) -> None:
    """A fresh procfs for the new PID namespace, /proc/sys read-only, sensitive files masked."""
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
    m.fs("proc", "proc", flags)
    for name in PROC_READONLY:
        if m.exists(f"proc/{name}") == "dir":
            m.bind_self_readonly(f"proc/{name}")
    m.bind_self_readonly("proc/sys")
    for name in PROC_MASKED:
        kind = m.exists(f"proc/{name}")
        if kind == "file":
            m.bind("/dev/null", f"proc/{name}", readonly=True, recursive=False, kind="file")
        elif kind == "dir":
            m.fs(f"proc/{name}", "tmpfs", syscalls.MS_RDONLY | flags, "mode=0555,size=0")


def mount_sys(m: Mounter) -> None:
    """A read-only sysfs; inside a user namespace without a network namespace of its own the
    kernel refuses a new sysfs, so the host's /sys is bound read-only instead."""
    flags = syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
    try:
        m.fs("sys", "sysfs", flags)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            raise
        m.bind("/sys", "sys", readonly=True)
    if m.exists("sys/firmware") == "dir":
        m.fs("sys/firmware", "tmpfs", flags, "mode=0555,size=0")
