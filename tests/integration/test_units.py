"""rootstrap enable/disable: the unit systemd accepts, the offline install with real systemctl,
and the clean refusal on a host without systemd as PID 1 (issue 10).

systemd is not PID 1 on the test machines, but its tools are: ``systemd-analyze verify``
loads our unit (and its drop-ins) as the manager would and reports every key it cannot
parse, and ``systemctl --root`` creates and removes the links for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootstrap.machines import unitfile, units
from rootstrap.paths import DEFAULT_STORE
from tests.conftest import tree_digest
from tests.support.fixtures import BOOT_IMAGE, make_busybox_root

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SYSTEMCTL = shutil.which("systemctl")
HOST_UNITS = Path("/lib/systemd/system")
needs_systemd_tools = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None or SYSTEMCTL is None, reason="systemd's tools are not installed"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (writes unit links)")


def rootstrap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rootstrap", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def verify(unit: Path) -> tuple[int, str]:
    """systemd-analyze verify UNIT: its exit status and every line it printed."""
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    return done.returncode, done.stdout + done.stderr


def our_lines(output: str) -> list[str]:
    """Lines of verify's output about our units (it may also talk about the host's)."""
    return [line for line in output.splitlines() if "rootstrap" in line]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store holding images 'deb' and 'two' (empty directories suffice: enable looks for
    the image, it does not boot it)."""
    store = tmp_path / "store"
    for name in ("deb", "two"):
        (store / name).mkdir(parents=True)
    return store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An offline system root with systemd's machines.target (what --root links into)."""
    root = tmp_path / "root"
    vendor = root / "usr/lib/systemd/system"
    vendor.mkdir(parents=True)
    for unit in ("machines.target", "multi-user.target"):
        if not (HOST_UNITS / unit).exists():
            pytest.skip(f"the host has no {unit}")
        shutil.copy(HOST_UNITS / unit, vendor / unit)
    return root


# ---- the unit systemd accepts ----


@needs_systemd_tools
def test_template_verifies_clean(tmp_path: Path) -> None:
    (tmp_path / unitfile.TEMPLATE).write_text(unitfile.render(unitfile.executable()))
    code, output = verify(tmp_path / unitfile.instance("deb"))
    assert code == 0, output
    assert our_lines(output) == []


@needs_systemd_tools
def test_verify_catches_a_bad_key(tmp_path: Path) -> None:
    """The checker above is live: a key systemd cannot parse is reported."""
    text = unitfile.render(unitfile.executable()).replace("KillMode=mixed", "KillMode=mixd")
    (tmp_path / unitfile.TEMPLATE).write_text(text)
    _, output = verify(tmp_path / unitfile.instance("deb"))
    assert any("kill mode" in line for line in our_lines(output)), output


@needs_systemd_tools
def test_unit_settings() -> None:
    """What the unit must say (issue 10): systemd-nspawn@.service's service settings, with
    our boot as ExecStart."""
    command = unitfile.executable()
    assert os.path.isabs(command[0]) and os.access(command[0], os.X_OK)
    settings = [
        line for line in unitfile.render(command).splitlines() if line and not line.startswith("#")
    ]
    for wanted in (
        "PartOf=machines.target",
        "Before=machines.target",
        "After=network.target",
        "RequiresMountsFor=/var/lib/machines/%i",
        "Type=notify",
        "NotifyAccess=main",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        "Delegate=yes",
        "Slice=machine.slice",
        "TasksMax=16384",
        "WantedBy=machines.target",
        f"ExecStart={command[0]} boot --console=service %i",
    ):
        assert wanted in settings
    assert any(line.startswith("TimeoutStopSec=") for line in settings)


