"""``rootstrap info`` against the host's Debian mirror (from its apt sources), end to end."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from rootstrap import recipes
from rootstrap.archive.indexfetch import load_cached

pytestmark = [pytest.mark.network]


@pytest.fixture(scope="module")
def mirror() -> str:
    url = recipes.host_mirror("debian")
    if url is None:
        pytest.skip("the host's apt sources name no Debian mirror")
    return url


def rootstrap(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rootstrap", "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_info_bookworm_summary(mirror: str, tmp_path: Path) -> None:
    done = rootstrap(tmp_path / "cache", "info", "bookworm")
    assert done.returncode == 0, done.stderr
    fields = {k: v.strip() for k, v in (line.split(":", 1) for line in done.stdout.splitlines())}
    assert fields["Codename"] == "bookworm" and fields["Origin"] == "Debian"
    assert "main" in fields["Components"].split() and "amd64" in fields["Architectures"].split()
    assert fields["Mirror"] == mirror
    # Debian's archive keys sign bookworm's InRelease: at least one 40-hex fingerprint.
    assert all(len(f) == 40 for f in fields["Signed-By"].split()) and fields["Signed-By"]


@pytest.mark.slow
def test_info_bookworm_packages_and_a_fast_cache(mirror: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    done = rootstrap(cache, "info", "bookworm", "bash", "libc6")
    assert done.returncode == 0, done.stderr
    stanzas = done.stdout.split("\n\n")
    assert stanzas[1].startswith("Package: bash\n") and "\nEssential: yes\n" in stanzas[1]
    assert stanzas[2].startswith("Package: libc6\n") and "\nSHA256: " in stanzas[2]
    tables = sorted((cache / "indexes").glob("*.table"))
    assert len(tables) == 1
    before = {p: p.stat().st_mtime_ns for p in (cache / "indexes").iterdir()}
    again = rootstrap(cache, "info", "bookworm", "bash")
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in (cache / "indexes").iterdir()} == before
    # The parsed index loads from the cache without parsing; bench/index_load.py has the figures
    # (target 0.15 s); this bound only catches a cache that is not being used at all.
    start = time.perf_counter()
    table = load_cached(cache, tables[0].stem, "bookworm/main")
    elapsed = time.perf_counter() - start
    assert table is not None and len(table) > 50_000
    assert elapsed < 1.0, f"loading the cached index took {elapsed:.2f} s"
