#!/usr/bin/env python3
"""Benchmark: download bookworm minbase's .debs with fetch_all vs curl, 8 at a time.

    python3 bench/download.py [--rounds 3] [--mirror URL] [--list FILE] [--workers 8]

The package list is debootstrap's own (``debootstrap --print-debs --variant=minbase``) unless
``--list`` names a file of package names. Sizes and SHA256s come from the mirror's
``main/binary-amd64/Packages.xz`` (this benchmark does not check the Release signature; the
bootstrap path does). Each round downloads every .deb into an empty directory twice:

* ``curl``: ``xargs -P8 -nN curl --remote-name-all`` (8 batches, each on one kept-alive
  connection) over the same URLs, then ``sha256sum -c`` (curl does not verify; rootstrap hashes
  while streaming, so the check belongs to curl's time too). One curl per URL (``-n1``) was
  5-10x slower here, so the batched form is the stronger baseline;
* ``rootstrap``: a fresh ``Http`` and ``fetch_all(workers=8)`` into an empty ``DebCache``.

The order alternates between rounds. Figures: wall seconds per round, the ratio
rootstrap / curl (target ≤ 1.5, issue 4), plus one re-run over the filled cache (verify only).
The mirror comes from the host's apt sources (docs/architecture.md, "Mirrors").
"""

from __future__ import annotations

import argparse
import lzma
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rootstrap.archive.http import Http
from rootstrap.archive.packages import Package
from rootstrap.build.download import DebCache, fetch_all
from rootstrap.recipes import host_mirror


def minbase_names(mirror: str, suite: str) -> list[str]:
    """debootstrap's minbase package list for SUITE (needs debootstrap; ~15 s)."""
    if not shutil.which("debootstrap"):
        sys.exit("debootstrap is not installed: apt-get install debootstrap, or pass --list FILE")
    with tempfile.TemporaryDirectory(prefix="bench-dbs-") as target:
        out = subprocess.run(
            ["debootstrap", "--print-debs", "--variant=minbase", suite, target, mirror],
            capture_output=True,
            text=True,
            check=True,
        )
    return out.stdout.split()


def index_packages(http: Http, mirror: str, suite: str, names: set[str]) -> list[Package]:
    """The stanzas of NAMES from the suite's main amd64 Packages.xz (a plain stanza split)."""
    url = f"{mirror.rstrip('/')}/dists/{suite}/main/binary-amd64/Packages.xz"
    text = lzma.decompress(http.get(url, max_size=200 << 20))
    found: dict[str, Package] = {}
    for block in text.split(b"\n\n"):
        if not block.startswith(b"Package: "):
            continue
        name = block[9 : block.index(b"\n")].decode()
        if name not in names:
            continue
        fields: dict[str, str] = {}
        key = ""
        for line in block.decode().splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        found[name] = Package.from_fields(fields, f"{suite}/main")
    missing = names - set(found)
    if missing:
        sys.exit(f"not in the index: {' '.join(sorted(missing))}")
    return sorted(found.values(), key=lambda p: p.name)


def run_curl(urls: list[str], sums: str, workdir: Path) -> float:
    workdir.mkdir()
    (workdir / "SHA256SUMS").write_text(sums)
    start = time.perf_counter()
    # The library probe's form (docs/decisions.md, "Downloads"): each curl takes a batch of
    # URLs (one kept-alive connection), batches sized so all 8 run at once.
    per = max(1, -(-len(urls) // 8))
    subprocess.run(
        ["xargs", "-P8", f"-n{per}", "curl", "-sS", "--fail", "--remote-name-all"],
        input="\n".join(urls),
        text=True,
        cwd=workdir,
        check=True,
    )
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=workdir, check=True)
    return time.perf_counter() - start


def run_rootstrap(packages: list[Package], mirror: str, cache_root: Path, workers: int) -> float:
    start = time.perf_counter()
    with Http() as http:
        got = fetch_all(http, packages, [mirror], DebCache(cache_root), workers=workers)
    elapsed = time.perf_counter() - start
    assert len(got) == len(packages)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mirror", default=None)
    parser.add_argument("--suite", default="bookworm")
    parser.add_argument("--list", type=Path, default=None, help="file of package names")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    mirror = args.mirror or host_mirror("debian")
    if not mirror:
        sys.exit("no Debian mirror in the host's apt sources: pass --mirror URL")

    names = args.list.read_text().split() if args.list else minbase_names(mirror, args.suite)
    with Http() as http:
        packages = index_packages(http, mirror, args.suite, set(names))
    total = sum(p.size for p in packages)
    # curl -O names files after the URL as given, so it gets the raw pool paths.
    urls = [f"{mirror.rstrip('/')}/{p.filename}" for p in packages]
    sums = "".join(f"{p.sha256}  {p.filename.rsplit('/', 1)[1]}\n" for p in packages)
    print(f"{len(packages)} debs, {total / 1e6:.1f} MB, mirror {mirror}, {args.workers} workers")

    base = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        # Warm-up: the first fetch of each URL may be a cold proxy/mirror cache for both tools.
        run_curl(urls, sums, base / "warm")
        rows = []
        for i in range(args.rounds):
            order = ["curl", "rootstrap"] if i % 2 == 0 else ["rootstrap", "curl"]
            times = {}
            for tool in order:
                where = base / f"{tool}-{i}"
                if tool == "curl":
                    times[tool] = run_curl(urls, sums, where)
                else:
                    times[tool] = run_rootstrap(packages, mirror, where, args.workers)
            rows.append(times)
            ratio = times["rootstrap"] / times["curl"]
            print(
                f"round {i + 1}: curl -P8 + sha256sum {times['curl']:.2f} s, "
                f"rootstrap fetch_all {times['rootstrap']:.2f} s "
                f"({total / 1e6 / times['rootstrap']:.0f} MB/s), ratio {ratio:.2f}"
            )
        ratios = [r["rootstrap"] / r["curl"] for r in rows]
        print(
            f"median: curl {statistics.median(r['curl'] for r in rows):.2f} s, "
            f"rootstrap {statistics.median(r['rootstrap'] for r in rows):.2f} s, "
            f"ratio {statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}; "
            "target <= 1.5)"
        )
        cached = run_rootstrap(packages, mirror, base / f"rootstrap-{args.rounds - 1}", 8)
        print(f"re-run over the filled cache (re-verify only): {cached:.2f} s")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
