"""Fixtures shared across the suite: keys, signed local archives, fault-injecting servers, and
the roots and images tests run things in.

Registered for every test by tests/conftest.py. Use them by name::

    def test_x(local_mirror):                      # a small signed archive, already served
        local_mirror.url                           # "http://127.0.0.1:PORT"
        local_mirror.keyring                       # binary keyring file
        local_mirror.archive                       # tests.support.archive.Archive (tamper + resign)
        local_mirror.server.fault("*/InRelease", "status", code=404)
        local_mirror.suite, local_mirror.codename  # "stable", "bookworm"
        mirror2 = local_mirror.serve_again()       # same archive, second server (fallback tests)

    def test_y(archive_factory, fault_server, other_key):
        arch = archive_factory([DebSpec("a")], valid_until=timedelta(days=-1))
        srv = fault_server(arch.root)              # stopped at teardown
        arch.resign(key=other_key)

    def test_z(bb_root, debian_root, boot_store):
        bb_root                                    # a fresh busybox-static root (writable)
        debian_root                                # debootstrap's bookworm minbase (read it only)
        boot_store / BOOT_IMAGE                    # rootstrap's bookworm + systemd-sysv, dbus

Session-scoped: ``test_key``, ``other_key`` (unrelated), ``expired_key`` (EXPKEYSIG),
``debian_root`` and ``boot_store``. The last two are made on demand from the host's mirror and
kept in TEST_CACHE (tests/support/testcache.py) between sessions; whichever test asks first
makes them, in any directory and any order. ``MIRROR_PACKAGES`` is the spec list
``local_mirror`` serves (names in its docstring).
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.archive import Archive, TestKey, build_archive
from tests.support.debs import DebSpec
from tests.support.realdebs import debootstrap_tree
from tests.support.server import FaultServer
from tests.support.testcache import TEST_CACHE

__all__ = [
    "BOOT_IMAGE",
    "BOOT_STORE",
    "MIRROR_PACKAGES",
    "MIRROR_UPDATES",
    "LocalMirror",
    "make_busybox_root",
]

_SH = "#!/bin/sh\nset -e\n"

#: A tiny dependency graph, Debian-like in priorities so variant seeds mean something:
#:   base-files (Essential, required), libc6 (required, Multi-Arch same),
#:   dash (Essential, Pre-Depends libc6, Provides sh), coreutils (Essential, Depends libc6),
#:   libfoo1 (>= 1.0 wanted), hello (optional, Depends libfoo1 (>= 1.0) | libfoo-compat, dash),
#:   mail-transport-agent providers exim-lite and postfix-lite (Conflicts each other),
#:   tools (important, Recommends hello, Depends coreutils), data-all (Architecture all),
#:   foreign-arm (arm64, must be ignored on amd64), cycle-a <-> cycle-b (Depends cycle).
MIRROR_PACKAGES: tuple[DebSpec, ...] = (
    DebSpec(
        "base-files",
        "12.4",
        essential=True,
        priority="required",
        section="admin",
        files={"etc/debian_version": b"12.4\n", "etc/os-release": b"ID=debian\nVERSION_ID=12\n"},
        conffiles=("/etc/debian_version",),
        multi_arch="foreign",
    ),
    DebSpec(
        "libc6",
        "2.36-9",
        priority="required",
        section="libs",
        multi_arch="same",
        files={"usr/lib/x86_64-linux-gnu/libc.so.6": b"\x7fELF fake libc\n"},
        symlinks={"lib64": "usr/lib64"},
    ),
    DebSpec(
        "dash",
        "0.5.12-2",
        essential=True,
        priority="required",
        section="shells",
        pre_depends="libc6 (>= 2.34)",
        provides="sh",
        files={"usr/bin/dash": b"\x7fELF fake dash\n"},
        modes={"usr/bin/dash": 0o755},
        symlinks={"usr/bin/sh": "dash"},
        scripts={"postinst": _SH + "exit 0\n"},
    ),
    DebSpec(
        "coreutils",
        "9.1-1",
        essential=True,
        priority="required",
        section="utils",
        pre_depends="libc6 (>= 2.34)",
        files={"usr/bin/true": b"\x7fELF fake true\n"},
        modes={"usr/bin/true": 0o755},
    ),
    DebSpec(
        "libfoo1",
        "1.2-1",
        section="libs",
        depends="libc6 (>= 2.30)",
        multi_arch="same",
        files={"usr/lib/x86_64-linux-gnu/libfoo.so.1": b"foo\n"},
    ),
    DebSpec(
        "hello",
        "2.10-3",
        depends="libfoo1 (>= 1.0) | libfoo-compat, dash",
        files={"usr/bin/hello": _SH.encode() + b"echo hello\n"},
        modes={"usr/bin/hello": 0o755},
        scripts={"postinst": _SH + "exit 0\n", "prerm": _SH + "exit 0\n"},
    ),
    DebSpec(
        "exim-lite",
        "4.96-1",
        priority="optional",
        section="mail",
        provides="mail-transport-agent",
        conflicts="mail-transport-agent",
        replaces="mail-transport-agent",
        depends="libc6",
    ),
    DebSpec(
        "postfix-lite",
        "3.7.9-1",
        priority="optional",
        section="mail",
        provides="mail-transport-agent",
        conflicts="mail-transport-agent",
        replaces="mail-transport-agent",
        depends="libc6",
    ),
    DebSpec(
        "tools",
        "1.0",
        priority="important",
        section="utils",
        depends="coreutils",
        recommends="hello",
        breaks="hello (<< 2.0)",
    ),
    DebSpec(
        "data-all",
        "1.0",
        arch="all",
        multi_arch="foreign",
        files={"usr/share/data-all/README": b"architecture independent\n"},
    ),
    DebSpec("foreign-arm", "1.0", arch="arm64"),
    DebSpec("cycle-a", "1.0", depends="cycle-b"),
    DebSpec("cycle-b", "1.0", depends="cycle-a"),
)

#: What ``local_mirror`` puts in ``<codename>-updates``: a newer hello.
MIRROR_UPDATES: tuple[DebSpec, ...] = (
    DebSpec(
        "hello",
        "2.10-3+deb12u1",
        depends="libfoo1 (>= 1.0) | libfoo-compat, dash",
        files={"usr/bin/hello": _SH.encode() + b"echo hello, updated\n"},
        modes={"usr/bin/hello": 0o755},
    ),
)


@dataclass
class LocalMirror:
    """A built and served archive: what a test needs to point rootstrap at it."""

    url: str
    keyring: Path
    archive: Archive
    server: FaultServer
    suite: str
    codename: str
    start_server: Callable[..., FaultServer]

    def serve_again(self, **kwargs: Any) -> FaultServer:
        """Another server on the same archive (a second mirror); closed at teardown."""
        return self.start_server(self.archive.root, **kwargs)


@pytest.fixture(scope="session")
def test_key() -> Iterator[TestKey]:
    """The archive key most tests sign with (ed25519, generated once per session)."""
    with TestKey.generate() as key:
        yield key


@pytest.fixture(scope="session")
def other_key() -> Iterator[TestKey]:
    """An unrelated key: signatures by it are NO_PUBKEY for ``test_key``'s keyring."""
    with TestKey.generate("Unrelated Key <other@example.invalid>") as key:
        yield key