@needs_systemd_tools
def test_odd_store_path_verifies(tmp_path: Path) -> None:
    """A store path with a blank, % and $ is quoted and escaped, not split or expanded."""
    store = "/srv/my store/100%$HOME"
    (tmp_path / unitfile.TEMPLATE).write_text(unitfile.render(unitfile.executable()))
    dropins = tmp_path / f"{unitfile.instance('deb')}.d"
    dropins.mkdir()
    text = unitfile.render_dropin(store, unitfile.executable())
    (dropins / unitfile.DROPIN).write_text(text)
    assert '"/srv/my store/100%%$$HOME"' in text
    assert 'RequiresMountsFor="/srv/my store/100%%$HOME/%i"' in text
    code, output = verify(tmp_path / unitfile.instance("deb"))
    assert code == 0, output
    assert our_lines(output) == []
    # ...and the drop-in is really read by that verification:
    (dropins / unitfile.DROPIN).write_text(text + "Bogus=1\n")
    _, output = verify(tmp_path / unitfile.instance("deb"))
    assert any("Bogus" in line for line in our_lines(output)), output


def test_control_character_in_store_is_refused() -> None:
    from rootstrap.errors import UsageError

    with pytest.raises(UsageError, match="control character"):
        unitfile.render_dropin("/srv/a\nExecStartPre=/bin/evil", ["/usr/bin/rootstrap"])


# ---- --root: the real install path, offline ----


@needs_systemd_tools
@needs_root
def test_enable_disable_root_end_to_end(store: Path, root: Path) -> None:
    units_dir = root / "etc/systemd/system"
    done = rootstrap("--store", str(store), "enable", "--root", str(root), "deb", "two")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr

    command = unitfile.executable()
    template = units_dir / unitfile.TEMPLATE
    assert template.read_text() == unitfile.render(command)
    assert template.stat().st_mode & 0o777 == 0o644
    for name in ("deb", "two"):
        link = units_dir / "machines.target.wants" / unitfile.instance(name)
        assert os.readlink(link) == f"/etc/systemd/system/{unitfile.TEMPLATE}"
        dropin = units_dir / f"{unitfile.instance(name)}.d" / unitfile.DROPIN
        assert dropin.read_text() == unitfile.render_dropin(str(store), command)
        assert f"--store {store} boot --console=service %i" in dropin.read_text()
        # What was installed, drop-in included, is what systemd accepts:
        code, output = verify(units_dir / unitfile.instance(name))
        assert code == 0, output
        assert our_lines(output) == []
    # machinectl enables machines.target with the machine:
    assert (units_dir / "multi-user.target.wants/machines.target").is_symlink()
    assert not list(units_dir.glob(".#*")), "a temporary file was left behind"

    # A second enable changes nothing.
    before = tree_digest(root)
    mtime = template.stat().st_mtime_ns
    done = rootstrap("--store", str(store), "enable", "--root", str(root), "deb")
    assert done.returncode == 0, done.stderr
    assert tree_digest(root) == before
    assert template.stat().st_mtime_ns == mtime

    done = rootstrap("--store", str(store), "disable", "--root", str(root), "deb")
    assert done.returncode == 0, done.stderr
    assert not (units_dir / "machines.target.wants" / unitfile.instance("deb")).is_symlink()
    assert (units_dir / "machines.target.wants" / unitfile.instance("two")).is_symlink()
    assert template.exists(), "disable keeps the template, as machinectl keeps nspawn's"

    # An image that is gone can still be disabled (its link is all that is left of it).
    shutil.rmtree(store / "two")
    done = rootstrap("--store", str(store), "disable", "--root", str(root), "two")
    assert done.returncode == 0, done.stderr
    assert not (units_dir / "machines.target.wants" / unitfile.instance("two")).is_symlink()


@needs_systemd_tools
@needs_root
def test_default_store_needs_no_dropin(store: Path, root: Path) -> None:
    """Enabling from the default store removes a stale store drop-in of ours, so the
    template's own ExecStart applies again."""
    units_dir = root / "etc/systemd/system"
    assert rootstrap("--store", str(store), "enable", "--root", str(root), "deb").returncode == 0
    dropin = units_dir / f"{unitfile.instance('deb')}.d" / unitfile.DROPIN
    assert dropin.exists()
    units.enable(["deb"], DEFAULT_STORE, root=str(root))  # images checked by main()
    assert not dropin.exists()
    assert not dropin.parent.exists()
    assert (units_dir / "machines.target.wants" / unitfile.instance("deb")).is_symlink()


