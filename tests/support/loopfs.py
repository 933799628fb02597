"""Real loop filesystems (btrfs, xfs, ext4) for store tests and benchmarks.

A sparse image file, mkfs, ``mount -o loop``; unmounted and deleted on exit. Needs root,
``losetup`` and the mkfs tools (tests/setup-host.sh installs btrfs-progs and xfsprogs)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

MKFS = {
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
}


def missing_tools(kind: str) -> str | None:
    """Why a KIND loop filesystem cannot be made here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which(MKFS[kind][0]) is None:
        return f"{MKFS[kind][0]} is not installed"
    with open("/proc/filesystems") as f:
        if kind not in f.read():
            return f"the kernel has no {kind}"
    return None


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@contextlib.contextmanager
def loop_filesystem(
    kind: str, workdir: Path, *, size_mb: int = 300, options: str = ""
) -> Iterator[Path]:
    """Mount a fresh KIND filesystem of SIZE_MB (sparse file under WORKDIR); yield the mount."""
    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / f"{kind}.img"
    mnt = workdir / f"{kind}-mnt"
    mnt.mkdir(exist_ok=True)
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    _run(*MKFS[kind], str(image))
    _run("mount", "-o", "loop" + ("," + options if options else ""), str(image), str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-R", str(mnt)], capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        image.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            mnt.rmdir()
