"""Each shared rule's table of cases, accepted and refused: names, booleans, --private-users,
the default paths and the host architecture. tests/integration/test_rules_cli.py feeds the same
tables through every verb that applies them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from rootstrap import paths
from rootstrap.linux import arch

# --------------------------------------------------------------------------- host architecture

# (uname -m, userland bits, byte order, hard float) -> Debian's name (dpkg's cputable).
ARCHES = [
    ("x86_64", 64, "little", True, "amd64"),
    ("x86_64", 32, "little", True, "i386"),  # an i386 userland on a 64-bit kernel
    ("i686", 32, "little", True, "i386"),
    ("i586", 32, "little", True, "i386"),
    ("i386", 32, "little", True, "i386"),
    ("aarch64", 64, "little", True, "arm64"),
    ("aarch64", 32, "little", True, "armhf"),  # an armhf userland on an arm64 kernel
    ("armv7l", 32, "little", True, "armhf"),
    ("armv7l", 32, "little", False, "armel"),
    ("armv8l", 32, "little", True, "armhf"),
    ("armv6l", 32, "little", False, "armel"),
    ("armv5tel", 32, "little", False, "armel"),
    ("ppc64le", 64, "little", True, "ppc64el"),
    ("ppc64", 64, "big", True, "ppc64"),
    ("ppc64", 32, "big", True, "powerpc"),
    ("ppc", 32, "big", True, "powerpc"),
    ("s390x", 64, "big", True, "s390x"),
    ("s390x", 32, "big", True, "s390"),
    ("riscv64", 64, "little", True, "riscv64"),
    ("mips64", 64, "little", True, "mips64el"),
    ("mips64", 64, "big", True, "mips64"),
    ("mips64", 32, "little", True, "mipsel"),
    ("mips", 32, "little", True, "mipsel"),
    ("mips", 32, "big", True, "mips"),
    ("loongarch64", 64, "little", True, "loong64"),
    ("sparc64", 64, "big", True, "sparc64"),
    ("parisc64", 32, "big", True, "hppa"),
    ("alpha", 64, "little", True, "alpha"),
    ("m68k", 32, "big", True, "m68k"),
    ("sh4", 32, "little", True, "sh4"),
    ("ia64", 64, "little", True, "ia64"),
    ("weird9", 64, "little", True, "weird9"),  # unknown: passed through, not guessed
]


@pytest.mark.parametrize(("machine", "bits", "order", "hard", "debian"), ARCHES)
def test_uname_to_debian(machine: str, bits: int, order: str, hard: bool, debian: str) -> None:
    assert arch.from_uname(machine, bits=bits, byteorder=order, hard_float=hard) == debian


def _dpkg_answer() -> str:
    dpkg = shutil.which("dpkg")
    assert dpkg, "these tests run on Debian hosts (tests/setup-host.sh)"
    done = subprocess.run([dpkg, "--print-architecture"], capture_output=True, text=True)
    return done.stdout.strip()


def test_host_arch_is_dpkgs_answer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arch, "_cached", None)
    expected = _dpkg_answer()
    assert arch.host_arch() == expected
    monkeypatch.setenv("PATH", "/nonexistent")  # not asked again: the answer is kept
    monkeypatch.setattr(arch, "_from_dpkg", lambda: pytest.fail("dpkg asked twice"))
    assert arch.host_arch() == expected


def test_host_arch_without_dpkg_agrees_with_dpkg(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _dpkg_answer()
    monkeypatch.setattr(arch, "_cached", None)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert arch._from_dpkg() is None
    assert arch.host_arch() == expected


# --------------------------------------------------------------------------- default paths

# (--store/--cache-dir given, the variable's value or None) -> the directory used.
PATHS = [
    (None, None, "DEFAULT"),
    (None, "", "DEFAULT"),  # an empty variable is no setting (as the shell's ${VAR:-default})
    (None, "/env/dir", "/env/dir"),
    ("", "/env/dir", "/env/dir"),
    ("/given", "/env/dir", "/given"),
    ("/given", None, "/given"),
]


@pytest.mark.parametrize(("given", "env", "expected"), PATHS)
@pytest.mark.parametrize(
    ("function", "var", "default"),
    [
        (paths.store_dir, "ROOTSTRAP_STORE", "/var/lib/machines"),
        (paths.cache_dir, "ROOTSTRAP_CACHE", "/var/cache/rootstrap"),
    ],
)
def test_paths(
    monkeypatch: pytest.MonkeyPatch,
    function: Callable[[str | None], str],
    var: str,
    default: str,
    given: str | None,
    env: str | None,
    expected: str,
) -> None:
    if env is None:
        monkeypatch.delenv(var, raising=False)
    else:
        monkeypatch.setenv(var, env)
    assert function(given) == (default if expected == "DEFAULT" else expected)
    if given:
        assert function(Path(given)) == given  # typer hands a Path
