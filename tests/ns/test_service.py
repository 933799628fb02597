"""Machines as services (issue 10): ``start`` in the background, ``list``, ``status``,
``login`` to the console, ``stop``; failures and stale entries leave nothing behind.

The machines boot the rootstrap-made image of ``boot_store`` (tests/support/fixtures.py:
``--include systemd-sysv,dbus`` from the host's mirror), ephemeral (-x) so the cached image
never changes.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ns import test_boot
from tests.ns.conftest import rootstrap
from tests.ns.test_boot import IMAGE, REGISTRY, _cgroup_dir, _host_mounts, _read_until, uniq

pytestmark = [pytest.mark.slow]

CONSOLES = Path("/run/rootstrap/console")
LOGS = Path("/var/log/rootstrap")


def _start(store: Path, name: str, *options: str) -> None:
    result = rootstrap(
        "--store", str(store), "start", IMAGE, "-M", name, "-x", *options, timeout=120
    )
    assert result.returncode == 0, (result.stderr, _log(name))
    assert result.stdout == result.stderr == ""  # quiet on success, as systemctl start


def _log(name: str) -> str:
    try:
        return (LOGS / f"{name}.log").read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


def _entry(name: str) -> dict[str, object]:
    return dict(json.loads((REGISTRY / name).read_text()))


def _assert_gone(name: str, leader: int) -> None:
    assert not (REGISTRY / name).exists()
    assert not (CONSOLES / name).exists()
    assert not _cgroup_dir(name).exists()
    assert not Path(f"/proc/{leader}").exists()
    listed = json.loads(rootstrap("list", "--json").stdout)
    assert name not in [m["machine"] for m in listed]


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Machine names for one test; whatever still runs at its end is killed, logs removed."""
    made: list[str] = []
    yield made
    for name in made:
        if (REGISTRY / name).exists():
            rootstrap("terminate", name)
            deadline = time.monotonic() + 10
            while (REGISTRY / name).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        for log in (LOGS / f"{name}.log", LOGS / f"{name}.log.1"):
            log.unlink(missing_ok=True)


@pytest.fixture
def two_images(boot_store: Path, names: list[str]) -> Iterator[tuple[Path, str, str]]:
    """A store of two images (hard-linked copies of the cached one: the machines run them
    ephemeral, so the shared inodes are never written)."""
    a, b = uniq("t-svc-a"), uniq("t-svc-b")
    names += [a, b]
    store = boot_store.parent / f"svc-store{uniq('')}"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()
    for name in (a, b):
        subprocess.run(["cp", "-al", str(boot_store / IMAGE), str(store / name)], check=True)
    yield store, a, b
    shutil.rmtree(store, ignore_errors=True)


