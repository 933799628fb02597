"""Benchmark: `rootstrap boot` against `systemd-nspawn -b` on the same image, in one run.

Usage: python3 bench/boot.py [--runs 7] [--image DIR] [--json]

Each round boots the image once with each tool, in a shuffled order, and measures two spans:

- start to running: from spawning the command until the machine's systemd reports READY=1
  (sd_notify; systemd sends it when startup finished, the moment ``systemctl
  is-system-running`` turns ``running``). Both tools pass READY=1 on to their own
  $NOTIFY_SOCKET (nspawn with ``--notify-ready=yes``), which is a socket of this script.
- poweroff to exit: from SIGTERM to the tool (both turn it into SIGRTMIN+3 for the init)
  until the tool has exited.

Figures are medians over the rounds. Both boot a private copy of IMAGE (default the image
the boot tests cache, /var/cache/rootstrap-test/boot-store/boot), made once per run, so
neither pays for an overlay or a copy (nspawn's -x copies a whole tree on non-btrfs file
systems). Targets (issue 8): start to running ≤ 1.0 × nspawn, poweroff to exit ≤ 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_IMAGE = Path("/var/cache/rootstrap-test/boot-store/boot")
SRC = Path(__file__).resolve().parent.parent / "src"


def commands(root: Path) -> dict[str, list[str]]:
    return {
        "rootstrap boot": [
            sys.executable,
            "-m",
            "rootstrap",
            "boot",
            "-D",
            str(root),
            "-M",
            "bench",
            "--console=passive",
        ],
        # The same without the interpreter's site hooks (python -S, PYTHONPATH): on this
        # machine an injected .pth imports certifi at every interpreter start (bench/run.py).
        "rootstrap boot (-S)": [
            sys.executable,
            "-S",
            "-m",
            "rootstrap",
            "boot",
            "-D",
            str(root),
            "-M",
            "bench",
            "--console=passive",
        ],
        "systemd-nspawn -b": [
            "systemd-nspawn",
            "--register=no",
            "--keep-unit",
            "-q",
            "-b",
            "--notify-ready=yes",
            "--console=passive",
            "-D",
            str(root),
        ],
    }


def one(argv: list[str], sock: socket.socket, address: str) -> tuple[float, float]:
    """(start to READY=1, SIGTERM to exit) for one boot."""
    env = dict(os.environ, NOTIFY_SOCKET=address, PYTHONPATH=str(SRC))
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        while True:
            sock.settimeout(max(0.1, 60 - (time.monotonic() - start)))
            try:
                data = sock.recv(4096)
            except TimeoutError:
                raise SystemExit(f"{argv[0]}: no READY=1 within 60 s") from None
            if b"READY=1" in data.split(b"\n"):
                break
        ready = time.monotonic() - start
        stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        down = time.monotonic() - stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err[-500:]}")
    if proc.stderr:
        proc.stderr.close()
    return ready, down


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("systemd-nspawn") is None:
        raise SystemExit("systemd-nspawn is missing (apt-get install systemd-container)")
    if not (args.image / "sbin/init").is_symlink():
        raise SystemExit(f"{args.image}: no bootable image (run tests/ns/test_boot.py once)")
    work = Path(tempfile.mkdtemp(prefix="bench-boot-", dir="/var/tmp"))
    try:
        root = work / "root"
        subprocess.run(["cp", "-a", "--reflink=auto", str(args.image), str(root)], check=True)
        address = str(work / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(address)
        cmds = commands(root)
        for argv in cmds.values():  # warm the page cache and first-boot work alike
            one(argv, sock, address)
        ready: dict[str, list[float]] = {name: [] for name in cmds}
        down: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.runs):
            order = list(cmds)
            random.shuffle(order)
            for name in order:
                r, d = one(cmds[name], sock, address)
                ready[name].append(r)
                down[name].append(d)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {n: (statistics.median(ready[n]), statistics.median(down[n])) for n in cmds}
    ratio = med["rootstrap boot"][0] / med["systemd-nspawn -b"][0]
    if args.json:
        print(json.dumps({"runs": args.runs, "median": med, "ratio_ready": ratio}, indent=2))
        return 0
    print(f"{'':20} {'start→running':>14} {'poweroff→exit':>14}   (medians of {args.runs})")
    for name, (r, d) in med.items():
        print(f"{name:20} {r:13.3f}s {d:13.3f}s")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    print(f"rootstrap / nspawn to running: {ratio:.2f}× (target ≤ 1.0×); ", end="")
    print(f"rootstrap poweroff→exit {med['rootstrap boot'][1]:.3f} s (target ≤ 0.5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