@pytest.fixture(scope="session")
def expired_key() -> Iterator[TestKey]:
    """A key that expired in 2020; its signatures (dated then) give EXPKEYSIG."""
    with TestKey.generate("Expired Key <expired@example.invalid>", expired=True) as key:
        yield key


ArchiveFactory = Callable[..., Archive]


@pytest.fixture
def archive_factory(tmp_path: Path, test_key: TestKey) -> ArchiveFactory:
    """``archive_factory(packages, **build_archive_kwargs) -> Archive`` under tmp_path.

    ``key`` defaults to ``test_key``; ``root`` to a fresh ``tmp_path/archive-N``.
    """
    counter = iter(range(1_000_000))

    def make(
        packages: Sequence[DebSpec | Path] | Mapping[str, Sequence[DebSpec | Path]] = (),
        **kwargs: Any,
    ) -> Archive:
        kwargs.setdefault("key", test_key)
        root = Path(kwargs.pop("root", tmp_path / f"archive-{next(counter)}"))
        return build_archive(root, packages, **kwargs)

    return make


@pytest.fixture
def fault_server() -> Iterator[Callable[..., FaultServer]]:
    """``fault_server(root, tls=False) -> FaultServer``; every server is closed at teardown."""
    servers: list[FaultServer] = []

    def start(root: Path, **kwargs: Any) -> FaultServer:
        server = FaultServer(root, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def local_mirror(
    archive_factory: ArchiveFactory, fault_server: Callable[..., FaultServer]
) -> LocalMirror:
    """MIRROR_PACKAGES in bookworm/main (stable), MIRROR_UPDATES in bookworm-updates, served."""
    archive = archive_factory(list(MIRROR_PACKAGES), updates=list(MIRROR_UPDATES))
    server = fault_server(archive.root)
    return LocalMirror(
        url=server.url,
        keyring=archive.keyring,
        archive=archive,
        server=server,
        suite="stable",
        codename="bookworm",
        start_server=fault_server,
    )


# -- roots to run things in -----------------------------------------------------------------

BUSYBOX = Path("/bin/busybox")
#: The store ``boot_store`` keeps its image in, and the image's name.
BOOT_STORE = TEST_CACHE / "boot-store"
BOOT_IMAGE = "boot"


def make_busybox_root(root: Path) -> Path:
    """A minimal root: static busybox with its applet links, passwd/group, API mount points."""
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    for name in ("etc", "proc", "sys", "dev", "tmp", "run", "root", "mnt", "usr"):
        (root / name).mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
    )
    (root / "etc/group").write_text("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    (root / "etc/os-release").write_text('ID=busybox\nNAME="busybox test root"\n')
    return root


@pytest.fixture
def bb_root(tmp_path: Path) -> Path:
    """A fresh busybox root per test (tests may write into it)."""
    return make_busybox_root(tmp_path / "bbroot")


@pytest.fixture(scope="session")
def debian_root() -> Path:
    """``debootstrap --variant=minbase bookworm`` from the host's mirror, made on first use and
    kept in TEST_CACHE (the tree test_bootstrap_compare.py compares with). Cost: ~1 min cold.

    Tests must not change it: run it read-only or ephemeral."""
    try:
        return debootstrap_tree("bookworm", "minbase")
    except LookupError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def boot_store() -> Path:
    """BOOT_STORE holding BOOT_IMAGE: ``rootstrap bootstrap bookworm --include systemd-sysv,dbus``
    from the host's mirror, made on first use and kept in TEST_CACHE (tests boot it
    ``--ephemeral``: never changed). Cost: ~1-2 min cold."""
    BOOT_STORE.mkdir(parents=True, exist_ok=True)
    with open(TEST_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions must not build it at once
        if not (BOOT_STORE / BOOT_IMAGE / "sbin/init").is_symlink():
            shutil.rmtree(BOOT_STORE / BOOT_IMAGE, ignore_errors=True)
            result = subprocess.run(
                [sys.executable, "-m", "rootstrap", "--store", str(BOOT_STORE),
                 "--cache-dir", str(TEST_CACHE / "rs-cache"),
                 "bootstrap", "bookworm", BOOT_IMAGE, "--include", "systemd-sysv,dbus"],
                capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
    return BOOT_STORE
