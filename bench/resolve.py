#!/usr/bin/env python3
"""Benchmark: resolve a variant of bookworm from a loaded index (target ≤ 0.2 s, issue 3).

    python3 bench/resolve.py [--variant important] [--rounds 5] [--mirror URL] [--cache DIR]

The index comes from ``open_archive`` (verified Release, Packages cached under --cache by
SHA256; the first run downloads ~9 MB). Two figures, each the median of --rounds:

* ``lookup tables``: the index's own one-time lazy tables (name → stanzas, Provides, Priority),
  built by its first queries; they belong to loading the index, not to resolving;
* ``first``: the first ``resolve`` on that index, with the relation-parse cache emptied: the
  figure for the target; it includes parsing each stanza the resolver asks for (lazily, from
  the cached index) and every relation it visits;
* ``cold``: the first ``resolve`` on a freshly opened index without the warm-up, i.e. both of
  the above: what ``rootstrap resolve`` pays once per run;
* ``again``: another ``resolve`` on the same index (stanzas and relations parsed already).

Also printed: the package count and the time to open the (cached) archive, for context.
The mirror comes from the host's apt sources (docs/architecture.md, "Mirrors").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from rootstrap import recipes
from rootstrap.archive import Archive, open_archive
from rootstrap.archive.http import Http
from rootstrap.archive.packages import PackageIndex
from rootstrap.resolve import resolve
from rootstrap.resolve.relations import _provides, parse_relations


def open_bookworm(http: Http, mirror: str, cache: Path) -> Archive:
    return open_archive(
        recipes.load("bookworm"), mirrors=[mirror], arch="amd64", http=http, cache_dir=cache
    )


def warm_up(index: PackageIndex) -> None:
    """Build the index's lazy lookup tables (what its first queries would build anyway)."""
    index.best("libc6")
    index.providers("awk")
    index.essential_names()
    index.with_priority("required")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="important")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mirror", default=None)
    parser.add_argument("--cache", type=Path, default=Path("/var/tmp/rootstrap-bench-cache"))
    args = parser.parse_args()
    mirror = args.mirror or recipes.host_mirror("debian")
    if mirror is None:
        sys.exit("no Debian mirror in the host's apt sources: pass --mirror URL")
    args.cache.mkdir(parents=True, exist_ok=True)
    samples: dict[str, list[float]] = {k: [] for k in ("open", "tables", "first", "again", "cold")}
    count = 0
    with Http() as http:
        open_bookworm(http, mirror, args.cache)  # fill the cache
        for _ in range(args.rounds):
            for warm in (True, False):
                started = time.perf_counter()
                archive = open_bookworm(http, mirror, args.cache)
                samples["open"].append(time.perf_counter() - started)
                parse_relations.cache_clear()
                _provides.cache_clear()
                steps = ["tables", "first", "again"] if warm else ["cold"]
                for step in steps:
                    started = time.perf_counter()
                    if step == "tables":
                        warm_up(archive.index)
                    else:
                        plan = resolve(
                            archive.index, archive.recipe, variant=args.variant, arch="amd64"
                        )
                        count = len(plan)
                    samples[step].append(time.perf_counter() - started)
    print(f"bookworm {args.variant}: {count} packages, {args.rounds} rounds (median)")
    rows = [
        ("open cached archive", "open", ""),
        ("index lookup tables", "tables", "(the index's one-time lazy tables)"),
        ("first resolve", "first", "(target ≤ 0.2 s)"),
        ("cold = tables + first", "cold", ""),
        ("resolve again", "again", ""),
    ]
    for label, key, note in rows:
        print(f"  {label:<22} {statistics.median(samples[key]):.3f} s  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
