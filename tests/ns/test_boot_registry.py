"""The registry of running machines (runner/registry.py): stale entries (dead leader, reused
pid) are dropped, names are unique, and a SIGKILLed boot leaves nothing the next one trips on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rootstrap.runner import registry
from tests.ns.conftest import rootstrap
from tests.ns.test_boot import REGISTRY, Machine, _cgroup_dir, uniq


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_entry_of_a_dead_leader_is_dropped(tmp_path: Path) -> None:
    root = str(tmp_path)
    registry.register({"name": "gone", "leader": os.getpid()}, root)
    (tmp_path / "gone").write_text(json.dumps({"name": "gone", "leader": _dead_pid()}))
    assert registry.lookup("gone", root) is None
    assert not (tmp_path / "gone").exists()


def test_reused_pid_is_not_the_machine(tmp_path: Path) -> None:
    """The leader pid now names another process: its start time differs, the entry is stale."""
    root = str(tmp_path)
    entry = registry.register({"name": "m", "leader": os.getpid()}, root)
    assert registry.lookup("m", root) is not None
    fields = dict(entry.fields, start_time=int(entry.fields["start_time"]) - 1)
    (tmp_path / "m").write_text(json.dumps(fields))
    assert [m.name for m in registry.machines(root)] == []
    assert not (tmp_path / "m").exists()


def test_a_live_name_cannot_be_registered_twice(tmp_path: Path) -> None:
    root = str(tmp_path)
    registry.register({"name": "m", "leader": os.getpid()}, root)
    with pytest.raises(registry.RunnerError, match="running"):
        registry.register({"name": "m", "leader": os.getppid()}, root)
    assert [m.leader for m in registry.machines(root)] == [os.getpid()]
    registry.unregister("m", os.getppid(), root)  # not its entry: kept
    assert registry.lookup("m", root) is not None
    registry.unregister("m", os.getpid(), root)
    assert os.listdir(root) == []


@pytest.mark.slow
@pytest.mark.hazard(95)
def test_sigkilled_boot_leaves_a_stale_entry_that_is_dropped(boot_store: Path) -> None:
    """SIGKILL to rootstrap: the machine dies with it (PDEATHSIG on its init), `list` drops
    the stale entry, and the next boot of that name clears the leftover cgroup."""
    with Machine(boot_store, uniq("t-sigkill"), "--console=read-only") as m:
        entry = m.wait_registered()
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{entry['leader']}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{entry['leader']}").exists(), "the init outlived rootstrap"
        assert (REGISTRY / m.name).exists()  # nobody cleaned up...
        listed = json.loads(rootstrap("list", "--json").stdout)
        assert m.name not in [x["machine"] for x in listed]
        assert not (REGISTRY / m.name).exists()  # ...until a reader dropped it
        with Machine(boot_store, uniq("t-sigkill"), "--console=read-only") as again:
            again.wait_registered()
            assert rootstrap("terminate", again.name).returncode == 0
            assert again.wait_exit() == 128 + signal.SIGKILL
        assert not _cgroup_dir(m.name).exists()


@pytest.mark.slow
@pytest.mark.hazard(99)
def test_writable_boot_of_a_running_image_is_busy(boot_store: Path) -> None:
    """An ephemeral boot holds the image shared; a writable boot of it fails at once."""
    with Machine(boot_store, uniq("t-busy"), "--console=read-only") as m:
        m.wait_registered()
        second = rootstrap("--store", str(boot_store), "boot", "boot", "-M", uniq("t-busy2"))
        assert second.returncode != 0
        assert "busy" in second.stderr, second.stderr
        assert not (REGISTRY / uniq("t-busy2")).exists()
        assert not _cgroup_dir(uniq("t-busy2")).exists()
        assert rootstrap("terminate", m.name).returncode == 0
        m.wait_exit()
