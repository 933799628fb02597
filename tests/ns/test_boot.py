"""rootstrap boot: a rootstrap-bootstrapped Debian image (systemd-sysv, dbus) booted for real,
driven through the command line: running, list, shell, poweroff, signals, the console escape,
and nothing left behind (process, cgroup, registry entry, mount)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.ns.conftest import rootstrap
from tests.support.fixtures import BOOT_IMAGE as IMAGE
from tests.support.fixtures import make_busybox_root
from tests.support.testcache import TEST_CACHE

REGISTRY = Path("/run/rootstrap/machines")
# Machine names are global on the host: another session's test run must not collide with ours.
SUFFIX = f"-{os.getpid() % 100000}"


def uniq(name: str) -> str:
    return name + SUFFIX


pytestmark = [pytest.mark.slow]


def _cgroup_dir(name: str) -> Path:
    from rootstrap.runner.cgroup import machine_dir

    return Path(machine_dir(name))


def boot_argv(store: Path, name: str, *extra: str) -> list[str]:
    """`rootstrap boot` of IMAGE in STORE as machine NAME, ephemeral (-x: the cached image is
    never changed), with EXTRA options."""
    cli = [sys.executable, "-m", "rootstrap", "--store", str(store)]
    return [*cli, "boot", IMAGE, "-M", name, "-x", *extra]


class Machine:
    """A `rootstrap boot` process in the background, its console captured; PREFIX runs it
    (e.g. ``unshare -n --``: the host side of its network in a namespace of the test's).
    As a context manager, a machine still running at the end is killed."""

    def __init__(
        self,
        store: Path,
        name: str,
        *extra: str,
        stdin: int | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.log = open(f"/tmp/rootstrap-boot-{name}.log", "w+b")
        self.mounts_before = _host_mounts()
        self.proc = subprocess.Popen(
            [*prefix, *boot_argv(store, name, *extra)],
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_registered(self, timeout: float = 30) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                return dict(json.loads((REGISTRY / self.name).read_text()))
            except (OSError, ValueError):
                time.sleep(0.05)
        raise AssertionError(f"{self.name} never registered:\n{self.output()}")

    def wait_running(self) -> str:
        """`systemctl is-system-running --wait` inside; running or degraded, failed listed."""
        self.wait_registered()
        deadline = time.monotonic() + 90
        state = ""
        while not state and time.monotonic() < deadline:
            # Until the init has made its bus socket, systemctl cannot ask it anything.
            state = rootstrap(
                "shell", self.name, "systemctl", "is-system-running", "--wait", timeout=90
            ).stdout.strip()
            time.sleep(0 if state else 0.1)
        failed = rootstrap("shell", self.name, "systemctl", "--failed", "--no-legend").stdout
        print(f"{self.name}: {state}; failed units: {failed.strip() or 'none'}")
        assert state in ("running", "degraded"), (state, failed, self.output())
        return state

    def wait_exit(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def assert_gone(self, leader: int) -> None:
        """No process, cgroup, registry entry or mount of the machine is left."""
        assert not (REGISTRY / self.name).exists()
        assert not _cgroup_dir(self.name).exists()
        assert not Path(f"/proc/{leader}").exists()
        assert _host_mounts() == self.mounts_before
        listed = json.loads(rootstrap("list", "--json").stdout)
        assert self.name not in [m["machine"] for m in listed]


def _host_mounts() -> list[str]:
    """The host's mounts that a machine could have left: on or below an image, /run/host,
    the cgroup, the registry (other sessions mount and unmount elsewhere meanwhile)."""
    marks = (str(TEST_CACHE), "/run/host", "/run/rootstrap", "/sys/fs/cgroup", "/var/tmp")
    with open("/proc/self/mountinfo") as f:
        points = (line.split(" - ")[0].split(" ", 4)[4] for line in f)
        return sorted(p for p in points if any(mark in p for mark in marks))


@pytest.fixture
def machine(boot_store: Path, request: pytest.FixtureRequest) -> Iterator[Machine]:
    name = uniq("t-" + request.node.name.removeprefix("test_")[:40].replace("_", "-"))
    with Machine(boot_store, name, "--console=read-only") as m:
        yield m


@pytest.mark.hazard(82, 90)
def test_boot_running_list_shell_poweroff(machine: Machine) -> None:
    entry = machine.wait_registered()
    machine.wait_running()
    listed = json.loads(rootstrap("list", "--json").stdout)
    mine = [m for m in listed if m["machine"] == machine.name]
    assert mine and mine[0]["class"] == "container" and mine[0]["os"] == "debian", listed
    assert mine[0]["version"] == "12"
    table = rootstrap("list").stdout
    assert table.splitlines()[0].split() == [
        "MACHINE",
        "CLASS",
        "SERVICE",
        "OS",
        "VERSION",
        "ADDRESSES",
    ]
    assert any(
        line.split()[:4] == [machine.name, "container", "rootstrap", "debian"]
        for line in table.splitlines()
    )
    # The container interface, seen from inside.
    probe = rootstrap(
        "shell",
        machine.name,
        "sh",
        "-c",
        "cat /run/host/container-manager; systemd-detect-virt -c || true; "
        "cat /etc/machine-id; findmnt -no OPTIONS /sys; findmnt -no FSTYPE,OPTIONS /sys/fs/cgroup;"
        " findmnt -no OPTIONS /proc/sys; test -s /run/host/os-release && echo host-os-release;"
        " grep -E '^(NoNewPrivs|Seccomp|CapBnd):' /proc/self/status; ls /proc/self/fd",
    )
    assert probe.returncode == 0, probe.stderr
    out = probe.stdout.splitlines()
    assert out[0] == "rootstrap"
    assert len(out[2]) == 32 and out[2] != "0" * 32, out  # machine-id from container_uuid
    assert out[3].startswith("ro,"), out
    assert out[4].startswith("cgroup2 rw"), out
    assert out[5].startswith("ro,"), out
    assert "host-os-release" in out
    assert "Seccomp:\t2" in out  # the machine's filter holds for a shell too
    # HAZARDS 82: the init runs with nspawn's default bounding set (as far as we hold it).
    from rootstrap.runner import caps

    init_status = Path(f"/proc/{entry['leader']}/status").read_text()
    bounding = int(
        next(x for x in init_status.splitlines() if x.startswith("CapBnd:")).split()[1], 16
    )
    ours = int(
        next(
            x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("CapBnd:")
        ).split()[1],
        16,
    )
    assert bounding == caps.mask(caps.NSPAWN_DEFAULT) & ours
    # A shell gets the machine's set, not the host root's, and no fd of ours (HAZARDS 90).
    shell_bounding = next(x for x in out if x.startswith("CapBnd:")).split()[1]
    assert int(shell_bounding, 16) == bounding, out
    assert out[-4:] == ["0", "1", "2", "3"], out  # 3: ls's own directory fd
    nobody = rootstrap(
        "shell", f"nobody@{machine.name}", "sh", "-c", "id -u; grep CapEff /proc/self/status"
    )
    assert nobody.stdout.split() == ["65534", "CapEff:", "0000000000000000"], nobody
    for absent in ("SYS_MODULE", "SYS_RAWIO", "SYS_TIME", "MAC_ADMIN"):
        assert not bounding & (1 << caps.NUMBERS[absent])
    # The delegated cgroup: systemd made its tree in ours.
    assert (Path(str(entry["cgroup"])) / "init.scope").is_dir()
    assert rootstrap("poweroff", machine.name).returncode == 0
    assert machine.wait_exit() == 0, machine.output()
    assert "Powering off" in machine.output() or "Halting" in machine.output()
    machine.assert_gone(int(entry["leader"]))  # type: ignore[call-overload]


def test_sigterm_powers_off_cleanly(machine: Machine) -> None:
    entry = machine.wait_registered()
    machine.wait_running()
    start = time.monotonic()
    machine.proc.send_signal(signal.SIGTERM)
    assert machine.wait_exit() == 0, machine.output()
    print(f"SIGTERM to exit: {time.monotonic() - start:.3f}s")
    assert "Reached target" in machine.output() and "shutdown.target" in machine.output()
    machine.assert_gone(int(entry["leader"]))  # type: ignore[call-overload]


def test_second_sigterm_kills(machine: Machine) -> None:
    entry = machine.wait_registered()
    machine.wait_running()
    machine.proc.send_signal(signal.SIGTERM)
    machine.proc.send_signal(signal.SIGTERM)
    code = machine.wait_exit(timeout=10)
    assert code in (0, 128 + signal.SIGKILL), machine.output()
    machine.assert_gone(int(entry["leader"]))  # type: ignore[call-overload]


def test_terminate(machine: Machine) -> None:
    entry = machine.wait_registered()
    machine.wait_running()
    assert rootstrap("terminate", machine.name).returncode == 0
    assert machine.wait_exit(timeout=10) == 128 + signal.SIGKILL
    machine.assert_gone(int(entry["leader"]))  # type: ignore[call-overload]


def test_reboot_boots_again(machine: Machine) -> None:
    first = machine.wait_registered()
    machine.wait_running()
    assert rootstrap("reboot", machine.name).returncode == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        again = machine.wait_registered()
        if again["leader"] != first["leader"]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no second boot:\n{machine.output()}")
    machine.wait_running()
    assert rootstrap("poweroff", machine.name).returncode == 0
    assert machine.wait_exit() == 0
    machine.assert_gone(int(again["leader"]))  # type: ignore[call-overload]


def test_kill_with_signal(machine: Machine) -> None:
    entry = machine.wait_registered()
    machine.wait_running()
    # SIGRTMIN+4 to the init is machinectl's poweroff; through `kill` to the leader alone.
    result = rootstrap("kill", machine.name, "--kill-whom=leader", "--signal", "RTMIN+4")
    assert result.returncode == 0, result.stderr
    assert machine.wait_exit() == 0
    machine.assert_gone(int(entry["leader"]))  # type: ignore[call-overload]


def test_unknown_machine_verbs_are_clean_errors() -> None:
    for verb in ("poweroff", "shell", "reboot", "terminate", "kill"):
        result = rootstrap(verb, "no-such-machine")
        assert result.returncode == 1, (verb, result)
        assert result.stderr.startswith("error: no-such-machine: no such machine"), result.stderr
        assert "Traceback" not in result.stderr
    bad = rootstrap("kill", "x", "--signal", "NOPE")
    assert bad.returncode == 2 and "unknown signal" in bad.stderr


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen in {seen[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def test_console_escape_through_a_pty(boot_store: Path) -> None:
    """Ctrl-] three times within a second on an interactive console kills the machine."""
    name = uniq("t-escape")
    before = _host_mounts()
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, boot_argv(boot_store, name))
    try:
        _read_until(fd, b"Reached target", 60)
        entry = json.loads((REGISTRY / name).read_text())
        os.write(fd, b"\x1d\x1d\x1d")
        start = time.monotonic()
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert time.monotonic() - start < 5
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGKILL
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert not (REGISTRY / name).exists()
    assert not _cgroup_dir(name).exists()
    assert not Path(f"/proc/{entry['leader']}").exists()
    assert _host_mounts() == before


def test_shell_with_a_pty(machine: Machine) -> None:
    """`rootstrap shell NAME` on a terminal: root's login shell on a pty of the machine."""
    machine.wait_running()
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "rootstrap", "shell", machine.name])
    try:
        os.write(fd, b"echo out-$((6*7)) $(tty) $(cat /proc/1/comm); exit 3\n")
        seen = _read_until(fd, b"out-42", 30)
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WEXITSTATUS(status) == 3
        line = seen[seen.index(b"out-42") :].split(b"\r\n")[0].decode()
        assert line.split()[1].startswith("/dev/pts/") and line.split()[2] == "systemd", line
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert rootstrap("poweroff", machine.name).returncode == 0
    assert machine.wait_exit() == 0


