"""Settings files (.nspawn) honoured by a real ``rootstrap run``, side by side with
systemd-nspawn reading the very same file (issue 10: "a .nspawn file's Bind and Environment
are honoured and overridden by the command line").

Each test gets its own store with a busybox image under a unique machine name; a file in
/run/systemd/nspawn/ is removed afterwards."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ns.conftest import rootstrap
from tests.support.fixtures import make_busybox_root

RUN_DIR = Path("/run/systemd/nspawn")
_count = itertools.count()

# What every probe prints: the two bound files (or "-"), FOO and CLI from the environment.
PROBE = (
    'for f in /mnt/b1/f /mnt/b2/f; do if [ -r "$f" ]; then cat "$f"; else echo -; fi; done; '
    'echo "FOO=${FOO:-unset} CLI=${CLI:-unset}"'
)


class Machine:
    def __init__(self, store: Path, name: str, host: Path) -> None:
        self.store = store
        self.name = name
        self.image = store / name
        self.host = host  # host directories b1 (holds "one") and b2 ("two")
        self.written: list[Path] = []

    def settings(self, text: str, beside: bool = False) -> Path:
        """Write NAME.nspawn into /run/systemd/nspawn (trusted) or beside the image."""
        path = (self.store if beside else RUN_DIR) / f"{self.name}.nspawn"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("@HOST@", str(self.host)))
        self.written.append(path)
        return path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return rootstrap("--store", str(self.store), "run", *args, self.name, "sh", "-c", PROBE)

    def nspawn(
        self, *args: str, command: tuple[str, ...] = ("sh", "-c", PROBE)
    ) -> subprocess.CompletedProcess[str]:
        """systemd-nspawn on the same tree (running COMMAND; none: what the file says); its
        machine name is the directory's name, so it reads the same settings file."""
        argv = ["systemd-nspawn", "--register=no", "--keep-unit", "-q", "-D", str(self.image)]
        return subprocess.run(
            [*argv, *args, *command],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    name = f"rs-settings-{os.getpid()}-{next(_count)}"
    store = tmp_path / "store"
    make_busybox_root(store / name)
    host = tmp_path / "host"
    for sub, text in (("b1", "one"), ("b2", "two")):
        (host / sub).mkdir(parents=True)
        (host / sub / "f").write_text(text + "\n")
    m = Machine(store, name, host)
    yield m
    for path in m.written:
        path.unlink(missing_ok=True)


@pytest.fixture
def nspawn() -> None:
    """The oracle: skip when systemd-nspawn is not installed."""
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("systemd-nspawn missing (apt-get install systemd-container)")


FILE = """\
[Exec]
Environment=FOO=file
[Files]
Bind=@HOST@/b1:/mnt/b1
"""


def _out(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # The file alone: its Bind= and Environment=.
        ((), ["one", "-", "FOO=file CLI=unset"]),
        # One --setenv replaces all of the file's Environment=; its mounts stay.
        (("--setenv=CLI=1",), ["one", "-", "FOO=unset CLI=1"]),
        # One --bind replaces all of the file's mounts; its Environment= stays.
        (("--bind=@HOST@/b2:/mnt/b2",), ["-", "two", "FOO=file CLI=unset"]),
        # --tmpfs is a mount too: the file's Bind= goes.
        (("--tmpfs=/mnt/t",), ["-", "-", "FOO=file CLI=unset"]),
        # override: the file wins over the command line, setting by setting.
        (
            ("--settings=override", "--setenv=CLI=1", "--bind=@HOST@/b2:/mnt/b2"),
            ["one", "-", "FOO=file CLI=unset"],
        ),
        # no: the file is not read.
        (("--settings=no",), ["-", "-", "FOO=unset CLI=unset"]),
    ],
)
def test_trusted_file_bind_and_environment(
    machine: Machine, nspawn: object, options: tuple[str, ...], expected: list[str]
) -> None:
    machine.settings(FILE)
    opts = [o.replace("@HOST@", str(machine.host)) for o in options]
    ours = machine.run(*opts)
    assert _out(ours) == expected
    assert "warning" not in ours.stderr
    assert _out(machine.nspawn(*opts)) == expected


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # Beside the image: Environment= applies, Bind= (privileged) does not.
        ((), ["-", "-", "FOO=file CLI=unset"]),
        (("--settings=trusted",), ["one", "-", "FOO=file CLI=unset"]),
        (("--settings=trusted", "--setenv=CLI=2"), ["one", "-", "FOO=unset CLI=2"]),
    ],
)
def test_file_beside_the_image_is_partly_trusted(
    machine: Machine, nspawn: object, options: tuple[str, ...], expected: list[str]
) -> None:
    path = machine.settings(FILE, beside=True)
    ours = machine.run(*options)
    assert _out(ours) == expected
    ignored = f"warning: {path}:4: ignoring Bind=, BindReadOnly= and TemporaryFileSystem="
    assert (ignored in ours.stderr) == (not options)
    assert _out(machine.nspawn(*options)) == expected


