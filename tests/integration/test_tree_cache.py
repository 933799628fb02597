"""The configured-tree cache through the real command line, against the local signed archive.

Real bookworm minbase .debs and real maintainer scripts, as in test_bootstrap_local.py (whose
module-scoped archive these tests share the recipe of, but build their own to keep their
download cache apart). Each test starts from an empty cache: the first build of a package set
leaves a marker, the second saves the tree, the third restores it without downloading a .deb.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_bootstrap_local import (
    Mirror,
    _start,
    assert_clean_failure,
    bootstrap_args,
    descendants,
    hidden_entries,
    leftovers,
    mirror,
    rootstrap,
    still_alive,
    wait_for,
)

pytestmark = [pytest.mark.network, pytest.mark.slow]

__all__ = ["mirror"]  # the module-scoped fixture, used by name

#: Files customize writes for each machine: they differ between two machines by design.
MACHINE_FILES = {"etc/hostname", "etc/hosts"}


RESTORED = "the configured tree from the cache"


def build(mirror: Mirror, store: Path, cache: Path, name: str, *extra: str) -> tuple[Path, bool]:
    """Bootstrap NAME; return the image and whether its configured tree was restored."""
    result = rootstrap(*bootstrap_args(mirror, store, name, *extra, cache=cache, tree_cache=True))
    assert result.returncode == 0, result.stderr
    return store / name, RESTORED in result.stderr


def served_debs(mirror: Mirror, since: int) -> list[str]:
    return [r.path for r in mirror.server.requests[since:] if r.path.endswith(".deb")]


def saved_tree(mirror: Mirror, store: Path, cache: Path) -> str:
    """Build images a and b (the second saves the tree); return the tree's key."""
    for name in ("a", "b"):
        build(mirror, store, cache, name)
    (key,) = trees(cache)
    return key


def trees(cache: Path) -> list[str]:
    path = cache / "trees"
    return (
        sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
        if path.exists()
        else []
    )


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry: type and mode bits, owner, and the content's or link's identity."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                what: object = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            else:
                what = st.st_rdev
            found[rel] = (st.st_mode, st.st_uid, st.st_gid, what)
    return found


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "cache"


def test_third_build_restores_the_second_ones_tree(
    mirror: Mirror, tmp_path: Path, cache: Path
) -> None:
    store = tmp_path / "store"
    first, restored = build(mirror, store, cache, "first")
    assert not restored and trees(cache) == [], "a first build only leaves a marker"
    assert len(list((cache / "trees/.seen").iterdir())) == 1
    assert build(mirror, store, cache, "second")[1] is False
    (key,) = trees(cache)
    assert (cache / "trees" / key).stat().st_mode & 0o777 == 0o700  # it holds /etc/shadow

    shutil.rmtree(cache / "debs")  # a restored tree needs no .deb: none is fetched
    since = len(mirror.server.requests)
    third, restored = build(mirror, store, cache, "third")
    assert restored and served_debs(mirror, since) == []

    ours, theirs = snapshot(third), snapshot(first)
    assert ours.keys() == theirs.keys()
    differ = {p for p in ours if ours[p] != theirs[p]}
    assert differ == MACHINE_FILES, differ
    assert (third / "etc/hostname").read_text() == "third\n"
    assert "third" in (third / "etc/hosts").read_text()
    assert (third / "etc/machine-id").read_text() == ""
    for cmd in (["dpkg", "--audit"], ["dpkg", "--verify"], ["apt-get", "check", "-q"]):
        inside = rootstrap("run", "-D", str(third), "--", *cmd)
        assert inside.returncode == 0, (cmd, inside.stderr)
        assert cmd[1] == "check" or inside.stdout == "", (cmd, inside.stdout)
    assert leftovers(store) == ["first", "second", "third"]


def test_another_package_set_is_another_tree(mirror: Mirror, tmp_path: Path, cache: Path) -> None:
    store = tmp_path / "store"
    plain = saved_tree(mirror, store, cache)
    image, restored = build(mirror, store, cache, "c", "--include", "greeter")
    assert not restored and (image / "usr/bin/greeter").is_file()
    assert trees(cache) == [plain], "a first build of the new set only leaves its marker"

    listed = rootstrap("--cache-dir", str(cache), "cache", "list")
    assert listed.returncode == 0 and "\n1 configured trees, " in listed.stdout, listed.stdout
    cleaned = rootstrap("--cache-dir", str(cache), "cache", "clean")
    assert cleaned.returncode == 0 and "removed 1 configured trees" in cleaned.stdout
    assert trees(cache) == [] and not (cache / "trees").exists()


def test_no_tree_cache_neither_reads_nor_writes(
    mirror: Mirror, tmp_path: Path, cache: Path
) -> None:
    store = tmp_path / "store"
    saved_tree(mirror, store, cache)
    result = rootstrap(*bootstrap_args(mirror, store, "c", cache=cache))  # --no-tree-cache
    assert result.returncode == 0, result.stderr
    assert RESTORED not in result.stderr and "essential" in result.stderr
    (cache / "trees").rename(tmp_path / "trees-aside")
    for name in ("d", "e"):
        assert rootstrap(*bootstrap_args(mirror, store, name, cache=cache)).returncode == 0
    assert not (cache / "trees").exists()


