"""The store's one subprocess helper: scrubbed environment, logged argv, clean errors.

GNU cp, rm and tar do the bulk tree work (their copy loops use FICLONE, copy_file_range and
SEEK_HOLE in C, which a Python walk cannot match; the clone target is 1.1 x ``cp -a``:
docs/decisions.md, "Clone"). Their failures become one-line errors; "No space left" and "Disk quota
exceeded" become ResourceError (HAZARDS 109, 113) so the caller can say "disk full" instead of a cp
message.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from pathlib import Path
from typing import IO

from rootstrap.errors import ResourceError, StoreError

log = logging.getLogger(__name__)

# LC_ALL=C: the messages are matched below; PATH: no user directory can shadow cp or tar.
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def resource_error(text: str, subject: str) -> ResourceError | None:
    """The ResourceError a tool's stderr TEXT means, if it reports a full disk or a quota."""
    if "No space left on device" in text:
        return ResourceError(
            "disk full", subject=subject, hint="free space on the store's filesystem"
        )
    if "Disk quota exceeded" in text:
        return ResourceError(
            "quota exceeded", subject=subject, hint="raise the quota or remove images"
        )
    return None


def tool_error(argv: list[str], returncode: int, stderr: str, subject: str) -> Exception:
    """Map a failed tool run to a clean error showing the command to rerun."""
    full = resource_error(stderr, subject)
    if full is not None:
        return full
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit status {returncode}"
    return StoreError(
        f"{Path(argv[0]).name} failed: {last}", subject=subject, hint=f"command: {shlex.join(argv)}"
    )


def run_tool(argv: list[str], *, subject: str, stdout: IO[bytes] | int | None = None) -> None:
    """Run ARGV to completion; raise StoreError/ResourceError naming SUBJECT if it fails."""
    log.debug("+ %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            argv,
            env=ENV,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
    except FileNotFoundError as exc:
        raise StoreError(
            f"{argv[0]} is not installed", subject=subject, hint="install coreutils and tar"
        ) from exc
    if proc.returncode != 0:
        raise tool_error(argv, proc.returncode, proc.stderr.decode(errors="replace"), subject)
