"""Image verbs, as machinectl names them: show-image, image-status, clone, rename, remove,
read-only, import-tar, export-tar, import-fs, clean (list-images is a lean verb:
cli/listing.py). Thin: parse, call rootstrap.store, print. The store is ``--store`` /
``ROOTSTRAP_STORE`` (default /var/lib/machines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rootstrap.cli.app import settings
from rootstrap.cli.listing import format_bytes, format_time, image_json
from rootstrap.errors import UsageError

if TYPE_CHECKING:
    from rootstrap.store import Store

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing image")]
ReadOnlyOpt = Annotated[bool, typer.Option("--read-only", help="Mark the new image read-only")]


def _store() -> Store:
    from rootstrap.store import Store

    return Store(settings.store)


def _details(name: str) -> dict[str, Any]:
    from rootstrap.store import read_origin, read_os_release

    store = _store()
    image = store.image(name, usage=True, fresh=True)
    target = image.path.resolve()
    info = image_json(image)
    info["running"] = store.running(name)
    info["os_release"] = read_os_release(target) if target.is_dir() else {}
    info["origin"] = read_origin(target) if target.is_dir() else None
    return info


def show_image(name: str, as_json: JsonOpt = False) -> None:
    """Show the properties of image NAME as KEY=VALUE lines (like machinectl show-image)."""
    info = _details(name)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    origin = info["origin"] or {}
    props = {
        "Name": info["name"],
        "Path": info["path"],
        "Type": info["type"],
        "ReadOnly": "yes" if info["ro"] else "no",
        "CreationTimestamp": info["created"] or "",
        "ModificationTimestamp": info["modified"] or "",
        "Usage": info["usage"] if info["usage"] is not None else "",
        "Running": "yes" if info["running"] else "no",
        "OSRelease": " ".join(f"{k}={v}" for k, v in sorted(info["os_release"].items())),
        "Origin": json.dumps(origin, sort_keys=True) if origin else "",
    }
    for key, value in props.items():
        print(f"{key}={value}")


def image_status(name: str, as_json: JsonOpt = False) -> None:
    """Show image NAME for a human: type, path, flags, usage, times, OS, origin, state."""
    info = _details(name)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    osr = info["os_release"]
    origin = info["origin"] or {}
    lines = [
        ("Type", info["type"] + (f" (symlink to {info['link']})" if info["link"] else "")),
        ("Path", info["path"]),
        ("RO", "read-only" if info["ro"] else "writable"),
        ("Usage", format_bytes(info["usage"])),
        ("Created", format_time(info["created"] and info["created"] / 1e6)),
        ("Modified", format_time(info["modified"] and info["modified"] / 1e6)),
        ("OS", osr.get("PRETTY_NAME") or osr.get("NAME") or "n/a"),
        ("Recipe", str(origin.get("recipe", "n/a"))),
        ("Mirror", str(origin.get("mirror", "n/a"))),
        ("State", "running" if info["running"] else "stopped"),
    ]
    print(info["name"])
    for key, value in lines:
        print(f"{key:>9}: {value}")


def clone(src: str, dst: str, read_only: ReadOnlyOpt = False, force: ForceOpt = False) -> None:
    """Clone image SRC as DST (btrfs snapshot, reflink copy, or a faithful copy)."""
    _store().clone(src, dst, read_only=read_only, force=force)


def rename(old: str, new: str) -> None:
    """Rename image OLD to NEW."""
    _store().rename(old, new)


def remove(names: Annotated[list[str], typer.Argument(metavar="NAME...")]) -> None:
    """Remove images (never a running one; a symlink entry is only unlinked)."""
    store = _store()
    for name in names:
        store.remove(name)


def read_only(
    name: str,
    value: Annotated[str, typer.Argument(metavar="[BOOL]", help="Default: yes")] = "yes",
) -> None:
    """Mark image NAME read-only (or writable with BOOL=no)."""
    from rootstrap.rules import parse_boolean

    _store().set_read_only(name, parse_boolean(value))


def import_tar(
    file: Path,
    name: Annotated[str | None, typer.Argument(help="Default: FILE without its suffix")] = None,
    read_only: ReadOnlyOpt = False,
    force: ForceOpt = False,
) -> None:
    """Import a tar archive (plain, .gz, .xz, .zst) as an image. Not verified
    cryptographically (as machinectl): import only archives you trust to be what they say."""
    from rootstrap.store.transfer import name_from_file

    if not file.is_file():
        raise UsageError("no such file", subject=str(file))
    _store().import_tar(
        file, name if name is not None else name_from_file(file), read_only=read_only, force=force
    )


def export_tar(
    name: str,
    file: Path,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE")] = False,
) -> None:
    """Export image NAME as a tar archive; the compression follows FILE's suffix."""
    _store().export_tar(name, file, force=force)


def import_fs(
    directory: Annotated[Path, typer.Argument(metavar="DIR")],
    name: Annotated[str | None, typer.Argument(help="Default: the directory's name")] = None,
    read_only: ReadOnlyOpt = False,
    force: ForceOpt = False,
) -> None:
    """Copy a directory tree into the store as an image."""
    _store().import_fs(
        directory,
        name if name is not None else directory.absolute().name,
        read_only=read_only,
        force=force,
    )


def clean(
    hidden: Annotated[
        bool, typer.Option("--hidden", help="Also remove hidden images not in use")
    ] = False,
) -> None:
    """Remove the hidden leftovers (.#NAME.xxxx) of interrupted commands."""
    for entry in _store().clean(hidden=hidden):
        if settings.verbosity >= 0:
            print(f"removed {entry}")


def register(app: typer.Typer) -> None:
    app.command("show-image")(show_image)
    app.command("image-status")(image_status)
    app.command("clone")(clone)
    app.command("rename")(rename)
    app.command("remove")(remove)
    app.command("read-only")(read_only)
    app.command("import-tar")(import_tar)
    app.command("export-tar")(export_tar)
    app.command("import-fs")(import_fs)
    app.command("clean")(clean)
