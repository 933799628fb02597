#!/usr/bin/env python3
"""Bootstrap time and peak memory: rootstrap against mmdebstrap and debootstrap, in one run.

    python3 bench/bootstrap.py [--suite bookworm] [--rounds 3] [--variants minbase,important]
                               [--peers debootstrap,mmdebstrap] [--skip-cold]

For each variant, interleaved rounds of:
  rootstrap cold    a fresh --cache-dir (indexes and .debs downloaded)
  rootstrap warm    the same cache again, after two warm-up builds: indexes, .debs and the
                    configured tree cached (the tree is restored; nothing downloaded)
  rootstrap warm, .debs only   the same with --no-tree-cache: every phase runs, no download
  mmdebstrap        its default (downloads everything into a temporary apt directory)
  mmdebstrap warm   the same .debs handed to apt by a setup hook (nothing downloaded)
  debootstrap       its default; warm: --unpack-tarball of a --make-tarball
All from the mirror in the host's apt sources. Prints medians, ratios and peak RSS (the largest
process of the tree, from wait4), as a Markdown table for bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from rootstrap.recipes import host_mirror


def timed(argv: list[str]) -> tuple[float, float]:
    """Run ARGV; return (wall seconds, peak RSS in MB of the largest process in its tree)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{err[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", default="bookworm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="minbase,important")
    parser.add_argument("--peers", default="debootstrap,mmdebstrap")
    args = parser.parse_args()
    mirror = host_mirror("debian")
    if mirror is None:
        raise SystemExit("no Debian mirror in the host's apt sources")
    peers = [p for p in args.peers.split(",") if p]
    work = Path(tempfile.mkdtemp(prefix="rootstrap-bench-", dir="/var/tmp"))
    results: dict[str, list[tuple[float, float]]] = {}
    serial = 0
    rootstrap = [sys.executable, "-m", "rootstrap", "-q"]
    try:
        for variant in args.variants.split(","):
            warm_cache = work / f"cache-{variant}"
            debs = work / f"debs-{variant}"
            tarball = work / f"debootstrap-{variant}.tgz"
            # Warm-up, not timed: fill our cache (two builds: the second saves the configured
            # tree), and the peers' .debs and tarball.
            for n in range(2):
                subprocess.run([*rootstrap, "--cache-dir", str(warm_cache), "bootstrap",
                                args.suite, "--target", str(work / f"warmup-{variant}-{n}"),
                                "--variant", variant], check=True)  # fmt: skip
            debs.mkdir()
            for deb in (warm_cache / "debs").glob("*.deb"):
                os.link(deb, debs / deb.name)
            if "debootstrap" in peers:
                var = [f"--variant={variant}"] if variant != "important" else []
                make = ["debootstrap", *var, f"--make-tarball={tarball}", args.suite]
                subprocess.run([*make, str(work / "mk"), mirror], check=True, capture_output=True)
            for _ in range(args.rounds):
                runs: dict[str, list[str]] = {}
                # Every run gets a new directory and nothing is deleted until the end: on this
                # machine's ext4 (mounted with discard) creating files stays up to 10x slower
                # for a while after a large rm -rf, which would charge the benchmark's own
                # cleanup to whichever tool runs next.
                serial += 1
                t = str(work / f"t-{serial}")
                cold = work / f"cold-cache-{serial}"
                runs["rootstrap cold"] = [*rootstrap, "--cache-dir", str(cold), "bootstrap",
                                          args.suite, "--target", t + "-cold",
                                          "--variant", variant]  # fmt: skip
                runs["rootstrap warm"] = [*rootstrap, "--cache-dir", str(warm_cache), "bootstrap",
                                          args.suite, "--target", t + "-warm",
                                          "--variant", variant]  # fmt: skip
                runs["rootstrap warm, .debs only"] = [
                    *rootstrap, "--cache-dir", str(warm_cache), "bootstrap", args.suite,
                    "--target", t + "-debs", "--variant", variant, "--no-tree-cache",
                ]  # fmt: skip
                if "mmdebstrap" in peers:
                    runs["mmdebstrap"] = ["mmdebstrap", f"--variant={variant}", args.suite,
                                          t + "-mm", mirror]  # fmt: skip
                    runs["mmdebstrap warm"] = [
                        "mmdebstrap", f"--variant={variant}",
                        f'--setup-hook=mkdir -p "$1/var/cache/apt/archives" && '
                        f'cp {debs}/*.deb "$1/var/cache/apt/archives/"',
                        args.suite, t + "-mmwarm", mirror,
                    ]  # fmt: skip
                if "debootstrap" in peers:
                    var = [f"--variant={variant}"] if variant != "important" else []
                    runs["debootstrap"] = ["debootstrap", *var, args.suite, t + "-db", mirror]
                    runs["debootstrap warm"] = ["debootstrap", *var, f"--unpack-tarball={tarball}",
                                                args.suite, t + "-dbwarm", mirror]  # fmt: skip
                for label, argv in runs.items():
                    results.setdefault(f"{variant}: {label}", []).append(timed(argv))
                    print(f"{variant}: {label}: {results[f'{variant}: {label}'][-1][0]:.2f} s",
                          file=sys.stderr, flush=True)  # fmt: skip
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}; rounds: {args.rounds}\n")
    print("| run | median s | runs | peak RSS MB |\n|---|---|---|---|")
    for label, values in results.items():
        walls = [w for w, _ in values]
        each = " / ".join(f"{w:.1f}" for w in walls)
        peak = max(m for _, m in values)
        print(f"| {label} | {statistics.median(walls):.2f} | {each} | {peak:.0f} |")
    for variant in args.variants.split(","):
        ours = statistics.median(w for w, _ in results[f"{variant}: rootstrap cold"])
        for peer in ("mmdebstrap", "debootstrap"):
            key = f"{variant}: {peer}"
            if key in results:
                theirs = statistics.median(w for w, _ in results[key])
                print(f"{variant}: rootstrap cold / {peer} = {ours / theirs:.2f}")
        for label in ("rootstrap warm", "rootstrap warm, .debs only"):
            warm = statistics.median(w for w, _ in results[f"{variant}: {label}"])
            print(f"{variant}: {label} = {warm:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
