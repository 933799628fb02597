"""The namespace runner's tests: all need root; helpers to drive the real command line.

The roots they run (``bb_root``, ``make_busybox_root``, ``debian_root``, ``boot_store``) are
fixtures of tests/support/fixtures.py, shared with the other test directories.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/ns/" in str(item.fspath):
            item.add_marker(pytest.mark.root)


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("namespace tests need root")


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
