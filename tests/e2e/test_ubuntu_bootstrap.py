"""A whole ``rootstrap bootstrap noble`` into the store, then ``rootstrap run`` inside the result.

No Ubuntu mirror is reachable here, so the archive is Ubuntu-shaped (tests/support/ubuntu.py):
Debian bookworm's minbase, fetched once by rootstrap from the host's Debian mirror, repacked
with zstd members, libapt-pkg6.0 renamed to libapt-pkg6.0t64 (apt reaches it through the
versioned Provides, as noble's t64 libraries are reached), base-files claiming Ubuntu's
os-release, two libraries only in the -updates and -security pockets, signed with a test key,
served on 127.0.0.1 with Ubuntu's Release fields and by-hash indexes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.archive import Archive, TestKey
from tests.support.server import FaultServer
from tests.support.ubuntu import build_ubuntu_archive, repacked_debian_minbase

pytestmark = [pytest.mark.network, pytest.mark.slow]

#: Real libraries moved out of noble into its pockets: without --pockets they are missing.
IN_UPDATES = "libseccomp2"
IN_SECURITY = "libxxhash0"


def rootstrap(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rootstrap", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def noble(
    tmp_path_factory: pytest.TempPathFactory, test_key: TestKey
) -> Iterator[tuple[Archive, FaultServer]]:
    try:
        debs = repacked_debian_minbase()
    except LookupError as exc:
        pytest.skip(str(exc))

    def named(name: str) -> Path:
        return next(d for d in debs if d.name.startswith(f"{name}_"))

    moved = {named(IN_UPDATES), named(IN_SECURITY)}
    archive = build_ubuntu_archive(
        tmp_path_factory.mktemp("noble"),
        key=test_key,
        packages={"main": [d for d in debs if d not in moved]},
        updates={"main": [named(IN_UPDATES)]},
        security={"main": [named(IN_SECURITY)]},
    )
    with FaultServer(archive.root) as server:
        yield archive, server


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("store")
    yield path
    for image in path.iterdir():
        subprocess.run(["chattr", "-i", str(image)], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def bootstrap(
    noble: tuple[Archive, FaultServer], store: Path, cache: Path, name: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    archive, server = noble
    return rootstrap(
        "--store", str(store), "--cache-dir", str(cache), "bootstrap", "noble", name,
        "--mirror", server.url, "--keyring", str(archive.keyring), *extra,
    )  # fmt: skip


def inside(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return rootstrap("run", "-D", str(root), "--", *argv, timeout=120)


@pytest.mark.parametrize("variant", ["minbase", "important"])
def test_bootstrap_noble_and_run_inside(
    noble: tuple[Archive, FaultServer],
    store: Path,
    tmp_path_factory: pytest.TempPathFactory,
    variant: str,
) -> None:
    archive, server = noble
    name = f"noble-{variant}"
    args = ["--pockets", "noble-updates,noble-security"]
    if variant != "important":  # the default: the literal `rootstrap bootstrap noble NAME`
        args += ["--variant", variant]
    done = bootstrap(noble, store, tmp_path_factory.mktemp("cache"), name, *args)
    assert done.returncode == 0, done.stderr
    root = store / name
    assert root.is_dir()

    os_release = inside(root, "cat", "/etc/os-release")
    assert os_release.returncode == 0, os_release.stderr
    assert "ID=ubuntu\n" in os_release.stdout and "VERSION_CODENAME=noble\n" in os_release.stdout

    audit = inside(root, "dpkg", "--audit")
    assert audit.returncode == 0 and audit.stdout == "", audit.stdout + audit.stderr
    verify = inside(root, "dpkg", "--verify")  # the repacked md5sums hold, base-files' too
    assert verify.returncode == 0 and verify.stdout == "", verify.stdout + verify.stderr
    listing = inside(root, "dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package}\\n")
    assert listing.returncode == 0, listing.stderr
    packages = dict(reversed(line.split()) for line in listing.stdout.splitlines())
    assert set(packages.values()) == {"ii"}, listing.stdout
    assert len(packages) == len(archive.debs)  # the whole minbase, from all three suites
    assert {"libapt-pkg6.0t64", IN_UPDATES, IN_SECURITY} <= packages.keys()
    assert "libapt-pkg6.0" not in packages

    t64 = inside(root, "dpkg-query", "-W", "-f", "${Provides}", "libapt-pkg6.0t64")
    assert t64.stdout.startswith("libapt-pkg6.0 (= "), t64.stdout
    check = inside(root, "apt-get", "check")  # apt's own solver accepts the versioned Provides
    assert check.returncode == 0, check.stdout + check.stderr

    shell = inside(root, "sh", "-c", 'echo "$((6 * 7)) $(cat /etc/hostname)"')
    assert shell.stdout == f"42 {name}\n", shell.stderr

    sources = (root / "etc/apt/sources.list.d/ubuntu.sources").read_text()
    assert f"URIs: {server.url}\n" in sources
    assert "Suites: noble noble-updates noble-security\n" in sources


def test_without_the_pockets_the_security_library_is_missing(
    noble: tuple[Archive, FaultServer], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    done = bootstrap(noble, store, tmp_path / "cache", "noble-nopockets", "--variant", "minbase")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert IN_SECURITY in errors[0] or IN_UPDATES in errors[0], errors[0]
    assert list(store.iterdir()) == []


# --------------------------------------------------------------------------- against debootstrap


@pytest.fixture(scope="module")
def noble_flat(
    tmp_path_factory: pytest.TempPathFactory, test_key: TestKey
) -> Iterator[tuple[Archive, FaultServer]]:
    """The same packages, all in noble itself (debootstrap reads one suite)."""
    try:
        debs = repacked_debian_minbase()
    except LookupError as exc:
        pytest.skip(str(exc))
    archive = build_ubuntu_archive(
        tmp_path_factory.mktemp("noble-flat"), key=test_key, packages={"main": debs}
    )
    with FaultServer(archive.root) as server:
        yield archive, server


@pytest.mark.parametrize("variant", ["minbase", "important"])
def test_package_set_matches_debootstrap_but_for_explained_differences(
    noble_flat: tuple[Archive, FaultServer], tmp_path: Path, variant: str
) -> None:
    gutsy = Path("/usr/share/debootstrap/scripts/gutsy")  # every Ubuntu suite's script
    if shutil.which("debootstrap") is None or not gutsy.is_file():
        pytest.skip("debootstrap with its Ubuntu script is not installed")
    archive, server = noble_flat
    argv = ["debootstrap", "--print-debs", f"--keyring={archive.keyring}"]
    if variant != "important":  # debootstrap's default variant "-" is Priority: important
        argv.append(f"--variant={variant}")
    argv += ["noble", str(tmp_path / "target"), server.url, str(gutsy)]
    theirs = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
    debootstrap = set(theirs.stdout.split())
    done = rootstrap(
        "--cache-dir", str(tmp_path / "cache"), "resolve", "noble", "--json",
        "--variant", variant, "--mirror", server.url, "--keyring", str(archive.keyring),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ours = {p["name"] for p in json.loads(done.stdout)["packages"]}
    # apt Depends on libapt-pkg6.0, which only libapt-pkg6.0t64 Provides: debootstrap drops
    # virtual names (its resolve_deps keeps real Package stanzas only), so it misses the t64
    # library and what only that needs. A system without them has a broken apt.
    assert ours - debootstrap == {"libapt-pkg6.0t64", "libxxhash0", "usr-is-merged"}
    # init-system-helpers Depends "usrmerge | usr-is-merged": debootstrap takes the first
    # alternative though this archive has no usrmerge; the recipe prefers usr-is-merged.
    assert debootstrap - ours == {"usrmerge"}
    assert "usrmerge" not in {p.name.split("_")[0] for p in archive.debs}
