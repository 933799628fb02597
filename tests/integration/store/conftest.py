"""Store fixtures: a store on ext4 (the tmp dir), btrfs and xfs (loop filesystems), and a
source tree carrying every attribute a faithful copy must keep."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootstrap.linux import fsops
from rootstrap.store import Store
from tests.support.loopfs import loop_filesystem, missing_tools

FS_KINDS = ("ext4", "btrfs", "xfs")
BUSYBOX = shutil.which("busybox")


@pytest.fixture(scope="session")
def loop_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Mount points by filesystem kind, made on first use and unmounted at session end."""
    stack = contextlib.ExitStack()
    mounts: dict[str, Path] = {}

    class Lazy(dict[str, Path]):
        def __missing__(self, kind: str) -> Path:
            if kind == "ext4":
                path = tmp_path_factory.mktemp("ext4")
                fs = subprocess.run(
                    ["findmnt", "-no", "FSTYPE", "-T", str(path)], capture_output=True, text=True
                ).stdout.strip()
                if fs != "ext4":  # the tmp dir is not ext4 here: make one
                    path = stack.enter_context(
                        loop_filesystem("ext4", tmp_path_factory.mktemp("loop-ext4"))
                    )
            else:
                why = missing_tools(kind)
                if why:
                    pytest.skip(why)
                path = stack.enter_context(
                    loop_filesystem(kind, tmp_path_factory.mktemp(f"loop-{kind}"), size_mb=1024)
                )
            self[kind] = path
            return path

    lazy = Lazy(mounts)
    with stack:
        yield lazy


@pytest.fixture(params=FS_KINDS)
def fs_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(fs_kind: str, loop_mounts: dict[str, Path]) -> Iterator[Store]:
    """A fresh, missing store directory on the filesystem FS_KIND (created 0700 on use)."""
    if os.geteuid() != 0:
        pytest.skip("the store tests need root")
    base = loop_mounts[fs_kind] / f"s-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    yield Store(base / "machines")
    subprocess.run(["chattr", "-R", "-i", str(base)], capture_output=True)
    for entry in list(base.glob("machines/*")):
        with contextlib.suppress(OSError):
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            with contextlib.suppress(OSError):
                fsops.btrfs_set_readonly(fd, False)
            os.close(fd)
    subprocess.run(["rm", "-rf", "--one-file-system", str(base)], capture_output=True)


# A POSIX ACL xattr (acl(5) on-disk format): user::rw-, user:1234:r--, group::r--, mask::r--,
# other::---. Written raw so the tests need no acl package.
def _acl() -> bytes:
    entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 4, 1234), (0x04, 4, 0xFFFFFFFF)]
    entries += [(0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    out = (2).to_bytes(4, "little")
    for tag, perm, ident in entries:
        out += tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + ident.to_bytes(4, "little")
    return out


# security.capability v2 (VFS_CAP_REVISION_2): cap_net_raw (13) permitted + effective.
CAPABILITY = (0x02000001).to_bytes(4, "little") + (1 << 13).to_bytes(4, "little") + bytes(12)


def make_rich_tree(root: Path) -> Path:
    """A small bootable tree (static busybox) with setuid, hardlinks, xattrs, an ACL,
    security.capability, device nodes, a fifo, a sparse file, odd owners and old mtimes."""
    assert BUSYBOX, "busybox-static is needed (tests/setup-host.sh installs it)"
    for d in ("bin", "etc", "usr/lib", "dev", "proc", "sys", "tmp", "run", "root", "var/empty",
              "srv/deep/er"):  # fmt: skip
        (root / d).mkdir(parents=True, exist_ok=True)
    os.symlink("usr/lib", root / "lib")  # nspawn adds it to a read-write tree otherwise
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for tool in ("sh", "true", "touch", "cat", "ls", "id"):
        os.symlink("busybox", root / "bin" / tool)
    (root / "usr/lib/os-release").write_text('PRETTY_NAME="Rich Test"\nID=richtest\n')
    os.symlink("../usr/lib/os-release", root / "etc/os-release")
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    suid = root / "bin/suid"
    suid.write_bytes(b"#!/bin/sh\n")
    os.chmod(suid, 0o4755)
    os.chmod(root / "var/empty", 0o2750)
    (root / "srv/a").write_bytes(b"hard\n")
    os.link(root / "srv/a", root / "srv/deep/b")
    (root / "srv/x").write_bytes(b"xattrs\n")
    os.setxattr(root / "srv/x", "user.note", b"\x00binary\xff")
    os.setxattr(root / "srv/x", "system.posix_acl_access", _acl())
    (root / "srv/cap").write_bytes(b"cap\n")
    os.setxattr(root / "srv/cap", "security.capability", CAPABILITY)
    os.mknod(root / "dev/null", 0o20666, os.makedev(1, 3))
    os.mknod(root / "dev/sda", 0o60660, os.makedev(8, 0))
    os.mkfifo(root / "srv/fifo")
    with open(root / "srv/sparse", "wb") as f:
        f.seek(8 << 20)
        f.write(b"end")
    (root / "srv/owned").write_text("owned\n")
    os.chown(root / "srv/owned", 1000, 2000)
    os.lchown(root / "bin/sh", 3, 4)
    (root / "srv/blob").write_bytes(os.urandom(2 << 20))
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        os.utime(
            path, ns=(1_000_000_000_123_456_789, 1_000_000_000_123_456_789), follow_symlinks=False
        )
    os.utime(root, ns=(1_000_000_000_000_000_007, 1_000_000_000_000_000_007))
    return root


@pytest.fixture(scope="session")
def rich_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_rich_tree(tmp_path_factory.mktemp("rich") / "tree")


def listing(root: Path) -> dict[str, tuple[object, ...]]:
    """Every attribute a faithful copy keeps, per relative path (hardlinks as groups)."""
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    paths = [root, *sorted(root.rglob("*"))]
    for path in paths:
        rel = str(path.relative_to(root))
        st = os.lstat(path)
        xattrs = tuple(
            sorted(
                (k, os.getxattr(path, k, follow_symlinks=False))
                for k in os.listxattr(path, follow_symlinks=False)
                # xfs also shows its on-disk form of the ACL as trusted.SGI_ACL_*
                if k != "user.rootstrap.origin" and not k.startswith("trusted.SGI_ACL_")
            )
        )
        link = os.readlink(path) if os.path.islink(path) else None
        data = None
        if os.path.isfile(path) and not os.path.islink(path):
            data = path.read_bytes()
        group = None
        if st.st_nlink > 1 and not os.path.isdir(path):
            group = inodes.setdefault(st.st_ino, rel)
        sparse = bool(data) and st.st_blocks * 512 < st.st_size // 2
        out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_rdev, link, xattrs,
                    data, group, sparse)  # fmt: skip
    return out


def cli(
    store: Store, *args: str, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run ``rootstrap --store STORE ARGS`` as a user would; returns the finished process."""
    proc = subprocess.run(
        [sys.executable, "-m", "rootstrap", "--store", str(store.root), *args],
        capture_output=True,
        text=True,
        **kw,  # type: ignore[arg-type]
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"rootstrap {' '.join(args)} failed:\n{proc.stderr}")
    return proc
