"""Real Debian packages for bootstrap tests, served from a local signed archive.

    from tests.support.realdebs import minbase_debs, bootstrap_archive, CRAFTED
    debs = minbase_debs()                  # bookworm minbase .debs, fetched once, verified
    arch = bootstrap_archive(tmp / "mirror", key=test_key, extra=[*CRAFTED, planted_spec])
    # serve arch.root with FaultServer; bootstrap with --mirror URL --keyring arch.keyring
    tree = debootstrap_tree()              # `debootstrap --variant=minbase bookworm`, cached

The .debs come from the host's Debian mirror through rootstrap's own path (open_archive,
resolve, fetch_all: signature and hashes verified) into ``TEST_CACHE/debs``
(tests/support/testcache.py; the DebCache layout the e2e and Ubuntu fixtures share), so a second
session pays nothing. The local archive is bookworm-shaped (Codename bookworm, Suite stable)
so ``bootstrap bookworm`` runs against it with ``--mirror http://127.0.0.1:PORT/ --keyring
KEYRING``.

The crafted packages (:data:`CRAFTED`, each opt-in with ``--include NAME``):

- ``host-keys``: its postinst writes a random ``/etc/ssh/ssh_host_ed25519_key``, as
  openssh-server's does (a per-machine secret the tree cache must not share);
- ``ordered-scripts``: its postinst fails unless its preinst ran first;
- ``greeter``: ``/usr/bin/greeter`` prints ``greetings from the local mirror`` (for apt
  inside an image, pointed at the local mirror by the image's own sources);
- ``fail-postinst``: postinst prints ``frobnication failed: widget missing`` and exits 1;
- ``daemon-starter``: its postinst tries ``start-stop-daemon --start``, ``invoke-rc.d`` and
  ``systemctl start`` on a service whose start writes ``/var/lib/daemon-starter/ran-BY``;
  with the guards in place none of them runs (HAZARDS 65);
- ``sleeper``: its postinst touches ``/var/lib/sleeper-started`` then ``sleep 3617`` (a
  signal target mid-configure; ``3617`` makes its process findable in /proc);
- ``space-eater``: its postinst writes 64 MiB to ``/var/tmp`` (ENOSPC during configure);
- :func:`huge_control_deb`: a 96 MiB ``templates`` control member, 100 KiB compressed;
- :func:`planted_spec`: ships ``etc/resolv.conf``, ``etc/hostname``, ``etc/apt/sources.list``
  and ``usr/sbin/policy-rc.d`` as symlinks to an absolute host path (HAZARDS 63).
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.support.archive import Archive, TestKey, build_archive
from tests.support.debs import DebSpec, TarEntry, crafted_deb, raw_tar
from tests.support.testcache import TEST_CACHE

__all__ = [
    "CRAFTED",
    "TEST_CACHE",
    "bootstrap_archive",
    "debootstrap_tree",
    "huge_control_deb",
    "minbase_debs",
    "planted_spec",
]

_SH = "#!/bin/sh\nset -e\n"

_SERVICE = """#!/bin/sh
# A sysvinit script whose start leaves a mark: proof that the start really happened.
case "$1" in
  start) mkdir -p /var/lib/daemon-starter; echo started > /var/lib/daemon-starter/ran-init ;;
esac
exit 0
"""

_DAEMON_POSTINST = """#!/bin/sh
set -u
mark() { mkdir -p /var/lib/daemon-starter; echo "$1" >> /var/lib/daemon-starter/attempts; }
# start-stop-daemon: the real one would run the program and it writes the mark.
mark ssd
start-stop-daemon --start --quiet --exec /bin/sh -- -c \\
  'mkdir -p /var/lib/daemon-starter; echo started > /var/lib/daemon-starter/ran-ssd' || true
# invoke-rc.d asks policy-rc.d (101 = forbidden) before running the init script.
mark invoke-rc.d
if command -v invoke-rc.d >/dev/null 2>&1; then
  invoke-rc.d daemon-starter start || true
else
  # Without init-system-helpers, do what invoke-rc.d does (README.policy-rc.d).
  rc=0; /usr/sbin/policy-rc.d daemon-starter start || rc=$?
  echo "policy-rc.d answered $rc" >> /var/lib/daemon-starter/attempts
  [ "$rc" = 101 ] || /etc/init.d/daemon-starter start
fi
mark systemctl
if command -v systemctl >/dev/null 2>&1; then
  systemctl start daemon-starter.service || true
