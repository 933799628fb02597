#!/usr/bin/env python3
"""Benchmark: load bookworm's main amd64 index (targets: ≤ 1.0 s cold, ≤ 0.15 s cached, ≤ 100 MB).

    python3 bench/index_load.py [--rounds 3] [--mirror URL] [--work DIR] [--no-debian]

The .xz comes once from the mirror of the host's apt sources (docs/architecture.md, "Mirrors"),
checked against the verified InRelease, and is kept in --work. Each measurement runs in its own
process so ``ru_maxrss`` is that approach's peak; rounds are interleaved (the 2 cores here are
shared, so compare within a round):

* ``cold``: ``fetch_index`` from the downloaded .xz (a ``file://`` mirror) into an empty cache:
  streaming SHA256 check, xz decompression, the decompressed SHA256 check, the parse, and
  writing the parsed-index cache;
* ``warm``: ``fetch_index`` again, answered by the parsed-index cache, plus the first lookups
  (``best("bash")``, ``providers("awk")``, ``essential_names()``);
* ``deb822``: python-debian's ``Packages.iter_paragraphs`` (``use_apt_pkg=False``) over the
  same index, uncompressed (as in docs/decisions.md, "Index"), all stanzas and fields kept.

Prints one line per process and the medians; "rss" is the process's peak (``ru_maxrss``) and
"base" its peak before the measured step (the interpreter plus imports); "child" is the peak of
the forked decoder (cold only; it shares the parent's pages until either writes them). "cpu" is
the CPU time for the step, the decoder child's included: on a loaded machine wall time is
mostly waiting for a core, so compare CPU time too.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = "bookworm"
INDEX = "main/binary-amd64/Packages"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the forked decoder)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _release(work: Path) -> object:
    from rootstrap.archive.release import ReleasePolicy, parse_release
    from rootstrap.archive.signature import load_keyring, verify_clearsigned

    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    certs = load_keyring([keyring])
    data = (work / "InRelease").read_bytes()
    signed, fprs = verify_clearsigned(
        data, certs, subject="InRelease", policy=ReleasePolicy(), keyring_names=str(keyring)
    )
    return parse_release(signed, url=(work / "InRelease").as_uri(), fingerprints=fprs)


def prepare(work: Path, mirror: str) -> None:
    """Fetch and verify InRelease and Packages.xz once; lay them out as a file:// mirror."""
    from rootstrap.archive.http import Http

    work.mkdir(parents=True, exist_ok=True)
    with Http() as http:
        (work / "InRelease").write_bytes(
            http.get(f"{mirror}/dists/{SUITE}/InRelease", max_size=10_000_000)
        )
        release = _release(work)
        entry = release.files[INDEX + ".xz"]  # type: ignore[attr-defined]
        target = work / "mirror/dists" / SUITE / (INDEX + ".xz")
        if not target.is_file() or target.stat().st_size != entry.size:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                for block in http.stream(
                    f"{mirror}/dists/{SUITE}/{INDEX}.xz",
                    size=entry.size,
                    sha256=entry.sha256,
                    max_size=entry.size,
                ):
                    f.write(block)
    by_hash = target.parent / "by-hash/SHA256" / entry.sha256
    by_hash.parent.mkdir(parents=True, exist_ok=True)
    if not by_hash.exists():
        os.link(target, by_hash)
    plain = work / "Packages"
    if not plain.is_file():
        with lzma.open(target) as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def child(mode: str, work: Path, cache: Path) -> dict[str, object]:
    """One measurement in this process."""
    if mode == "deb822":
        from debian.deb822 import Packages

        base = _rss_mib()
        start, cpu = time.perf_counter(), _cpu()
        with open(work / "Packages", "rb") as f:
            stanzas = list(Packages.iter_paragraphs(f, use_apt_pkg=False))
        count = len(stanzas)
    else:
        from rootstrap.archive.http import Http
        from rootstrap.archive.indexfetch import fetch_index
        from rootstrap.archive.packages import PackageIndex

        release = _release(work)
        with Http() as http:
            base = _rss_mib()
            start, cpu = time.perf_counter(), _cpu()
            table = fetch_index(
                http, release, "main", "amd64",  # type: ignore[arg-type]
                mirrors=[(work / "mirror").as_uri()], cache_dir=cache, suite=SUITE,
            )  # fmt: skip
            index = PackageIndex.from_sources([table], "amd64")
            if mode == "warm":
                assert index.best("bash") is not None
                index.providers("awk")
                index.essential_names()
            count = len(table)
    wall, used = time.perf_counter() - start, _cpu() - cpu
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"mode": mode, "n": count, "wall": wall, "cpu": used, "rss": _rss_mib(), "base": base,
            "child": child, "load": os.getloadavg()[0]}  # fmt: skip


def run_child(mode: str, work: Path, cache: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--work", str(work), "--cache", str(cache)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mirror", default=None)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/rootstrap-bench-index"))
    parser.add_argument("--no-debian", action="store_true", help="skip python-debian (slow)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.work, args.cache)))
        return 0
    from rootstrap import recipes

    mirror = args.mirror or recipes.host_mirror("debian")
    if mirror is None:
        print("no Debian mirror in the host's apt sources; pass --mirror URL", file=sys.stderr)
        return 2
    prepare(args.work, mirror.rstrip("/"))
    modes = ["cold", "warm"] + ([] if args.no_debian else ["deb822"])
    results: dict[str, list[dict[str, object]]] = {m: [] for m in modes}
    for round_no in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="rs-bench-cache-") as cache:
            for mode in modes:
                r = run_child(mode, args.work, Path(cache))
                results[mode].append(r)
                decoder = f", decoder {r['child']:.0f}" if r.get("child") else ""
                print(
                    f"round {round_no} {mode:7s} n={r['n']} wall={r['wall']:.3f}s "
                    f"cpu={r['cpu']:.3f}s rss={r['rss']:.0f}MiB (base {r['base']:.0f}{decoder}) "
                    f"load={r['load']:.2f}",
                    flush=True,
                )
    print()
    for mode in modes:
        walls = [float(r["wall"]) for r in results[mode]]  # type: ignore[arg-type]
        cpus = [float(r["cpu"]) for r in results[mode]]  # type: ignore[arg-type]
        rss = max(float(r["rss"]) for r in results[mode])  # type: ignore[arg-type]
        print(f"{mode:7s} median wall {statistics.median(walls):.3f} s "
              f"(min {min(walls):.3f}, max {max(walls):.3f}), "
              f"median cpu {statistics.median(cpus):.3f} s, peak rss {rss:.0f} MiB")  # fmt: skip
    if "deb822" in results:
        for mode in ("cold", "warm"):
            for what in ("wall", "cpu"):
                ratios = [
                    float(d[what]) / float(c[what])  # type: ignore[arg-type]
                    for c, d in zip(results[mode], results["deb822"], strict=True)
                ]
                print(f"deb822 / {mode} ({what}): {statistics.median(ratios):.1f}x "
                      "(per-round median)")  # fmt: skip
    print(f"load average: {os.getloadavg()[0]:.2f} (2 cores, shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
