"""Test roots for the namespace runner: a busybox-static tree and a cached Debian minbase.

Both come from real packages: busybox from the host's busybox-static, the Debian tree from
debootstrap against the host's mirror (cached under /var/cache/rootstrap-test between runs).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from rootstrap.recipes import host_mirror

CACHE = Path("/var/cache/rootstrap-test")
BUSYBOX = Path("/bin/busybox")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/ns/" in str(item.fspath):
            item.add_marker(pytest.mark.root)


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("namespace tests need root")


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
def debian_root() -> Iterator[Path]:
    """A Debian bookworm minbase tree made by debootstrap from the host's mirror, cached.

    Tests must not change it: run it with read_only/ephemeral."""
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / "bookworm-minbase"
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "usr/bin/perl").exists():
            if shutil.which("debootstrap") is None:
                pytest.skip("debootstrap is not installed")
            tmp = CACHE / ".tmp-bookworm-minbase"
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(
                ["debootstrap", "--variant=minbase", "bookworm", str(tmp), host_mirror("debian")],
                check=True,
                capture_output=True,
                timeout=900,
            )
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
    yield target


def rootstrap(
    *args: str, input: str | None = None, timeout: float = 60, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run the real command line (``python -m rootstrap``) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "rootstrap", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        **kw,  # type: ignore[call-overload]
    )


@pytest.fixture
def rs() -> Callable[..., subprocess.CompletedProcess[str]]:
    return rootstrap


def sh(root: Path, script: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``rootstrap run -D ROOT [OPTIONS] -- sh -c SCRIPT``."""
    return rootstrap("run", "-D", str(root), *options, "--", "sh", "-c", script)


def lines(text: str) -> Sequence[str]:
    return [line for line in text.splitlines() if line]


# What a container's /dev holds (nspawn's minimal set; HAZARDS 85).
MIN_DEV = {
    "fd",
    "full",
    "null",
    "ptmx",
    "pts",
    "random",
    "shm",
    "stderr",
    "stdin",
    "stdout",
    "tty",
    "urandom",
    "zero",
}