def test_a_tree_with_a_host_key_is_never_saved(mirror: Mirror, tmp_path: Path, cache: Path) -> None:
    store = tmp_path / "store"
    keys = []
    for name in ("a", "b", "c"):
        image, restored = build(mirror, store, cache, name, "--include", "host-keys")
        assert not restored
        keys.append((image / "etc/ssh/ssh_host_ed25519_key").read_text())
    assert trees(cache) == []
    assert len(set(keys)) == 3, "every machine made its own key"


def test_a_damaged_tree_is_dropped_and_the_build_goes_the_slow_way(
    mirror: Mirror, tmp_path: Path, cache: Path
) -> None:
    store = tmp_path / "store"
    first, _ = build(mirror, store, cache, "a")
    build(mirror, store, cache, "b")
    (key,) = trees(cache)
    part = cache / "trees" / key / "files-0.tar.zst"
    data = bytearray(part.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = os.urandom(64)  # same size: past find()
    part.write_bytes(bytes(data))

    result = rootstrap(*bootstrap_args(mirror, store, "c", cache=cache, tree_cache=True))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "files-0.tar.zst" in line]
    assert len(warnings) == 1 and "building it again" in warnings[0], result.stderr
    ours, theirs = snapshot(store / "c"), snapshot(first)
    assert {p for p in ours if ours[p] != theirs[p]} == MACHINE_FILES
    # Saved again by the slow build (its key was seen), and whole this time.
    assert trees(cache) == [key]
    assert build(mirror, store, cache, "d")[1] is True


def test_a_truncated_tree_is_not_used(mirror: Mirror, tmp_path: Path, cache: Path) -> None:
    store = tmp_path / "store"
    key = saved_tree(mirror, store, cache)
    part = cache / "trees" / key / "files-1.tar.zst"
    os.truncate(part, part.stat().st_size // 2)  # a crash before the data reached the disk
    image, restored = build(mirror, store, cache, "c")
    assert not restored and (image / "usr/bin/bash").is_file()


def test_disk_full_while_restoring_leaves_nothing(mirror: Mirror, tmp_path: Path) -> None:
    """ENOSPC in a restore worker is the bootstrap's disk-full error, not a damaged cache."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(small)], check=True)
    try:
        cache = tmp_path / "cache"
        store = tmp_path / "store"
        key = saved_tree(mirror, store, cache)
        result = rootstrap(
            *bootstrap_args(mirror, small / "store", "c", cache=cache, tree_cache=True)
        )
        text = assert_clean_failure(result)
        assert "disk full" in text, text
        assert leftovers(small / "store") == []
        assert trees(cache) == [key], "the cached tree was fine: kept"
    finally:
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.hazard(33)
def test_a_restored_build_gives_the_same_tarball_as_a_cold_one(
    mirror: Mirror, tmp_path: Path, cache: Path
) -> None:
    """With SOURCE_DATE_EPOCH, the tarball of a build from the tree cache is the tarball of a
    build from the .debs, byte for byte: the cache changes how fast, never what."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    store = tmp_path / "store"
    outputs = [tmp_path / f"{n}.tar" for n in ("cold", "second", "restored")]
    said = []
    for out in outputs:
        result = rootstrap(
            *bootstrap_args(mirror, store, "--output", str(out), cache=cache, tree_cache=True),
            env=env,
        )
        assert result.returncode == 0, result.stderr
        said.append(RESTORED in result.stderr)
    assert said == [False, False, True]
    digests = {hashlib.sha256(out.read_bytes()).hexdigest() for out in outputs}
    assert len(digests) == 1


@pytest.mark.hazard(66)
def test_sigterm_while_restoring_leaves_nothing(
    mirror: Mirror, tmp_path: Path, cache: Path
) -> None:
    store = tmp_path / "store"
    saved_tree(mirror, store, cache)
    proc = _start(bootstrap_args(mirror, store, "sig", cache=cache, tree_cache=True))
    try:
        # The directories part comes first: usr/share/doc while the file parts are extracted.
        wait_for(
            lambda: any((h / "usr/share/doc").is_dir() for h in hidden_entries(store, "sig")),
            120,
            "the restore",
        )
        children = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and "Traceback" not in stderr, stderr
    assert "error: interrupted" in stderr, stderr
    assert leftovers(store) == ["a", "b"]
    wait_for(lambda: not still_alive(children), 10, "the restore workers to exit")
    assert build(mirror, store, cache, "after")[1] is True, "the cached tree is intact"


@pytest.mark.hazard(107)
def test_a_cache_too_small_for_the_tree_costs_a_warning_not_the_build(
    mirror: Mirror, tmp_path: Path
) -> None:
    """The second build's save hits ENOSPC on the cache's filesystem: the image is still made,
    one warning says why the tree was not kept, and no partial entry stays behind."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(small)], check=True)
    try:
        cache, store = small / "cache", tmp_path / "store"
        build(mirror, store, cache, "a")  # the .debs (~31 MB) fit; the tree (~90 MB) will not
        result = rootstrap(*bootstrap_args(mirror, store, "b", cache=cache, tree_cache=True))
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines() if "tree not cached" in line]
        assert len(warnings) == 1 and "No space left on device" in warnings[0], result.stderr
        assert (store / "b/usr/bin/bash").is_file()
        assert sorted(p.name for p in (cache / "trees").iterdir()) == [".seen"]
    finally:
        subprocess.run(["umount", str(small)], check=True)
