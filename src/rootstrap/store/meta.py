"""What an image says about itself: os-release (read in-root) and its origin record.

The origin (recipe, suite, mirror, variant, time) lives in the extended attribute
``user.rootstrap.origin`` (JSON) on the image's top directory: outside the tree the container
sees as files, yet bound to the image inode, so it follows rename, btrfs snapshots and
``cp -a`` clones for free, vanishes with remove, and is written before the publishing rename,
so an image never exists without it. ext4, xfs and btrfs all keep user xattrs on directories.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from rootstrap.errors import StoreError
from rootstrap.linux.inroot import open_in_root

ORIGIN_XATTR = "user.rootstrap.origin"
_OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
_MAX_OS_RELEASE = 64 << 10


def write_origin(image_path: Path, info: dict[str, Any]) -> None:
    """Record where the image at IMAGE_PATH came from (JSON-serialisable INFO, < 3 KiB).

    Call it on the temp tree before :meth:`Store.publish` (or pass ``origin=`` to publish)."""
    data = json.dumps(info, sort_keys=True, separators=(",", ":")).encode()
    if len(data) > 3072:
        raise StoreError("origin record is larger than 3 KiB", subject=str(image_path))
    try:
        os.setxattr(image_path, ORIGIN_XATTR, data, follow_symlinks=False)
    except OSError as exc:
        raise StoreError(
            f"cannot record the image origin: {exc.strerror}", subject=str(image_path)
        ) from exc


def read_origin(image_path: Path) -> dict[str, Any] | None:
    """The origin record of IMAGE_PATH, or None if it has none (imported, or not ours)."""
    try:
        data = os.getxattr(image_path, ORIGIN_XATTR, follow_symlinks=False)
    except OSError:
        return None
    with contextlib.suppress(ValueError):
        info = json.loads(data)
        if isinstance(info, dict):
            return info
    return None


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): KEY=VALUE lines, values optionally quoted, '#' comments."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[key.strip()] = value
    return out


def read_os_release(root: Path) -> dict[str, str]:
    """The image's os-release, resolved inside ROOT (etc/os-release is usually a symlink to
    ../usr/lib/os-release; an absolute or escaping link must not reach the host). Empty dict
    when the image has none (rootstrap.linux.inroot). Cost: two openat2 calls and one read of at
    most 64 KiB."""
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        for rel in _OS_RELEASE:
            try:
                fd = open_in_root(root_fd, rel, os.O_RDONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV):
                    continue
                raise
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):  # never block on a fifo
                    continue
                data = os.read(fd, _MAX_OS_RELEASE)
            finally:
                os.close(fd)
            return parse_os_release(data.decode("utf-8", errors="replace"))
        return {}
    finally:
        os.close(root_fd)
