"""Benchmark: unpack bookworm minbase's .debs with extract_many vs serial dpkg-deb | tar -x.

Usage: python3 bench/unpack.py [--rounds 3] [--debs DIR] [--workers 2]

The debs are downloaded once into /var/tmp/rootstrap-bench-debs (``debootstrap --print-debs
--variant=minbase bookworm`` names them, ``apt-get download`` fetches them from the host's
apt sources, i.e. the host's Debian mirror). Both variants run in the same round, alternating
which goes first, into fresh directories under /var/tmp (or a tmpfs with --tmpfs); the ratio
is per round. The target (issue 4) is extract_many ≤ 0.6 × the serial pipeline. Round 1 also
compares the two trees (type, mode, owner, content, link target, xattrs, mtime).

Each line also shows the CPU seconds (user + system, the process and its children) of both
variants: on a shared machine the wall ratio only means something when cores are free (with
sched_autogroup one busy session gets one share, however many processes it runs), while the
CPU ratio does not depend on the neighbours.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from rootstrap.recipes import host_mirror
from rootstrap.unpack.extract import Policy, remove_tree
from rootstrap.unpack.pool import extract_many

DEFAULT_DIR = Path("/var/tmp/rootstrap-bench-debs")


def ensure_debs(where: Path) -> list[Path]:
    """The minbase .debs in WHERE, downloading them once when the directory is empty."""
    debs = sorted(where.glob("*.deb"))
    if debs:
        return debs
    where.mkdir(parents=True, exist_ok=True)
    scratch = Path("/var/tmp") / f"rootstrap-bench-printdebs-{os.getpid()}"
    names = subprocess.run(
        [
            "debootstrap",
            "--print-debs",
            "--variant=minbase",
            "bookworm",
            str(scratch),
            host_mirror("debian"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    subprocess.run(["apt-get", "download", *names], cwd=where, check=True, capture_output=True)
    return sorted(where.glob("*.deb"))


def serial_dpkg(debs: list[Path], dest: Path) -> None:
    for deb in debs:
        subprocess.run(
            f"dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{dest}'", shell=True, check=True
        )


def ours(debs: list[Path], dest: Path, workers: int) -> None:
    extract_many(debs, dest, Policy(), workers=workers)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, *args) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Wall seconds and CPU seconds (this process and its reaped children, user + system)."""
    start, cpu = time.perf_counter(), _cpu()
    fn(*args)
    return time.perf_counter() - start, _cpu() - cpu


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Per path: type, mode, owner, link target or content hash, xattrs, mtime."""
    import hashlib
    import stat

    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            body: object = None
            if stat.S_ISREG(st.st_mode):
                body = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            xattrs = tuple(sorted(os.listxattr(path, follow_symlinks=False)))
            out[os.path.relpath(path, root)] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                body,
                xattrs,
                st.st_mtime_ns,
            )
    return out


def compare(ours_root: Path, dpkg_root: Path) -> None:
    """Print how the two trees differ: everything but mtimes, then mtimes (dirs vs files)."""
    import stat

    a, b = snapshot(ours_root), snapshot(dpkg_root)
    only = set(a) ^ set(b)
    content = [k for k in set(a) & set(b) if a[k][:-1] != b[k][:-1]]
    mtimes = [k for k in set(a) & set(b) if a[k][-1] != b[k][-1]]
    dirs = sum(1 for k in mtimes if stat.S_ISDIR(int(str(a[k][0]))))
    print(
        f"tree check: {len(a)} entries; {len(only)} only on one side; {len(content)} differ in "
        f"type/mode/owner/content/target/xattrs; mtime differs on {dirs} directories and "
        f"{len(mtimes) - dirs} non-directories",
        flush=True,
    )
    for key in sorted(only)[:5] + sorted(content)[:5]:
        print(f"  {key}: ours {a.get(key)} dpkg {b.get(key)}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--debs", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--tmpfs",
        action="store_true",
        help="extract into a tmpfs, so the shared disk's noise does not swamp the ratio",
    )
    args = parser.parse_args()
    debs = ensure_debs(args.debs)
    # Largest first: the long xz streams start early and the tail is short.
    debs.sort(key=lambda p: p.stat().st_size, reverse=True)
    print(f"{len(debs)} debs, {sum(p.stat().st_size for p in debs) / 1e6:.1f} MB", flush=True)
    base = Path("/var/tmp") / f"rootstrap-bench-unpack-{os.getpid()}"
    ratios = []
    base.mkdir(parents=True)
    if args.tmpfs:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "tmpfs", str(base)], check=True)
    try:
        for rnd in range(1, args.rounds + 1):
            times, cpus = {}, {}
            order = ["dpkg", "ours"] if rnd % 2 else ["ours", "dpkg"]
            for name in order:
                dest = base / name
                remove_tree(dest)
                dest.mkdir(parents=True)
                os.sync()
                if name == "dpkg":
                    times[name], cpus[name] = timed(serial_dpkg, debs, dest)
                else:
                    times[name], cpus[name] = timed(ours, debs, dest, args.workers)
            if rnd == 1:
                compare(base / "ours", base / "dpkg")
            for name in order:
                remove_tree(base / name)
            ratio = times["ours"] / times["dpkg"]
            ratios.append(ratio)
            print(
                f"round {rnd}: dpkg-deb|tar serial {times['dpkg']:.2f} s, "
                f"extract_many({args.workers}) {times['ours']:.2f} s, ratio {ratio:.2f}; "
                f"cpu {cpus['dpkg']:.2f} vs {cpus['ours']:.2f} s; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        if args.tmpfs:
            subprocess.run(["umount", str(base)], check=True)
        remove_tree(base)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"median ratio {sorted(ratios)[len(ratios) // 2]:.2f} (target ≤ 0.6); "
        f"peak RSS main {peak:.0f} MB, largest child {kids:.0f} MB; load {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
