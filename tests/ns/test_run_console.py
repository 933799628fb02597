"""--console modes, signal forwarding, and the configure stage's use of the API."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rootstrap.runner import RunSpec, run
from tests.ns.conftest import lines


def _under_pty(argv: list[str], send: bytes = b"", timeout: float = 30) -> tuple[int, bytes]:
    """Run ARGV with a fresh pty as its terminal; type SEND; return (status, output)."""
    pid, master = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    output = b""
    deadline = time.monotonic() + timeout
    if send:
        time.sleep(0.5)
        os.write(master, send)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the terminal's last user is gone
                    data = b""
                if not data:
                    _, status = os.waitpid(pid, 0)
                    return os.waitstatus_to_exitcode(status), output
                output += data
    finally:
        os.close(master)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"timed out; output so far {output!r}")


def _cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "rootstrap", "run", "-D", str(root), *args]


def test_interactive_console_is_a_pty_of_the_container(bb_root: Path) -> None:
    script = "tty; ls -l /dev/console | cut -c1; read line; echo got-$line; exit 4"
    status, out = _under_pty(_cmd(bb_root, "--", "sh", "-c", script), send=b"hello\r")
    text = out.decode(errors="replace").replace("\r", "")
    assert status == 4, text
    assert "/dev/pts/0\n" in text  # the container's devpts, never the host's terminal
    assert "c\n" in text  # /dev/console is the pty's character device
    assert "got-hello" in text


def test_default_console_follows_the_terminal(bb_root: Path) -> None:
    status, out = _under_pty(_cmd(bb_root, "tty"))
    assert status == 0 and b"/dev/pts/0" in out
    piped = subprocess.run(_cmd(bb_root, "tty"), capture_output=True, text=True, timeout=30)
    assert piped.stdout == "not a tty\n"


def test_read_only_and_passive_consoles(bb_root: Path) -> None:
    status, out = _under_pty(_cmd(bb_root, "--console=read-only", "--", "sh", "-c", "echo seen"))
    assert status == 0 and b"seen" in out
    status, out = _under_pty(_cmd(bb_root, "--console=passive", "--", "sh", "-c", "echo hidden"))
    assert status == 0 and b"hidden" not in out
    bad = subprocess.run(_cmd(bb_root, "--console=bogus", "true"), capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_are_forwarded_to_the_command(bb_root: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        _cmd(
            bb_root,
            "--",
            "sh",
            "-c",
            f"trap 'echo caught; exit 9' {sig.name[3:]}; echo ready; while :; do sleep 0.05; done",
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert out == "caught\n"
    assert proc.returncode == 9
    untrapped = subprocess.Popen(
        _cmd(bb_root, "--", "sh", "-c", "echo ready; sleep 30"), stdout=subprocess.PIPE, text=True
    )
    assert untrapped.stdout is not None and untrapped.stdout.readline() == "ready\n"
    untrapped.send_signal(signal.SIGTERM)
    assert untrapped.wait(timeout=30) == 128 + signal.SIGTERM


@pytest.mark.network
def test_configure_stage_shape_dpkg_through_a_pipe(debian_root: Path) -> None:
    """What the bootstrap's configure stage does: dpkg in the root, output through a pipe."""
    r, w = os.pipe()
    code = run(
        RunSpec(
            debian_root,
            ["dpkg-query", "-W", "-f", "${Package}\\n", "dpkg", "bash"],
            ephemeral=True,
            stdout=w,
            stderr=w,
            env={"DEBIAN_FRONTEND": "noninteractive"},
            lock=False,
        )
    )
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    assert code == 0, out
    assert lines(out) == ["bash", "dpkg"]
    r, w = os.pipe()
    code = run(
        RunSpec(
            debian_root,
            ["sh", "-c", "echo $DEBIAN_FRONTEND $container; dpkg --configure -a"],
            ephemeral=True,
            stdout=w,
            stderr=w,
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )
    )
    os.close(w)
    with os.fdopen(r) as f:
        assert f.read() == "noninteractive rootstrap\n"
    assert code == 0
