"""rootstrap.linux.children: tools that die with rootstrap, and the thread trap (HAZARDS 118-119).

Real processes throughout: a small Python parent started here runs the helper and is then
SIGKILLed, and the test looks in /proc for what it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rootstrap.errors import ResourceError, RootstrapError, StoreError
from rootstrap.linux import children

SRC = str(Path(children.__file__).resolve().parents[2])


def gone(pid: int, within: float = 1.0) -> bool:
    """True if PID has exited (or is a zombie nobody reaps) within WITHIN seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.01)
    return False


def parent_with_child(setup: str = "") -> tuple[subprocess.Popen[str], int]:
    """A Python process that starts ``sleep 600`` through children.start and waits; returns
    it and the sleep's pid (once the sleep is exec'd)."""
    code = (
        f"import sys, time\nsys.path.insert(0, {SRC!r})\n"
        "from rootstrap.linux import children\n"
        f"{setup}\n"
        "child = children.start(['sleep', '600'], subject='test')\n"
        "print(child.proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/comm").read_text().strip() != "sleep":  # past setpriv and sh
        assert time.monotonic() < deadline, "the child never became sleep"
        time.sleep(0.01)
    return proc, pid


@pytest.mark.hazard(118)
@pytest.mark.parametrize(
    "setup", ["", "children._setpriv = lambda: None"], ids=["setpriv", "preexec_fn"]
)
def test_a_tool_dies_with_a_sigkilled_parent(setup: str) -> None:
    proc, pid = parent_with_child(setup)
    try:
        proc.kill()
        proc.wait()
        assert gone(pid), "the tool outlived its SIGKILLed parent"
    finally:
        if not gone(pid, 0):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.hazard(118)
def test_the_fast_path_is_used_here() -> None:
    """setpriv (util-linux) with --pdeathsig is on every supported host: CI takes the ~3 ms
    path, not the fork of the whole interpreter that preexec_fn costs."""
    assert children._setpriv() is not None
    argv, preexec = children.tied(["/bin/true"])
    assert preexec is None and argv[-1] == "/bin/true" and "--pdeathsig" in argv


@pytest.mark.hazard(118)
def test_a_parent_gone_before_the_tie_means_the_tool_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race after fork: the child checks, after setting the signal, that its parent is
    still the one recorded before the fork. A recorded pid that is not our parent's stands
    for a parent that died in between (the child was handed to init)."""
    mark = tmp_path / "ran"
    children._setpriv()  # its probe (cached) must see the real pid
    monkeypatch.setattr(os, "getpid", lambda: 1)  # what tied() records as the parent
    argv, preexec = children.tied(["/usr/bin/touch", str(mark)])
    monkeypatch.undo()
    result = subprocess.run(argv, preexec_fn=preexec, check=False)
    assert result.returncode == children.EXIT_ORPHANED
    assert not mark.exists()


def test_die_with_parent_in_a_fork_of_another_parent_exits() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        children.die_with_parent(os.getppid() + 1)  # not our parent: the race lost
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == children.EXIT_ORPHANED


@pytest.mark.hazard(119)
def test_the_thread_trap_is_real() -> None:
    """Why no child may outlive the thread that started it: the kernel sends the
    parent-death signal when that *thread* ends, though the process lives on."""
    started: list[int] = []

    def spawn() -> None:
        argv, preexec = children.tied(["/bin/sleep", "600"])
        pid = subprocess.Popen(argv, preexec_fn=preexec).pid
        started.append(pid)
        while Path(f"/proc/{pid}/comm").read_text().strip() != "sleep":
            time.sleep(0.01)  # tied (past setpriv and the check) before this thread ends

    worker = threading.Thread(target=spawn)
    worker.start()
    worker.join()
    (pid,) = started
    try:
        assert gone(pid, 5), "the child outlived the thread that started it"
    finally:
        if not gone(pid, 0):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@pytest.mark.hazard(119)
def test_a_tool_run_on_a_worker_thread_completes() -> None:
    """run() waits for its tool on the thread that started it: the trap cannot spring."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            children.run(["sh", "-c", "sleep 0.3"], subject="test")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.hazard(119)
def test_a_child_left_on_another_thread_is_killed_and_refused() -> None:
    child = children.start(["sleep", "600"], subject="test")
    failures: list[BaseException] = []

    def leave() -> None:
        try:
            child.__exit__(None, None, None)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=leave)
    thread.start()
    thread.join()
    assert len(failures) == 1 and isinstance(failures[0], RuntimeError)
    assert child.proc.poll() is not None or gone(child.proc.pid)
    child.proc.wait()


def test_a_failure_names_the_tool_and_shows_the_command() -> None:
    with pytest.raises(RootstrapError) as info:
        children.run(["sh", "-c", "echo first >&2; echo 'the real reason' >&2; exit 3"],
                     subject="thing")  # fmt: skip
    exc = info.value
    assert str(exc) == "thing: sh failed: the real reason"
    assert (
        exc.hint
        == "command: sh -c 'echo first >&2; echo '\"'\"'the real reason'\"'\"' >&2; exit 3'"
    )


def test_disk_full_is_a_resource_error() -> None:
    with pytest.raises(ResourceError, match="disk full"):
        children.run(["sh", "-c", "echo 'write: No space left on device' >&2; exit 1"],
                     subject="out")  # fmt: skip


def test_a_missing_tool_is_named_with_the_callers_error() -> None:
    with pytest.raises(StoreError) as info:
        children.run(
            ["no-such-tool-here"], subject="x", error=StoreError, missing_hint="install it"
        )
    assert str(info.value) == "x: no-such-tool-here is not installed"
    assert info.value.hint == "install it"


def test_the_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEAKED", "yes")
    out = tmp_path / "env"
    with open(out, "wb") as f:
        children.run(["env"], subject="env", stdout=f)
    # PWD: set by the /bin/sh of the tie on its way to the exec, and harmless.
    seen = sorted(line for line in out.read_text().splitlines() if not line.startswith("PWD="))
    assert seen == ["LC_ALL=C", f"PATH={children.ENV['PATH']}"]


def test_an_error_inside_the_block_kills_the_tool() -> None:
    with pytest.raises(KeyError):
        with children.start(["sleep", "600"], subject="test") as child:
            pid = child.proc.pid
            raise KeyError("the caller failed")
    assert child.proc.returncode == -signal.SIGKILL
    assert gone(pid)


def test_a_pipeline_passes_data_and_reports_the_failing_side(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with open(out, "wb") as f:
        with children.start(["printf", "a\\nb\\n"], subject="p", stdout=children.PIPE) as left:
            with children.start(["sort", "-r"], subject="p", stdin=left.stdout, stdout=f):
                left.stdout.close()
    assert out.read_text() == "b\na\n"
    with pytest.raises(RootstrapError, match="false failed"), open(out, "wb") as f:
        with children.start(["yes"], subject="p", stdout=children.PIPE) as left:
            with children.start(["false"], subject="p", stdin=left.stdout, stdout=f):
                left.stdout.close()  # yes then dies of EPIPE, never blocks
