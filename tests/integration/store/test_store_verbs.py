"""Every image verb on ext4, btrfs and xfs, through the API and the command line."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rootstrap.errors import ImageExists, ImageNotFound, StoreError, UsageError
from rootstrap.linux import fsops
from rootstrap.store import ImageType, Store, read_origin
from tests.integration.store.conftest import cli, listing


def _shared_extents(path: Path) -> bool:
    """True if FIEMAP reports a shared extent in PATH (a reflink or snapshot, not a copy)."""
    out = subprocess.run(["filefrag", "-v", str(path)], capture_output=True, text=True).stdout
    return "shared" in out


@pytest.mark.hazard(81)
def test_import_fs_and_clone_keep_every_attribute(store: Store, rich_tree: Path, fs_kind: str):
    """import-fs then clone: owners, modes, setuid, hardlinks, xattrs, ACL, capability,
    devices, fifo, holes and mtimes all equal; btrfs snapshots, xfs/btrfs share extents."""
    want = listing(rich_tree)
    cli(store, "import-fs", str(rich_tree), "base")
    assert listing(store.root / "base") == want
    cli(store, "clone", "base", "copy")
    assert listing(store.root / "copy") == want
    assert listing(store.root / "base") == want, "the source changed"
    base, copy = store.image("base"), store.image("copy")
    if fs_kind == "btrfs":
        assert base.type is ImageType.SUBVOLUME and copy.type is ImageType.SUBVOLUME
        assert _shared_extents(store.root / "copy/srv/blob")
    elif fs_kind == "xfs":
        assert copy.type is ImageType.DIRECTORY
        assert _shared_extents(store.root / "copy/srv/blob"), "xfs clone did not reflink"
    else:
        assert copy.type is ImageType.DIRECTORY
        assert not _shared_extents(store.root / "copy/srv/blob")
    assert sorted(os.listdir(store.root)) == [".rootstrap-usage.json", "base", "copy"] or sorted(
        os.listdir(store.root)
    ) == ["base", "copy"]


def test_list_show_status(store: Store, rich_tree: Path):
    store.import_fs(rich_tree, "one")
    with store.create("two") as new:
        new.make_dir()
        shutil.copytree(rich_tree / "etc", new.path / "etc", symlinks=True)
        shutil.copytree(rich_tree / "usr", new.path / "usr", symlinks=True)
        new.publish(origin={"recipe": "debian-bookworm", "mirror": "http://mirror.invalid/d"})
    store.clone("one", ".secret")
    out = cli(store, "list-images").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "RO", "USAGE", "CREATED", "MODIFIED"]
    assert [line.split()[0] for line in lines[1:3]] == ["one", "two"]
    assert lines[-1] == "2 images listed."
    assert "n/a" not in lines[1].split()[3], "usage must be a real figure"
    assert ".secret" in cli(store, "list-images", "--all").stdout
    rows = json.loads(cli(store, "list-images", "--json").stdout)
    assert [r["name"] for r in rows] == ["one", "two"]
    assert rows[0]["usage"] > 2 << 20 and rows[0]["ro"] is False
    assert rows[0]["created"] and rows[0]["modified"]

    show = dict(line.split("=", 1) for line in cli(store, "show-image", "two").stdout.splitlines())
    assert show["Name"] == "two" and show["ReadOnly"] == "no" and show["Running"] == "no"
    assert "PRETTY_NAME=Rich Test" in show["OSRelease"]
    assert json.loads(show["Origin"])["recipe"] == "debian-bookworm"
    status = cli(store, "image-status", "two").stdout
    assert "OS: Rich Test" in status and "Recipe: debian-bookworm" in status
    assert "State: stopped" in status
    assert read_origin(store.root / "two") == {
        "recipe": "debian-bookworm",
        "mirror": "http://mirror.invalid/d",
    }
    empty = Store(store.root.parent / "nothing")
    assert empty.images() == []


def test_usage_cache_follows_changes(store: Store, rich_tree: Path):
    store.import_fs(rich_tree, "img")
    first = store.images()[0].usage
    assert first is not None
    cache = json.loads((store.root / ".rootstrap-usage.json").read_text())
    assert [v["bytes"] for v in cache.values()] == [first]
    (store.root / "img/big").write_bytes(os.urandom(3 << 20))
    second = store.images()[0].usage
    assert second is not None and second >= first + (3 << 20)
    store.rename("img", "moved")  # keyed by inode: still cached, same figure
    assert store.images()[0].usage == second


def test_os_release_symlink_stays_in_root(store: Store, rich_tree: Path, host_sentinel: Path):
    """An image whose os-release points at an absolute host path reads its own, not the host's."""
    store.import_fs(rich_tree, "img")
    root = store.root / "img"
    (root / "etc/os-release").unlink()
    (root / "usr/lib/os-release").unlink()
    os.symlink(str(host_sentinel / "etc/passwd"), root / "etc/os-release")
    info = json.loads(cli(store, "show-image", "img", "--json").stdout)
    assert info["os_release"] == {}