@pytest.mark.hazard(98)
def test_image_without_os_release_is_refused(tmp_path: Path) -> None:
    root = make_busybox_root(tmp_path / "bb")
    (root / "etc/os-release").unlink()
    (root / "sbin").mkdir()
    (root / "sbin/init").symlink_to("/bin/sh")
    result = rootstrap("boot", "-D", str(root), "-M", uniq("t-noosrel"))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f"error: {root}: the image has no os-release: it does not look bootable"
    ), result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr
    assert not (REGISTRY / uniq("t-noosrel")).exists()
    assert not _cgroup_dir(uniq("t-noosrel")).exists()


@pytest.mark.hazard(98)
def test_boot_of_the_host_root_is_refused() -> None:
    result = rootstrap("boot", "-D", "/", "-M", uniq("t-hostroot"))
    assert result.returncode == 1
    assert "host's root directory is not supported" in result.stderr
    assert not _cgroup_dir(uniq("t-hostroot")).exists()


def test_image_without_init_is_a_clean_error(tmp_path: Path) -> None:
    root = make_busybox_root(tmp_path / "bb")
    result = rootstrap("boot", "-D", str(root), "-M", uniq("t-noinit"))
    assert result.returncode == 127, result.stderr
    assert "/sbin/init" in result.stderr and "systemd-sysv" in result.stderr
    assert not (REGISTRY / uniq("t-noinit")).exists()
    assert not _cgroup_dir(uniq("t-noinit")).exists()


