"""The store's tools: GNU cp, rm and tar, run by rootstrap.linux.children with the store's errors.

GNU cp, rm and tar do the bulk tree work (their copy loops use FICLONE, copy_file_range and
SEEK_HOLE in C, which a Python walk cannot match; the clone target is 1.1 x ``cp -a``:
docs/decisions.md, "Clone").
They run tied to rootstrap (a SIGKILLed clone leaves no cp behind, HAZARDS 118), with a
scrubbed environment and a logged argv. Their failures become one-line errors; "No space
left" and "Disk quota exceeded" become ResourceError (HAZARDS 109, 113) so the caller can say
"disk full" instead of a cp message.
"""

from __future__ import annotations

from typing import IO

from rootstrap.errors import ResourceError, StoreError
from rootstrap.linux import children
from rootstrap.linux.children import ENV

__all__ = ["ENV", "MISSING", "resource_error", "run_tool", "start_tool", "tool_error"]

MISSING = "install coreutils and tar"


def resource_error(text: str, subject: str) -> ResourceError | None:
    """The ResourceError a tool's stderr TEXT means, with the store's hints."""
    return children.resource_error(
        text,
        subject,
        full_hint="free space on the store's filesystem",
        quota_hint="raise the quota or remove images",
    )


def tool_error(argv: list[str], returncode: int, stderr: str, subject: str) -> Exception:
    """A failed tool run as a clean StoreError (or ResourceError) showing the command."""
    return children.describe_failure(
        argv, returncode, stderr, subject, error=StoreError, full=resource_error
    )


def run_tool(argv: list[str], *, subject: str, stdout: IO[bytes] | int | None = None) -> None:
    """Run ARGV to completion; raise StoreError/ResourceError naming SUBJECT if it fails."""
    children.run(
        argv,
        subject=subject,
        stdout=stdout,
        error=StoreError,
        failure=tool_error,
        missing_hint=MISSING,
    )


def start_tool(
    argv: list[str],
    *,
    subject: str,
    stdin: IO[bytes] | int | None = None,
    stdout: IO[bytes] | int | None = None,
) -> children.Child:
    """Start ARGV (see rootstrap.linux.children.start) with the store's errors."""
    return children.start(
        argv,
        subject=subject,
        stdin=stdin,
        stdout=stdout,
        error=StoreError,
        failure=tool_error,
        missing_hint=MISSING,
    )