fi
# As under debootstrap's chroot, the scripts are told they run in a chroot.
rc=0; ischroot || rc=$?
mark "ischroot=$rc"
exit 0
"""

CRAFTED: tuple[DebSpec, ...] = (
    DebSpec(
        "greeter",
        "1.0",
        files={"usr/bin/greeter": b"#!/bin/sh\necho 'greetings from the local mirror'\n"},
        modes={"usr/bin/greeter": 0o755},
    ),
    DebSpec(
        "fail-postinst",
        "1.0",
        files={"usr/share/doc/fail-postinst/README": b"fails on purpose\n"},
        scripts={"postinst": _SH + "echo 'frobnication failed: widget missing' >&2\nexit 1\n"},
    ),
    DebSpec(
        "daemon-starter",
        "1.0",
        files={"etc/init.d/daemon-starter": _SERVICE.encode()},
        modes={"etc/init.d/daemon-starter": 0o755},
        conffiles=("/etc/init.d/daemon-starter",),
        scripts={"postinst": _DAEMON_POSTINST},
    ),
    DebSpec(
        "sleeper",
        "1.0",
        files={"usr/share/doc/sleeper/README": b"sleeps in its postinst\n"},
        scripts={"postinst": _SH + "touch /var/lib/sleeper-started\nsleep 3617\n"},
    ),
    DebSpec(
        "host-keys",
        "1.0",
        files={"usr/share/doc/host-keys/README": b"makes a host key in its postinst\n"},
        scripts={
            "postinst": _SH + "mkdir -p /etc/ssh\n"
            "od -An -tx1 -N32 /dev/urandom > /etc/ssh/ssh_host_ed25519_key\n"
            "chmod 600 /etc/ssh/ssh_host_ed25519_key\n"
        },
    ),
    DebSpec(
        "ordered-scripts",
        "1.0",
        files={"usr/share/doc/ordered-scripts/README": b"postinst checks its preinst ran\n"},
        scripts={
            "preinst": _SH + "touch /var/lib/ordered-scripts-preinst\n",
            "postinst": _SH + "[ -e /var/lib/ordered-scripts-preinst ] || "
            "{ echo 'postinst before preinst' >&2; exit 1; }\n",
        },
    ),
    DebSpec(
        "space-eater",
        "1.0",
        files={"usr/share/doc/space-eater/README": b"fills the disk in its postinst\n"},
        scripts={"postinst": _SH + "dd if=/dev/zero of=/var/tmp/filler bs=1M count=64\n"},
    ),
)


def planted_spec(target_dir: Path) -> DebSpec:
    """A package shipping files rootstrap writes as symlinks to absolute paths in TARGET_DIR."""
    return DebSpec(
        "planted-links",
        "1.0",
        symlinks={
            "etc/resolv.conf": str(target_dir / "etc/passwd"),
            "etc/hostname": str(target_dir / "etc/passwd"),
            "etc/apt/sources.list": str(target_dir / "etc/passwd"),
            "usr/sbin/policy-rc.d": str(target_dir / "bin/sh"),
        },
    )


def huge_control_deb(directory: Path, size: int = 96 << 20) -> Path:
    """``huge-control_1.0_amd64.deb``: a control.tar.gz whose ``templates`` is SIZE zeros."""
    path = directory / "huge-control_1.0_amd64.deb"
    if path.exists():
        return path
    control = DebSpec("huge-control", "1.0").control()
    entries = [
        TarEntry("./", type="dir"),
        TarEntry("./control", control.encode()),
        TarEntry("./templates", b"\0" * size),
    ]
    import gzip

    ctl = gzip.compress(raw_tar(entries), compresslevel=6, mtime=0)
    blob = crafted_deb("huge-control", [TarEntry("./", type="dir")])
    # Swap the control member for the huge one (crafted_deb builds a small control.tar.gz).
    from tests.support.debs import raw_deb, read_ar

    members = [(n, d if not n.startswith("control.tar") else ctl) for n, d in read_ar(blob)]
    path.write_bytes(raw_deb(members))
    return path


def minbase_debs(suite: str = "bookworm", arch: str = "amd64") -> list[Path]:
    """SUITE's minbase .debs, fetched and verified by rootstrap from the host's Debian mirror
    into TEST_CACHE (once; later calls re-hash). Raises LookupError without a mirror.
    Cost: ~10-30 s cold, ~1 s warm."""
    from rootstrap import recipes
    from rootstrap.archive import open_archive
    from rootstrap.archive.http import Http
    from rootstrap.build.download import DebCache, fetch_all
    from rootstrap.resolve import resolve

    mirror = recipes.host_mirror("debian")
    if mirror is None:
        raise LookupError("no Debian mirror in the host's apt sources")
    recipe = recipes.load(suite)
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    with Http() as http:
        archive = open_archive(recipe, mirrors=[mirror], arch=arch, http=http, cache_dir=TEST_CACHE)
        plan = resolve(archive.index, archive.recipe, variant="minbase", arch=arch)
        packages = [entry.package for entry in plan.packages]
        debs = fetch_all(http, packages, [archive.mirror], DebCache(TEST_CACHE))
    return [debs[p.name] for p in packages]


def bootstrap_archive(
    root: Path, *, key: TestKey, extra: Sequence[DebSpec | Path] = (), suite: str = "bookworm"
) -> Archive:
    """A signed bookworm archive under ROOT: the real minbase plus EXTRA. Cost: ~2-4 s."""
    return build_archive(
        root, [*minbase_debs(suite), *extra], key=key, codename=suite, suite="stable"
    )


def debootstrap_tree(
    suite: str = "bookworm", variant: str = "minbase", *, refresh: bool = False
) -> Path:
    """``debootstrap --variant=VARIANT SUITE`` from the host's mirror, cached in TEST_CACHE
    (REFRESH makes it anew, e.g. after a point release changed the mirror).

    Read it, never write it. Cost: ~30-60 s the first time."""
    from rootstrap import recipes

    target = TEST_CACHE / f"debootstrap-{suite}-{variant}"
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    with open(TEST_CACHE / ".lock-debootstrap", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if refresh:
            shutil.rmtree(target, ignore_errors=True)
        if (target / "var/lib/dpkg/status").exists():
            return target
        mirror = recipes.host_mirror("debian")
        if mirror is None:
            raise LookupError("no Debian mirror in the host's apt sources")
        if shutil.which("debootstrap") is None:
            raise LookupError("debootstrap is not installed")
        tmp = TEST_CACHE / f".tmp-debootstrap-{suite}-{variant}"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(
            ["debootstrap", f"--variant={variant}", "--arch=amd64", suite, str(tmp), mirror],
            check=True,
            capture_output=True,
            timeout=1200,
        )
        tmp.rename(target)
    return target
