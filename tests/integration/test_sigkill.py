"""SIGKILL to rootstrap at many moments of its commands: nothing it started may outlive it.

Each command runs under a cgroup2 directory of its own, made here (rootstrap's processes,
reparented or in a PID namespace of their own, stay in it); the moment is found by its trace
(a phase's line on stderr with -v, a process of the command, a directory in the hidden tree),
then the main process gets SIGKILL. Each time (HAZARDS 114):

- within a second the cgroup is empty: no worker, decoder, tool or container is left;
- no mount is left below the test's directory, no lock is held (the image's name lock, the
  source image's lock, the download cache's lock, a partial download's);
- ``rootstrap clean`` removes what is left (the store has no hidden entry afterwards);
- the same command then succeeds.

The archive is tests/integration/test_bootstrap_local.py's (real bookworm minbase .debs, a
local signed mirror); a bootstrap costs ~20 s here, so this module takes a few minutes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rootstrap.errors import ImageBusy
from rootstrap.linux.locks import lock_image
from rootstrap.runner import cgroup
from rootstrap.store import Store
from tests.integration.test_bootstrap_local import (
    Mirror,
    bootstrap_args,
    mirror,
    mounts_under,
    rootstrap,
)
from tests.support.archive import TestKey, build_archive
from tests.support.realdebs import CRAFTED, minbase_debs
from tests.support.server import FaultServer

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.root]

__all__ = ["mirror"]  # the module-scoped fixture, used by name

GRACE = 1.0  # seconds after the SIGKILL by which every process of the command is gone


# --------------------------------------------------------------------------- one command


@pytest.fixture(scope="module")
def cgroups() -> Iterator[Path]:
    """A cgroup2 directory below ours, for the commands' own cgroups."""
    mount = cgroup.unified_mount()
    if mount is None or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup2 hierarchy")
    parent = Path(mount, cgroup.own_path().lstrip("/"), f"rootstrap-test-sigkill-{os.getpid()}")
    parent.mkdir()
    try:
        yield parent
    finally:
        for child in parent.iterdir():
            if child.is_dir():
                _remove(child)
        _remove(parent)