@pytest.mark.hazard(122)
def test_two_machines_in_the_background(
    two_images: tuple[Path, str, str], names: list[str]
) -> None:
    """The seed's service flow: start two (one command), list both, status right, stop one
    while the other keeps running, nothing left after both stop."""
    mounts = _host_mounts()
    store, a, b = two_images
    began = time.monotonic()
    result = rootstrap("--store", str(store), "start", a, b, "-x", timeout=120)
    assert result.returncode == 0, (result.stderr, _log(a), _log(b))
    assert result.stdout == result.stderr == ""  # quiet on success, as systemctl start
    print(f"two machines up (READY=1) in {time.monotonic() - began:.2f} s")
    entries = {n: _entry(n) for n in (a, b)}
    for n, entry in entries.items():
        assert entry["ready"], n  # start returned after READY=1, as systemctl start does
        assert entry["background"] is True
        assert entry["log"] == str(LOGS / f"{n}.log")
        # Detached: another session than ours, and not our child.
        supervisor = int(str(entry["rootstrap"]))
        assert os.getsid(supervisor) != os.getsid(0)
        stat = Path(f"/proc/{supervisor}/stat").read_text()
        assert int(stat[stat.rindex(")") + 2 :].split()[1]) != os.getpid()

    listed = {m["machine"] for m in json.loads(rootstrap("list", "--json").stdout)}
    assert {a, b} <= listed

    status = rootstrap("status", a)
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert out.startswith(f"{a} (running)\n")
    assert f"Leader: {entries[a]['leader']} (systemd)" in out
    assert "OS: Debian GNU/Linux 12 (bookworm)" in out
    assert f"Console: {LOGS / (a + '.log')}" in out
    assert "Reached target" in out  # the console's last lines, escapes stripped
    assert "\x1b" not in out and "\r" not in out
    js = json.loads(rootstrap("status", a, b, "--json").stdout)
    assert [m["state"] for m in js] == ["running", "running"]
    assert js[1]["leader"] == entries[b]["leader"]

    stopped = rootstrap("stop", a, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    _assert_gone(a, int(str(entries[a]["leader"])))
    assert "Powering off." in _log(a) or "System Power Off" in _log(a)
    after = rootstrap("status", a)
    assert after.returncode == 3  # systemctl's "not running"
    assert after.stdout.startswith(f"{a} (stopped)\n")

    # b did not notice.
    assert rootstrap("status", b).returncode == 0
    alive = rootstrap("shell", b, "systemctl", "is-system-running", timeout=60).stdout.strip()
    assert alive in ("running", "degraded"), alive
    assert rootstrap("stop", b, timeout=120).returncode == 0
    _assert_gone(b, int(str(entries[b]["leader"])))
    assert _host_mounts() == mounts


def test_login_to_the_console_and_detach(
    boot_store: Path, names: list[str], tmp_path: Path
) -> None:
    """login shows the getty at once (recent output replayed), a root shell works, Ctrl-]
    three times detaches and the machine keeps running; a second login meanwhile is refused
    cleanly; after a detach one can log in again."""
    shadow = test_boot.empty_root_password(boot_store, tmp_path)
    name = uniq("t-svc-login")
    names.append(name)
    _start(boot_store, name, "--bind-ro", f"{shadow}:/etc/shadow")

    for round_ in range(2):
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(sys.executable, [sys.executable, "-m", "rootstrap", "login", name])
        try:
            seen = _read_until(fd, b"login: ", 30)
            assert f"Connected to machine {name}".encode() in seen
            if round_ == 0:
                busy = rootstrap("login", name)
                assert busy.returncode != 0
                assert busy.stderr.startswith(f"error: {name}: another login is attached")
                assert len(busy.stderr.splitlines()) == 2  # error + hint, no traceback
                test_boot.log_in_as_root(fd)
            os.write(fd, b"\x1d\x1d\x1d")
            assert f"Detached from machine {name}".encode() in _read_until(fd, b"machine", 10)
            _, status = os.waitpid(pid, 0)
            pid = 0
            assert os.WEXITSTATUS(status) == 0
        finally:
            if pid:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(fd)
        assert rootstrap("status", name).returncode == 0  # detaching did not stop it

    # What was typed on the console is in its log.
    assert "logged-42 /dev/console" in _log(name)
    leader = int(str(_entry(name)["leader"]))
    assert rootstrap("stop", name, timeout=120).returncode == 0
    _assert_gone(name, leader)


@pytest.mark.hazard(95, 122)
def test_stale_entry_after_sigkill_is_seen_by_status_and_list(
    boot_store: Path, names: list[str]
) -> None:
    """SIGKILL to the background supervisor: the machine dies with it (PDEATHSIG), its
    entry is stale; status says so and drops it, list no longer shows it."""
    name = uniq("t-svc-stale")
    names.append(name)
    _start(boot_store, name)
    entry = _entry(name)
    os.kill(int(str(entry["rootstrap"])), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{entry['leader']}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (REGISTRY / name).exists()  # nobody cleaned up
    status = rootstrap("status", name)
    assert status.returncode == 3
    assert f"{name}: its registry entry was stale (leader PID {entry['leader']}" in status.stderr
    assert status.stdout.startswith(f"{name} (stopped)")
    assert not (REGISTRY / name).exists()
    assert not (CONSOLES / name).exists()  # the dead supervisor's socket went with it
    assert name not in [m["machine"] for m in json.loads(rootstrap("list", "--json").stdout)]
    # The next start of the name clears the dead one's cgroup and console socket.
    _start(boot_store, name)
    leader = int(str(_entry(name)["leader"]))
    assert rootstrap("stop", name, timeout=120).returncode == 0
    _assert_gone(name, leader)


# systemd runs a systemd.run= command as a oneshot of its initial transaction (in a container
# its arguments are its kernel command line): a sleep keeps READY=1 away for sure.
NEVER_READY = 'systemd.run="/bin/sleep 600"'


@pytest.mark.parametrize(("timeout", "init"), [("0.05", ()), ("0.15", ()), ("3", (NEVER_READY,))])
def test_start_timeout_stops_the_machine(
    boot_store: Path, names: list[str], timeout: str, init: tuple[str, ...]
) -> None:
    """Not up within --timeout: a clean error, and the machine is stopped, not left: before
    its registration (the supervisor is told to stop) and after it (its init, which will
    not be ready, is killed; a real boot can be up within 0.3 s here)."""
    name = uniq("t-svc-slow")
    names.append(name)
    result = rootstrap(
        *("--store", str(boot_store), "start", IMAGE, "-M", name, "-x", "--timeout", timeout),
        *(("--", *init) if init else ()),
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {name}: not up within {timeout} s"), result.stderr
    assert "Traceback" not in result.stderr
    deadline = time.monotonic() + 15
    while (REGISTRY / name).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (REGISTRY / name).exists()
    assert not (CONSOLES / name).exists()
    assert not _cgroup_dir(name).exists()


def test_start_failures_are_clean(boot_store: Path, names: list[str], tmp_path: Path) -> None:
    """An image that cannot boot: the error of boot, the log named, nothing registered."""
    (tmp_path / "etc").mkdir()
    name = uniq("t-svc-bad")
    names.append(name)
    result = rootstrap("start", "-D", str(tmp_path), "-M", name)
    assert result.returncode == 1
    assert result.stderr.startswith("error: "), result.stderr
    assert "no os-release" in result.stderr and "Traceback" not in result.stderr
    assert not (REGISTRY / name).exists() and not (CONSOLES / name).exists()

    missing = rootstrap("--store", str(boot_store), "start", "no-such-image")
    assert missing.returncode != 0 and missing.stderr.startswith("error: no-such-image:")
    for verb in ("stop", "login"):
        unknown = rootstrap(verb, uniq("t-svc-none"))
        assert unknown.returncode == 1
        assert unknown.stderr.startswith(f"error: {uniq('t-svc-none')}: no such machine")
    assert rootstrap("status", uniq("t-svc-none")).returncode == 1
    assert rootstrap("stop").returncode == 2


def test_login_to_a_terminal_booted_machine_says_where_its_console_is(
    boot_store: Path, names: list[str]
) -> None:
    """A machine booted in the foreground has its console on that terminal: login says so."""
    name = uniq("t-svc-fg")
    names.append(name)
    with test_boot.Machine(boot_store, name, "--console=read-only") as m:
        m.wait_registered()
        login = rootstrap("login", name)
        assert login.returncode == 1
        assert "its console is on the terminal that booted it" in login.stderr
        status = rootstrap("status", name)
        assert "Console: on the terminal that booted it" in status.stdout
        assert rootstrap("stop", name, timeout=120).returncode == 0
        assert m.wait_exit() == 0


def test_status_shows_the_veth_address(boot_store: Path, names: list[str]) -> None:
    """start -n: status names the host-side interface and the machine's address (the host
    side in a network namespace of this test, which the detached supervisor keeps)."""
    name = uniq("t-svc-veth")
    names.append(name)
    command = ["unshare", "-n", "--", sys.executable, "-m", "rootstrap", "--store", str(boot_store)]
    started = subprocess.run(
        [*command, "start", IMAGE, "-M", name, "-x", "--network-veth"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, (started.stderr, _log(name))
    entry = _entry(name)
    status = rootstrap("status", name)
    assert f"Iface: {entry['ifname']} (host side)" in status.stdout
    assert f"Address: {entry['address']}" in status.stdout
    assert "Network: private" in status.stdout
    assert rootstrap("stop", name, timeout=120).returncode == 0
    _assert_gone(name, int(str(entry["leader"])))


def test_stop_right_after_a_no_block_start(boot_store: Path, names: list[str]) -> None:
    """stop while the machine is still starting: the power-off request is repeated until
    the init takes it, and the machine is gone well before the timeout."""
    name = uniq("t-svc-early")
    names.append(name)
    started = rootstrap("--store", str(boot_store), "start", IMAGE, "-M", name, "-x", "--no-block")
    assert started.returncode == 0, started.stderr
    leader = int(str(_entry(name)["leader"]))
    began = time.monotonic()
    stopped = rootstrap("stop", name, "--timeout", "30", timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert time.monotonic() - began < 20
    _assert_gone(name, leader)


def test_start_reads_the_machines_settings_file(
    boot_store: Path, names: list[str], tmp_path: Path
) -> None:
    """start goes through boot's options, so a .nspawn file's Environment= reaches the init
    and its Bind= shows inside, and a command-line --setenv replaces the file's Environment=
    (nspawn's per-group rule)."""
    name = uniq("t-svc-settings")
    names.append(name)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "note").write_text("from the host\n")
    settings = Path("/run/systemd/nspawn") / f"{name}.nspawn"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(
        f"[Exec]\nEnvironment=FROM_FILE=yes\n[Files]\nBindReadOnly={tmp_path / 'shared'}:/srv\n"
    )
    try:
        for extra, expected in (((), "FROM_FILE=yes"), (("--setenv", "FROM_CLI=1"), "FROM_CLI=1")):
            _start(boot_store, name, *extra)
            environ = rootstrap("shell", name, "cat", "/proc/1/environ").stdout.split("\0")
            assert expected in environ
            assert ("FROM_FILE=yes" in environ) == (not extra)
            note = rootstrap("shell", name, "cat", "/srv/note")
            assert note.stdout.strip() == "from the host", note.stdout + note.stderr
            leader = int(str(_entry(name)["leader"]))
            assert rootstrap("stop", name, timeout=120).returncode == 0
            _assert_gone(name, leader)
    finally:
        settings.unlink()


def test_the_supervisor_keeps_none_of_the_callers_descriptors(
    boot_store: Path, names: list[str]
) -> None:
    """A descriptor the caller passes down (here a pipe's write end, as a shell's `exec 3>`
    would) is closed in the detached supervisor: its reader sees the end as soon as start
    returns, not when the machine stops; the supervisor's stdio is /dev/null and the log."""
    name = uniq("t-svc-fds")
    names.append(name)
    read, write = os.pipe()
    try:
        command = [sys.executable, "-m", "rootstrap", "--store", str(boot_store), "start"]
        started = subprocess.run(
            [*command, IMAGE, "-M", name, "-x"],
            pass_fds=(write,),
            capture_output=True,
            text=True,
            timeout=120,
        )
        os.close(write)
        write = -1
        assert started.returncode == 0, (started.stderr, _log(name))
        os.set_blocking(read, False)
        assert os.read(read, 1) == b""  # EOF: no process of the machine's holds the pipe
        supervisor = int(str(_entry(name)["rootstrap"]))
        targets = {os.readlink(f"/proc/{supervisor}/fd/{fd}") for fd in ("0", "1", "2")}
        assert targets == {"/dev/null", str(LOGS / f"{name}.log")}
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)
    leader = int(str(_entry(name)["leader"]))
    assert rootstrap("stop", name, timeout=120).returncode == 0
    _assert_gone(name, leader)


def _sleepers(token: str) -> list[int]:
    """PIDs of the ``sleep TOKEN`` processes on the host."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"/bin/sleep", token.encode()]:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    """True unless PID has exited: gone, or a zombie (the helper's orphans go to the host's
    pid 1, which may reap them late)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.hazard(117)
def test_a_sigkilled_shell_takes_its_command_along(boot_store: Path, names: list[str]) -> None:
    """`shell NAME CMD` SIGKILLed: the command it started in the machine dies with it (the
    helper's parent-death signal, and the command's own), the machine runs on."""
    name = uniq("t-svc-shell")
    names.append(name)
    _start(boot_store, name)
    token = str(3600 + os.getpid() % 1000)
    shell = subprocess.Popen(
        [sys.executable, "-m", "rootstrap", "shell", name, "/bin/sleep", token],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _sleepers(token):
            assert shell.poll() is None and time.monotonic() < deadline, "no sleep started"
            time.sleep(0.02)
        (sleeper,) = _sleepers(token)
        shell.kill()
        shell.wait()
        deadline = time.monotonic() + 1.0
        while _alive(sleeper) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _alive(sleeper), "the command outlived `shell`"
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
        for pid in filter(_alive, _sleepers(token)):
            os.kill(pid, signal.SIGKILL)
    assert rootstrap("status", name).returncode == 0  # the machine did not notice
    leader = int(str(_entry(name)["leader"]))
    assert rootstrap("stop", name, timeout=120).returncode == 0
    _assert_gone(name, leader)
