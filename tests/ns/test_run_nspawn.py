"""Cross-check against systemd-nspawn on the same tree: what nspawn hides, we hide."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ns.conftest import lines, sh

# Each probe prints NAME=VALUE; VALUE is "hidden" when the container cannot see or use the
# thing. The probes are harmless even where they succeed.
PROBES = """
p() { if eval "$2" >/dev/null 2>&1; then echo "$1=visible"; else echo "$1=hidden"; fi; }
p kcore 'test -s /proc/kcore && head -c1 /proc/kcore | grep -q .'
p kallsyms-addresses 'grep -qv "^0000000000000000" /proc/kallsyms'
p sysrq 'echo h > /proc/sysrq-trigger'
p proc-sys-write 'echo 1 > /proc/sys/kernel/ns_last_pid'
p sys-rw 'grep -q "^sysfs /sys sysfs rw" /proc/mounts'
p host-pids 'test $(ls -d /proc/[0-9]* | wc -l) -gt 10'
p host-mounts 'grep -q " /work " /proc/self/mountinfo'
p host-disk 'test -b /dev/vda || test -b /dev/sda'
p mem 'head -c1 /dev/mem'
p kmsg 'timeout 1 head -c1 /proc/kmsg | grep -q .'
p host-pts 'test -e /dev/pts/1'
p swapon 'swapon /dev/null 2>&1 | grep -qv "Operation not permitted"'
"""


@pytest.fixture
def nspawn() -> str:
    path = shutil.which("systemd-nspawn")
    if path is None:
        pytest.skip("systemd-nspawn missing (apt-get install systemd-container)")
    return path


def _nspawn(nspawn: str, root: Path, script: str) -> dict[str, str]:
    result = subprocess.run(
        [nspawn, "--register=no", "--keep-unit", "-q", "-D", str(root), "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return dict(line.split("=", 1) for line in lines(result.stdout) if "=" in line)


def test_we_hide_what_nspawn_hides(bb_root: Path, nspawn: str) -> None:
    theirs = _nspawn(nspawn, bb_root, PROBES)
    ours = dict(line.split("=", 1) for line in lines(sh(bb_root, PROBES).stdout))
    assert set(theirs) == set(ours), (theirs, ours)
    leaks = [name for name, value in theirs.items() if value == "hidden" and ours[name] != "hidden"]
    assert not leaks, f"nspawn hides {leaks} but rootstrap run does not: {ours}"


def test_dev_is_no_larger_than_nspawns(bb_root: Path, nspawn: str) -> None:
    theirs = set(_nspawn(nspawn, bb_root, "for f in /dev/*; do echo ${f#/dev/}=1; done"))
    ours = set(lines(sh(bb_root, "ls /dev").stdout))
    assert ours <= theirs, ours - theirs
