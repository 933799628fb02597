"""Benchmark: `rootstrap run -D ROOT /bin/true` against its peers, in one interleaved run.

Usage: python3 bench/run.py [--runs 25] [--root DIR] [--json]

Peers: ``systemd-nspawn --register=no --keep-unit -q -D ROOT /bin/true``,
``bwrap --bind ROOT / /bin/true`` and ``unshare -mpf chroot ROOT /bin/true``. Each round runs
every command once in a shuffled order, so load changes hit all of them alike; the figures are
medians over the rounds. ROOT defaults to the Debian minbase tree the tests cache
(debian_root: /var/cache/rootstrap-test/debootstrap-bookworm-minbase). The target (issue 5)
is rootstrap ≤ 0.5 × nspawn.

Three rootstrap rows: the installed entry point (what a user types); the same script under
``python -S`` with PYTHONPATH, which skips the interpreter's site-packages .pth hooks (on this
machine an injected .pth imports certifi at every interpreter start, ~50 ms under load); and
``rootstrap.runner.run()`` called in this already-running process, which is how the
bootstrap's configure stage uses it. The bare interpreter start-up is shown too, so the
runner's own share is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
DEFAULT_ROOT = Path("/var/cache/rootstrap-test/debootstrap-bookworm-minbase")
API = "runner.run() (warm, in-process)"


def commands(root: Path) -> dict[str, tuple[list[str], dict[str, str] | None]]:
    py = sys.executable
    entry = Path(py).parent / "rootstrap"
    nosite = {**os.environ, "PYTHONPATH": str(SRC)}
    cmds: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "rootstrap run": ([str(entry), "run", "-D", str(root), "/bin/true"], None),
        "rootstrap run (python -S)": (
            [py, "-S", str(entry), "run", "-D", str(root), "/bin/true"],
            nosite,
        ),
        "python -c pass": ([py, "-c", "pass"], None),
        "python -S -c pass": ([py, "-S", "-c", "pass"], None),
    }
    if shutil.which("systemd-nspawn"):
        cmds["systemd-nspawn"] = (
            ["systemd-nspawn", "--register=no", "--keep-unit", "-q", "-D", str(root), "/bin/true"],
            None,
        )
    if shutil.which("bwrap"):
        cmds["bwrap"] = (["bwrap", "--bind", str(root), "/", "/bin/true"], None)
    cmds["unshare -mpf chroot"] = (["unshare", "-mpf", "chroot", str(root), "/bin/true"], None)
    return cmds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.root / "bin/true").exists():
        print(
            f"error: {args.root}: no /bin/true (run the ns tests once to cache it)", file=sys.stderr
        )
        return 1
    # An installed package has its bytecode compiled; this checkout may not (and this
    # machine sets PYTHONDONTWRITEBYTECODE), so compile it once, as pip would.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(SRC / "rootstrap")], check=True)
    cmds = commands(args.root)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    times[API] = []
    from rootstrap.runner import RunSpec, run

    spec = RunSpec(args.root, ["/bin/true"])
    for argv, env in cmds.values():  # warm caches once
        subprocess.run(
            argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    for _ in range(args.runs):
        order = [*cmds, API]
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            if name == API:
                if run(spec) != 0:
                    raise SystemExit("rootstrap.runner.run failed")
                times[name].append(time.perf_counter() - start)
                continue
            argv, env = cmds[name]
            subprocess.run(
                argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            times[name].append(time.perf_counter() - start)
    result = {
        name: {"median_ms": statistics.median(t) * 1000, "min_ms": min(t) * 1000}
        for name, t in times.items()
    }
    ref = result.get("systemd-nspawn", {}).get("median_ms")
    if args.json:
        print(json.dumps({"runs": args.runs, "root": str(args.root), "results": result}, indent=2))
        return 0
    print(f"{args.runs} runs each, interleaved, root {args.root}, load {os.getloadavg()[0]:.2f}")
    print(f"{'command':34} {'median ms':>10} {'min ms':>8} {'× nspawn':>9}")
    for name, r in result.items():
        ratio = f"{r['median_ms'] / ref:.2f}" if ref else "-"
        print(f"{name:34} {r['median_ms']:10.1f} {r['min_ms']:8.1f} {ratio:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
