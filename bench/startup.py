#!/usr/bin/env python3
"""Benchmark: command-line start-up, the lean door against typer, and before/after a change.

    python3 bench/startup.py [--runs 20] [--images 50] [--before REV]

Every command is ``python -m rootstrap ...`` (or ``python -c``) run as a process, timed with
time.perf_counter around subprocess.run; each round runs every command once in a shuffled
order, so load changes hit all of them alike; medians (and minimums) over RUNS rounds:

* ``python -c pass``: the interpreter's own start-up, the floor of every row;
* ``list-images`` and ``list`` through the lean door (cli/options.py's parser, what
  cli/verbs.py routes them to) and the same listing through the typer door (cli/app.py's
  ``door()`` with the verb registered as a typer command, as it would be without the lean
  door), over a store of IMAGES busybox images (usage cached) and the running machines;
* ``run -D ROOT /bin/true`` and ``boot --help`` (boot's start-up up to the parse);
* with ``--before REV``, the list-images, list, run and boot rows again under the source tree
  of git revision REV (``git archive``, on PYTHONPATH), in the same rounds.

Both trees are byte-compiled first (this machine sets PYTHONDONTWRITEBYTECODE; an installed
package is compiled).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# The same listing as a typer verb, through the real typer door: what list-images and list
# would cost on typer. Registered on the door's app before the door runs it.
TYPER_LIST_IMAGES = """
import sys
from typing import Annotated
import typer
from rootstrap.cli import app
from rootstrap.cli.options import Globals
from rootstrap.cli.verbs import Verb

def list_images(
    all: Annotated[bool, typer.Option("--all", "-a")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    from rootstrap.cli.listing import render_images
    from rootstrap.store import Store
    print(render_images(Store(app.settings.store).images(all=all), as_json))

app.app.command("list-images")(list_images)
app._registered.add("bench")
sys.exit(app.door(Verb("list-images", "bench", "typer", "", ""), sys.argv[1:], Globals()))
"""
TYPER_LIST = """
import sys
from typing import Annotated
import typer
from rootstrap.cli import app
from rootstrap.cli.options import Globals, parse
from rootstrap.cli.verbs import Verb

def list_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    from rootstrap.cli.running import list_main
    list_main(parse("list", ["--json"] if as_json else [], ("json",)))

app.app.command("list")(list_cmd)
app._registered.add("bench")
sys.exit(app.door(Verb("list", "bench", "typer", "", ""), sys.argv[1:], Globals()))
"""


def busybox_tree(root: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        sys.exit("error: busybox: not installed (apt-get install busybox-static)")
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin/busybox")
    for applet in ("sh", "true"):
        (root / "bin" / applet).symlink_to("busybox")
    for name in ("etc", "proc", "sys", "dev", "tmp", "usr/lib"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "usr/lib/os-release").write_text('PRETTY_NAME="bench"\n')


def commands(
    py: str, store: Path, root: Path, before: Path | None
) -> dict[str, tuple[list[str], dict[str, str]]]:
    env = {**os.environ, "ROOTSTRAP_STORE": str(store), "PYTHONPATH": str(SRC)}
    m = [py, "-m", "rootstrap"]
    cmds = {
        "python -c pass": ([py, "-c", "pass"], env),
        "list-images (lean)": ([*m, "list-images"], env),
        "list-images (typer)": ([py, "-c", TYPER_LIST_IMAGES], env),
        "list (lean)": ([*m, "list"], env),
        "list (typer)": ([py, "-c", TYPER_LIST], env),
        "run -D ROOT /bin/true": ([*m, "run", "-D", str(root), "/bin/true"], env),
        "boot --help": ([*m, "boot", "--help"], env),
    }
    if before is not None:
        old = {**env, "PYTHONPATH": str(before)}
        cmds["before: list-images"] = ([*m, "list-images"], old)
        cmds["before: list"] = ([*m, "list"], old)
        cmds["before: run -D ROOT /bin/true"] = ([*m, "run", "-D", str(root), "/bin/true"], old)
        cmds["before: boot --help"] = ([*m, "boot", "--help"], old)
    return cmds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--before", help="a git revision to compare with (its src/ tree)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        before = None
        if args.before:
            archive = subprocess.run(
                ["git", "archive", args.before, "src"],
                cwd=SRC.parent,
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
            before = work / "src"
        for tree in (SRC, before):
            if tree is not None:
                subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True)
        root = work / "bb"
        busybox_tree(root)
        store = work / "machines"
        store.mkdir()
        for i in range(args.images):
            shutil.copytree(root, store / f"img-{i:02d}", symlinks=True, copy_function=os.link)
        cmds = commands(sys.executable, store, root, before)
        for argv, env in cmds.values():  # warm-up: caches, the usage cache of the store
            subprocess.run(argv, env=env, check=True, capture_output=True)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.runs):
            order = list(cmds)
            random.shuffle(order)
            for name in order:
                argv, env = cmds[name]
                start = time.perf_counter()
                subprocess.run(argv, env=env, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
        floor = statistics.median(times["python -c pass"])
        print(f"{args.runs} rounds, {args.images} images, load {os.getloadavg()[0]:.1f}:")
        print(f"  {'command':32} {'median':>9} {'min':>9} {'- python':>9}")
        for name, values in times.items():
            median = statistics.median(values)
            print(
                f"  {name:32} {median * 1000:7.1f}ms {min(values) * 1000:7.1f}ms "
                f"{(median - floor) * 1000:7.1f}ms"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
