"""An archive with every trait of Ubuntu's, for tests (no Ubuntu mirror is reachable here).

    from tests.support.ubuntu import build_ubuntu_archive, repacked_debian_minbase
    arch = build_ubuntu_archive(tmp_path / "ubuntu", key=test_key)        # synthetic, ~1 s
    arch.dists["noble-updates"], arch.dists["noble-security"]             # the pockets
    debs = repacked_debian_minbase()      # real bookworm minbase, repacked with zstd (cached)
    arch = build_ubuntu_archive(root, key=test_key, packages={"main": debs}, ...)

What makes it Ubuntu-shaped (each trait is something rootstrap must cope with; the sources are
docs/architecture.md, "Ubuntu", debootstrap's ``scripts/gutsy`` and Ubuntu's published
archive):

- ``dists/noble`` plus the pockets ``noble-updates``, ``noble-security`` and ``noble-backports``
  (NotAutomatic/ButAutomaticUpgrades, as Ubuntu marks backports), each separately signed, each
  with ``Suite: noble-<pocket>`` but ``Codename: noble`` (Debian's say ``bookworm-updates``);
- Release fields as Ubuntu writes them: ``Origin: Ubuntu``, ``Label: Ubuntu``, ``Suite`` =
  ``Codename`` (Ubuntu has no moving ``stable``), ``Version: 24.04``, every architecture of the
  release in ``Architectures`` and its indexes in the checksum lists, though the primary
  archive serves only amd64's and i386's (the rest live on the ports archive: a 404 here),
  ``Components: main restricted universe multiverse``, ``Acquire-By-Hash: yes``,
  MD5Sum/SHA1/SHA256 sections, no ``Valid-Until``;
- indexes as ``Packages.xz`` and ``Packages.gz`` with by-hash copies; the plain ``Packages`` is
  listed in the Release but not served (a 404, as on the real mirrors);
- Packages stanzas carry the archive's Priority (Ubuntu overrides the control file's through
  Launchpad: :data:`PRIORITY_OVERRIDES`), ``Task:`` lines from the seeds, ``Origin: Ubuntu``,
  ``Original-Maintainer``, ``SHA1``/``SHA512`` sums, and in -updates a
  ``Phased-Update-Percentage`` (:data:`PHASED`);
- every .deb has ``control.tar.zst`` and ``data.tar.zst`` members (Ubuntu since 21.10);
- t64 renames (the 64-bit time_t transition of 24.04): ``libfoo1t64`` ``Provides: libfoo1
  (= 1.2-3)`` and a package still ``Depends: libfoo1 (>= 1.2)``; an older real ``libfoo1`` is
  left in universe to tempt a careless resolver.

``repacked_debian_minbase()`` makes the set a bootstrap turns into a *running* system: Debian
bookworm's minbase, downloaded once through rootstrap's own verified path from the host's
Debian mirror into ``TEST_CACHE`` (tests/support/testcache.py), each package repacked with zstd
members and its control fields kept, except: ``libapt-pkg6.0`` becomes ``libapt-pkg6.0t64``
(Provides the old name at its version, as Ubuntu's t64 libraries do; ``apt`` still depends on
the old name), and ``base-files`` claims Ubuntu's os-release. Cost: ~20 s the first time,
~0.1 s cached.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from tests.support.archive import Archive, Dist, TestKey, build_archive
from tests.support.debs import DebSpec, build_deb, compress
from tests.support.testcache import TEST_CACHE

__all__ = [
    "PHASED",
    "PRIORITY_OVERRIDES",
    "TASKS",
    "UBUNTU_ARCHITECTURES",
    "UBUNTU_COMPONENTS",
    "UBUNTU_PACKAGES",
    "build_ubuntu_archive",
    "repacked_debian_minbase",
]

UBUNTU_ARCHITECTURES = ("amd64", "arm64", "armhf", "i386", "ppc64el", "riscv64", "s390x")
UBUNTU_COMPONENTS = ("main", "restricted", "universe", "multiverse")
#: The primary archive's own indexes; the other architectures are on the ports archive.
PRIMARY_ARCHITECTURES = ("amd64", "i386")
MAINTAINER = "Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.invalid>"

_SH = "#!/bin/sh\nset -e\n"

_OS_RELEASE = (
    "# rootstrap's Ubuntu-shaped test archive: Debian packages repacked, not Ubuntu's.\n"
    'PRETTY_NAME="Ubuntu 24.04 LTS"\n'
    'NAME="Ubuntu"\n'
    'VERSION_ID="24.04"\n'
    'VERSION="24.04 LTS (Noble Numbat)"\n'
    "VERSION_CODENAME=noble\n"
    "ID=ubuntu\n"
    "ID_LIKE=debian\n"
    "UBUNTU_CODENAME=noble\n"
    "LOGO=ubuntu-logo\n"
)
_LSB_RELEASE = (
    "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=24.04\nDISTRIB_CODENAME=noble\n"
    'DISTRIB_DESCRIPTION="Ubuntu 24.04 LTS"\n'
)


def _lib(name: str) -> str:
    return f"usr/lib/x86_64-linux-gnu/{name}"


_BASE_FILES = DebSpec(
    "base-files",
    "13ubuntu10",
    essential=True,
    priority="required",
    section="admin",
    maintainer=MAINTAINER,
    files={
        "usr/lib/os-release": _OS_RELEASE.encode(),
        "etc/lsb-release": _LSB_RELEASE.encode(),
        "etc/debian_version": b"trixie/sid\n",
    },
    symlinks={"etc/os-release": "../usr/lib/os-release"},
    conffiles=("/etc/lsb-release", "/etc/debian_version"),
    multi_arch="foreign",
)

#: The synthetic noble: small, fast, and shaped like Ubuntu's minbase closure.
UBUNTU_PACKAGES: Mapping[str, tuple[DebSpec, ...]] = {
    "main": (
        _BASE_FILES,
        DebSpec(
            "libc6",
            "2.39-0ubuntu8",
            priority="required",
            section="libs",
            multi_arch="same",
            maintainer=MAINTAINER,
            files={_lib("libc.so.6"): b"\x7fELF fake libc\n"},
        ),
        DebSpec(
            "dash",
            "0.5.12-6ubuntu5",
            essential=True,
            priority="required",
            section="shells",
            pre_depends="libc6 (>= 2.34)",
            maintainer=MAINTAINER,
            files={"usr/bin/dash": b"\x7fELF fake dash\n"},
            modes={"usr/bin/dash": 0o755},
            symlinks={"usr/bin/sh": "dash"},
            scripts={"postinst": _SH + "exit 0\n"},
        ),
        DebSpec(
            "coreutils",
            "9.4-3ubuntu6",
            essential=True,
            priority="required",
            section="utils",
            pre_depends="libc6 (>= 2.34)",
            maintainer=MAINTAINER,
            files={"usr/bin/true": b"\x7fELF fake true\n"},
            modes={"usr/bin/true": 0o755},
        ),
        # The control file says optional; Ubuntu's archive override says required, and the
        # index is what a bootstrapper reads (debootstrap's work_out_debs, apt).
        DebSpec(
            "ubuntu-baseline",
            "1.0ubuntu1",
            priority="optional",
            section="metapackages",
            maintainer=MAINTAINER,
            depends="libc6",
        ),
        # t64 renames: the library's new name, Providing the old one at its own version.
        DebSpec(
            "libfoo1t64",
            "1.2-3",
            priority="optional",
            section="libs",
            multi_arch="same",
            source="foo",
            depends="libc6 (>= 2.34)",
            provides="libfoo1 (= 1.2-3)",
            breaks="libfoo1 (<< 1.2-3)",
            replaces="libfoo1",
            maintainer=MAINTAINER,
            files={_lib("libfoo.so.1"): b"foo 1.2\n"},
        ),
        DebSpec(
            "libapt-pkg6.0t64",
            "2.7.14build2",
            priority="optional",
            section="libs",
            multi_arch="same",
            source="apt",
            depends="libc6 (>= 2.34)",
            provides="libapt-pkg6.0 (= 2.7.14build2)",
            breaks="libapt-pkg6.0 (<< 2.7.14build2)",
            replaces="libapt-pkg6.0 (<< 2.7.14build2)",
            maintainer=MAINTAINER,
            files={_lib("libapt-pkg.so.6.0"): b"apt-pkg\n"},
        ),
        DebSpec(
            "ubuntu-keyring",
            "2023.11.28.1",
            arch="all",
            priority="important",
            section="misc",
            multi_arch="foreign",
            maintainer=MAINTAINER,
            files={"usr/share/keyrings/ubuntu-archive-keyring.gpg": b"(test keyring)\n"},
        ),
        # apt as a package that was not rebuilt would have it: both old library names.
        DebSpec(
            "apt",
            "2.7.14build2",
            priority="important",
            section="admin",
            source="apt",
            depends="libapt-pkg6.0 (>= 2.7.14), libfoo1 (>= 1.2), ubuntu-keyring",
            maintainer=MAINTAINER,
            files={"usr/bin/apt-get": _SH.encode() + b"exit 0\n"},
            modes={"usr/bin/apt-get": 0o755},
        ),
        DebSpec(
            "foo-user",
            "2.0-1",
            priority="optional",
            section="utils",
            depends="libfoo1 (>= 1.2)",
            maintainer=MAINTAINER,
            files={"usr/bin/foo-user": _SH.encode() + b"echo foo\n"},
            modes={"usr/bin/foo-user": 0o755},
        ),
    ),
    "universe": (
        # A pre-t64 leftover whose version is too old for ``libfoo1 (>= 1.2)``.
        DebSpec(
            "libfoo1",
            "1.1-1",
            priority="optional",
            section="libs",
            multi_arch="same",
            source="foo",
            depends="libc6 (>= 2.34)",
            maintainer=MAINTAINER,
            files={_lib("libfoo.so.1"): b"foo 1.1\n"},
        ),
        DebSpec(
            "universe-tool",
            "0.9-2",
            priority="optional",
            section="universe/utils",
            depends="foo-user",
            maintainer=MAINTAINER,
        ),
    ),
}

#: What the synthetic pockets hold: a newer t64 library in -updates, base-files in -security.
UBUNTU_UPDATES: Mapping[str, tuple[DebSpec, ...]] = {
    "main": (
        DebSpec(
            "libfoo1t64",
            "1.2-3ubuntu0.1",
            priority="optional",
            section="libs",
            multi_arch="same",
            source="foo",
            depends="libc6 (>= 2.34)",
            provides="libfoo1 (= 1.2-3ubuntu0.1)",
            breaks="libfoo1 (<< 1.2-3)",
            replaces="libfoo1",
            maintainer=MAINTAINER,
            files={_lib("libfoo.so.1"): b"foo 1.2 updated\n"},
        ),
    )
}
UBUNTU_SECURITY: Mapping[str, tuple[DebSpec, ...]] = {
    "main": (replace(_BASE_FILES, version="13ubuntu10.1"),)
}

#: Index Priority that differs from the control file's (Launchpad overrides).
PRIORITY_OVERRIDES: Mapping[str, str] = {"ubuntu-baseline": "required"}
#: ``Task:`` lines as Ubuntu's seeds put them in the index (germinate output).
TASKS: Mapping[str, str] = {
    "base-files": "minimal, server-minimal",
    "libc6": "minimal, server-minimal",
    "dash": "minimal, server-minimal",
    "coreutils": "minimal, server-minimal",
    "apt": "minimal, server-minimal",
    "ubuntu-keyring": "minimal",
    "libapt-pkg6.0t64": "minimal",
    "foo-user": "server",
}

#: ``Phased-Update-Percentage`` in -updates (SRUs roll out in phases). apt ignores phasing for
#: fresh installs, in chroots and without /etc/machine-id (apt 2.1.16 announcement on Ubuntu's
#: discourse, "Phased updates in APT in 21.04"): a bootstrap takes the newest version.
PHASED: Mapping[str, str] = {"libfoo1t64": "10"}

_Packages = Sequence[DebSpec | Path] | Mapping[str, Sequence[DebSpec | Path]]


def build_ubuntu_archive(
    root: Path,
    *,
    key: TestKey,
    codename: str = "noble",
    version: str = "24.04",
    packages: _Packages | None = None,
    updates: _Packages | None = None,
    security: _Packages | None = None,
    backports: _Packages = (),
    served: Sequence[str] = PRIMARY_ARCHITECTURES,
    priorities: Mapping[str, str] | None = None,
    tasks: Mapping[str, str] | None = None,
    date: datetime | str | None = None,
) -> Archive:
    """Write a signed Ubuntu-shaped archive under ROOT (see the module docstring); return it.

    PACKAGES default to :data:`UBUNTU_PACKAGES`, UPDATES and SECURITY to the synthetic pockets.
    A Path item is copied as is (repack it with zstd first: :func:`repacked_debian_minbase`).
    PRIORITIES and TASKS rewrite the index stanzas (defaults: the module's tables; for any
    other package, required/important ones get ``Task: minimal``). The pockets are in
    ``archive.dists``. Indexes exist for every Ubuntu architecture and are all in the Release,
    but only those of SERVED are on disk: the primary archive's (amd64, i386) by default, so
    arm64 gets the 404 apt users meet on the primary mirror; pass all of them for a ports-like
    mirror. Cost: ~1 s for the synthetic set, ~3 s for ~90 real packages.
    """
    codename_title = codename.capitalize()
    archive = build_archive(
        root,
        UBUNTU_PACKAGES if packages is None else packages,
        key=key,
        codename=codename,
        suite=codename,
        version=version,
        components=UBUNTU_COMPONENTS,
        arch=UBUNTU_ARCHITECTURES,
        origin="Ubuntu",
        label="Ubuntu",
        date=date,
        compressions=("xz", "gz"),
        by_hash=True,
        hashes=("MD5Sum", "SHA1", "SHA256"),
        extra_release={"Description": f"Ubuntu {codename_title} {version}"},
        sign=("InRelease", "Release.gpg"),
        deb_compression="zstd",
    )
    pockets: list[tuple[str, _Packages, dict[str, str]]] = [
        ("updates", UBUNTU_UPDATES if updates is None else updates, {}),
        ("security", UBUNTU_SECURITY if security is None else security, {}),
        ("backports", backports, {"NotAutomatic": "yes", "ButAutomaticUpgrades": "yes"}),
    ]
    staging = Path(tempfile.mkdtemp(prefix="rs-ubuntu-pockets-"))
    for pocket, items, fields in pockets:
        name = f"{codename}-{pocket}"
        archive.add_dist(
            name,
            # add_dist builds DebSpecs with xz members: build them with zstd first.
            _zstd_paths(items, staging / pocket),
            suite=name,
            # Ubuntu's pockets keep the release's Codename (Debian's say bookworm-updates).
            Codename=codename,
            Description=f"Ubuntu {codename_title} {pocket.capitalize()}",
            **fields,
        )
    shutil.rmtree(staging, ignore_errors=True)
    overrides = PRIORITY_OVERRIDES if priorities is None else priorities
    task_map = TASKS if tasks is None else tasks
    for dist in archive.dists.values():
        phasing = PHASED if dist.name.endswith("-updates") else {}
        _ubuntuize(dist, overrides, task_map, phasing, tuple(served))
    return archive


def _zstd_paths(items: _Packages, staging: Path) -> dict[str, list[DebSpec | Path]]:
    """ITEMS by component, every DebSpec replaced by its .deb built with zstd members."""
    by_comp = items if isinstance(items, Mapping) else {"main": items}
    return {
        component: [
            build_deb(item, staging / component, "zstd") if isinstance(item, DebSpec) else item
            for item in entries
        ]
        for component, entries in by_comp.items()
    }


def _ubuntuize(
    dist: Dist,
    priorities: Mapping[str, str],
    tasks: Mapping[str, str],
    phased: Mapping[str, str],
    served: tuple[str, ...],
) -> None:
    """Give DIST's indexes Ubuntu's stanza fields, re-sign, drop the plain Packages files and
    the indexes of architectures this mirror does not serve (they stay in the Release)."""
    sums: dict[str, tuple[str, str]] = {}
    for (component, index_arch), text in list(dist.indexes.items()):
        stanzas = _ubuntu_stanzas(text, dist.archive_root, priorities, tasks, phased, sums)
        dist.write_index(component, index_arch, stanzas)
    dist.sign_text(_with_other_files(dist))
    # Listed in the Release, absent on the mirror: clients must fetch a compressed variant.
    for component, index_arch in dist.indexes:
        dist.index_path(component, index_arch, "none").unlink(missing_ok=True)
        if index_arch not in served:
            shutil.rmtree(dist.index_path(component, index_arch).parent)


def _with_other_files(dist: Dist) -> str:
    """DIST's Release text listing, beside the Packages indexes, the other files a real one
    lists and a bootstrap must skip: per-architecture Release files, udeb indexes under
    debian-installer/ (whose paths end like the real ones), Translation-en and cnf/Commands."""
    extra: dict[str, bytes] = {}
    for component, index_arch in sorted(dist.indexes):
        extra[f"{component}/binary-{index_arch}/Release"] = (
            f"Archive: {dist.name}\nVersion: {dist.release_fields.get('Version', '')}\n"
            f"Component: {component}\nOrigin: Ubuntu\nLabel: Ubuntu\n"
            f"Architecture: {index_arch}\n"
        ).encode()
        # An empty udeb index that would break resolution if mistaken for the real one.
        extra[f"{component}/debian-installer/binary-{index_arch}/Packages.xz"] = compress(
            b"Package: libc6\nVersion: 0.0-udeb\nArchitecture: all\n", "xz"
        )
        extra[f"{component}/cnf/Commands-{index_arch}.xz"] = compress(b"suite: x\n", "xz")
    for component in dist.components:
        extra[f"{component}/i18n/Translation-en.xz"] = compress(b"", "xz")
    for rel, data in extra.items():
        dist.replace_file(rel, data)
    text = dist.release_text()
    hashers = {"MD5Sum": "md5", "SHA1": "sha1", "SHA256": "sha256"}
    for section, algorithm in hashers.items():
        lines = "".join(
            f" {hashlib.new(algorithm, data).hexdigest()} {len(data):>8} {rel}\n"
            for rel, data in extra.items()
        )
        head, sep, rest = text.partition(f"\n{section}:\n")
        if sep:
            text = head + sep + lines + rest
    return text


_FIELD = re.compile(rb"^([A-Za-z0-9-]+):", re.M)


def _ubuntu_stanzas(
    text: bytes,
    root: Path,
    priorities: Mapping[str, str],
    tasks: Mapping[str, str],
    phased: Mapping[str, str],
    sums: dict[str, tuple[str, str]],
) -> bytes:
    """TEXT's stanzas with the index Priority, Origin, Original-Maintainer, SHA1, SHA512, Task."""
    out = []
    for stanza in (s for s in text.split(b"\n\n") if s.strip()):
        lines = stanza.rstrip(b"\n").split(b"\n")
        fields = {m.group(1).decode().lower() for m in _FIELD.finditer(stanza)}
        name = _value(lines, b"Package")
        priority = priorities.get(name) or _value(lines, b"Priority") or "optional"
        new: list[bytes] = []
        for line in lines:
            if line.startswith(b"Priority:"):
                new += [b"Priority: " + priority.encode(), b"Origin: Ubuntu"]
            elif line.startswith(b"Maintainer:") and "original-maintainer" not in fields:
                new.append(b"Maintainer: " + MAINTAINER.encode())
                if MAINTAINER.encode() not in line:
                    new.append(b"Original-Maintainer:" + line.split(b":", 1)[1])
            elif line.startswith(b"SHA256:") and "sha512" not in fields:
                filename = _value(lines, b"Filename")
                if filename not in sums:
                    data = (root / filename).read_bytes()
                    sums[filename] = (
                        hashlib.sha1(data).hexdigest(),
                        hashlib.sha512(data).hexdigest(),
                    )
                sha1, sha512 = sums[filename]
                new += [b"SHA1: " + sha1.encode(), line, b"SHA512: " + sha512.encode()]
            else:
                new.append(line)
        task = tasks.get(name) or ("minimal" if priority in ("required", "important") else "")
        if task and "task" not in fields:
            new.append(b"Task: " + task.encode())
        if name in phased:
            new.append(b"Phased-Update-Percentage: " + phased[name].encode())
        out.append(b"\n".join(new) + b"\n")
    # A blank line after the last stanza too, as apt-ftparchive and Launchpad write it
    # (debootstrap's pkgdetails silently drops a last stanza without one).
    return b"\n".join(out) + b"\n"


