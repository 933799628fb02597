"""Suite-wide rules: skips fail under CI, and the shared fixtures every layer uses."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.testcache import TEST_CACHE

STRICT = os.environ.get("CI") == "true" or os.environ.get("ROOTSTRAP_STRICT") == "1"

pytest_plugins = ["tests.support.fixtures"]

# A command line a test runs without --cache-dir fills a cache in the test cache (fresh under
# CI), never the host's own /var/cache/rootstrap.
os.environ["ROOTSTRAP_CACHE"] = str(TEST_CACHE / "cli-cache")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI a skip for a missing capability is a failure: CI must have every capability."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI (skips are failures here): {reason}"


def tree_digest(root: Path) -> str:
    """A hash of every name, mode, owner, link target and content under ROOT."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            st = path.lstat()
            digest.update(
                f"{path.relative_to(root)}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0".encode()
            )
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def host_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory outside every target; its digest must not change during the test."""
    root = tmp_path_factory.mktemp("sentinel")
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin/sh").write_bytes(b"\x7fELF sentinel")
    before = tree_digest(root)
    yield root
    assert tree_digest(root) == before, "the host sentinel changed"
