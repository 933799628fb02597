"""The main job against the host's Debian mirror: bootstrap, then prove the system works.

One bootstrap per variant per session (they take seconds, not minutes); the checks run inside
the result through `rootstrap run` and once through systemd-nspawn, the oracle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootstrap.recipes import host_mirror
from tests.support.testcache import TEST_CACHE

pytestmark = [pytest.mark.network, pytest.mark.slow]

MIRROR = host_mirror("debian")
CACHE = TEST_CACHE / "debs"


def rootstrap(*args: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "rootstrap", *args],
        capture_output=True,
        text=True,
        **kw,  # type: ignore[call-overload]
    )
    if check and result.returncode != 0:
        raise AssertionError(f"rootstrap {' '.join(args)} failed:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if MIRROR is None:
        pytest.skip("no Debian mirror in the host's apt sources")
    path = tmp_path_factory.mktemp("store")
    yield path
    for image in path.iterdir():
        subprocess.run(["chattr", "-i", str(image)], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def bootstrapped(store: Path, suite: str, variant: str) -> Path:
    name = f"{suite}-{variant}"
    if not (store / name).exists():
        rootstrap(
            "--store", str(store), "--cache-dir", str(CACHE.parent),
            "bootstrap", suite, name, "--variant", variant,
        )  # fmt: skip
    return store / name


def inside(root: Path, *argv: str, binds: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    args = ["run", "-D", str(root)]
    for bind in binds:
        args += ["--bind-ro", bind]
    return rootstrap(*args, "--", *argv, check=False)


@pytest.mark.parametrize(
    ("suite", "variant"),
    [("bookworm", "minbase"), ("bookworm", "important"), ("trixie", "minbase")],
)
def test_result_is_a_working_debian(store: Path, suite: str, variant: str) -> None:
    root = bootstrapped(store, suite, variant)
    audit = inside(root, "dpkg", "--audit")
    assert audit.returncode == 0 and audit.stdout == "", audit.stdout + audit.stderr
    listing = inside(root, "dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package}\\n")
    assert listing.returncode == 0
    not_ii = [line for line in listing.stdout.splitlines() if not line.startswith("ii ")]
    assert not not_ii
    verify = inside(root, "dpkg", "--verify")
    assert verify.returncode == 0 and verify.stdout == "", verify.stdout
    check = inside(root, "apt-get", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    for path in ("etc/hostname", "etc/hosts", "etc/fstab", "etc/machine-id"):
        assert (root / path).exists(), path
    assert (root / "etc/machine-id").read_text() == ""
    assert not (root / "usr/sbin/policy-rc.d").exists()
    assert (root / "bin").is_symlink() and os.readlink(root / "bin") == "usr/bin"


def test_apt_installs_hello(store: Path) -> None:
    root = bootstrapped(store, "bookworm", "minbase")
    result = inside(
        root, "sh", "-c", "apt-get update -q && apt-get install -y -q hello && hello",
        binds=("/etc/resolv.conf",),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Hello, world!" in result.stdout


def test_runs_under_systemd_nspawn(store: Path) -> None:
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("systemd-nspawn is not installed")
    root = bootstrapped(store, "bookworm", "minbase")
    result = subprocess.run(
        ["systemd-nspawn", "--register=no", "--keep-unit", "-q", "-D", str(root),
         "dpkg-query", "-W", "bash"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("bash\t")


def test_boot_ready_adds_an_init_and_dbus(store: Path) -> None:
    rootstrap(
        "--store", str(store), "--cache-dir", str(CACHE.parent),
        "bootstrap", "bookworm", "bootable", "--variant", "minbase", "--boot-ready",
    )  # fmt: skip
    root = store / "bootable"
    assert (root / "sbin/init").exists()
    status = inside(root, "dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\\n",
                    "systemd-sysv", "dbus")  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert sorted(status.stdout.split("\n")[:2]) == ["dbus ii ", "systemd-sysv ii "]
