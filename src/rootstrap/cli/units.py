"""Placeholder: being written (issue 10)."""

from __future__ import annotations

from rootstrap.errors import UsageError


def main(*args: object) -> int:
    raise UsageError("not implemented yet")