def test_same_name_twice_is_refused(machine: Machine, boot_store: Path) -> None:
    machine.wait_registered()
    second = rootstrap("--store", str(boot_store), "boot", IMAGE, "-x", "-M", machine.name)
    assert second.returncode == 1
    assert "a machine of this name is running" in second.stderr
    assert machine.proc.poll() is None
    assert rootstrap("terminate", machine.name).returncode == 0
    machine.wait_exit()


def test_nspawn_boots_the_same_image(boot_store: Path) -> None:
    """The oracle: the image rootstrap bootstrapped boots under systemd-nspawn too."""
    nspawn = shutil.which("systemd-nspawn")
    if nspawn is None:
        pytest.skip("systemd-nspawn missing (apt-get install systemd-container)")
    proc = subprocess.Popen(
        [
            nspawn,
            "--register=no",
            "--keep-unit",
            "-q",
            "-b",
            "-x",
            "--console=read-only",
            "-D",
            str(boot_store / IMAGE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        seen = _read_until(proc.stdout.fileno(), b"Reached target", 120)
        assert b"Welcome to" in seen
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


PING = r"""
import os, socket, struct, sys, time
def checksum(data):
    data += b"\0" * (len(data) % 2)
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.settimeout(3)
body = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"rootstrap"
body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
sock.sendto(body, (sys.argv[1], 0))
while True:
    data, (peer, _) = sock.recvfrom(2048)
    icmp = data[(data[0] & 0xF) * 4 :]
    if peer == sys.argv[1] and icmp[0] == 0 and icmp[4:6] == b"\x12\x34":
        print("reply from", peer)
        break
"""


def test_network_veth_ping_both_ways(boot_store: Path) -> None:
    """--network-veth: ve-NAME beside host0, addressed; ping host → machine and back. The
    host side lives in a network namespace of this test (unshare -n), not the host's."""
    name = uniq("t-veth")
    veth = ("--network-veth", "--console=read-only")
    with Machine(boot_store, name, *veth, prefix=("unshare", "-n", "--")) as m:
        entry = m.wait_registered()
        host, inner = str(entry["host_address"]), str(entry["address"])
        assert entry["ifname"] == "ve-" + name[:12]
        outer = f"--net=/proc/{m.proc.pid}/ns/net"
        links = subprocess.run(
            ["nsenter", outer, "ip", "-br", "addr"], capture_output=True, text=True, check=True
        ).stdout
        assert any(
            line.startswith(entry["ifname"]) and f"{host}/30" in line for line in links.splitlines()
        ), links
        inside = rootstrap("shell", name, "ip", "-br", "addr", "show", "host0").stdout
        assert inside.startswith("host0") and f"{inner}/30" in inside, inside
        listed = json.loads(rootstrap("list", "--json").stdout)
        assert [m["addresses"] for m in listed if m["machine"] == name] == [[inner]]
        there = subprocess.run(
            ["nsenter", outer, sys.executable, "-c", PING, inner],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert there.stdout.strip() == f"reply from {inner}", there.stderr
        back = rootstrap("shell", name, "ping", "-c1", "-W3", host)
        assert back.returncode == 0 and "1 received" in back.stdout, back.stdout + back.stderr
        assert rootstrap("poweroff", name).returncode == 0
        assert m.wait_exit() == 0
    assert not (REGISTRY / name).exists()
    assert not _cgroup_dir(name).exists()


@pytest.mark.hazard(84, 97)
def test_private_users_boot(boot_store: Path) -> None:
    """--private-users=pick: the machine's root is an unprivileged host uid; the image's
    root-owned files stay root's inside (idmapped mount) and unchanged on the host."""
    image = boot_store / IMAGE
    owner_before = (image / "etc/passwd").stat().st_uid
    with Machine(boot_store, uniq("t-userns"), "--console=read-only", "--private-users=pick") as m:
        entry = m.wait_registered()
        m.wait_running()
        base = entry["private_users"][0]  # type: ignore[index]
        assert base >= 0x80000
        status = Path(f"/proc/{entry['leader']}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()
        assert uids[1:] == [str(base)] * 4, uids  # the init runs as the range's first uid
        probe = rootstrap("shell", m.name, "sh", "-c", "cat /proc/self/uid_map; stat -c %u /etc")
        words = probe.stdout.split()
        assert words[:3] == ["0", str(base), "65536"] and words[3] == "0", probe
        # HAZARDS 84: CAP_SYS_ADMIN of a user namespace cannot unlock /sys or make a new one.
        remount = rootstrap(
            "shell",
            m.name,
            "sh",
            "-c",
            "mount -o remount,rw /sys && echo SYS-RW; mount -t sysfs sysfs /mnt && echo NEW-SYS;"
            " echo 1 > /proc/sys/kernel/panic && echo PROC-SYS-W; true",
        )
        assert remount.stdout.split() == [], remount
        assert rootstrap("poweroff", m.name).returncode == 0
        assert m.wait_exit() == 0
        m.assert_gone(int(entry["leader"]))  # type: ignore[call-overload]
    assert (image / "etc/passwd").stat().st_uid == owner_before == 0


@pytest.fixture(scope="session")
def debootstrap_boot_root() -> Path:
    """A bookworm tree made by debootstrap (minbase + systemd-sysv, dbus), cached."""
    from rootstrap.recipes import host_mirror

    target = TEST_CACHE / "debootstrap-bookworm-boot"
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    with open(TEST_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "sbin/init").is_symlink():
            if shutil.which("debootstrap") is None:
                pytest.skip("debootstrap is not installed")
            tmp = TEST_CACHE / ".tmp-debootstrap-bookworm-boot"
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=systemd-sysv,dbus",
                    "bookworm",
                    str(tmp),
                    host_mirror("debian"),
                ],
                check=True,
                capture_output=True,
                timeout=900,
            )
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
    return target


@pytest.mark.network
def test_debootstrap_image_boots(debootstrap_boot_root: Path) -> None:
    """An image debootstrap made boots under rootstrap to running (or degraded)."""
    name = uniq("t-debootstrap")
    before = _host_mounts()
    log = open(f"/tmp/rootstrap-boot-{name}.log", "w+b")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rootstrap",
            "boot",
            "-D",
            str(debootstrap_boot_root),
            "-M",
            name,
            "-x",
            "--console=read-only",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        state = ""
        while state not in ("running", "degraded") and time.monotonic() < deadline:
            assert proc.poll() is None, log.name
            state = rootstrap(
                "shell", name, "systemctl", "is-system-running", "--wait", timeout=90
            ).stdout.strip()
            time.sleep(0 if state else 0.1)
        failed = rootstrap("shell", name, "systemctl", "--failed", "--no-legend").stdout
        print(f"{name}: {state}; failed units: {failed.strip() or 'none'}")
        assert state in ("running", "degraded"), state
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert not (REGISTRY / name).exists()
    assert not _cgroup_dir(name).exists()
    assert _host_mounts() == before


def empty_root_password(store: Path, where: Path) -> Path:
    """A copy of IMAGE's /etc/shadow in WHERE with root's password empty (Debian's pam_unix
    takes it with nullok): bound over the image's, it lets a test log in at the console
    without changing the image."""
    lines = (store / IMAGE / "etc/shadow").read_text().splitlines()
    lines = [("root::" + x.split(":", 2)[2]) if x.startswith("root:") else x for x in lines]
    shadow = where / "shadow"
    shadow.write_text("\n".join(lines) + "\n")
    shadow.chmod(0o640)
    return shadow


def log_in_as_root(fd: int) -> None:
    """At a getty's ``login:`` on the pty FD: log in as root, run a command, check its tty."""
    os.write(fd, b"root\r")
    _read_until(fd, b"# ", 30)
    os.write(fd, b"echo logged-$((40+2)) $(tty)\r")
    seen = _read_until(fd, b"logged-42 ", 30)
    assert b"logged-42 /dev/console" in seen, seen[-500:]


def test_login_on_the_console_then_detach(boot_store: Path, tmp_path: Path) -> None:
    """The seed's flow: boot on a terminal, log in at the console's getty, run a command,
    leave with Ctrl-] three times. (root gets an empty password through a bound shadow
    file: Debian's pam_unix takes it with nullok; the image itself is not changed.)"""
    shadow = empty_root_password(boot_store, tmp_path)
    name = uniq("t-login")
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, boot_argv(boot_store, name, "--bind-ro", f"{shadow}:/etc/shadow"))
    try:
        _read_until(fd, b"login: ", 60)
        log_in_as_root(fd)
        os.write(fd, b"\x1d\x1d\x1d")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WEXITSTATUS(status) == 128 + signal.SIGKILL
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert not (REGISTRY / name).exists()
    assert not _cgroup_dir(name).exists()


def test_network_bridge(boot_store: Path) -> None:
    """--network-bridge BR: vb-NAME joins a bridge (made in this test's own network
    namespace), host0 comes up inside; with an address on each side they talk."""
    name = uniq("t-br")
    script = (
        "ip link add br-test type bridge && ip addr add 10.232.7.1/24 dev br-test && "
        'ip link set br-test up && exec "$0" "$@"'
    )
    bridge = ("--network-bridge", "br-test", "--console=read-only")
    in_netns = ("unshare", "-n", "--", "sh", "-c", script)  # sh execs rootstrap as "$0"
    with Machine(boot_store, name, *bridge, prefix=in_netns) as m:
        entry = m.wait_registered()
        assert entry["ifname"] == "vb-" + name[:12] and entry["bridge"] == "br-test"
        outer = f"--net=/proc/{m.proc.pid}/ns/net"
        link = subprocess.run(
            ["nsenter", outer, "ip", "-o", "link", "show", "dev", entry["ifname"]],
            capture_output=True,
            text=True,
        ).stdout
        assert "master br-test" in link, link
        back = rootstrap(
            "shell",
            name,
            "sh",
            "-c",
            "ip addr add 10.232.7.2/24 dev host0 && ping -c1 -W3 10.232.7.1",
        )
        assert back.returncode == 0 and "1 received" in back.stdout, back.stdout + back.stderr
        assert rootstrap("poweroff", name).returncode == 0
        assert m.wait_exit() == 0
    assert not (REGISTRY / name).exists()


def test_network_bridge_missing_is_a_clean_error(boot_store: Path) -> None:
    result = subprocess.run(
        [
            *("unshare", "-n", "--", sys.executable, "-m", "rootstrap", "--store", str(boot_store)),
            *("boot", IMAGE, "-M", uniq("t-nobridge"), "-x", "--network-bridge", "nope0"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: nope0: no such bridge on the host"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (REGISTRY / uniq("t-nobridge")).exists()
    assert not _cgroup_dir(uniq("t-nobridge")).exists()