def test_rename_and_remove(store: Store, rich_tree: Path):
    store.import_fs(rich_tree, "a")
    cli(store, "rename", "a", "b")
    assert not (store.root / "a").exists() and (store.root / "b/bin/busybox").exists()
    with pytest.raises(ImageNotFound):
        store.path("a")
    r = cli(store, "rename", "b", "bad_name", check=False)
    assert r.returncode == 2 and "'_'" in r.stderr and "Traceback" not in r.stderr
    cli(store, "clone", "b", "c")
    cli(store, "remove", "b", "c")
    assert [e for e in os.listdir(store.root) if not e.startswith(".rootstrap")] == []
    r = cli(store, "remove", "b", check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: b: no such image")


@pytest.mark.hazard(75, 76)
def test_read_only(store: Store, rich_tree: Path, fs_kind: str):
    store.import_fs(rich_tree, "img")
    cli(store, "read-only", "img")
    assert store.image("img").read_only
    assert json.loads(cli(store, "list-images", "--json").stdout)[0]["ro"] is True
    with pytest.raises(OSError) as err:
        (store.root / "img/new").write_text("x")
    assert err.value.errno in (errno.EPERM, errno.EROFS)
    if fs_kind != "btrfs":  # chattr +i on the top directory only, as machined does
        assert subprocess.run(["lsattr", "-d", str(store.root / "img")], capture_output=True,
                              text=True).stdout.split()[0].count("i") == 1  # fmt: skip
    # rename keeps the flag (cleared and restored around the rename), remove is allowed
    cli(store, "rename", "img", "img2")
    assert store.image("img2").read_only
    cli(store, "read-only", "img2", "no")
    assert not store.image("img2").read_only
    (store.root / "img2/new").write_text("x")
    cli(store, "read-only", "img2", "yes")
    cli(store, "remove", "img2")
    assert not os.path.lexists(store.root / "img2")
    bad = cli(store, "read-only", "img2", "maybe", check=False)
    assert bad.returncode == 2 and "expected a boolean" in bad.stderr
    store.import_fs(rich_tree, "hidden")
    store.rename("hidden", ".hidden")  # imports cannot make a hidden image; rename can
    r = cli(store, "read-only", ".hidden", check=False)
    assert r.returncode == 2 and "hidden images cannot be made read-only" in r.stderr
    assert not store.image(".hidden").read_only


@pytest.mark.hazard(75)
def test_read_only_unsupported_filesystem(tmp_path: Path, rich_tree: Path):
    """ramfs has no FS_IOC_SETFLAGS: a clean "not supported on this filesystem"."""
    mnt = tmp_path / "ramfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], check=True)
    try:
        os.chmod(mnt, 0o700)
        store = Store(mnt / "machines")
        (tmp_path / "small/etc").mkdir(parents=True)
        store.import_fs(tmp_path / "small", "img")
        r = cli(store, "read-only", "img", check=False)
        assert r.returncode == 1
        assert r.stderr.splitlines() == [
            "error: img: the read-only flag is not supported on this filesystem",
            "hint: chattr +i needs ext4, xfs, btrfs or tmpfs",
        ]
        assert not store.image("img").read_only
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.hazard(71)
def test_clean_removes_only_leftovers(store: Store, rich_tree: Path):
    store.import_fs(rich_tree, "keep")
    store.clone("keep", ".hidden")
    os.mkdir(store.root / ".#gone.abcd1234")
    (store.root / ".#gone.abcd1234/file").write_text("half")
    live = store.create("busy")  # a live creator holds the name: its temp stays
    live.make_dir()
    out = cli(store, "clean").stdout
    assert out.splitlines() == ["removed .#gone.abcd1234"]
    assert os.path.isdir(live.path) and (store.root / "keep").is_dir()
    assert (store.root / ".hidden").is_dir()
    live.discard()
    assert not os.path.lexists(live.path)
    cli(store, "clean", "--hidden")
    assert not os.path.lexists(store.root / ".hidden") and (store.root / "keep").is_dir()


def _state(path: Path) -> object:
    if path.is_dir() and not path.is_symlink():
        return listing(path)
    st = os.lstat(path)
    return (st.st_ino, st.st_mode, st.st_mtime_ns, os.readlink(path) if path.is_symlink() else
            path.read_bytes())  # fmt: skip


@pytest.mark.hazard(68)
@pytest.mark.parametrize("kind", ["dir", "empty-dir", "file", "symlink"])
def test_target_exists(store: Store, rich_tree: Path, tmp_path: Path, kind: str):
    store.import_fs(rich_tree, "src")
    dst = store.root / "dst"
    if kind == "dir":
        dst.mkdir()
        (dst / "mine").write_text("keep")
    elif kind == "empty-dir":
        dst.mkdir()
    elif kind == "file":
        dst.write_text("keep")
    else:
        dst.symlink_to(tmp_path)
    before = _state(dst)
    for args in (["clone", "src", "dst"], ["import-fs", str(rich_tree), "dst"]):
        r = cli(store, *args, check=False)
        assert r.returncode == 1 and "error: dst: image already exists" in r.stderr
    assert _state(dst) == before
    assert not [e for e in os.listdir(store.root) if e.startswith(".#")]
    with pytest.raises(ImageExists):
        store.rename("src", "dst")
    # the race the check cannot see: the name appears while the tree is being built
    with store.create("late") as new:
        new.make_dir()
        (store.root / "late").mkdir()
        with pytest.raises(ImageExists):
            new.publish()
    assert os.listdir(store.root / "late") == []
    assert not [e for e in os.listdir(store.root) if e.startswith(".#")]


def test_force_replaces(store: Store, rich_tree: Path):
    store.import_fs(rich_tree, "src")
    (store.root / "dst").mkdir()
    (store.root / "dst/old").write_text("old")
    cli(store, "clone", "--force", "src", "dst")
    assert not (store.root / "dst/old").exists() and (store.root / "dst/bin/busybox").exists()
    assert not [e for e in os.listdir(store.root) if e.startswith(".#")]


@pytest.mark.hazard(67)
@pytest.mark.parametrize("fs_kind", ["ext4"])  # the rules do not depend on the filesystem
@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "-rf", ".#x", "a" * 65, "a\x01b", "é",
                                 "a..b", "-a", "a-", "a_b", ".host"])  # fmt: skip