@needs_systemd_tools
@needs_root
def test_stale_template_is_replaced(store: Path, root: Path) -> None:
    units_dir = root / "etc/systemd/system"
    units_dir.mkdir(parents=True)
    template = units_dir / unitfile.TEMPLATE
    template.write_text(unitfile.MARK + "\n[Service]\nExecStart=/old/rootstrap boot %i\n")
    done = rootstrap("--store", str(store), "enable", "--root", str(root), "deb")
    assert done.returncode == 0, done.stderr
    assert template.read_text() == unitfile.render(unitfile.executable())


@needs_systemd_tools
@needs_root
def test_foreign_template_is_left_alone(store: Path, root: Path) -> None:
    """A rootstrap@.service the admin wrote is not overwritten, and nothing is linked."""
    units_dir = root / "etc/systemd/system"
    units_dir.mkdir(parents=True)
    (units_dir / unitfile.TEMPLATE).write_text("[Service]\nExecStart=/bin/true\n")
    before = tree_digest(root)
    done = rootstrap("--store", str(store), "enable", "--root", str(root), "deb")
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {units_dir / unitfile.TEMPLATE}: exists and was not")
    assert "hint: " in done.stderr and "Traceback" not in done.stderr
    assert tree_digest(root) == before


@needs_systemd_tools
@needs_root
def test_failed_systemctl_leaves_nothing(store: Path, root: Path) -> None:
    """systemctl cannot link (machines.target.wants is a file): a clean error naming the
    command, and the template and drop-in it had written are gone again."""
    units_dir = root / "etc/systemd/system"
    units_dir.mkdir(parents=True)
    (units_dir / "machines.target.wants").write_text("in the way\n")
    before = tree_digest(root)
    done = rootstrap("--store", str(store), "enable", "--root", str(root), "deb")
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: systemctl enable: Failed to enable unit"), errors
    assert "Traceback" not in done.stderr
    assert tree_digest(root) == before


def test_root_without_systemd(store: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = rootstrap("--store", str(store), "enable", "--root", str(empty), "deb")
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {empty}: no machines.target or multi-user.target")
    assert list(empty.iterdir()) == []


@needs_systemd_tools
@needs_root
def test_root_without_machines_target(store: Path, root: Path) -> None:
    """Debian's machines.target comes with systemd-container: without it the machines are
    wanted by multi-user.target directly, and disable still removes every link."""
    (root / "usr/lib/systemd/system/machines.target").unlink()
    units_dir = root / "etc/systemd/system"
    done = rootstrap("--store", str(store), "enable", "--root", str(root), "deb")
    assert done.returncode == 0, done.stderr
    assert "no machines.target" in done.stderr and "non-existent" not in done.stderr
    link = units_dir / "multi-user.target.wants" / unitfile.instance("deb")
    assert os.readlink(link) == f"/etc/systemd/system/{unitfile.TEMPLATE}"
    done = rootstrap("--store", str(store), "disable", "--root", str(root), "deb")
    assert done.returncode == 0, done.stderr
    assert [p for p in units_dir.rglob("*") if p.is_symlink()] == []


# ---- without systemd as PID 1 ----


@pytest.mark.skipif(units.booted(), reason="systemd runs as PID 1 here: covered by --root")
def test_no_systemd_prints_the_unit_and_fails(store: Path) -> None:
    target = Path("/etc/systemd/system") / unitfile.TEMPLATE
    existed = target.exists()
    before = target.read_bytes() if existed else None
    done = rootstrap("--store", str(store), "enable", "deb")
    assert done.returncode == 1
    assert done.stdout == unitfile.render(unitfile.executable(), str(store))
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0] == (
        "error: deb: systemd is not running as PID 1, so nothing was enabled "
        "(the unit is on stdout)"
    )
    assert lines[1].startswith("hint: save it as /etc/systemd/system/rootstrap@.service")
    assert f"rootstrap --store {store} start deb" in lines[1]
    # Nothing written:
    assert target.exists() == existed
    if before is not None:
        assert target.read_bytes() == before
    assert not Path("/etc/systemd/system/machines.target.wants/rootstrap@deb.service").exists()

    done = rootstrap("--store", str(store), "disable", "deb")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: deb: systemd is not running as PID 1")


