"""Our bookworm minbase tree against debootstrap's, from the same (host's) Debian mirror.

Same paths, file types, owners, modes and symlink targets, except the differences listed
below, each with its reason. The remaining sets are asserted exactly, so any new difference
(a file we lose, a mode we get wrong, a file we add) fails this test.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.realdebs import TEST_CACHE, debootstrap_tree

pytestmark = [pytest.mark.network, pytest.mark.slow]

Entry = tuple[str, int, int, int, str | None]  # type, permission bits, uid, gid, link target

#: Paths only debootstrap's tree has, and why.
ONLY_DEBOOTSTRAP = {
    # debootstrap creates device nodes (mknod); our runner mounts a /dev at run time.
    "dev/*": "device nodes",
    # debootstrap keeps the .debs it installed; ours stay in the shared download cache.
    "var/cache/apt/archives/*.deb": "downloaded packages",
    # debootstrap writes a one-line sources.list; we write deb822 sources (only ours below).
    "etc/apt/sources.list": "one-line apt sources",
    # debootstrap leaves the indexes it downloaded as apt lists; `apt update` fetches ours.
    "var/lib/apt/lists/*_dists_bookworm_*": "the mirror's Release and Packages",
    # Run-time state of debootstrap's chroot (util-linux's mount writes /run/mount/utab):
    # /run is a tmpfs on a booted system, ours stays as the packages ship it.
    "run/lock": "run-time state",
    "run/mount": "run-time state",
    # We drop logs and backups of a build nobody ran on this machine (bootstrap.cleanup).
    "var/log/bootstrap.log": "log",
    "var/log/dpkg.log": "log",
    "var/log/alternatives.log": "log",
    "var/lib/dpkg/*-old": "dpkg database backup",
    "var/cache/debconf/*-old": "debconf database backup",
    "var/cache/ldconfig/aux-cache": "ldconfig's cache of the build host's runs",
}

#: Paths only our tree has: the exact set.
ONLY_OURS = {
    "etc/apt/sources.list.d/debian.sources",  # deb822 with Signed-By, instead of sources.list
    "etc/hosts",  # localhost and the hostname (debootstrap leaves none in minbase)
    "etc/machine-id",  # empty: systemd fills it on first boot (machine-id(5))
    "var/lib/dpkg/arch",  # dpkg's native architecture, written with the database
}

#: Paths in both whose attributes differ: path -> (ours, debootstrap's) permission bits.
#: debootstrap copies the build host's /etc/hostname and /etc/resolv.conf with the host's
#: modes; we write our own, 0644.
MODE_DIFFERENCES = {"etc/hostname", "etc/resolv.conf"}


def walk(root: Path) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            kind = stat.filemode(st.st_mode)[0]
            bits = 0 if link is not None else stat.S_IMODE(st.st_mode)
            entries[os.path.relpath(path, root)] = (kind, bits, st.st_uid, st.st_gid, link)
    return entries


def versions(root: Path) -> dict[str, str]:
    """{package: version} from ROOT's dpkg status."""
    result = {}
    for stanza in (root / "var/lib/dpkg/status").read_text().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line)
        if "Package" in fields:
            result[fields["Package"]] = fields["Version"]
    return result


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(ours, debootstrap's), both from the host's mirror."""
    ours = tmp_path_factory.mktemp("compare") / "rootfs"
    result = subprocess.run(
        [sys.executable, "-m", "rootstrap", "--cache-dir", str(TEST_CACHE),
         "bootstrap", "bookworm", "--variant", "minbase", "--target", str(ours)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    try:
        theirs = debootstrap_tree()
        if versions(theirs) != versions(ours):  # the mirror moved on since it was cached
            theirs = debootstrap_tree(refresh=True)
    except (LookupError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no debootstrap tree: {exc}")
    return ours, theirs


def test_same_packages_as_debootstrap(trees: tuple[Path, Path]) -> None:
    ours, theirs = trees
    assert versions(ours) == versions(theirs)


def test_same_tree_as_debootstrap_but_the_documented_differences(
    trees: tuple[Path, Path],
) -> None:
    ours, theirs = walk(trees[0]), walk(trees[1])
    only_theirs = sorted(set(theirs) - set(ours))
    unexplained = [
        p for p in only_theirs if not any(fnmatch.fnmatch(p, g) for g in ONLY_DEBOOTSTRAP)
    ]
    assert unexplained == [], "only in debootstrap's tree"
    # Every documented difference still exists (or the list above is stale).
    stale = [g for g in ONLY_DEBOOTSTRAP if not any(fnmatch.fnmatch(p, g) for p in only_theirs)]
    assert stale == []
    assert sorted(set(ours) - set(theirs)) == sorted(ONLY_OURS)
    differing = {p for p in set(ours) & set(theirs) if ours[p] != theirs[p]}
    assert differing == MODE_DIFFERENCES, {p: (ours[p], theirs[p]) for p in differing}
    for path in MODE_DIFFERENCES:  # only the permission bits differ; ours are 0644
        assert ours[path][1] == 0o644
        assert ours[path][:1] + ours[path][2:] == theirs[path][:1] + theirs[path][2:]


def test_our_additions_have_the_expected_content(trees: tuple[Path, Path]) -> None:
    ours = trees[0]
    assert (ours / "etc/machine-id").read_text() == ""
    assert (ours / "var/lib/dpkg/arch").read_text() == "amd64\n"
    sources = (ours / "etc/apt/sources.list.d/debian.sources").read_text()
    assert "Suites: bookworm\n" in sources and "Components: main\n" in sources
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n" in sources
    assert (ours / "usr/share/keyrings/debian-archive-keyring.gpg").is_file()
    assert "127.0.0.1\tlocalhost\n" in (ours / "etc/hosts").read_text()


#: Status fields that differ from debootstrap's: Priority, where the archive overrides the
#: .deb's. debootstrap fills /var/lib/dpkg/available from the Packages index before it
#: installs, and dpkg keeps the index's Priority from there; we record the .deb's own (as
#: dpkg does without an available file, e.g. under apt or mmdebstrap).
PRIORITY_FROM_THE_DEB = {"apt", "debconf", "libbz2-1.0", "libdb5.3", "zlib1g"}


def stanzas(root: Path) -> dict[str, dict[str, str]]:
    """{package: {field: value}} of ROOT's dpkg status, in file order."""
    result: dict[str, dict[str, str]] = {}
    for stanza in (root / "var/lib/dpkg/status").read_text().split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith(" ") and key:
                fields[key] += "\n" + line
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields:
            result[fields["Package"]] = fields
    return result


def test_same_dpkg_database_as_debootstrap(trees: tuple[Path, Path]) -> None:
    ours, theirs = (root / "var/lib/dpkg" for root in trees)
    for sub in ("info", "triggers"):
        names = sorted(p.name for p in (ours / sub).iterdir())
        assert names == sorted(p.name for p in (theirs / sub).iterdir()), sub
        differing = [
            n for n in names if (ours / sub / n).read_bytes() != (theirs / sub / n).read_bytes()
        ]
        assert differing == [], sub
    for name in ("diversions", "cmethopt"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    mine, debootstraps = stanzas(trees[0]), stanzas(trees[1])
    assert list(mine) == list(debootstraps)  # the same packages in the same order
    differing_fields = {
        (package, key)
        for package, fields in mine.items()
        for key in set(fields) | set(debootstraps[package])
        if fields.get(key) != debootstraps[package].get(key)
    }
    assert differing_fields == {(p, "Priority") for p in PRIORITY_FROM_THE_DEB}
    # debootstrap's available holds the whole index; ours is empty (only dselect reads it).
    assert (ours / "available").read_bytes() == b""
