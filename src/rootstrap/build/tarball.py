"""Write a root filesystem as a reproducible tarball (``bootstrap --output FILE.tar[.zst|...]``).

GNU tar does the walking: pax format with every xattr (security.capability, ACLs), numeric
owners, names sorted, atime/ctime dropped, and with SOURCE_DATE_EPOCH every mtime clamped, so
two runs over the same mirror state give the same bytes (mmdebstrap's
check-for-bit-by-bit-identical-format-output; HAZARDS 33). gzip runs with -n: no name, no time.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from rootstrap.errors import RootstrapError, UsageError
from rootstrap.linux.fsops import fsync_dir

COMPRESSORS: dict[str, list[str] | None] = {
    ".tar": None,
    ".tar.gz": ["gzip", "-n", "-6"],
    ".tgz": ["gzip", "-n", "-6"],
    ".tar.xz": ["xz", "-T0", "-6"],
    ".tar.zst": ["zstd", "-q", "-T0", "-19"],
}

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def suffix_of(file: Path) -> str:
    name = file.name
    for suffix in sorted(COMPRESSORS, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise UsageError(
        "unknown tarball suffix", subject=str(file), hint=f"use one of {', '.join(COMPRESSORS)}"
    )


def write_tar(root: Path, file: Path) -> Path:
    """Write the tree ROOT to FILE atomically (temp name, fsync, rename). Cost: one pass."""
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
    temp = file.with_name(f".#{file.name}.{secrets.token_hex(4)}")
    producer: subprocess.Popen[bytes] | None = None
    try:
        with open(temp, "xb") as out:
            producer = subprocess.Popen(
                tar, env=ENV, stdout=subprocess.PIPE if compressor else out, stderr=subprocess.PIPE
            )
            comp_err = b""
            comp_rc = 0
            if compressor is not None:
                assert producer.stdout is not None
                comp = subprocess.run(
                    compressor, env=ENV, stdin=producer.stdout, stdout=out, stderr=subprocess.PIPE
                )
                producer.stdout.close()
                comp_rc, comp_err = comp.returncode, comp.stderr
            tar_err = producer.stderr.read() if producer.stderr else b""
            producer.wait()
            if producer.returncode != 0 or comp_rc != 0:
                detail = (tar_err or comp_err).decode(errors="replace").strip().splitlines()
                raise RootstrapError(
                    f"writing the tarball failed: {detail[-1] if detail else 'error'}",
                    subject=str(file),
                )
            os.fsync(out.fileno())
        os.rename(temp, file)
        fsync_dir(file.parent)
    except BaseException:
        # Interrupted (HAZARDS 66): tar would go on writing the unlinked temp file.
        if producer is not None and producer.poll() is None:
            producer.kill()
            producer.wait()
        temp.unlink(missing_ok=True)
        raise
    return file