def _remove(group: Path) -> None:
    """Kill whatever a failed test left in GROUP and remove the directory. Killed processes
    whose parent died are zombies of the host's pid 1 until it reaps them, and keep the
    cgroup busy (EBUSY) meanwhile, though cgroup.procs no longer lists them: retry a while."""
    if _members(group):
        (group / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + 30
    while True:
        try:
            group.rmdir()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return  # left for the next boot; not what the test is about
        time.sleep(0.1)


def _members(group: Path) -> list[int]:
    return [int(pid) for pid in (group / "cgroup.procs").read_text().split()]


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@dataclass
class Command:
    """``rootstrap ARGS`` started in a fresh cgroup, its stderr collected line by line."""

    args: list[str]
    group: Path
    proc: subprocess.Popen[str] = field(init=False)
    lines: list[str] = field(default_factory=list)
    killed_at: float = 0.0

    def __post_init__(self) -> None:
        self.group.mkdir()
        # The shell moves itself into the group and execs rootstrap: from its first
        # instruction on, rootstrap and everything it starts are in there.
        argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.group / "cgroup.procs"),
                sys.executable, "-m", "rootstrap", "-v", *self.args]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def others(self) -> dict[int, list[str]]:
        """{pid: argv} of the group's processes but rootstrap's main one."""
        return {p: _cmdline(p) for p in _members(self.group) if p != self.proc.pid}

    def running(self, program: str) -> bool:
        """True if a process of the group runs PROGRAM (argv[0]'s base name)."""
        return any(argv and Path(argv[0]).name == program for argv in self.others().values())

    def done(self, phase: str) -> bool:
        """True once the bootstrap reported PHASE finished (``   extract    8.30 s``)."""
        pattern = re.compile(rf"^\s*{phase}\s+\d+\.\d+ s$")
        return any(pattern.match(line) for line in self.lines)

    def wait_until(self, moment: Callable[[], object], what: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not moment():
            if self.proc.poll() is not None:
                self._reader.join(5)
                tail = "\n".join(self.lines[-20:])
                raise AssertionError(f"the command ended before {what}:\n{tail}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.01)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.killed_at = time.monotonic()
        self.proc.wait()
        self._reader.join(5)

    def assert_all_gone(self) -> None:
        """Every process the command started has ended within GRACE of the kill."""
        while self.others() and time.monotonic() < self.killed_at + GRACE:
            time.sleep(0.01)
        left = self.others()
        assert not left, f"still running {GRACE} s after the SIGKILL: {left}"


_numbers = itertools.count()


@pytest.fixture
def command(cgroups: Path) -> Iterator[Callable[[list[str]], Command]]:
    """``command(args)`` starts ``rootstrap -v ARGS`` in a cgroup of its own."""
    started: list[Command] = []

    def start(args: list[str]) -> Command:
        cmd = Command(args, cgroups / f"cmd-{next(_numbers)}")
        started.append(cmd)
        return cmd

    yield start
    for cmd in started:
        if cmd.proc.poll() is None:
            cmd.proc.kill()
            cmd.proc.wait()
        _remove(cmd.group)


# --------------------------------------------------------------------------- the checks


def _flock_free(path: Path) -> bool:
    """True if nobody holds an flock on PATH (probed with a non-blocking exclusive one)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def hidden(store: Path) -> list[str]:
    """The store's hidden entries but its own bookkeeping (``.rootstrap-*``)."""
    if not store.exists():
        return []
    return sorted(e.name for e in store.iterdir() if e.name.startswith(".#"))


def assert_nothing_left(
    cmd: Command,
    work: Path,
    *,
    store: Path,
    names: tuple[str, ...] = (),
    images: tuple[Path, ...] = (),
    cache: Path | None = None,
) -> None:
    """The checks after a SIGKILL (module docstring), up to ``rootstrap clean``."""
    cmd.assert_all_gone()
    assert mounts_under(work) == []
    for name in names:  # the creator's lock on each new name
        try:
            Store(store).lock_name(name).release()
        except ImageBusy as exc:
            raise AssertionError(f"the name lock of {name} is still held") from exc
    for image in images:  # a source image's shared lock
        lock_image(image, exclusive=True).release()
    if cache is not None:
        locks = [cache / "lock", *(cache / "debs").glob("*.partial")]
        held = [str(p) for p in locks if p.exists() and not _flock_free(p)]
        assert held == [], f"locks still held: {held}"
    cleaned = rootstrap("--store", str(store), "clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert hidden(store) == [], f"left after clean: {hidden(store)}"


def succeeds(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The same command again, to the end."""
    result = rootstrap(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result


# --------------------------------------------------------------------------- bootstrap


def _staging(store: Path, name: str) -> bool:
    return any(h.glob(".rootstrap-unpack-*") for h in store.glob(f".#{name}.*"))


def _configuring(cmd: Command) -> bool:
    """The configure script runs: its shell (argv ... rootstrap-configure) or a dpkg below."""
    return any("rootstrap-configure" in argv for argv in cmd.others().values())


#: moment -> (what to wait for, given the command, the store and the name)
MOMENTS: dict[str, Callable[[Command, Path, str], object]] = {
    # Both unpack workers forked and staging: the moment of the original report.
    "extract": lambda cmd, store, name: _staging(store, name) and len(cmd.others()) >= 2,
    "essential": lambda cmd, store, name: cmd.done("prepare") and _configuring(cmd),
    "install": lambda cmd, store, name: cmd.done("essential") and _configuring(cmd),
    # Right after customize: the mtimes, syncfs, the rename into the store.
    "commit": lambda cmd, store, name: cmd.done("customize"),
}


@pytest.mark.hazard(114, 116, 117)
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_bootstrap(
    mirror: Mirror, tmp_path: Path, command: Callable[[list[str]], Command], moment: str
) -> None:
    store = tmp_path / "store"
    args = bootstrap_args(mirror, store, "k")  # --no-tree-cache, the module's warm .debs
    cmd = command(args)
    cmd.wait_until(lambda: MOMENTS[moment](cmd, store, "k"), moment)
    if moment == "extract":
        time.sleep(0.3)  # well into it, both workers busy
    during = cmd.others()
    cmd.kill()
    if moment in ("extract", "essential", "install"):
        assert during, "nothing but the main process ran at that moment"
    published = (store / "k").exists()  # the kill may land after commit's rename
    assert_nothing_left(cmd, tmp_path, store=store, names=("k",), cache=mirror.cache)
    if published:
        assert moment == "commit"
        assert rootstrap("--store", str(store), "remove", "k").returncode == 0
    succeeds(args)
    assert (store / "k/usr/bin/dpkg").is_file() and hidden(store) == []


@pytest.mark.hazard(114, 120)
def test_bootstrap_during_download(
    mirror: Mirror, tmp_path: Path, command: Callable[[list[str]], Command]
) -> None:
    """Downloads crawl into a cold cache: the kill lands with .partial files open (and
    locked) by the download threads."""
    store, cache = tmp_path / "store", tmp_path / "cache"
    with FaultServer(mirror.archive.root) as server:
        server.fault("*.deb", "slow_drip", interval=0.1, chunk=4096)
        args = bootstrap_args(mirror, store, "k", cache=cache, url=server.url + "/")
        cmd = command(args)
        cmd.wait_until(lambda: len(list(cache.glob("debs/*.partial"))) >= 2, "partial downloads")
        time.sleep(0.3)
        cmd.kill()
        assert_nothing_left(cmd, tmp_path, store=store, names=("k",), cache=cache)
        assert list(cache.glob("debs/*.partial")), "kept for the next run to resume"
        server.clear()
        succeeds(args)
    assert not list(cache.glob("debs/*.partial"))


@pytest.mark.hazard(114)
def test_bootstrap_during_release(
    mirror: Mirror, tmp_path: Path, command: Callable[[list[str]], Command]
) -> None:
    """The signed Release crawls in: the kill lands mid-request, before any index."""
    store, cache = tmp_path / "store", tmp_path / "cache"
    with FaultServer(mirror.archive.root) as server:
        server.fault("*/InRelease", "slow_drip", interval=0.05, chunk=64)
        args = bootstrap_args(mirror, store, "k", cache=cache, url=server.url + "/")
        cmd = command(args)
        cmd.wait_until(lambda: server.fetched("*/InRelease") and cmd.done("check"), "release")
        time.sleep(0.3)
        cmd.kill()
        assert_nothing_left(cmd, tmp_path, store=store, names=("k",), cache=cache)
        server.clear()
        succeeds(args)


@pytest.fixture(scope="module")
def big_index_mirror(
    tmp_path_factory: pytest.TempPathFactory, test_key: TestKey
) -> Iterator[tuple[FaultServer, Path]]:
    """The minbase archive whose Packages index also lists 150,000 packages nobody installs:
    big enough (~45 MB of text) that its decoder runs for a second or more."""
    try:
        debs = minbase_debs()
    except LookupError as exc:
        pytest.skip(str(exc))
    archive = build_archive(
        tmp_path_factory.mktemp("big") / "archive", [*debs, *CRAFTED], key=test_key,
        suite="stable",
    )  # fmt: skip
    filler = " ".join(f"word{i}" for i in range(40))
    padding = "".join(
        f"\nPackage: pad{i}\nVersion: 1.{i}\nArchitecture: amd64\nPriority: optional\n"
        f"Filename: pool/main/p/pad{i}/pad{i}_1.{i}_amd64.deb\nSize: 1000\nSHA256: {'a' * 64}\n"
        f"Description: padding {i}\n {filler}\n"
        for i in range(150_000)
    ).encode()
    archive.rewrite_index(lambda text: text.rstrip(b"\n") + b"\n" + padding)
    with FaultServer(archive.root) as server:
        yield server, archive.keyring


@pytest.mark.hazard(114, 115)
def test_bootstrap_while_an_index_is_decoded(
    mirror: Mirror,
    big_index_mirror: tuple[FaultServer, Path],
    tmp_path: Path,
    command: Callable[[list[str]], Command],
) -> None:
    server, keyring = big_index_mirror
    store, cache = tmp_path / "store", tmp_path / "cache"
    args = bootstrap_args(mirror, store, "k", cache=cache, url=server.url + "/")
    args[args.index("--keyring") + 1] = str(keyring)
    cmd = command(args)
    # The decoder is the one process besides rootstrap's own during release.
    cmd.wait_until(lambda: cmd.done("check") and cmd.others(), "the index decoder")
    decoders = cmd.others()
    cmd.kill()
    assert all(argv[:3] == [sys.executable, "-m", "rootstrap"] for argv in decoders.values())
    assert_nothing_left(cmd, tmp_path, store=store, names=("k",), cache=cache)
    assert list((cache / "indexes").glob(".*.tmp")), "the killed writer's temp was expected"
    succeeds(args)
    # The next fetch sweeps what the killed writer left (its PID is gone).
    assert list((cache / "indexes").glob(".*.tmp")) == []


@pytest.mark.hazard(114, 116, 117)
def test_bootstrap_to_a_tarball(
    mirror: Mirror, tmp_path: Path, command: Callable[[list[str]], Command]
) -> None:
    """--output builds beside the tarball, outside any store, where ``clean`` cannot look: a
    killed build's ``.#FILE.xxxx`` is removed by the next build of the same FILE (and a build
    in progress is never touched: its lock is held)."""
    store, out = tmp_path / "store", tmp_path / "out"
    out.mkdir()
    tarball = out / "k.tar.zst"
    args = bootstrap_args(mirror, store, "k", "--output", str(tarball))
    cmd = command(args)
    cmd.wait_until(lambda: cmd.done("prepare") and _configuring(cmd), "the essential run")
    cmd.kill()
    # No store is made for a tarball, so no name lock to check.
    assert_nothing_left(cmd, tmp_path, store=store, cache=mirror.cache)
    left = [p.name for p in out.iterdir()]
    assert len(left) == 1 and left[0].startswith(".#k.tar.zst."), left
    succeeds(args)
    assert [p.name for p in out.iterdir()] == ["k.tar.zst"]


# --------------------------------------------------------------------------- tree cache


@pytest.mark.hazard(114, 118, 119, 121)
def test_bootstrap_with_the_tree_cache(
    mirror: Mirror, tmp_path: Path, command: Callable[[list[str]], Command]
) -> None:
    """Two moments of the tree cache: its save in cleanup (tar on two worker threads), then
    its restore in extract (a pool of two workers)."""
    store, cache = tmp_path / "store", tmp_path / "cache"

    def args(name: str) -> list[str]:
        return bootstrap_args(mirror, store, name, cache=cache, tree_cache=True)

    succeeds(args("a"))  # the first build of the set only leaves a marker
    saving = command(args("b"))  # the second saves the tree
    saving.wait_until(lambda: saving.done("install") and saving.running("tar"), "the save")
    saving.kill()
    assert_nothing_left(saving, tmp_path, store=store, names=("b",), cache=cache)
    trees = cache / "trees"
    assert [p.name for p in trees.iterdir() if p.name.startswith(".new-")], "a killed save"
    succeeds(args("b"))
    assert not [p.name for p in trees.iterdir() if p.name.startswith(".new-")], "pruned"

    restoring = command(args("c"))

    def restore_workers() -> bool:
        trees = [h / "usr/share/doc" for h in store.glob(".#c.*")]
        return any(t.is_dir() for t in trees) and len(restoring.others()) >= 2

    restoring.wait_until(restore_workers, "the restore")
    restoring.kill()
    assert_nothing_left(restoring, tmp_path, store=store, names=("c",), cache=cache)
    result = succeeds(args("c"))
    assert "the configured tree from the cache" in result.stderr


# --------------------------------------------------------------------------- the store


@pytest.fixture(scope="module")
def image(mirror: Mirror, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one bootstrapped image, ``base``, on this machine's /tmp (ext4 here:
    a clone copies with cp)."""
    store = tmp_path_factory.mktemp("images") / "store"
    succeeds(bootstrap_args(mirror, store, "base"))
    return store / "base"


@pytest.fixture(scope="module")
def tarball(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tarball") / "base.tar.zst"
    succeeds(["--store", str(image.parent), "export-tar", "base", str(out)])
    return out


@contextlib.contextmanager
def new_images(store: Path, *names: str) -> Iterator[None]:
    """Remove NAMES from the module's store afterwards."""
    try:
        yield
    finally:
        for name in names:
            if (store / name).exists():
                rootstrap("--store", str(store), "remove", name)


@pytest.mark.hazard(114, 118)
def test_clone(image: Path, tmp_path: Path, command: Callable[[list[str]], Command]) -> None:
    store = image.parent
    args = ["--store", str(store), "clone", "base", "copy"]
    with new_images(store, "copy"):
        cmd = command(args)
        cmd.wait_until(lambda: cmd.running("cp"), "cp")
        time.sleep(0.2)
        cmd.kill()
        assert_nothing_left(cmd, tmp_path, store=store, names=("copy",), images=(image,))
        assert not (store / "copy").exists()
        succeeds(args)
        assert (store / "copy/usr/bin/dpkg").is_file()


@pytest.mark.hazard(114)
def test_import_tar(
    image: Path, tarball: Path, tmp_path: Path, command: Callable[[list[str]], Command]
) -> None:
    store = image.parent
    args = ["--store", str(store), "import-tar", str(tarball), "imported"]
    with new_images(store, "imported"):
        cmd = command(args)
        cmd.wait_until(lambda: any(store.glob(".#imported.*/usr/bin")), "the extraction")
        time.sleep(0.2)
        cmd.kill()
        assert_nothing_left(cmd, tmp_path, store=store, names=("imported",))
        succeeds(args)
        assert (store / "imported/usr/bin/dpkg").is_file()


@pytest.mark.hazard(114, 118)
def test_export_tar(image: Path, tmp_path: Path, command: Callable[[list[str]], Command]) -> None:
    store = image.parent
    out = tmp_path / "out" / "base.tar.zst"
    out.parent.mkdir()
    args = ["--store", str(store), "export-tar", "base", str(out)]
    cmd = command(args)
    cmd.wait_until(lambda: cmd.running("tar") and cmd.running("zstd"), "tar | zstd")
    time.sleep(0.2)
    cmd.kill()
    assert_nothing_left(cmd, tmp_path, store=store, images=(image,))
    assert os.listdir(out.parent) == [], "no partial tarball, no temp file beside it"
    succeeds(args)
    assert os.listdir(out.parent) == ["base.tar.zst"]
    listing = subprocess.run(["tar", "-tf", str(out), "./usr/bin/dpkg"], capture_output=True)
    assert listing.returncode == 0, listing.stderr
    shutil.rmtree(out.parent)
