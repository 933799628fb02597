"""Image locks taken by rootstrap run: HAZARDS 99, 100, 104 and 105."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rootstrap.linux.locks import lock_image
from tests.ns.conftest import rootstrap, sh


def _start(root: Path, *options: str, marker: str) -> subprocess.Popen[str]:
    """A run that prints 'ready' once inside and then waits for its stdin to close."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rootstrap",
            "run",
            "-D",
            str(root),
            *options,
            "--",
            "sh",
            "-c",
            f"echo ready; read x; echo {marker}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
    return proc


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate("\n", timeout=30)
    return proc.returncode, out


@pytest.mark.hazard(99)
def test_second_writable_run_is_busy_at_once(bb_root: Path) -> None:
    first = _start(bb_root, marker="first")
    try:
        started = time.monotonic()
        second = sh(bb_root, "echo second")
        assert time.monotonic() - started < 10
        assert second.returncode == 1
        assert second.stderr.splitlines()[0] == (
            f"error: {bb_root}: image is busy (in use by another command)"
        )
        assert second.stdout == ""
    finally:
        assert _finish(first) == (0, "first\n")


@pytest.mark.hazard(100)
def test_read_only_runs_share_and_exclude_writers(bb_root: Path) -> None:
    one = _start(bb_root, "--read-only", marker="one")
    two = _start(bb_root, "--read-only", marker="two")
    try:
        writer = sh(bb_root, "true")
        assert writer.returncode == 1 and "image is busy" in writer.stderr
        eph = sh(bb_root, "echo eph", "-x")  # ephemeral never writes the image: shared too
        assert eph.stdout == "eph\n"
    finally:
        assert _finish(one) == (0, "one\n")
        assert _finish(two) == (0, "two\n")
    assert sh(bb_root, "echo free").stdout == "free\n"


@pytest.mark.hazard(104)
def test_lock_is_free_once_the_holder_is_killed(bb_root: Path) -> None:
    holder = _start(bb_root, marker="never")
    assert sh(bb_root, "true").returncode == 1
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        result = sh(bb_root, "echo again")
        if result.returncode == 0:
            break
        time.sleep(0.05)
    assert result.stdout == "again\n", result.stderr
    assert not list(bb_root.parent.glob("*.lock"))


@pytest.mark.hazard(105)
def test_rename_racing_run(bb_root: Path) -> None:
    store = bb_root.parent
    # A rename in progress holds the image lock (store.rename takes lock_image first): run
    # must fail busy rather than run on a half-renamed path.
    with lock_image(bb_root, exclusive=True):
        busy = rootstrap("--store", str(store), "run", "bbroot", "true")
        assert busy.returncode == 1 and "busy" in busy.stderr
    # A run holds the lock: a rename attempt (which locks first) is refused...
    running = _start(bb_root, marker="done")
    try:
        with pytest.raises(Exception, match="busy"):
            lock_image(bb_root, exclusive=True)
        # ...and even a rename that ignores the lock cannot move the run's tree away from
        # it: the run holds the directory itself, not its path.
        renamed = store / "renamed"
        os.rename(bb_root, renamed)
        code, out = _finish(running)
        assert (code, out) == (0, "done\n")
    finally:
        if running.poll() is None:
            running.kill()
    # The rename completed first: the old name is simply not found.
    gone = rootstrap("--store", str(store), "run", "bbroot", "true")
    assert gone.returncode == 1
    assert gone.stderr.splitlines()[0] == "error: bbroot: no such image"
    assert rootstrap("--store", str(store), "run", "renamed", "hostname").stdout == "renamed\n"
