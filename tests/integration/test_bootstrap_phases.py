"""Single bootstrap phases on real directories: what they write never leaves the root.

A package extracted before base-files can ship ``tmp``, ``root`` or ``etc/apt`` as a symlink to
an absolute host path (the extractor keeps a symlink a later directory entry lands on, as dpkg
does). The phases after extraction create, chmod and write there; they must do it in the root
or refuse, never through the link (HAZARDS 63). The whole bootstrap is driven in
test_bootstrap_local.py; here each phase runs alone on a hand-made root.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rootstrap import recipes
from rootstrap.build import bootstrap
from rootstrap.errors import ConfigureError


def context(root: Path) -> bootstrap.Context:
    ctx = bootstrap.Context(
        options=bootstrap.Options(suite="bookworm", name="planted"),
        store=root.parent,
        cache_dir=root.parent,
    )
    ctx.root, ctx.arch, ctx.recipe = root, "amd64", recipes.load("bookworm")
    return ctx


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for sub in ("etc", "usr/sbin", "usr/bin", "var"):
        (root / sub).mkdir(parents=True)
    os.symlink("usr/bin", root / "bin")
    return root


@pytest.mark.hazard(63)
@pytest.mark.parametrize(("link", "target"), [("tmp", "etc"), ("root", "bin"), ("var/tmp", "etc")])
def test_prepare_never_chmods_through_a_planted_directory_link(
    root: Path, host_sentinel: Path, link: str, target: str
) -> None:
    os.symlink(host_sentinel / target, root / link)
    with pytest.raises(ConfigureError, match=f"/{link}: expected a directory, found a symlink"):
        bootstrap.prepare(context(root))
    # host_sentinel's teardown asserts its modes and contents are unchanged.


@pytest.mark.hazard(63)
def test_prepare_makes_the_directories_in_root(root: Path) -> None:
    bootstrap.prepare(context(root))
    modes = {sub: (root / sub).stat().st_mode & 0o7777 for sub in ("tmp", "var/tmp", "root")}
    assert modes == {"tmp": 0o1777, "var/tmp": 0o1777, "root": 0o700}
    # The recipe's name while maintainer scripts run; customize writes the machine's.
    assert (root / "etc/hostname").read_text() == "debian\n"
    assert (root / "usr/sbin/policy-rc.d").read_bytes().endswith(b"exit 101\n")


@pytest.mark.hazard(63)
def test_sources_are_not_written_through_a_planted_etc_apt(
    root: Path, host_sentinel: Path, tmp_path: Path
) -> None:
    os.symlink(host_sentinel / "etc", root / "etc/apt")
    (root / "usr/bin/apt-get").write_bytes(b"")

    class Archive:  # the two attributes customize reads from the opened archive
        mirror = "http://127.0.0.1:9/debian"

    ctx = context(root)
    ctx.archive = Archive()  # type: ignore[assignment]
    with pytest.raises(ConfigureError, match="symlink"):
        bootstrap.customize(ctx)
    assert not (host_sentinel / "etc/sources.list.d").exists()
    assert not (host_sentinel / "etc/keyrings").exists()


@pytest.mark.hazard(63)
def test_cleanup_deletes_nothing_through_a_planted_directory_link(
    root: Path, tmp_path: Path
) -> None:
    host_log = tmp_path / "host-log"
    host_log.mkdir()
    for name in ("dpkg.log", "alternatives.log"):
        (host_log / name).write_text("the host's log\n")
    os.symlink(host_log, root / "var/log")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status-old").write_text("old\n")
    (root / "var/lib/dpkg/status").write_text("new\n")
    bootstrap.cleanup(context(root))
    assert sorted(p.name for p in host_log.iterdir()) == ["alternatives.log", "dpkg.log"]
    # In the root itself, the -old files still go.
    assert sorted(p.name for p in (root / "var/lib/dpkg").iterdir()) == ["status"]


@pytest.mark.hazard(66)
def test_interrupted_tarball_leaves_no_file_and_no_process(tmp_path: Path) -> None:
    """SIGTERM while tar and zstd stream a (sparse, 64 GiB) tree: both end, the temp goes."""
    import signal
    import subprocess
    import sys
    import time

    tree = tmp_path / "tree"
    tree.mkdir()
    with open(tree / "sparse", "wb") as f:
        f.truncate(64 << 30)
    out = tmp_path / "out/rootfs.tar.zst"
    out.parent.mkdir()
    code = (
        "import signal, sys\n"
        "from pathlib import Path\n"
        "from rootstrap.build.tarball import write_tar\n"
        "def stop(*_): raise KeyboardInterrupt\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "try:\n"
        "    write_tar(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tree), str(out)])
    deadline = time.monotonic() + 30
    while not list(out.parent.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)  # tar and zstd are busy now
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    assert list(out.parent.iterdir()) == []

    def streaming() -> list[str]:
        """Processes reading the tree or writing the output: tar, zstd."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
                targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds]
                argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(tree).encode() in argv or any(t.startswith(str(out.parent)) for t in targets):
                found.append(pid)
        return found

    deadline = time.monotonic() + 5
    while streaming() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert streaming() == []
