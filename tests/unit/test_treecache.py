"""treecache.py on real trees: GNU tar writes the parts, the dirfd-safe extractor reads them back.

The command-line behaviour (marker, save, restore, a damaged entry rebuilt the slow way) is in
tests/integration/test_tree_cache.py; here each function is taken alone, on small trees built
in tmp_path with what a real root holds: odd modes, setuid, foreign owners, every link kind,
a device node, names that are not UTF-8, nanosecond mtimes.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from rootstrap.build.treecache import (
    KEEP,
    SEEN,
    DamagedTree,
    Entry,
    TreeCache,
    find_secret,
    partition,
    restore,
    tree_key,
)

UID, GID = 1234, 1234
T_FILE = 1_600_000_000_123_456_789
T_DIR = 1_500_000_000_987_654_321
CAFE = b"caf\xe9"

Snapshot = dict[bytes, tuple[object, ...]]


def p(root: Path, name: bytes) -> bytes:
    return os.path.join(bytes(root), name)


def write(root: Path, name: bytes, data: bytes, mode: int = 0o644) -> None:
    path = p(root, name)
    with open(path, "xb") as f:
        f.write(data)
    os.chmod(path, mode)


def build_tree(root: Path) -> None:
    """A small root with every kind of entry treecache must carry over."""
    root.mkdir()
    for d, mode in [
        (b"etc", 0o755),
        (b"root", 0o700),
        (b"tmp", 0o1777),
        (b"usr", 0o755),
        (b"usr/bin", 0o755),
        (b"usr/share", 0o755),
        (b"usr/share/doc", 0o2775),
        (b"ro", 0o555),  # files go into it before its mode is applied
        (b"home", 0o755),
        (b"home/user", 0o750),
    ]:
        os.mkdir(p(root, d))
        os.chmod(p(root, d), mode)
    os.chown(p(root, b"home/user"), UID, GID)
    write(root, b"etc/empty", b"")
    write(root, b"etc/hostname-like", b"builder\n")
    write(root, b"usr/bin/su", b"\x7fELF setuid", 0o4755)
    os.chown(p(root, b"usr/bin/su"), UID, GID)
    os.chmod(p(root, b"usr/bin/su"), 0o4755)  # chown cleared it
    write(root, b"usr/bin/wall", b"sgid", 0o2755)
    write(root, b"home/user/.profile", b"owned\n", 0o600)
    os.chown(p(root, b"home/user/.profile"), UID, GID)
    write(root, b"root/secret-ish", b"0700 dir\n", 0o600)
    write(root, b"ro/inside", b"in a 0555 dir\n", 0o444)
    write(root, b"usr/share/doc/with space", b"a name with a space\n")
    write(root, b"usr/share/" + CAFE, b"latin-1 name\n", 0o640)
    # A hard-linked pair whose names are in different directories.
    write(root, b"usr/bin/perl", b"one inode, two names\n", 0o755)
    os.link(p(root, b"usr/bin/perl"), p(root, b"usr/share/perl-again"))
    os.symlink(b"../share/doc", p(root, b"usr/bin/rel-link"))
    os.symlink(b"/etc/hostname-like", p(root, b"etc/abs-link"))
    os.symlink(b"does/not/exist", p(root, b"etc/dangling"))
    os.lchown(p(root, b"etc/dangling"), UID, GID)
    os.mkdir(p(root, b"dev"))
    os.mknod(p(root, b"dev/null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(p(root, b"dev/null"), 0o666)
    os.mkfifo(p(root, b"dev/fifo"), 0o600)
    # mtimes last, files and links first, then directories deepest first.
    for dirpath, dirnames, filenames in os.walk(bytes(root), topdown=False):
        for i, name in enumerate(sorted(filenames + [d for d in dirnames if is_link(dirpath, d)])):
            os.utime(
                os.path.join(dirpath, name), ns=(T_FILE + i, T_FILE + i), follow_symlinks=False
            )
        for i, name in enumerate(sorted(d for d in dirnames if not is_link(dirpath, d))):
            os.utime(os.path.join(dirpath, name), ns=(T_DIR + i, T_DIR + i))


def is_link(dirpath: bytes, name: bytes) -> bool:
    return os.path.islink(os.path.join(dirpath, name))


def snapshot(root: Path) -> Snapshot:
    """Every entry below ROOT (not ROOT itself): type, mode, owner, mtime, links, payload."""
    out: Snapshot = {}
    base = bytes(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            payload: object = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    payload = f.read()
            elif stat.S_ISLNK(st.st_mode):
                payload = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                payload = st.st_rdev
            xattrs = {}
            if not stat.S_ISLNK(st.st_mode):
                xattrs = {
                    k: os.getxattr(path, k)
                    for k in os.listxattr(path)
                    if k.startswith(("user.", "trusted."))
                }
            out[os.path.relpath(path, base)] = (
                stat.S_IFMT(st.st_mode),
                oct(stat.S_IMODE(st.st_mode)),
                st.st_uid,
                st.st_gid,
                st.st_mtime_ns,
                st.st_nlink,
                payload,
                xattrs,
            )
    return out


def saved(tmp_path: Path, root: Path, key: str = "k") -> tuple[TreeCache, Entry]:
    cache = TreeCache(tmp_path / "cache")
    assert cache.save(root, key) == cache.dir / key
    entry = cache.find(key)
    assert entry is not None
    return cache, entry


def restored(tmp_path: Path, entry: Entry, name: str = "out") -> Path:
    out = tmp_path / name
    out.mkdir()
    restore(entry, out, None)
    return out


# --------------------------------------------------------------------------- round trip


def test_round_trip_reproduces_every_entry(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_tree(root)
    before = snapshot(root)
    assert len(before) >= 25 and before[b"dev/null"][6] == os.makedev(1, 3)
    _, entry = saved(tmp_path, root)
    assert [f.name for f in entry.files] == ["files-0.tar.zst", "files-1.tar.zst"]
    assert entry.dirs.name == "dirs.tar.zst"
    out = restored(tmp_path, entry)
    after = snapshot(out)
    assert sorted(after) == sorted(before)
    for name, value in before.items():
        assert after[name] == value, name
    # The source tree is untouched by saving it.
    assert snapshot(root) == before


def test_round_trip_keeps_a_hard_link_one_inode(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_tree(root)
    _, lists = partition(root, 2)
    [holder] = [lst for lst in lists if b"usr/bin/perl" in lst]
    assert b"usr/share/perl-again" in holder
    _, entry = saved(tmp_path, root)
    out = restored(tmp_path, entry)
    a, b = os.lstat(p(out, b"usr/bin/perl")), os.lstat(p(out, b"usr/share/perl-again"))
    assert a.st_ino == b.st_ino and a.st_nlink == 2
    assert os.lstat(p(out, b"usr/bin/su")).st_ino != a.st_ino


def test_round_trip_keeps_user_xattrs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write(root, b"f", b"data")
    os.mkdir(root / "d")
    try:
        os.setxattr(root / "f", "user.rootstrap", b"\x00\xffvalue")
    except OSError as exc:
        pytest.skip(f"no user.* xattrs on {tmp_path}: {exc.strerror}")
    os.setxattr(root / "d", "user.dir", b"on a directory")
    os.setxattr(root / "f", "trusted.overlay.x", b"y")  # root only
    _, entry = saved(tmp_path, root)
    out = restored(tmp_path, entry)
    assert os.getxattr(out / "f", "user.rootstrap") == b"\x00\xffvalue"
    assert os.getxattr(out / "f", "trusted.overlay.x") == b"y"
    assert os.getxattr(out / "d", "user.dir") == b"on a directory"


def test_an_empty_tree_round_trips(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _, entry = saved(tmp_path, root)
    out = restored(tmp_path, entry)
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- partition


DIR_SIZES = [19, 15, 13, 11, 10, 9, 8, 7, 5, 3]  # 100 files in 10 directories


def test_partition_orders_dirs_and_balances_whole_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    expected: set[bytes] = set()
    for i, count in enumerate(DIR_SIZES):
        d = f"d{i}/sub".encode() if i % 3 == 0 else f"d{i}".encode()
        os.makedirs(p(root, d))
        for j in range(count):
            write(root, d + f"/f{j}".encode(), b"x")
            expected.add(d + f"/f{j}".encode())
    os.symlink("d1", root / "link-to-dir")  # a symlink to a directory is not a directory
    expected.add(b"link-to-dir")
    dirs, lists = partition(root, 2)
    assert dirs[0] == b"."
    assert len(dirs) == len(set(dirs)) == 1 + 10 + 4
    for i, name in enumerate(dirs[1:], 1):
        parent = os.path.dirname(name) or b"."
        assert parent in dirs[:i], f"{name!r} before its parent"
        assert os.path.isdir(p(root, name)) and not os.path.islink(p(root, name))
    flat = [n for lst in lists for n in lst]
    assert len(flat) == len(set(flat)) and set(flat) == expected
    assert len(lists) == 2
    assert abs(len(lists[0]) - len(lists[1])) <= max(DIR_SIZES)
    for i in range(10):  # a directory's files stay together
        holders = {k for k, lst in enumerate(lists) for n in lst if n.startswith(f"d{i}/".encode())}
        assert len(holders) == 1, i


def test_partition_with_more_parts_than_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write(root, b"only", b"")
    dirs, lists = partition(root, 4)
    assert dirs == [b"."]
    assert sorted(lists, key=len) == [[], [], [], [b"only"]]


# --------------------------------------------------------------------------- the key

PACKAGES = [
    ("base-files", "12.4", "amd64", "a" * 64),
    ("libc6", "2.36-9", "amd64", "b" * 64),
    ("dpkg", "1.21.22", "amd64", "c" * 64),
]
ESSENTIAL = ["base-files", "libc6", "dpkg"]


def key(
    packages: Iterable[tuple[str, str, str, str]] = tuple(PACKAGES),
    essential: Sequence[str] = tuple(ESSENTIAL),
    arch: str = "amd64",
    merged_usr: bool = True,
    hostname: str = "rootstrap",
) -> str:
    return tree_key(packages, essential, arch=arch, merged_usr=merged_usr, hostname=hostname)


def test_tree_key_is_deterministic_and_takes_any_iterable() -> None:
    assert key() == key() == key(packages=iter(PACKAGES), essential=tuple(ESSENTIAL))
    assert len(key()) == 32 and int(key(), 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"packages": [PACKAGES[0], ("libc6", "2.36-9+deb12u1", "amd64", "b" * 64), PACKAGES[2]]},
        {"packages": [PACKAGES[0], ("libc6", "2.36-9", "amd64", "d" * 64), PACKAGES[2]]},
        {"packages": [PACKAGES[0], ("libc6", "2.36-9", "i386", "b" * 64), PACKAGES[2]]},
        {"packages": [PACKAGES[1], PACKAGES[0], PACKAGES[2]]},
        {"packages": [*PACKAGES, ("less", "590-2", "amd64", "e" * 64)]},
        {"packages": PACKAGES[:2]},
        {"essential": ["base-files", "libc6"]},
        {"essential": ["libc6", "base-files", "dpkg"]},
        {"arch": "arm64"},
        {"merged_usr": False},
        {"hostname": "other"},
    ],
    ids=[
        "version",
        "sha256",
        "pkg-arch",
        "order",
        "one-more",
        "one-less",
        "essential",
        "essential-order",
        "arch",
        "merged-usr",
        "hostname",
    ],
)
def test_tree_key_changes_with_anything_that_shapes_the_tree(change: dict[str, Any]) -> None:
    assert key(**change) != key()


# --------------------------------------------------------------------------- find


def test_find_a_missing_key_is_none(tmp_path: Path) -> None:
    cache = TreeCache(tmp_path / "cache")
    assert cache.find("nope") is None
    assert not cache.dir.exists()
    assert cache.entries() == [] and cache.size() == 0


def test_find_drops_an_entry_whose_part_has_the_wrong_size(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_tree(root)
    cache, entry = saved(tmp_path, root)
    with open(entry.files[1], "ab") as f:
        f.write(b"\0")
    assert cache.find("k") is None
    assert not entry.path.exists()
    assert cache.entries() == []


def test_find_drops_a_truncated_part(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_tree(root)
    cache, entry = saved(tmp_path, root)
    os.truncate(entry.dirs, entry.dirs.stat().st_size - 1)
    assert cache.find("k") is None
    assert not entry.path.exists()


@pytest.mark.parametrize(
    "text",
    [
        "{not json", "", "null", "[]", '{"key": "k"}',
        '{"key": "k", "sizes": [1]}',  # sizes not an object
        '{"key": "k", "sizes": {}}',  # names no part: restore would have no worker to run
    ],
)  # fmt: skip
def test_find_drops_an_entry_whose_manifest_is_bad(tmp_path: Path, text: str) -> None:
    root = tmp_path / "root"
    build_tree(root)
    cache, entry = saved(tmp_path, root)
    (entry.path / "manifest.json").write_text(text)
    assert cache.find("k") is None
    assert not entry.path.exists()


def test_find_reads_the_manifest_sizes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_tree(root)
    cache, entry = saved(tmp_path, root)
    manifest = json.loads((entry.path / "manifest.json").read_text())
    assert manifest["key"] == "k"
    assert manifest["sizes"] == {
        n: (entry.path / n).stat().st_size
        for n in ["dirs.tar.zst", "files-0.tar.zst", "files-1.tar.zst"]
    }
    assert sorted(f.name for f in entry.path.iterdir()) == [
        "dirs.tar.zst",
        "files-0.tar.zst",
        "files-1.tar.zst",
        "manifest.json",
    ]
    assert cache.size() == sum(f.stat().st_size for f in entry.path.iterdir())


def test_a_key_with_a_missing_part_can_be_saved_again(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_tree(root)
    cache, entry = saved(tmp_path, root)
    entry.files[0].unlink()
    assert cache.find("k") is None
    assert not entry.path.exists(), "dropped: else no later save of the key could land"
    cache.save(root, "k")
    assert cache.find("k") is not None


# --------------------------------------------------------------------------- offer, secrets


def tree_files(cache: TreeCache) -> list[str]:
    return sorted(str(f.relative_to(cache.dir)) for f in cache.dir.rglob("*"))


def test_offer_saves_on_the_second_build(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_tree(root)
    cache = TreeCache(tmp_path / "cache")
    assert cache.offer(root, "k") is None
    assert tree_files(cache) == [".seen", ".seen/k"]
    assert cache.find("k") is None
    assert cache.offer(root, "k") == cache.dir / "k"
    entry = cache.find("k")
    assert entry is not None and entry.path == cache.dir / "k"
    assert cache.entries() == [cache.dir / "k"]
    assert snapshot(restored(tmp_path, entry)) == snapshot(root)


def test_offer_remembers_at_most_seen_keys(tmp_path: Path) -> None:
    cache = TreeCache(tmp_path / "cache")
    seen = cache.dir / ".seen"
    seen.mkdir(parents=True)
    for i in range(SEEN):
        (seen / f"old{i:03}").touch()
        os.utime(seen / f"old{i:03}", (1000 + i, 1000 + i))
    assert cache.offer(tmp_path, "new") is None
    names = sorted(f.name for f in seen.iterdir())
    assert len(names) == SEEN and "new" in names and "old000" not in names and "old001" in names


def test_a_tree_with_a_host_key_is_never_saved(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_tree(root)
    os.makedirs(root / "etc/ssh")
    (root / "etc/ssh/ssh_host_ed25519_key").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert find_secret(root) == "etc/ssh/ssh_host_ed25519_key"
    cache = TreeCache(tmp_path / "cache")
    assert cache.offer(root, "k") is None
    assert cache.offer(root, "k") is None
    assert cache.save(root, "k") is None
    assert cache.find("k") is None and cache.entries() == []
    assert [f.name for f in cache.dir.iterdir()] == [".seen"]


def test_dbus_machine_id_is_a_secret_only_as_a_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    os.makedirs(root / "var/lib/dbus")
    os.makedirs(root / "etc/ssh")
    (root / "etc/ssh/sshd_config").write_text("not a host key\n")
    (root / "etc/machine-id").write_text("")
    assert find_secret(root) is None
    (root / "var/lib/dbus/machine-id").symlink_to("/etc/machine-id")
    assert find_secret(root) is None
    (root / "var/lib/dbus/machine-id").unlink()
    (root / "var/lib/dbus/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    assert find_secret(root) == "var/lib/dbus/machine-id"


@pytest.mark.parametrize(
    "secret",
    [
        "etc/ssl/private/ssl-cert-snakeoil.key",
        "etc/dropbear/dropbear_ed25519_host_key",
        "etc/dropbear-initramfs/dropbear_rsa_host_key",
        "var/lib/systemd/random-seed",
        "var/lib/systemd/credential.secret",
    ],
)
def test_find_secret_names_each_kind(tmp_path: Path, secret: str) -> None:
    path = tmp_path / secret
    path.parent.mkdir(parents=True)
    path.write_bytes(b"secret")
    assert find_secret(tmp_path) == secret


# --------------------------------------------------------------------------- prune


def fake_entries(cache: TreeCache, count: int) -> list[Path]:
    """COUNT entry directories, oldest first (prune looks at nothing but their mtimes)."""
    paths = []
    for i in range(count):
        path = cache.dir / f"key{i}"
        path.mkdir(parents=True)
        (path / "dirs.tar.zst").write_bytes(b"x" * 10)
        os.utime(path, (1_700_000_000 + 60 * i, 1_700_000_000 + 60 * i))
        paths.append(path)
    return paths


def test_prune_keeps_the_most_recently_used(tmp_path: Path) -> None:
    cache = TreeCache(tmp_path / "cache")
    paths = fake_entries(cache, KEEP + 2)
    # The oldest but one is used now: it stays, the two others least recently used go.
    cache.touch(Entry(paths[1], paths[1] / "dirs.tar.zst", ()))
    assert paths[1].stat().st_mtime > paths[-1].stat().st_mtime
    (cache.dir / ".seen").mkdir()
    cache.prune()
    assert cache.entries() == sorted([paths[1], *paths[-(KEEP - 1) :]])
    assert (cache.dir / ".seen").is_dir()
    assert cache.size() == 10 * KEEP


@pytest.mark.hazard(121)
def test_prune_removes_leftovers_of_killed_saves_not_saves_in_progress(tmp_path: Path) -> None:
    """A save holds an flock on its .new- directory; one nobody holds is a killed save's,
    removed at once (however recent), one held is being written and stays."""
    cache = TreeCache(tmp_path / "cache")
    killed, writing = cache.dir / ".new-0123456789ab", cache.dir / ".new-ba9876543210"
    for leftover in (killed, writing):
        (leftover / "sub").mkdir(parents=True)
        (leftover / "sub/dirs.tar.zst").write_bytes(b"partial")
    fd = os.open(writing, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        cache.prune()
    finally:
        os.close(fd)
    assert not killed.exists()
    assert (writing / "sub/dirs.tar.zst").exists()
    assert cache.entries() == []


def test_save_prunes_to_keep(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write(root, b"f", b"x")
    cache = TreeCache(tmp_path / "cache")
    paths = fake_entries(cache, KEEP)
    assert cache.save(root, "new") == cache.dir / "new"
    assert cache.entries() == sorted([cache.dir / "new", *paths[1:]])


def test_clean_removes_everything(tmp_path: Path) -> None:
    cache = TreeCache(tmp_path / "cache")
    fake_entries(cache, 3)
    (cache.dir / ".seen").mkdir()
    (cache.dir / ".seen/k").touch()
    assert cache.clean() == 3
    assert not cache.dir.exists()
    assert cache.clean() == 0


# --------------------------------------------------------------------------- damaged parts


def busy_tree(root: Path) -> None:
    """Enough incompressible bytes that each part has a middle to corrupt."""
    root.mkdir()
    for d in range(4):
        os.mkdir(root / f"d{d}")
        for f in range(6):
            (root / f"d{d}/f{f}").write_bytes(os.urandom(4096))


@pytest.mark.parametrize("part", ["dirs.tar.zst", "files-0.tar.zst", "files-1.tar.zst"])
def test_restore_of_a_part_corrupted_in_the_middle_raises(tmp_path: Path, part: str) -> None:
    root = tmp_path / "root"
    busy_tree(root)
    cache, entry = saved(tmp_path, root)
    path = entry.path / part
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        old = f.read(32)
        new = bytes(b ^ (r | 1) for b, r in zip(old, os.urandom(32), strict=True))
        f.seek(size // 2)
        f.write(new)
    assert path.stat().st_size == size
    found = cache.find("k")  # the size still matches: the damage shows only when read
    assert found == entry
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DamagedTree) as raised:
        restore(entry, out, None)
    assert raised.value.subject == part
    assert "cannot read back" in raised.value.message


def test_restore_of_a_part_removed_after_find_raises(tmp_path: Path) -> None:
    root = tmp_path / "root"
    busy_tree(root)
    _, entry = saved(tmp_path, root)
    entry.files[1].unlink()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DamagedTree) as raised:
        restore(entry, out, None)
    assert raised.value.message == "removed while in use"
    assert raised.value.subject == str(entry.files[1])
    assert list(out.iterdir()) == []  # nothing extracted before every part is open


def test_restore_after_clean_raises(tmp_path: Path) -> None:
    root = tmp_path / "root"
    busy_tree(root)
    cache, entry = saved(tmp_path, root)
    cache.clean()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DamagedTree, match="removed while in use"):
        restore(entry, out, None)


def test_restore_over_the_byte_cap_fails(tmp_path: Path) -> None:
    root = tmp_path / "root"
    busy_tree(root)
    _, entry = saved(tmp_path, root)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DamagedTree):
        restore(entry, out, 8192)


# --------------------------------------------------------------------------- concurrent saves


def test_a_second_save_of_a_key_keeps_the_first(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    build_tree(first)
    second.mkdir()
    write(second, b"other", b"the second build's tree\n")
    cache, entry = saved(tmp_path, first)
    parts = {f.name: f.read_bytes() for f in entry.path.iterdir()}
    assert cache.save(second, "k") == cache.dir / "k"
    assert {f.name: f.read_bytes() for f in entry.path.iterdir()} == parts
    assert [f.name for f in cache.dir.iterdir()] == ["k"]  # no .new-* left
    again = cache.find("k")
    assert again == entry
    assert snapshot(restored(tmp_path, again)) == snapshot(first)


def test_a_failed_save_leaves_nothing(tmp_path: Path) -> None:
    cache = TreeCache(tmp_path / "cache")
    with pytest.raises(FileNotFoundError):
        cache.save(tmp_path / "missing", "k")
    assert list(cache.dir.iterdir()) == []
