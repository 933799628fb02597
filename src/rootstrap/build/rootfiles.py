"""Writing into a root that packages have filled: never through a link they planted.

A package may ship ``etc/resolv.conf -> /etc/resolv.conf`` or ``var/log -> /var/log``; a
bootstrap that then writes, chmods or deletes by path string would change the host (HAZARDS 63;
runc 9be1dbf4). Every helper here checks each parent component and replaces, never follows, a
symlink in the last one. The merged-/usr links (bin, sbin, lib) are ours and may be crossed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from pathlib import Path

from rootstrap.errors import ConfigureError

# Links the bootstrap itself made (merged-/usr); a path may pass through them.
OWN_LINKS = frozenset({"bin", "sbin", "lib"})


def in_root(root: Path, path: str) -> Path:
    """ROOT/PATH after checking no component is a symlink (HAZARDS 63: planted links)."""
    current = root
    for part in Path(path.lstrip("/")).parts[:-1]:
        current = current / part
        if current.is_symlink() and str(current.relative_to(root)) not in OWN_LINKS:
            raise ConfigureError("refusing to write through a symlink", subject=str(current))
    return root / path.lstrip("/")


def replace_file(target: Path, data: bytes, mode: int) -> None:
    """Write TARGET anew: a symlink planted there is replaced, never followed."""
    tmp = target.with_name(f".{target.name}.rootstrap-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, target)


def make_dir(root: Path, relpath: str, mode: int | None = None) -> None:
    """``mkdir -p ROOT/RELPATH`` (and chmod MODE) following no symlink a package planted:
    a chmod through ``tmp -> /etc`` would change the host (HAZARDS 63)."""
    path = in_root(root, relpath)  # no symlink on the way (but the merged-/usr links)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o755 if mode is None else mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:  # a symlink or a file where a directory belongs
        found = f"a symlink to {os.readlink(path)}" if path.is_symlink() else exc.strerror
        raise ConfigureError(
            f"expected a directory, found {found}; it is not followed", subject=f"/{relpath}"
        ) from exc
    try:
        if mode is not None:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def write_file(root: Path, relpath: str, text: str, mode: int = 0o644) -> None:
    """Write TEXT to ROOT/RELPATH anew (see :func:`replace_file`)."""
    write_bytes(root, relpath, text.encode(), mode)


def write_bytes(root: Path, relpath: str, data: bytes, mode: int = 0o644) -> None:
    """Write DATA to ROOT/RELPATH anew, no parent being a planted link."""
    replace_file(in_root(root, relpath), data, mode)


def remove_in_root(root: Path, pattern: str) -> None:
    """Remove the files ROOT/PATTERN names (a glob in its last component), never through a
    directory symlink a package planted: var/log -> /var/log must not cost the host its logs
    (HAZARDS 63)."""
    try:
        directory = in_root(root, pattern).parent  # every parent checked: no symlink
        names = os.listdir(directory)
    except (ConfigureError, FileNotFoundError, NotADirectoryError):
        return
    for name in fnmatch.filter(names, Path(pattern).name):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(directory / name)  # unlink never follows the last component


def clamp_mtimes(root: Path, epoch: int) -> None:
    """Set every mtime later than EPOCH to EPOCH (SOURCE_DATE_EPOCH; links not followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)
    if os.lstat(root).st_mtime > epoch:
        os.utime(root, (epoch, epoch))
