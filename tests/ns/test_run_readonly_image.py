"""A read-only image (machinectl read-only: the immutable flag) runs read-only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.ns.conftest import rootstrap
from tests.support.fixtures import make_busybox_root


@pytest.mark.hazard(77)
def test_read_only_image_gives_erofs_and_ephemeral_still_runs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    make_busybox_root(store / "ro")
    assert rootstrap("--store", str(store), "read-only", "ro", "yes").returncode == 0
    try:
        denied = rootstrap("--store", str(store), "run", "ro", "--", "touch", "/etc/nope")
        assert denied.returncode != 0
        assert "Read-only file system" in denied.stderr
        throwaway = rootstrap("--store", str(store), "run", "-x", "ro", "--", "touch", "/etc/x")
        assert throwaway.returncode == 0, throwaway.stderr
        assert not (store / "ro/etc/nope").exists() and not (store / "ro/etc/x").exists()
    finally:
        subprocess.run(["chattr", "-i", str(store / "ro")], check=False)
