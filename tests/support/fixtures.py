"""Fixtures shared across the suite: keys, signed local archives, fault-injecting servers.

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

Session-scoped: ``test_key``, ``other_key`` (unrelated), ``expired_key`` (EXPKEYSIG).
``MIRROR_PACKAGES`` is the spec list ``local_mirror`` serves (names in its docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.archive import Archive, TestKey, build_archive
from tests.support.debs import DebSpec
from tests.support.server import FaultServer

__all__ = ["MIRROR_PACKAGES", "MIRROR_UPDATES", "LocalMirror"]

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
