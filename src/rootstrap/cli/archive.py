"""Verbs that read an archive: info and resolve."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    del app