# ---- bad input ----


@pytest.mark.hazard(67)
@pytest.mark.parametrize("verb", ["enable", "disable"])
@pytest.mark.parametrize("name", ["..", "a/b", ".x", "-", "a..b", "x" * 65, "a\x01b", "ä"])
def test_bad_names(store: Path, root: Path, verb: str, name: str) -> None:
    before = tree_digest(root)
    done = rootstrap("--store", str(store), verb, "--root", str(root), "--", name)
    assert done.returncode == 2, done.stderr
    assert ": not a valid machine name: " in done.stderr.splitlines()[0]
    assert "Traceback" not in done.stderr
    assert tree_digest(root) == before


def test_missing_image(store: Path, root: Path) -> None:
    before = tree_digest(root)
    done = rootstrap("--store", str(store), "enable", "--root", str(root), "deb", "nope")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == "error: nope: no such image"
    assert tree_digest(root) == before, "the good name before the bad one was not enabled"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "enable needs at least one image name"),
        (["--now", "--root", "/", "deb"], "--now cannot be used with --root"),
        (["--frobnicate", "deb"], "unknown option --frobnicate"),
        (["--root"], "--root needs a directory"),
    ],
)
def test_usage_errors(store: Path, args: list[str], message: str) -> None:
    done = rootstrap("--store", str(store), "enable", *args)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == f"error: {message}"
    assert done.stdout == ""


def test_root_not_a_directory(store: Path, tmp_path: Path) -> None:
    done = rootstrap("--store", str(store), "enable", "--root", str(tmp_path / "no"), "deb")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == f"error: {tmp_path / 'no'}: --root is not a directory"
    assert not (tmp_path / "no").exists()


def test_help() -> None:
    done = rootstrap("enable", "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: rootstrap enable")


# ---- with systemd as PID 1: a real manager in a container ----


def _binds() -> list[str]:
    """What the container needs from the host to run this rootstrap: the interpreter's
    prefix, the venv and the source tree, read-only (one bind covers its subdirectories)."""
    import rootstrap

    wanted = {
        os.path.realpath(sys.base_prefix),
        os.path.realpath(sys.prefix),
        os.path.dirname(os.path.dirname(os.path.realpath(rootstrap.__file__))),
    }
    keep = [p for p in wanted if not any(p != q and p.startswith(q + "/") for q in wanted)]
    return [f"--bind-ro={p}" for p in sorted(keep)]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when pytest dies (a killed test run must not leave
    a booted container behind; nspawn shuts the guest down on SIGTERM)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, 15, 0, 0, 0)