def test_bad_names_create_nothing(store: Store, rich_tree: Path, bad: str):
    store.import_fs(rich_tree, "src")
    before = sorted(os.listdir(store.root))
    for args in (["clone", "--", "src", bad], ["import-fs", "--", str(rich_tree), bad],
                 ["rename", "--", "src", bad]):  # fmt: skip
        r = cli(store, *args, check=False)
        assert r.returncode == 2, (args, r.stderr)
        assert "not a valid image name: " in r.stderr and "Traceback" not in r.stderr
    assert sorted(os.listdir(store.root)) == before
    with pytest.raises(UsageError):
        store.path(bad)


@pytest.mark.hazard(79)
def test_store_root_rules(tmp_path: Path, rich_tree: Path):
    missing = Store(tmp_path / "deep/missing")
    missing.import_fs(rich_tree, "img")
    assert os.stat(missing.root).st_mode & 0o777 == 0o700
    loose = Store(tmp_path / "loose")
    loose.root.mkdir(mode=0o755)
    os.chmod(loose.root, 0o755)
    assert loose.images() == []  # reading does not change it
    loose.import_fs(rich_tree, "img")
    assert os.stat(loose.root).st_mode & 0o777 == 0o700
    link = Store(tmp_path / "link")
    link.root.symlink_to(missing.root)
    theirs = Store(tmp_path / "theirs")
    theirs.root.mkdir(mode=0o700)
    os.chown(theirs.root, 1000, 1000)
    world = Store(tmp_path / "world")
    world.root.mkdir()
    os.chmod(world.root, 0o777)
    for bad, text in ((link, "the store is a symlink"), (theirs, "owned by uid 1000"),
                      (world, "writable by others")):  # fmt: skip
        r = cli(bad, "clone", "img", "other", check=False)
        assert r.returncode == 1 and text in r.stderr and "Traceback" not in r.stderr
        r = cli(bad, "list-images", check=False)
        assert r.returncode == 1 and text in r.stderr
    assert sorted(os.listdir(missing.root)) in (["img"], [".rootstrap-usage.json", "img"])


