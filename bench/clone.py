#!/usr/bin/env python3
"""Benchmark: clone a ~200 MB image on btrfs, xfs and ext4 against each filesystem's native tool.

    python3 bench/clone.py [--rounds 5] [--source DIR]

The image is a Debian bookworm minbase tree (the suite's cached one, the tests' debian_root at
/var/cache/rootstrap-test/debootstrap-bookworm-minbase, ~206 MB, ~7,000 files) or ``--source``. Each
filesystem is a fresh 2 GiB loop mount (sparse file, mkfs, mount), so the runs do not share a
page cache with the rest of the machine's work. The image is imported once (a subvolume on
btrfs). Then, per round and in alternating order, with ``sync`` before each timed run:

* native: btrfs ``btrfs subvolume snapshot``, xfs ``cp -a --reflink=always``, ext4 ``cp -a``;
* native+sync: the same followed by ``sync -f`` (what a durable clone has to pay; ours does
  syncfs + directory fsyncs, HAZARDS 72);
* rootstrap (API): ``Store.clone()`` in this process (the operation itself);
* rootstrap (CLI): ``rootstrap clone`` as a process (adds Python start-up and typer).

Medians of the rounds; ratio = rootstrap / native (target ≤ 1.1, docs/decisions.md, Targets).
Needs root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.loopfs import loop_filesystem

from rootstrap.store import Store

MINBASE = Path("/var/cache/rootstrap-test/debootstrap-bookworm-minbase")


def timed(fn: Callable[[], object]) -> float:
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def bench_fs(kind: str, source: Path, rounds: int, work: Path) -> dict[str, float]:
    with loop_filesystem(kind, work / kind, size_mb=2048) as mnt:
        store = Store(mnt / "machines")
        store.import_fs(source, "base")
        base = store.root / "base"
        native: Callable[[str], list[str]] = {
            "btrfs": lambda d: ["btrfs", "-q", "subvolume", "snapshot", str(base), d],
            "xfs": lambda d: ["cp", "-a", "--reflink=always", str(base), d],
            "ext4": lambda d: ["cp", "-a", str(base), d],
        }[kind]
        times: dict[str, list[float]] = {"native": [], "native+sync": [], "api": [], "cli": []}
        cli = [sys.executable, "-m", "rootstrap", "--store", str(store.root), "clone", "base"]
        for i in range(rounds):

            def native_sync(dst: str) -> None:
                run(*native(dst))
                run("sync", "-f", str(store.root))

            cases: list[tuple[str, Callable[[], object]]] = [
                ("native", partial(run, *native(str(store.root / f"n{i}")))),
                ("native+sync", partial(native_sync, str(store.root / f"s{i}"))),
                ("api", partial(store.clone, "base", f"a{i}")),
                ("cli", partial(run, *cli, f"c{i}")),
            ]
            if i % 2:
                cases.reverse()
            for label, fn in cases:
                times[label].append(timed(fn))
            for prefix in "nsac":
                store.remove(f"{prefix}{i}")
        return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--source", type=Path, default=MINBASE)
    parser.add_argument("--fs", default="btrfs,xfs,ext4")
    args = parser.parse_args()
    if not (args.source / "etc").is_dir():
        print(f"no image tree at {args.source}; pass --source DIR", file=sys.stderr)
        return 1
    size = subprocess.run(["du", "-sxm", str(args.source)], capture_output=True, text=True)
    print(f"source: {args.source} ({size.stdout.split()[0]} MB), {args.rounds} rounds, medians")
    print(f"{'fs':6} {'native':>9} {'+sync':>9} {'api':>9} {'cli':>9} {'api/nat':>8} "
          f"{'cli/nat':>8} {'api/+sync':>9}")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-clone-"))
    try:
        for kind in args.fs.split(","):
            m = bench_fs(kind, args.source, args.rounds, work)
            print(f"{kind:6} {m['native']:9.3f} {m['native+sync']:9.3f} {m['api']:9.3f} "
                  f"{m['cli']:9.3f} {m['api'] / m['native']:8.2f} {m['cli'] / m['native']:8.2f} "
                  f"{m['api'] / m['native+sync']:9.2f}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
