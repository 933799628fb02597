"""Write a root filesystem as a reproducible tarball (``bootstrap --output FILE.tar[.zst|...]``).

GNU tar does the walking: pax format with every xattr (security.capability, ACLs), numeric
owners, names sorted, atime/ctime dropped, and with SOURCE_DATE_EPOCH every mtime clamped, so
two runs over the same mirror state give the same bytes (mmdebstrap's
check-for-bit-by-bit-identical-format-output; HAZARDS 33). gzip runs with -n: no name, no time.
"""

from __future__ import annotations

import os
from pathlib import Path

from rootstrap.errors import RootstrapError, UsageError
from rootstrap.linux import children
from rootstrap.linux.fsops import new_file

COMPRESSORS: dict[str, list[str] | None] = {
    ".tar": None,
    ".tar.gz": ["gzip", "-n", "-6"],
    ".tgz": ["gzip", "-n", "-6"],
    ".tar.xz": ["xz", "-T0", "-6"],
    ".tar.zst": ["zstd", "-q", "-T0", "-19"],
}

__all__ = ["COMPRESSORS", "suffix_of", "write_tar"]


def suffix_of(file: Path) -> str:
    name = file.name
    for suffix in sorted(COMPRESSORS, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise UsageError(
        "unknown tarball suffix", subject=str(file), hint=f"use one of {', '.join(COMPRESSORS)}"
    )


def write_tar(root: Path, file: Path) -> Path:
    """Write the tree ROOT to FILE atomically (unnamed file, fsync, link). Cost: one pass."""
    compressor = COMPRESSORS[suffix_of(file)]
    file = file.absolute()
    if os.path.lexists(file):
        raise RootstrapError("file already exists", subject=str(file))
    tar = [
        "tar", "--create", "--file=-", f"--directory={root}", "--format=posix",
        "--numeric-owner", "--sort=name", "--xattrs", "--xattrs-include=*", "--one-file-system",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime", ".",
    ]  # fmt: skip
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        tar[-1:-1] = [f"--mtime=@{epoch}", "--clamp-mtime"]
    # Written unnamed and linked into place whole: a killed build leaves no partial tarball
    # (HAZARDS 118). tar and the compressor die with us (rootstrap.linux.children).
    with new_file(file) as out:
        if compressor is None:
            children.run(tar, subject=str(file), stdout=out)
        else:
            with children.start(tar, subject=str(file), stdout=children.PIPE) as producer:
                with children.start(
                    compressor, subject=str(file), stdin=producer.stdout, stdout=out
                ):
                    producer.stdout.close()  # the compressor's now: EPIPE ends tar if it dies
    return file