def test_etc_wins_over_run_and_beside(machine: Machine) -> None:
    etc = Path("/etc/systemd/nspawn") / f"{machine.name}.nspawn"
    machine.settings("[Exec]\nEnvironment=FOO=beside\n", beside=True)
    machine.settings("[Exec]\nEnvironment=FOO=run\n")
    assert _out(machine.run())[2] == "FOO=run CLI=unset"
    etc.parent.mkdir(parents=True, exist_ok=True)
    machine.written.append(etc)
    etc.write_text("[Exec]\nEnvironment=FOO=etc\n")
    assert _out(machine.run())[2] == "FOO=etc CLI=unset"
    # -M names the machine, and so the file.
    other = f"{machine.name}-m"
    m2 = RUN_DIR / f"{other}.nspawn"
    machine.written.append(m2)
    m2.write_text("[Exec]\nEnvironment=FOO=other\n")
    assert _out(machine.run("-M", other))[2] == "FOO=other CLI=unset"


def test_parameters_give_the_command(machine: Machine, nspawn: object) -> None:
    machine.settings(
        "[Exec]\nBoot=no\nParameters=/bin/sh -c 'echo \"$0 $1\"' 'a b' c\nEnvironment=FOO=p\n"
    )
    r = rootstrap("--store", str(machine.store), "run", machine.name)
    assert _out(r) == ["a b c"]
    theirs = machine.nspawn(command=())
    assert _out(theirs) == ["a b c"]
    # A command on the command line wins.
    r = rootstrap("--store", str(machine.store), "run", machine.name, "/bin/echo", "mine")
    assert _out(r) == ["mine"]


def test_boot_yes_makes_run_boot(machine: Machine, nspawn: object) -> None:
    init = machine.image / "sbin/init"
    init.parent.mkdir(exist_ok=True)
    init.write_text('#!/bin/sh\necho "init $# $*"; echo "FOO=$FOO pid=$$"\n')
    init.chmod(0o755)
    machine.settings("[Exec]\nBoot=yes\nParameters=a 'b c'\nEnvironment=FOO=boot\n")
    expected = ["init 2 a b c", "FOO=boot pid=1"]
    r = rootstrap("--store", str(machine.store), "run", machine.name, stdin=subprocess.DEVNULL)
    assert [line.strip() for line in _out(r)] == expected
    theirs = machine.nspawn(command=())
    assert [line.strip() for line in _out(theirs)] == expected
    # `boot NAME` takes the init's arguments from the file as well (nspawn's -b would not:
    # see the README); arguments on the command line replace them.
    r = rootstrap("--store", str(machine.store), "boot", machine.name, stdin=subprocess.DEVNULL)
    assert [line.strip() for line in _out(r)] == expected
    r = rootstrap(
        "--store", str(machine.store), "boot", machine.name, "--", "x", stdin=subprocess.DEVNULL
    )
    assert [line.strip() for line in _out(r)] == ["init 1 x", "FOO=boot pid=1"]


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("[Exec]\nEnvironment=FOO=1\nthis is not a setting\n", 3, "expected [SECTION]"),
        ("[Files]\nReadOnly=sometimes\n", 2, "expected a boolean"),
        ("[Files]\nBind=relative/path\n", 2, "absolute host path"),
    ],
)
def test_malformed_file_starts_nothing(machine: Machine, text: str, line: int, says: str) -> None:
    path = machine.settings(text)
    marker = machine.image / "started"
    r = rootstrap("--store", str(machine.store), "run", machine.name, "touch", "/started")
    assert r.returncode == 2
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"error: {path}:{line}: ") and says in first, r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()
    assert not Path("/run/rootstrap/machines", machine.name).exists()


def test_unknown_key_is_a_warning_and_runs(machine: Machine) -> None:
    path = machine.settings("[Exec]\nEnvironment=FOO=w\nKillSignal=SIGINT\nFancy=1\n[Other]\n")
    r = machine.run()
    assert _out(r)[2] == "FOO=w CLI=unset"
    assert f"warning: {path}:3: KillSignal= is not supported by rootstrap" in r.stderr
    assert f"warning: {path}:4: unknown key Fancy= in [Exec]" in r.stderr
    assert f"warning: {path}:5: unknown section [Other]" in r.stderr


