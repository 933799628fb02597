"""Verbs of this group are added by their issue; see DESIGN.md, Command line."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    del app
