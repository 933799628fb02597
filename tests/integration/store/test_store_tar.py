"""import-tar and export-tar: round trips on every filesystem, wrapped trees, hostile archives."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from rootstrap.store import Store
from tests.integration.store.conftest import cli, listing


def _visible(store: Store) -> list[str]:
    return sorted(e for e in os.listdir(store.root) if not e.startswith("."))


def _no_holes(entries: dict[str, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
    return {k: v[:-1] for k, v in entries.items()}  # tar keeps the zeros, not the holes


def _tar_listing(path: Path) -> list[str]:
    """GNU tar's verbose listing with numeric owners: what mmdebstrap's tests compare."""
    out = subprocess.run(
        ["tar", "--list", "--verbose", "--numeric-owner", "--full-time", "-f", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()


@pytest.mark.hazard(78)
@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tar.xz", ".tar.zst"])
def test_export_import_round_trip(store: Store, rich_tree: Path, tmp_path: Path, suffix: str):
    """Owners, modes, setuid, xattrs, security.capability, ACL, hardlinks, symlinks, devices,
    holes and mtimes survive export then import; a second export lists identically."""
    store.import_fs(rich_tree, "img")
    first = tmp_path / f"img{suffix}"
    cli(store, "export-tar", "img", str(first))
    cli(store, "import-tar", str(first), "back")
    want = _no_holes(listing(store.root / "img"))
    got = _no_holes(listing(store.root / "back"))
    assert got == want
    second = tmp_path / f"again{suffix}"
    cli(store, "export-tar", "back", str(second))
    assert _tar_listing(second) == _tar_listing(first)
    assert [e for e in os.listdir(store.root) if e.startswith(".#")] == []
    r = cli(store, "export-tar", "img", str(first), check=False)
    assert r.returncode == 1 and "file already exists" in r.stderr
    cli(store, "export-tar", "--force", "img", str(first))


@pytest.mark.hazard(78)
def test_round_trip_keeps_top_directory_mtime(store: Store, rich_tree: Path, tmp_path: Path):
    store.import_fs(rich_tree, "img")
    cli(store, "export-tar", "img", str(tmp_path / "img.tar"))
    cli(store, "import-tar", str(tmp_path / "img.tar"), "back")
    assert listing(store.root / "back")["."] == listing(store.root / "img")["."]


@pytest.mark.hazard(69)
def test_wrapped_tree_is_lifted(store: Store, rich_tree: Path, tmp_path: Path):
    archive = tmp_path / "wrapped.tar.gz"
    subprocess.run(
        ["tar", "--create", "--gzip", "--file", str(archive), "--numeric-owner", "--xattrs",
         "--xattrs-include=*", f"--directory={rich_tree.parent}",
         "--transform=s,^tree,debian-rootfs,", "tree"],
        check=True,
    )  # fmt: skip
    cli(store, "import-tar", str(archive))  # the name defaults to the file's: "wrapped"
    root = store.root / "wrapped"
    assert (root / "bin/busybox").is_file() and (root / "etc/os-release").is_symlink()
    assert not (root / "debian-rootfs").exists()
    want = {k: v for k, v in _no_holes(listing(rich_tree)).items() if k != "."}
    assert {k: v for k, v in _no_holes(listing(root)).items() if k != "."} == want
    # a single directory that is not an OS tree is imported as it is
    plain = tmp_path / "plain.tar"
    (tmp_path / "data/only").mkdir(parents=True)
    (tmp_path / "data/only/file").write_text("x")
    subprocess.run(["tar", "-cf", str(plain), "-C", str(tmp_path / "data"), "only"], check=True)
    cli(store, "import-tar", str(plain), "plain")
    assert (store.root / "plain/only/file").read_text() == "x"


def _hostile(path: Path, kind: str) -> None:
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes = b"x", **kw: object) -> None:
            info = tarfile.TarInfo(name)
            for k, v in kw.items():
                setattr(info, k, v)
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)

        add("etc/", type=tarfile.DIRTYPE, mode=0o755)
        add("etc/os-release", b"ID=x\n")
        if kind == "dotdot":
            add("../../../escape", b"pwned")
        elif kind == "absolute":
            add("/tmp/escape-abs", b"pwned")
        elif kind == "symlink-then-file":
            add("etc/link", type=tarfile.SYMTYPE, linkname="/tmp")
            add("etc/link/escape-sym", b"pwned")
        elif kind == "hardlink-escape":
            add("etc/hl", type=tarfile.LNKTYPE, linkname="../../../../etc/passwd")


@pytest.mark.hazard(70)
@pytest.mark.parametrize("fs_kind", ["ext4"])
@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink-then-file", "hardlink-escape"])
def test_hostile_archive_leaves_nothing(
    store: Store, tmp_path: Path, host_sentinel: Path, kind: str
):
    """'..' and escaping hardlinks are refused with nothing in the store; an absolute member
    or a file through an archive symlink lands inside the image (rows 49, 50), never outside."""
    archive = tmp_path / f"{kind}.tar"
    _hostile(archive, kind)
    store.check(create=True)
    r = cli(store, "import-tar", str(archive), "evil", check=False)
    for leak in (Path("/tmp/escape-abs"), Path("/tmp/escape-sym"), store.root.parent / "escape"):
        assert not leak.exists()
    assert "Traceback" not in r.stderr
    if kind in ("dotdot", "hardlink-escape"):
        assert r.returncode == 1 and r.stderr.startswith("error: evil: "), r.stderr
        assert os.listdir(store.root) == []
    elif r.returncode == 0:
        inside = "tmp/escape-abs" if kind == "absolute" else "tmp/escape-sym"
        assert (store.root / "evil" / inside).read_bytes() == b"pwned"
    else:
        assert os.listdir(store.root) == []


def test_import_errors_are_clean(store: Store, tmp_path: Path):
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"\xfd7zXZ\x00" + os.urandom(200))
    r = cli(store, "import-tar", str(junk), "junk", check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = cli(store, "import-tar", str(tmp_path / "missing.tar"), "x", check=False)
    assert r.returncode == 2 and "no such file" in r.stderr
    assert _visible(store) == [] and not [e for e in os.listdir(store.root) if e.startswith(".#")]