def test_file_network_and_hostname(machine: Machine) -> None:
    path = machine.settings(
        "[Exec]\nHostname=from-file\nWorkingDirectory=/tmp\n[Network]\nVirtualEthernet=yes\n"
    )
    r = rootstrap(
        "--store",
        str(machine.store),
        "run",
        machine.name,
        "sh",
        "-c",
        "hostname; pwd; ls /sys/class/net",
    )
    # run has no veth: a warning, and the private network (loopback only) VirtualEthernet=
    # implies.
    assert _out(r) == ["from-file", "/tmp", "lo"]
    assert f"warning: {path}:5: VirtualEthernet= and Bridge= apply to boot only" in r.stderr
    # On the command line, --network-veth for run stays an error.
    r = rootstrap("--store", str(machine.store), "run", "-n", machine.name, "true")
    assert r.returncode == 2 and "supported by boot only" in r.stderr


def test_show_state_follows_the_machine(machine: Machine) -> None:
    """`show` says running while a boot of the machine is registered, stopped after."""
    init = machine.image / "sbin/init"
    init.parent.mkdir(exist_ok=True)
    init.write_text("#!/bin/sh\nexec sleep 60\n")
    init.chmod(0o755)
    machine.settings("[Exec]\nBoot=yes\nEnvironment=FOO=shown\n")
    store = str(machine.store)
    before = rootstrap("--store", store, "show", machine.name)
    assert "State=stopped\n" in before.stdout, before.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "rootstrap", "--store", store, "run", machine.name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        entry = Path("/run/rootstrap/machines", machine.name)
        deadline = time.monotonic() + 30
        while not entry.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert entry.exists(), proc.stderr.read() if proc.poll() is not None else "timeout"
        shown = rootstrap("--store", store, "show", machine.name)
        values = dict(line.split("=", 1) for line in _out(shown))
        assert values["State"] == "running"
        assert values["Boot"] == "yes" and values["Environment"] == "FOO=shown"
        assert values["SettingsFile"] == str(RUN_DIR / f"{machine.name}.nspawn")
        assert values["SettingsTrusted"] == "yes"
        assert rootstrap("terminate", machine.name).returncode == 0
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after = rootstrap("--store", store, "show", machine.name)
    assert "State=stopped\n" in after.stdout


def test_exec_and_files_keys_as_nspawn(machine: Machine, nspawn: None, debian_root: Path) -> None:
    """Hostname=, WorkingDirectory=, ReadOnly=, DropCapability= and User= do what they do
    under systemd-nspawn reading the same (trusted) file; the command line wins key by key.
    On the cached Debian tree (nspawn resolves User= with the image's getent), named by -M;
    ReadOnly=yes keeps the shared tree unchanged."""
    machine.settings(
        "[Exec]\nHostname=set-by-file\nWorkingDirectory=/tmp\nDropCapability=CAP_CHOWN\n"
        "User=daemon\n[Files]\nReadOnly=yes\n"
    )
    script = (
        "hostname; pwd; id -u; if touch /probe 2>/dev/null; then echo rw; else echo ro; fi; "
        "grep CapBnd /proc/self/status"
    )
    where = ["-D", str(debian_root), "-M", machine.name]

    def both(*options: str) -> list[list[str]]:
        ours = rootstrap("run", *where, *options, "sh", "-c", script)
        nspawn_argv = ["systemd-nspawn", "--register=no", "--keep-unit", "-q", *where]
        theirs = subprocess.run(
            [*nspawn_argv, *options, "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        out = []
        for result in (ours, theirs):
            lines = _out(result)
            # Only the bit the file drops: the default sets differ (run keeps SYS_ADMIN out).
            chown = int(lines[-1].split()[1], 16) & 1
            out.append([*lines[:-1], f"chown={chown}"])
        return out

    # As daemon, / is not writable whether read-only or not: "ro" is checked as root below.
    expected = ["set-by-file", "/tmp", "1", "ro", "chown=0"]
    assert both() == [expected, expected]
    expected = ["cli", "/", "0", "ro", "chown=0"]
    assert both("--hostname=cli", "--chdir=/", "--user=root") == [expected, expected]
    expected = ["set-by-file", "/tmp", "0", "ro", "chown=1"]
    assert both("--user=root", "--drop-capability=CAP_MKNOD") == [expected, expected]