class SystemdContainer:
    """The cached bookworm image booted by systemd-nspawn (the compatibility oracle of
    docs/decisions.md) on a throw-away overlay, so systemd is PID 1 in there; commands run in it
    through nsenter."""

    def __init__(self, image: Path, rwstore: Path) -> None:
        self.rwstore = rwstore  # the host directory seen in there as /srv/rwstore
        self.proc = subprocess.Popen(
            [
                "systemd-nspawn",
                *("--register=no", "--keep-unit", "--quiet", "--volatile=overlay"),
                *("-D", str(image), "-M", f"units{os.getpid() % 100000}", "--boot"),
                *_binds(),
                f"--bind={rwstore}:/srv/rwstore",
                # nspawn's own seccomp filter answers EPERM to system calls it does not
                # know; rootstrap boot takes the console pty from its pid 1 with this one.
                "--system-call-filter=pidfd_getfd",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.leader = 0
        for _ in range(300):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids and Path(f"/proc/{pids[0]}/comm").read_text().strip() == "systemd":
                self.leader = int(pids[0])
                break
            assert self.proc.poll() is None, "systemd-nspawn exited"
            time.sleep(0.05)
        assert self.leader, "the container's systemd did not start"
        # Until the manager listens, systemctl cannot connect: ask again.
        deadline = time.monotonic() + 120
        while True:
            done = self.sh("systemctl is-system-running --wait", timeout=120)
            if done.stdout.strip() in ("running", "degraded"):
                break
            assert time.monotonic() < deadline, done.stdout + done.stderr
            time.sleep(0.1)

    def sh(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def systemd_container(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[SystemdContainer]:
    if shutil.which("systemd-nspawn") is None or shutil.which("nsenter") is None:
        pytest.skip("systemd-nspawn (systemd-container) or nsenter is not installed")
    if os.geteuid() != 0:
        pytest.skip("needs root (boots a container)")
    # Asked for only now: building the image is wasted on a host that skips above.
    store: Path = request.getfixturevalue("boot_store")
    rwstore = tmp_path_factory.mktemp("rwstore")
    box = SystemdContainer(store / BOOT_IMAGE, rwstore)
    try:
        yield box
    finally:
        box.stop()
        shutil.rmtree(rwstore, ignore_errors=True)  # a copy of a 200 MB image


@pytest.mark.slow
@pytest.mark.network
def test_enable_disable_with_systemd_running(systemd_container: SystemdContainer) -> None:
    """On a host booted with systemd: the template installed, the instance enabled through
    the running manager, which loads our unit with the settings we meant."""
    rs = f"{sys.executable} -m rootstrap --store /srv/store"
    done = systemd_container.sh(f"mkdir -p /srv/store/deb && {rs} enable deb")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    done = systemd_container.sh(
        "systemctl is-enabled rootstrap@deb.service; systemctl show "
        "rootstrap@deb.service -p WantedBy -p Type -p NotifyAccess -p KillMode -p KillSignal "
        "-p Delegate -p Slice -p TasksMax -p PartOf -p RequiresMountsFor -p DropInPaths "
        "-p NeedDaemonReload -p ExecStart"
    )
    out = done.stdout
    assert out.startswith("enabled\n"), out
    # This image has no systemd-container, so no machines.target: multi-user.target wants it.
    assert "multi-user.target" in out.split("WantedBy=")[1].splitlines()[0], out
    for wanted in (
        "Type=notify",
        "NotifyAccess=main",
        "KillMode=mixed",
        "KillSignal=15",
        "Delegate=yes",
        "Slice=machine.slice",
        "TasksMax=16384",
        "PartOf=machines.target",
        "NeedDaemonReload=no",
        "DropInPaths=/etc/systemd/system/rootstrap@deb.service.d/50-rootstrap-store.conf",
    ):
        assert wanted in out.splitlines(), (wanted, out)
    assert "/srv/store/deb" in out.split("RequiresMountsFor=")[1].splitlines()[0]
    # systemd's own parse of ExecStart: our argv, word for word.
    command = " ".join(unitfile.executable())
    assert f"argv[]={command} --store /srv/store boot --console=service deb ;" in out, out

    # A stale template behind an existing link: rewritten and reloaded (no stale unit).
    template = "/etc/systemd/system/rootstrap@.service"
    done = systemd_container.sh(
        f"sed -i 's/TasksMax=16384/TasksMax=100/' {template} && systemctl daemon-reload && "
        "systemctl show rootstrap@deb.service -p TasksMax && "
        f"{rs} enable deb && "
        "systemctl show rootstrap@deb.service -p TasksMax -p NeedDaemonReload"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["TasksMax=100", "TasksMax=16384", "NeedDaemonReload=no"], (
        done.stdout
    )

    done = systemd_container.sh(f"{rs} disable deb; systemctl is-enabled rootstrap@deb.service")
    assert done.stdout.strip() == "disabled", done.stdout + done.stderr
    assert systemd_container.sh(f"test -f {template}").returncode == 0


@pytest.mark.slow
@pytest.mark.network
def test_enable_now_start_failure_is_clean(systemd_container: SystemdContainer) -> None:
    """--now starts the machine through systemd; an image that cannot boot (an empty
    directory) is a clean error pointing at the journal, and the machine stays enabled."""
    rs = f"{sys.executable} -m rootstrap --store /srv/store"
    done = systemd_container.sh(f"mkdir -p /srv/store/empty && {rs} enable --now empty")
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(
        "error: systemctl start (the machines are enabled): Job for rootstrap@empty.service failed"
    ), errors
    assert "hint: see 'journalctl -u rootstrap@empty.service'" in done.stderr
    assert "Traceback" not in done.stderr
    state = systemd_container.sh("systemctl is-enabled rootstrap@empty.service").stdout
    assert state.strip() == "enabled"
    done = systemd_container.sh(f"{rs} disable --now empty")
    assert done.returncode == 0, done.stderr


@needs_systemd_tools
@needs_root
def test_relative_root(store: Path, root: Path) -> None:
    """--root is taken relative to the working directory, as systemctl's is."""
    done = subprocess.run(
        [sys.executable, "-m", "rootstrap", "--store", str(store), "enable", "--root=root", "deb"],
        cwd=root.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (root / "etc/systemd/system/machines.target.wants/rootstrap@deb.service").is_symlink()


def test_disable_usage() -> None:
    done = rootstrap("disable")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: disable needs at least one image name",
        "hint: rootstrap disable [--now] [--root DIR] NAME...",
    ]


@pytest.mark.slow
@pytest.mark.network
def test_service_boots_and_stops_cleanly(
    systemd_container: SystemdContainer, boot_store: Path
) -> None:
    """The unit at work under a real systemd: 'enable --now' returns once the machine's init
    reported READY=1 (Type=notify), the console is in the journal, and 'systemctl stop'
    (SIGTERM to rootstrap alone, KillMode=mixed) halts the machine cleanly, well within
    TimeoutStopSec, leaving no process and no mount behind."""
    subprocess.run(
        [
            "cp",
            "-a",
            "--reflink=auto",
            str(boot_store / BOOT_IMAGE),
            str(systemd_container.rwstore),
        ],
        check=True,
        timeout=300,
    )
    box = systemd_container
    rs = f"{sys.executable} -m rootstrap --store /srv/rwstore"
    unit = unitfile.instance(BOOT_IMAGE)
    done = box.sh(f"{rs} enable --now {BOOT_IMAGE}", timeout=180)
    journal = box.sh(f"journalctl -q -u {unit} --no-pager").stdout
    assert done.returncode == 0, done.stderr + journal
    state = box.sh(f"systemctl show {unit} -p ActiveState -p SubState -p MainPID").stdout
    assert "ActiveState=active" in state and "SubState=running" in state, state
    listed = box.sh(f"{rs} list").stdout
    assert BOOT_IMAGE in listed, listed
    assert "Reached target" in box.sh(f"journalctl -q -u {unit} --no-pager").stdout

    started = time.monotonic()
    done = box.sh(f"systemctl stop {unit}", timeout=150)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 30, f"stop took {took:.1f} s: the machine did not halt on SIGTERM"
    result = box.sh(f"systemctl show {unit} -p Result -p ExecMainStatus").stdout.split()
    assert result == ["Result=success", "ExecMainStatus=0"], result
    assert BOOT_IMAGE not in box.sh(f"{rs} list").stdout
    mounts = box.sh("cat /proc/self/mountinfo").stdout
    assert "/srv/rwstore/" not in mounts, mounts
    assert box.sh(f"{rs} disable {BOOT_IMAGE}").returncode == 0


@needs_root
def test_runner_under_a_shared_root(tmp_path: Path) -> None:
    """What the unit meets on every systemd host: "/" is a shared mount (systemd makes it
    so at boot). rootstrap run must work there and leave no mount in the caller's
    namespace (it failed with pivot_root EINVAL and leaked proc, sys, dev... before the
    runner made its open_tree clones private)."""
    root = make_busybox_root(tmp_path / "bb")
    script = (
        "mount --make-rshared / && "
        f"{sys.executable} -m rootstrap run -D {root} /bin/true; echo rc=$?; "
        f"grep -c ' {root}/' /proc/self/mountinfo || true"
    )
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "unchanged", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.split() == ["rc=0", "0"], done.stdout + done.stderr
