"""``list-images`` output, and the verb itself (a lean verb: no typer).

list-images has a budget of 0.2 s with 50 images (issue 7), and importing typer alone costs
0.1-0.3 s here (bench/README.md, "Start-up"), so cli/verbs.py routes it to the lean door. This
module imports only the standard library, rootstrap.errors and (when listing) rootstrap.store;
cli/images.py reuses its formatting for the other image verbs.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from rootstrap.cli.options import parse
from rootstrap.errors import UsageError

if TYPE_CHECKING:
    from rootstrap.cli.options import Globals
    from rootstrap.store import Image


def format_bytes(n: int | None) -> str:
    """systemd's FORMAT_BYTES: 1024-based, one decimal (``312.4M``), ``n/a`` when unknown."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024:
            return f"{n}B" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}P"


def format_time(t: float | None) -> str:
    """systemd's format_timestamp: ``Sun 2026-11-29 19:55:01 UTC`` (local zone)."""
    if t is None:
        return "n/a"
    return time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(t))


def _usec(t: float | None) -> int | None:
    return None if t is None else int(t * 1_000_000)


def image_json(image: Image) -> dict[str, Any]:
    """machinectl's JSON fields (name type ro usage created modified; times in µs) + ours."""
    return {
        "name": image.name,
        "type": str(image.type),
        "ro": image.read_only,
        "usage": image.usage,
        "created": _usec(image.created),
        "modified": _usec(image.modified),
        "path": str(image.path),
        "hidden": image.hidden,
        "link": image.link,
    }


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        " ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def render_images(images: list[Image], as_json: bool) -> str:
    """The list-images output: machinectl's columns and footer, or JSON."""
    if as_json:
        return json.dumps([image_json(i) for i in images], indent=2)
    if not images:
        return "No images."
    rows = [["NAME", "TYPE", "RO", "USAGE", "CREATED", "MODIFIED"]]
    for i in images:
        rows.append(
            [
                i.name,
                str(i.type),
                "yes" if i.read_only else "no",
                format_bytes(i.usage),
                format_time(i.created),
                format_time(i.modified),
            ]
        )
    return table(rows) + f"\n\n{len(images)} images listed."


def main(verb: str, args: list[str], g: Globals) -> int:
    """``rootstrap [global options] list-images [--all] [--json]``; the global options may
    also follow the verb here (they always could)."""
    from rootstrap.cli.verbs import BY_NAME

    entry = BY_NAME[verb]
    p = parse(verb, args, entry.options)
    if p.help:
        print(
            entry.usage("The images in the store, as machinectl list-images shows them.\n"), end=""
        )
        return 0
    if p.names():
        raise UsageError(f"unexpected argument {p.names()[0]}", hint=entry.synopsis)
    g.take(p)
    from pathlib import Path

    from rootstrap.store import Store

    print(render_images(Store(Path(g.store)).images(all=p.flag("all")), p.flag("json")))
    return 0
