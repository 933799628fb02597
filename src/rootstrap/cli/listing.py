"""``list-images`` output, and its lean entry point (argparse, no typer).

list-images has a budget of 0.2 s with 50 images (issue 7), and importing typer alone costs about
that on a loaded machine, so ``rootstrap/__main__.py`` routes this verb here, past cli/app.py
(``rootstrap.cli``'s own __init__ imports only the standard library and rootstrap.errors). This
module therefore imports only the standard library, rootstrap.cli, rootstrap.errors and
rootstrap.store; cli/images.py reuses its formatting for the other verbs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rootstrap.cli import report
from rootstrap.errors import RootstrapError

if TYPE_CHECKING:
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


def lean_main(argv: list[str]) -> int:
    """``rootstrap [global options] list-images [--all] [--json]`` without typer."""
    parser = argparse.ArgumentParser(prog="rootstrap", add_help=True)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("verb", choices=["list-images"])
    parser.add_argument("-a", "--all", action="store_true", help="Show hidden images too")
    parser.add_argument("--json", action="store_true", help="Machine-readable output")
    args = parser.parse_args(argv)
    try:
        from rootstrap.paths import store_dir
        from rootstrap.store import Store

        print(render_images(Store(Path(store_dir(args.store))).images(all=args.all), args.json))
    except RootstrapError as exc:
        return report(exc, args.debug)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    return 0


main = lean_main