def _value(lines: list[bytes], key: bytes) -> str:
    for line in lines:
        if line.startswith(key + b":"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


# ---------------------------------------------------------------------------------------------
# Real packages: Debian bookworm's minbase, repacked as Ubuntu ships them.

#: Bump when the repacking edits change, so cached repacks are rebuilt.
REPACK_VERSION = "1"


def debian_minbase_debs(
    cache: Path = TEST_CACHE, *, suite: str = "bookworm", arch: str = "amd64"
) -> list[Path]:
    """The .debs of SUITE's minbase, fetched and verified by rootstrap from the host's Debian
    mirror into CACHE (once; later calls only re-hash). Raises LookupError without a mirror."""
    from rootstrap import recipes
    from rootstrap.archive import open_archive
    from rootstrap.archive.http import Http
    from rootstrap.build.download import DebCache, fetch_all
    from rootstrap.resolve import resolve

    mirror = recipes.host_mirror("debian")
    if mirror is None:
        raise LookupError("no Debian mirror in the host's apt sources")
    recipe = recipes.load(suite)
    with Http() as http:
        archive = open_archive(recipe, mirrors=[mirror], arch=arch, http=http, cache_dir=cache)
        plan = resolve(archive.index, archive.recipe, variant="minbase", arch=arch)
        packages = [entry.package for entry in plan.packages]
        debs = fetch_all(http, packages, [archive.mirror], DebCache(cache))
    return [debs[p.name] for p in packages]


def repacked_debian_minbase(cache: Path = TEST_CACHE, *, suite: str = "bookworm") -> list[Path]:
    """Debian SUITE's minbase as Ubuntu-shaped .debs (zstd members, t64 rename, Ubuntu's
    os-release), cached under CACHE/ubuntu-zst keyed by each input's SHA256. Needs root (the
    repacked trees keep their owners). Cost: ~20-40 s cold, ~0.3 s warm."""
    out_dir = cache / "ubuntu-zst"
    out_dir.mkdir(parents=True, exist_ok=True)
    result = []
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions must not repack into one file
        for deb in debian_minbase_debs(cache, suite=suite):
            digest = hashlib.sha256(deb.read_bytes()).hexdigest()[:16]
            keyed = out_dir / f"{digest}-{REPACK_VERSION}"
            if not keyed.is_dir() or not any(keyed.glob("*.deb")):
                shutil.rmtree(keyed, ignore_errors=True)
                _repack_zstd(deb, keyed)
            result.append(next(keyed.glob("*.deb")))
    return result


def _run(argv: list[str]) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    env["SOURCE_DATE_EPOCH"] = "1700000000"  # the ar headers' dates: reproducible repacks
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


def _repack_zstd(deb: Path, out_dir: Path) -> Path:
    """Rebuild DEB with zstd members (``dpkg-deb -Zzstd``), applying the Ubuntu edits."""
    work = Path(tempfile.mkdtemp(prefix=".repack-", dir=out_dir.parent))
    try:
        tree = work / "root"
        _run(["dpkg-deb", "--raw-extract", str(deb), str(tree)])
        control_path = tree / "DEBIAN/control"
        control = control_path.read_text()
        name = _control_value(control, "Package")
        if name == "libapt-pkg6.0":
            control = _t64_rename(control)
        elif name == "base-files":
            control = _ubuntu_base_files(tree, control)
        control_path.write_text(control)
        name = _control_value(control, "Package")
        version = _control_value(control, "Version").split(":", 1)[-1]
        arch = _control_value(control, "Architecture")
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{name}_{version}_{arch}.deb"
        _run(["dpkg-deb", "-Zzstd", "--build", str(tree), str(target)])
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _control_value(control: str, key: str) -> str:
    match = re.search(rf"^{re.escape(key)}:[ \t]*(.*)$", control, re.M | re.I)
    return match.group(1).strip() if match else ""


def _set_field(control: str, key: str, value: str) -> str:
    """CONTROL with KEY set to VALUE (replaced in place, else added before Description)."""
    pattern = re.compile(rf"^{re.escape(key)}:.*$", re.M | re.I)
    if pattern.search(control):
        return pattern.sub(f"{key}: {value}", control, count=1)
    return control.replace("\nDescription:", f"\n{key}: {value}\nDescription:", 1)


def _t64_rename(control: str) -> str:
    """libapt-pkg6.0 as Ubuntu 24.04 renamed it: libapt-pkg6.0t64, Providing the old name."""
    version = _control_value(control, "Version")
    control = _set_field(control, "Package", "libapt-pkg6.0t64")
    control = _set_field(control, "Provides", f"libapt-pkg6.0 (= {version})")
    control = _set_field(control, "Breaks", f"libapt-pkg6.0 (<< {version})")
    return _set_field(control, "Replaces", f"libapt-pkg6.0 (<< {version})")


def _ubuntu_base_files(tree: Path, control: str) -> str:
    """base-files claiming Ubuntu: os-release, /etc/lsb-release (a conffile), an ubuntu version."""
    os_release = tree / "usr/lib/os-release"
    os_release.write_text(_OS_RELEASE)
    lsb = tree / "etc/lsb-release"
    lsb.write_text(_LSB_RELEASE)
    lsb.chmod(0o644)
    conffiles = tree / "DEBIAN/conffiles"
    conffiles.write_text(conffiles.read_text() + "/etc/lsb-release\n")
    md5sums = tree / "DEBIAN/md5sums"
    lines = []
    for line in md5sums.read_text().splitlines():
        if line.endswith("  usr/lib/os-release"):
            line = hashlib.md5(os_release.read_bytes()).hexdigest() + "  usr/lib/os-release"
        lines.append(line)
    md5sums.write_text("\n".join(lines) + "\n")
    version = _control_value(control, "Version")
    return _set_field(control, "Version", f"{version}ubuntu1")
