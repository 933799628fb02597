"""Ubuntu's zstd-compressed .debs (control.tar.zst, data.tar.zst; Ubuntu since 21.10).

rootstrap reads them itself (rootstrap.formats.deb with the zstandard package): the first stage runs
here with a PATH whose dpkg, dpkg-deb, zstd, tar and ar are traps that record any call and
fail, so nothing on the host that understands zstd is used. A .deb whose data.tar.zst is cut
(HAZARDS 59, dpkg's CVE-2026-2219 spun on one) must end in a clean error, quickly, wherever
the cut is: also when only the frame's end is missing after a complete tar (dpkg-deb refuses
that too).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootstrap.formats.deb import open_deb
from tests.support.archive import Archive, TestKey
from tests.support.debs import DebSpec, build_deb, raw_deb, read_ar
from tests.support.server import FaultServer
from tests.support.ubuntu import UBUNTU_PACKAGES, build_ubuntu_archive

TRAPPED = ("dpkg", "dpkg-deb", "zstd", "unzstd", "zstdcat", "tar", "ar", "xz", "gzip")


@pytest.fixture(scope="module")
def ubuntu(
    tmp_path_factory: pytest.TempPathFactory, test_key: TestKey
) -> Iterator[tuple[Archive, FaultServer]]:
    archive = build_ubuntu_archive(tmp_path_factory.mktemp("ubuntu"), key=test_key)
    with FaultServer(archive.root) as server:
        yield archive, server


@pytest.fixture
def trap_path(tmp_path: Path) -> tuple[str, Path]:
    """A PATH of programs that must not run: each logs its argv to the returned file, exits 99."""
    bin_dir = tmp_path / "trap-bin"
    bin_dir.mkdir()
    log = tmp_path / "trap.log"
    for name in TRAPPED:
        trap = bin_dir / name
        trap.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexit 99\n')
        trap.chmod(0o755)
    return str(bin_dir), log


def rootstrap(*args: str, path: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "LC_ALL": "C.UTF-8", "HOME": "/nonexistent"}
    return subprocess.run(
        [sys.executable, "-m", "rootstrap", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_every_package_has_zstd_members(ubuntu: tuple[Archive, FaultServer]) -> None:
    archive, _server = ubuntu
    assert archive.debs
    for deb in archive.debs:
        opened = open_deb(deb)
        assert (opened.control_member, opened.data_member) == ("control.tar.zst", "data.tar.zst")
        assert opened.data_compression == "zst"


def test_first_stage_needs_nothing_of_the_hosts_zstd_or_dpkg(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path, trap_path: tuple[str, Path]
) -> None:
    archive, server = ubuntu
    path, log = trap_path
    target = tmp_path / "root"
    done = rootstrap(
        "--cache-dir", str(tmp_path / "cache"), "bootstrap", "noble", "--target", str(target),
        "--extract-only", "--variant", "minbase", "--include", "foo-user",
        "--mirror", server.url, "--keyring", str(archive.keyring), "--arch", "amd64",
        path=path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not log.exists(), f"host tools were called: {log.read_text()}"
    # Files from data.tar.zst, byte for byte, with their modes; the t64 library in place.
    assert "ID=ubuntu\n" in (target / "usr/lib/os-release").read_text()
    assert os.readlink(target / "etc/os-release") == "../usr/lib/os-release"
    assert (target / "usr/lib/x86_64-linux-gnu/libfoo.so.1").read_bytes() == b"foo 1.2\n"
    assert (target / "usr/bin/foo-user").stat().st_mode & 0o7777 == 0o755
    assert (target / "usr/bin/sh").is_symlink()
    # merged-/usr from the recipe (Ubuntu since disco): /bin is a link into /usr.
    assert os.readlink(target / "bin") == "usr/bin"


def cut_zstd_deb(tmp_path: Path, keep: int | None) -> tuple[Path, int]:
    """A real zstd .deb (via dpkg-deb) whose data.tar.zst keeps only KEEP bytes (None: half),
    re-wrapped in a well-formed ar so only the zstd stream is wrong. Returns (path, full size)."""
    rnd = random.Random(59)
    files = {f"usr/share/cut/part{i}": rnd.randbytes(40_000) for i in range(6)}
    files["usr/share/cut/zeros"] = bytes(300_000)
    deb = build_deb(DebSpec("cut-zst", "1.0", files=files), tmp_path / "built", "zstd")
    members = read_ar(deb.read_bytes())
    data = dict(members)["data.tar.zst"]
    size = len(data)
    keep = size // 2 if keep is None else (keep if keep >= 0 else size + keep)
    cut = [(name, blob[:keep] if name == "data.tar.zst" else blob) for name, blob in members]
    out = tmp_path / "cut" / deb.name
    out.parent.mkdir()
    out.write_bytes(raw_deb(cut))
    return out, size


@pytest.mark.hazard(59)
@pytest.mark.parametrize(
    "keep",
    [
        pytest.param(None, id="half"),
        pytest.param(17, id="frame-header-only"),
        pytest.param(-20_000, id="last-blocks-missing"),
        # Only the frame end (checksum) is missing: the tar inside is complete, dpkg-deb
        # still refuses it, and so must rootstrap (it walks the zstd frames to their end).
        pytest.param(-1, id="last-byte-missing"),
    ],
)
def test_cut_data_tar_zst_is_a_clean_error_in_bounded_time(
    tmp_path: Path,
    test_key: TestKey,
    keep: int | None,
) -> None:
    deb, _size = cut_zstd_deb(tmp_path, keep)
    packages = {**UBUNTU_PACKAGES, "universe": (*UBUNTU_PACKAGES["universe"], deb)}
    archive = build_ubuntu_archive(tmp_path / "ubuntu", key=test_key, packages=packages)
    store = tmp_path / "store"
    store.mkdir()
    with FaultServer(archive.root) as server:
        started = time.monotonic()
        done = rootstrap(
            "--store", str(store), "--cache-dir", str(tmp_path / "cache"),
            "bootstrap", "noble", f"cut-{os.getpid()}", "--extract-only",
            "--variant", "minbase", "--components", "main,universe", "--include", "cut-zst",
            "--mirror", server.url, "--keyring", str(archive.keyring), "--arch", "amd64",
            path=os.environ.get("PATH", "/usr/bin:/bin"), timeout=60,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert deb.name in errors[0] and "truncated" in errors[0], errors[0]
    assert elapsed < 30, f"took {elapsed:.1f} s"
    assert list(store.iterdir()) == [], "a failed bootstrap left something in the store"
