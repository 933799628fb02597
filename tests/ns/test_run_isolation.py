"""Isolation of rootstrap run: HAZARDS rows 82-98, each checked from inside a real container."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rootstrap.runner import RunSpec, caps, run
from tests.ns.conftest import MIN_DEV, lines, rootstrap, sh

# (x86_64, aarch64) syscall numbers for the payloads written in perl.
SYSCALLS = {
    "add_key": (248, 217),
    "request_key": (249, 218),
    "keyctl": (250, 219),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "kexec_load": (246, 104),
    "open_by_handle_at": (304, 265),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "swapon": (167, 224),
}
ARCH = 0 if platform.machine() == "x86_64" else 1


def status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {text!r}")


@pytest.mark.hazard(82)
def test_capabilities_are_exactly_the_configured_set(bb_root: Path) -> None:
    status = sh(bb_root, "cat /proc/self/status").stdout
    host = int(status_field(Path("/proc/self/status").read_text(), "CapBnd"), 16)
    expected = caps.mask(caps.RUN_DEFAULT) & host  # a cap the host lacks cannot be kept
    for field in ("CapBnd", "CapEff", "CapPrm"):
        assert int(status_field(status, field), 16) == expected, field
    assert int(status_field(status, "CapAmb"), 16) == 0
    value = int(status_field(status, "CapBnd"), 16)
    for name in ("SYS_MODULE", "SYS_RAWIO", "SYS_TIME", "MAC_ADMIN", "SYS_ADMIN"):
        assert not value & (1 << caps.NUMBERS[name]), name
    assert status_field(status, "NoNewPrivs") == "1"
    assert status_field(status, "Seccomp") == "2"

    dropped = sh(bb_root, "cat /proc/self/status", "--drop-capability=CAP_CHOWN,CAP_KILL").stdout
    assert int(status_field(dropped, "CapBnd"), 16) == expected & ~0b100001
    added = sh(bb_root, "cat /proc/self/status", "--capability=CAP_NET_ADMIN").stdout
    assert int(status_field(added, "CapEff"), 16) == expected | (1 << 12)
    nnp_off = sh(bb_root, "cat /proc/self/status", "--no-new-privileges=no").stdout
    assert status_field(nnp_off, "NoNewPrivs") == "0"


@pytest.mark.hazard(83)
def test_proc_writes_fail_and_sensitive_files_are_masked(bb_root: Path) -> None:
    script = (
        "echo evil > /proc/sys/kernel/hostname; echo hostname=$?;"
        "echo b > /proc/sysrq-trigger; echo sysrq=$?;"
        "for f in kcore keys kallsyms timer_list sched_debug; do"
        " if [ -e /proc/$f ]; then echo $f=$(head -c 200 /proc/$f 2>/dev/null | wc -c); fi; done"
    )
    host_hostname = Path("/proc/sys/kernel/hostname").read_text()
    result = sh(bb_root, script)
    out = dict(line.split("=", 1) for line in lines(result.stdout))
    assert out["hostname"] != "0" and out["sysrq"] != "0"
    assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr
    for name in ("kcore", "keys", "kallsyms", "timer_list", "sched_debug"):
        if Path("/proc", name).exists():
            assert out.get(name, "0") == "0", f"/proc/{name} readable: {out}"
    assert Path("/proc/sys/kernel/hostname").read_text() == host_hostname


@pytest.mark.hazard(84)
def test_sys_and_proc_cannot_be_remounted_or_mounted_rw(bb_root: Path) -> None:
    script = (
        "mount -o remount,rw /sys; echo remount-sys=$?;"
        "mount -o remount,rw /proc/sys; echo remount-procsys=$?;"
        "mkdir -p /tmp/m; mount -t sysfs sysfs /tmp/m; echo sysfs=$?;"
        "mount -t proc proc /tmp/m; echo proc=$?;"
        "umount /proc/sys; echo umount=$?;"
        "touch /sys/kernel/x; echo write-sys=$?"
    )
    out = dict(line.split("=", 1) for line in lines(sh(bb_root, script).stdout))
    assert all(value != "0" for value in out.values()), out
    assert "rw" not in lines(sh(bb_root, "grep ' /sys ' /proc/mounts").stdout)[0].split()[3]


@pytest.mark.hazard(85)
def test_dev_is_minimal_and_new_nodes_do_not_open(bb_root: Path) -> None:
    script = (
        "ls -A /dev; echo --; ls /dev/pts;"
        "mknod /dev/sda b 8 0 2>/dev/null; dd if=/dev/sda of=/dev/null bs=512 count=1"
        " 2>/dev/null; echo dev-sda=$?;"
        "mknod /tmp/sda b 8 0 2>/dev/null; dd if=/tmp/sda of=/dev/null count=1 2>/dev/null;"
        " echo tmp-sda=$?;"
        "mknod /root/mem c 1 1 2>/dev/null; head -c1 /root/mem >/dev/null 2>&1; echo mem=$?"
    )
    out = lines(sh(bb_root, script).stdout)
    listing = set(out[: out.index("--")])
    assert listing == MIN_DEV
    results = dict(line.split("=", 1) for line in out if "=" in line)
    assert results == {"dev-sda": "1", "tmp-sda": "1", "mem": "1"}, results


@pytest.mark.hazard(86)
def test_ptys_stay_in_the_containers_devpts(bb_root: Path) -> None:
    before = set(os.listdir("/dev/pts"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rootstrap",
            "run",
            "-D",
            str(bb_root),
            "--",
            "sh",
            "-c",
            "exec 3<>/dev/ptmx; ls /dev/pts; echo ready; sleep 2",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    inside = []
    for line in proc.stdout:
        if line.strip() == "ready":
            break
        inside.append(line.strip())
    during = set(os.listdir("/dev/pts"))
    proc.wait(timeout=30)
    assert inside == ["0", "ptmx"]  # a fresh devpts instance numbers from 0
    assert during == before


def _perl(
    debian_root: Path, code: str, *options: str, **kw: object
) -> subprocess.CompletedProcess[str]:
    return rootstrap(
        "run", "-D", str(debian_root), "--read-only", *options, "--", "perl", "-e", code, **kw
    )


@pytest.mark.network
@pytest.mark.hazard(87)
def test_tiocsti_cannot_inject_into_the_host_terminal(debian_root: Path) -> None:
    master, slave = os.openpty()
    code = (
        'for my $req (0x5412, (0x123 << 32) | 0x5412) { my $c = "x";'
        ' my $r = ioctl(STDIN, $req, $c); print STDERR (defined $r ? "ok\\n" : "$!\\n"); }'
    )
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "rootstrap",
                "run",
                "-D",
                str(debian_root),
                "--read-only",
                "--console=pipe",
                "--",
                "perl",
                "-e",
                code,
            ],
            stdin=slave,
            capture_output=True,
            text=True,
            timeout=60,
        )
        os.set_blocking(master, False)
        try:
            injected = os.read(master, 100)
        except BlockingIOError:
            injected = b""
    finally:
        os.close(master)
        os.close(slave)
    assert lines(result.stderr) == ["Operation not permitted", "Operation not permitted"]
    assert injected == b""
    # The payload has no controlling terminal at all (setsid).
    tty = _perl(debian_root, 'open(my $t, "<", "/dev/tty") or print "$!\\n"')
    assert tty.stdout.strip() == "No such device or address"


@pytest.mark.network
@pytest.mark.hazard(88, 89)
def test_denied_syscalls_fail_with_eperm(debian_root: Path) -> None:
    names = sorted(SYSCALLS)
    code = "".join(
        f'$! = 0; syscall({SYSCALLS[n][ARCH]}, 0, 0, 0, 0, 0); print "{n}=", ($!+0), "\\n";'
        for n in names
    )
    result = _perl(debian_root, code)
    out = dict(line.split("=") for line in lines(result.stdout))
    assert out == {n: "1" for n in names}, out  # 1 == EPERM
    # --system-call-filter=@keyring gives keyctl back; ~@... takes more away.
    allowed = _perl(debian_root, code, "--system-call-filter=@keyring keyctl")
    assert dict(line.split("=") for line in lines(allowed.stdout))["keyctl"] != "1"
    mount = ("--capability=CAP_SYS_ADMIN", "--", "mount", "-t", "tmpfs", "t", "/mnt")
    base = rootstrap("run", "-D", str(debian_root), "--read-only", *mount)
    assert base.returncode == 0, base.stderr
    more = rootstrap(
        "run", "-D", str(debian_root), "--read-only", "--system-call-filter=~@mount", *mount
    )
    assert more.returncode != 0


@pytest.mark.hazard(90)
def test_host_fds_do_not_leak_and_cwd_must_be_inside(bb_root: Path, tmp_path: Path) -> None:
    root_dir = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    log = open(tmp_path / "log", "w")
    os.set_inheritable(root_dir, True)
    os.set_inheritable(log.fileno(), True)
    r, w = os.pipe()
    try:
        code = run(RunSpec(root=bb_root, argv=["ls", "/proc/self/fd"], stdout=w))
        os.close(w)
        listing = os.read(r, 4096).decode().split()
        assert code == 0
        assert listing == ["0", "1", "2", "3"]  # 3 is ls's own directory handle
        for cwd in (f"/proc/self/fd/{root_dir}", f"/proc/1/fd/{root_dir}"):
            with pytest.raises(Exception) as info:
                run(RunSpec(root=bb_root, argv=["pwd"], cwd=cwd))
            assert "working directory" in str(info.value)
    finally:
        os.close(root_dir)
        log.close()
        os.close(r)
    result = rootstrap("run", "-D", str(bb_root), "--chdir=/proc/self/cwd/..", "pwd")
    assert result.stdout == "/\n"


@pytest.mark.hazard(91)
def test_runner_is_not_writable_or_traceable(bb_root: Path, tmp_path: Path) -> None:
    exe = Path(os.path.realpath(sys.executable))
    digest = hashlib.sha256(exe.read_bytes()).hexdigest()
    script = (
        "echo x >> /proc/1/exe; echo write=$?;"
        "cat /proc/1/environ >/dev/null 2>&1; echo environ=$?;"
        "grep -c . /proc/1/maps >/dev/null 2>&1; echo maps=$?"
    )
    result = sh(bb_root, script)
    out = dict(line.split("=") for line in lines(result.stdout))
    assert out["write"] != "0"
    # Pid 1 is no stronger than the payload: no capabilities but KILL, the same filter.
    status = sh(bb_root, "cat /proc/1/status").stdout
    assert int(status_field(status, "CapEff"), 16) == 1 << caps.NUMBERS["KILL"]
    assert status_field(status, "Seccomp") == "2"
    assert status_field(status, "CapBnd") == status_field(status, "CapEff")
    userns = sh(bb_root, script, "--private-users=pick")
    out_userns = dict(line.split("=") for line in lines(userns.stdout))
    assert all(value != "0" for value in out_userns.values()), out_userns
    assert hashlib.sha256(exe.read_bytes()).hexdigest() == digest


@pytest.mark.hazard(92)
@pytest.mark.parametrize(
    ("name", "kind"),
    [("proc", "link-root"), ("dev", "link-etc"), ("sys", "file"), ("proc", "file")],
)
def test_api_dirs_as_symlinks_or_files_are_refused(bb_root: Path, name: str, kind: str) -> None:
    path = bb_root / name
    path.rmdir()
    if kind == "file":
        path.write_text("not a dir")
    else:
        path.symlink_to("/" if kind == "link-root" else "/etc")
    mounts_before = Path("/proc/self/mountinfo").read_text()
    result = sh(bb_root, "true")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {bb_root}: /{name}: must be a directory")
    assert "Traceback" not in result.stderr
    assert Path("/proc/self/mountinfo").read_text() == mounts_before


@pytest.mark.hazard(92)
def test_symlinked_bind_target_is_refused(bb_root: Path, tmp_path: Path) -> None:
    (bb_root / "mnt").rmdir()
    (bb_root / "mnt").symlink_to("/etc")
    result = sh(bb_root, "true", "--bind", f"{tmp_path}:/mnt/x")
    assert result.returncode == 1
    assert "/mnt: is a symlink in the image" in result.stderr
    assert not Path("/etc/x").exists()


@pytest.mark.hazard(93)
def test_image_dev_symlinks_are_ignored(bb_root: Path) -> None:
    core = Path("/proc/sys/kernel/core_pattern").read_text()
    for name in ("null", "console"):
        (bb_root / "dev" / name).symlink_to("/proc/sys/kernel/core_pattern")
    (bb_root / "dev/pts").mkdir()
    (bb_root / "dev/pts/ptmx").symlink_to("/proc/sys/kernel/core_pattern")
    result = sh(bb_root, "echo '|/tmp/evil' > /dev/null; ls -l /dev/null /dev/pts/ptmx")
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout)[0].startswith("crw")
    interactive = subprocess.run(
        [
            "script",
            "-qec",
            f"{sys.executable} -m rootstrap run -D {bb_root} -- "
            "sh -c 'echo x > /dev/console; ls -l /dev/console'",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "crw" in interactive.stdout, interactive.stdout + interactive.stderr
    assert Path("/proc/sys/kernel/core_pattern").read_text() == core


@pytest.mark.network
@pytest.mark.hazard(94)
def test_chroot_escape_stays_inside(debian_root: Path) -> None:
    code = (
        'mkdir "/tmp/x"; chroot "/tmp/x" or die "chroot: $!"; chdir ".." for 1..64;'
        ' chroot "." or die; opendir(my $d, "/") or die; print join(" ", sort grep !/^\\./,'
        ' readdir $d), "\\n";'
    )
    result = _perl(debian_root, code)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted(
        n for n in os.listdir(debian_root) if not n.startswith(".")
    )
    info = rootstrap("run", "-D", str(debian_root), "--read-only", "cat", "/proc/1/mountinfo")
    points = {line.split()[4] for line in lines(info.stdout)}
    host_only = {line.split()[4] for line in lines(Path("/proc/1/mountinfo").read_text())} - {
        "/",
        "/proc",
        "/sys",
        "/dev",
        "/run",
        "/tmp",
        "/dev/shm",
        "/dev/pts",
    }
    assert not points & host_only, points & host_only
    assert not any("oldroot" in p for p in points)


def _find(pattern: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if pattern.encode() in cmd:
                found.append(int(pid))
    return found


def _wait_for(pattern: str, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _find(pattern)
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{pattern} never started")


@pytest.mark.hazard(95, 117)
# --private-users: the middle process's uid change cleared its parent-death signal, so the
# container outlived a killed runner.
@pytest.mark.parametrize("options", [(), ("--private-users=pick",)], ids=["plain", "userns"])
def test_sigkill_of_the_runner_kills_the_container(bb_root: Path, options: tuple[str, ...]) -> None:
    from rootstrap.linux.locks import lock_image

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rootstrap",
            "run",
            *options,
            "-D",
            str(bb_root),
            "--",
            "sh",
            "-c",
            "sleep 4141 & sleep 4242",
        ],
    )

    def sleeps() -> list[int]:  # the payload's own, not rootstrap's (its argv holds the words)
        found = []
        for pid in _find("sleep 4"):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes() in (
                    b"sleep\x004141\x00",
                    b"sleep\x004242\x00",
                ):
                    found.append(pid)
        return found

    deadline = time.monotonic() + 20
    while len(sleeps()) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "the sleeps never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 1.0  # HAZARDS 114: within a second
    while sleeps() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sleeps() == []
    assert _find("sleep 4242") == [] and _find("sleep 4141") == []  # the runner's processes
    with lock_image(bb_root, exclusive=True):
        pass  # the lock was released with the runner


@pytest.mark.hazard(96)
def test_hostname_pids_and_network_are_private(bb_root: Path) -> None:
    host_name = os.uname().nodename
    assert sh(bb_root, "hostname changed-inside").returncode != 0  # no CAP_SYS_ADMIN
    changed = sh(bb_root, "hostname changed-inside; hostname", "--capability=CAP_SYS_ADMIN")
    assert changed.stdout == "changed-inside\n"  # it changed, in the container's UTS only
    assert os.uname().nodename == host_name
    pids = lines(sh(bb_root, "ls -d /proc/[0-9]*").stdout)
    assert len(pids) <= 3  # pid 1 (reaper), sh, ls
    assert "/proc/1" in pids
    net = sh(bb_root, "ls /sys/class/net", "--private-network").stdout.split()
    assert net == ["lo"]


@pytest.mark.hazard(97)
def test_user_namespace_maps_files_and_keeps_host_nodes(bb_root: Path, tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir(mode=0o777)
    share.chmod(0o777)
    node = tmp_path / "node"
    os.mknod(node, 0o600 | 0o020000, os.makedev(1, 3))  # a char device like /dev/net/tun
    before = node.stat()
    result = sh(
        bb_root,
        "id -u; touch /share/new; chown 0:0 /node; chmod 666 /node; true",
        "--private-users=1000000:65536",
        "--bind",
        f"{share}:/share",
        "--bind",
        f"{node}:/node",
    )
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == ["0"]
    st = (share / "new").stat()
    assert (st.st_uid, st.st_gid) == (1000000, 1000000)
    after = node.stat()
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )


@pytest.mark.hazard(98)
def test_host_root_is_refused(tmp_path: Path) -> None:
    result = rootstrap("run", "-D", "/", "true")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "error: /: running a container on the host's root directory is not supported"
    )
    link = tmp_path / "hostroot"
    link.symlink_to("/")
    assert rootstrap("run", "-D", str(link), "true").returncode == 1
