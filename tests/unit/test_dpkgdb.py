"""dpkgdb.py against its oracle: the database real ``dpkg --unpack`` writes for the same .debs.

The .debs are built with dpkg-deb (tests/support/debs.py) and carry no maintainer scripts, so
``dpkg --root=R --unpack`` runs on the host without a chroot. Our side extracts them with our
own extractor and writes the database with write_database; both databases are compared file by
file. The one intended difference: we extract conffiles in place and record their hash, where
dpkg --unpack extracts ``.dpkg-new`` and records ``newconffile`` (the hash it writes later, at
configure, is the same file's).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rootstrap.build.dpkgdb import Unpacked, status_stanza, write_database
from rootstrap.formats.deb import open_deb
from rootstrap.unpack.pool import extract_many
from tests.support.debs import DebSpec, build_deb

SPECS = (
    DebSpec(
        "libx1",
        "1.0-1",
        multi_arch="same",
        depends="libc6 (>= 2.34)",
        files={"usr/lib/x86_64-linux-gnu/libx.so.1": b"x", "etc/x.conf": b"conf\n"},
        conffiles=("/etc/x.conf",),
        symlinks={"usr/lib/x86_64-linux-gnu/libx.so": "libx.so.1"},
        # Protected (dpkg 1.20.1) is a known field dpkg puts right after Essential.
        extra={"Protected": "yes", "Homepage": "https://example.invalid/x"},
        scripts={"triggers": "interest-noawait x-trigger\ninterest /usr/share/x\n"},
        description="library x\n Two lines of\n .\n description.",
    ),
    DebSpec(
        "x-tool",
        "2:1.5-3",
        essential=True,
        priority="required",
        pre_depends="libx1 (>= 1.0)",
        provides="x",
        files={"usr/bin/x-tool": b"#!/bin/sh\n", "usr/share/x/data": b"d\n"},
        modes={"usr/bin/x-tool": 0o755},
        scripts={"triggers": "interest x-trigger\ninterest-await /usr/share/x-tool\n"},
    ),
    DebSpec("x-data", "1.0", arch="all", multi_arch="foreign", files={"usr/share/xd": b"x"}),
)


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("debs")
    return [build_deb(spec, out) for spec in SPECS]


def dpkg_unpacked(debs: list[Path], root: Path) -> Path:
    """ROOT with DEBS unpacked by the real dpkg; return its database directory."""
    db = root / "var/lib/dpkg"
    for sub in ("info", "updates", "triggers"):
        (db / sub).mkdir(parents=True)
    (db / "status").touch()
    subprocess.run(
        ["dpkg", f"--root={root}", "--force-not-root", "--force-bad-path", "--force-depends",
         "--unpack", *map(str, debs)],
        check=True, capture_output=True,
    )  # fmt: skip
    return db


def ours_unpacked(debs: list[Path], root: Path) -> Path:
    root.mkdir()
    lists = extract_many(debs, root)
    unpacked = []
    for deb in debs:
        control = open_deb(deb).control()
        unpacked.append(Unpacked(control.fields, control.members, lists[deb]))
    write_database(root, "amd64", unpacked)
    return root / "var/lib/dpkg"


def test_status_matches_dpkg_unpack(debs: list[Path], tmp_path: Path) -> None:
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg is not installed")
    theirs = dpkg_unpacked(debs, tmp_path / "dpkg")
    ours = ours_unpacked(debs, tmp_path / "ours")
    conf_md5 = hashlib.md5(b"conf\n").hexdigest()
    expected = (theirs / "status").read_text().replace(" newconffile", f" {conf_md5}")
    assert sorted(expected.strip().split("\n\n")) == sorted(
        (ours / "status").read_text().strip().split("\n\n")
    )


def test_info_and_triggers_match_dpkg_unpack(debs: list[Path], tmp_path: Path) -> None:
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg is not installed")
    theirs = dpkg_unpacked(debs, tmp_path / "dpkg")
    ours = ours_unpacked(debs, tmp_path / "ours")
    # info/format (dpkg's database layout version) dpkg writes on its first run, at configure.
    names = sorted(p.name for p in (theirs / "info").iterdir() if p.name != "format")
    assert sorted(p.name for p in (ours / "info").iterdir()) == names
    for name in names:
        assert (ours / "info" / name).read_bytes() == (theirs / "info" / name).read_bytes(), name
        mode = os.stat(ours / "info" / name).st_mode & 0o777
        assert mode == os.stat(theirs / "info" / name).st_mode & 0o777, name
    # Interests, with dpkg's package names (libx1:amd64 for a Multi-Arch: same package); the
    # order of lines in File is the order of unpacking for dpkg, sorted for us.
    assert sorted((ours / "triggers/File").read_text().splitlines()) == sorted(
        (theirs / "triggers/File").read_text().splitlines()
    )
    for name in ("x-trigger", "Unincorp"):
        assert (ours / "triggers" / name).read_text() == (theirs / "triggers" / name).read_text()


def test_conffile_hash_and_missing_conffile(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/a.conf").write_bytes(b"a\n")
    unpacked = Unpacked(
        {"Package": "a", "Version": "1", "Architecture": "all", "Description": "d"},
        {"conffiles": b"/etc/a.conf\nremove-on-upgrade /etc/gone.conf\n"},
        ["/.", "/etc", "/etc/a.conf"],
    )
    assert unpacked.conffiles() == ["/etc/a.conf", "/etc/gone.conf"]
    stanza = status_stanza(unpacked, tmp_path)
    md5 = hashlib.md5(b"a\n").hexdigest()
    assert f"Conffiles:\n /etc/a.conf {md5}\n /etc/gone.conf newconffile\n" in stanza
    assert stanza.startswith("Package: a\nStatus: install ok unpacked\n")


def test_a_planted_symlink_in_the_database_is_not_followed(tmp_path: Path) -> None:
    host = tmp_path / "host-status"
    host.write_text("host\n")
    root = tmp_path / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    os.symlink(host, root / "var/lib/dpkg/status")
    unpacked = Unpacked({"Package": "a", "Version": "1", "Architecture": "all"}, {}, ["/."])
    with pytest.raises(OSError):
        write_database(root, "amd64", [unpacked])
    assert host.read_text() == "host\n"