@pytest.mark.hazard(80)
def test_symlink_entry(store: Store, rich_tree: Path, host_sentinel: Path):
    store.import_fs(rich_tree, "real")
    os.symlink(host_sentinel, store.root / "evil")
    assert store.image("evil").link == str(host_sentinel)
    r = cli(store, "read-only", "evil", check=False)
    assert r.returncode == 1 and "is a symlink" in r.stderr
    cli(store, "remove", "evil")
    assert not os.path.lexists(store.root / "evil")
    assert (host_sentinel / "etc/passwd").exists()


def test_export_refuses_unknown_suffix(store: Store, rich_tree: Path, tmp_path: Path):
    store.import_fs(rich_tree, "img")
    r = cli(store, "export-tar", "img", str(tmp_path / "x.zip"), check=False)
    assert r.returncode == 2 and "cannot tell the format" in r.stderr
    assert not list(tmp_path.glob("*x.zip*"))


def test_birth_time_and_fs_probe(store: Store, rich_tree: Path, fs_kind: str):
    store.import_fs(rich_tree, "img")
    fd = os.open(store.root / "img", os.O_RDONLY)
    try:
        assert fsops.birth_time(fd) is not None
        assert fsops.is_btrfs_subvolume(fd) == (fs_kind == "btrfs")
    finally:
        os.close(fd)


def test_remove_keeps_store_when_tool_fails(store: Store, rich_tree: Path):
    """StoreError from remove is one clean line."""
    with pytest.raises(StoreError):
        store.remove("nothere")


def test_bootstrap_api_temp_publish_discard(store: Store, rich_tree: Path):
    """The calls the bootstrap makes: a hidden temp on the store's filesystem, then publish
    (origin recorded, read-only if asked) or discard (nothing left)."""
    temp = store.temp_path("deb")
    assert temp.parent == store.root and temp.name.startswith(".#deb.")
    mount = ["findmnt", "-no", "TARGET", "-T"]
    assert (
        subprocess.run([*mount, str(temp)], capture_output=True).stdout
        == subprocess.run([*mount, str(store.root)], capture_output=True).stdout
    )  # same filesystem (a btrfs subvolume has its own st_dev)
    shutil.copytree(rich_tree / "usr", temp / "usr", symlinks=True)
    assert store.images(all=True) == []
    with pytest.raises(StoreError):
        store.publish(temp, "other")
    path = store.publish(temp, "deb", origin={"recipe": "debian-bookworm"}, read_only=True)
    assert path == store.root / "deb" and not os.path.lexists(temp)
    assert read_origin(path) == {"recipe": "debian-bookworm"}
    assert store.image("deb").read_only
    gone = store.temp_path("gone")
    (gone / "half").write_text("x")
    store.discard(gone)
    assert not os.path.lexists(gone) and not os.path.lexists(store.root / "gone")
