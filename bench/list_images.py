#!/usr/bin/env python3
"""Benchmark: ``list-images`` over 50 images, usage cached (target ≤ 0.2 s, issue 7).

    python3 bench/list_images.py [--images 50] [--rounds 7]

Builds a store of N small images (a busybox tree plus 200 files each, made by clone) in a tmp
dir, lists once to fill the usage cache, then times, medians of the rounds:

* ``api``: ``Store.images()`` in this process (the listing itself, cache hits);
* ``cli``: ``rootstrap list-images`` as a process (adds Python start-up and typer);
* ``python``: ``python3 -c 'import typer'``, the floor any typer-based verb pays here;
* ``cold``: ``Store.images()`` after the cache file is deleted (every tree walked).
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
from pathlib import Path

from rootstrap.store import Store


def median_time(argv: list[str] | None, fn: object = None, rounds: int = 7) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        if argv is not None:
            subprocess.run(argv, check=True, capture_output=True)
        elif callable(fn):
            fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(store: Store, count: int, work: Path) -> None:
    src = work / "tree"
    for d in ("bin", "etc", "usr/lib", "var/lib"):
        (src / d).mkdir(parents=True)
    busybox = shutil.which("busybox")
    if busybox:
        shutil.copy2(busybox, src / "bin/busybox")
    (src / "usr/lib/os-release").write_text('PRETTY_NAME="bench"\n')
    for i in range(200):
        (src / f"var/lib/f{i}").write_bytes(os.urandom(1024))
    store.import_fs(src, "img-00")
    for i in range(1, count):
        store.clone("img-00", f"img-{i:02d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-list-"))
    try:
        store = Store(work / "machines")
        build(store, args.images, work)
        assert len(store.images()) == args.images  # fills the cache
        cli = [sys.executable, "-m", "rootstrap", "--store", str(store.root), "list-images"]
        api = median_time(None, store.images, args.rounds)
        cli_t = median_time(cli, rounds=args.rounds)
        floor = median_time([sys.executable, "-c", "import typer"], rounds=args.rounds)

        def cold() -> None:
            (store.root / ".rootstrap-usage.json").unlink(missing_ok=True)
            store.images()

        cold_t = median_time(None, cold, args.rounds)
        print(f"{args.images} images, medians of {args.rounds}:")
        print(f"  api (cached)  {api:.4f} s")
        print(f"  cli (cached)  {cli_t:.4f} s   target <= 0.2 s")
        print(f"  python+typer  {floor:.4f} s   (start-up floor)")
        print(f"  api (cold)    {cold_t:.4f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
