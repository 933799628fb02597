"""dpkg version ordering against dpkg --compare-versions itself."""

from __future__ import annotations

import itertools
import subprocess

import pytest

from rootstrap.formats.version import compare, satisfies

VERSIONS = [
    "1.0", "1.0~", "1.0~rc1", "1.0.0", "1.00", "1:0.9", "0:1.0", "1.0-1", "1.0-1~bpo1",
    "1.0-1+b1", "1.0a", "1.0+", "2.36-9+deb12u4", "2.36-9", "1", "1.", "0", "1.0-0",
    "7.88.1-10+deb12u5", "1.0-a-b", "1:2:3-4", "0.1", "1.0-0.1", "1.0-.1", "1.0-00",
]  # fmt: skip


def dpkg_says(a: str, op: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(VERSIONS, 2)))
def test_agrees_with_dpkg(a: str, b: str) -> None:
    expected = -1 if dpkg_says(a, "lt", b) else 1 if dpkg_says(a, "gt", b) else 0
    assert compare(a, b) == expected


def test_relations() -> None:
    assert satisfies("2.36-9", ">=", "2.34")
    assert not satisfies("2.36-9", "<<", "2.36-9")
    assert satisfies("1.0-0", "=", "1.0")
