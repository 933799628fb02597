#!/usr/bin/env python3
"""Benchmark: reading bookworm's Release with rootstrap.formats.deb822 against python-debian.

    python3 bench/deb822.py [--rounds 50] [--mirror URL]

InRelease comes from the mirror of the host's apt sources and is verified with Debian's
keyring; only the verified bytes are parsed, as rootstrap does. Rounds are interleaved (the
cores here are shared); the best round of each is printed:

* ``reader``: rootstrap.formats.deb822.parse (python-debian's Deb822 behind the line check);
* ``parse_release``: the reader, then the SHA256/MD5 lines and dates (what fetch_release pays);
* ``Deb822``: python-debian's plain paragraph parser alone;
* ``Release``: python-debian's Release class, which also splits the checksum lists (and is why
  parse_release does not use it).

Then the import cost of ``debian.deb822``, alone and after the libraries the archive layer
imports anyway, each in a fresh interpreter (median of 5).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
IMPORT = (
    "import time{before}\nstart = time.perf_counter()\nimport debian.deb822\n"
    "print(time.perf_counter() - start)"
)


def _import_cost(before: str) -> float:
    code = IMPORT.format(before=before)
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout)
        for _ in range(5)
    ]  # fmt: skip
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--mirror", default=None)
    args = parser.parse_args()

    from debian.deb822 import Deb822, Release

    from rootstrap import recipes
    from rootstrap.archive.http import Http
    from rootstrap.archive.release import ReleasePolicy, parse_release
    from rootstrap.archive.signature import load_keyring, verify_clearsigned
    from rootstrap.formats.deb822 import parse

    mirror = args.mirror or recipes.host_mirror("debian")
    if mirror is None:
        print("no Debian mirror in the host's apt sources; pass --mirror URL", file=sys.stderr)
        return 2
    with Http() as http:
        data = http.get(f"{mirror.rstrip('/')}/dists/bookworm/InRelease", max_size=10_000_000)
    signed, _ = verify_clearsigned(
        data, load_keyring([KEYRING]), subject="InRelease", policy=ReleasePolicy(),
        keyring_names=str(KEYRING),
    )  # fmt: skip
    text = signed.decode()
    print(f"bookworm InRelease: {len(data)} bytes, verified text {len(signed)} bytes, "
          f"{text.count(chr(10))} lines")  # fmt: skip
    cases: dict[str, Callable[[], object]] = {
        "reader": lambda: parse(text, max_paragraphs=1),
        "parse_release": lambda: parse_release(signed, url="InRelease"),
        "Deb822": lambda: Deb822(signed),
        "Release": lambda: Release(signed)["SHA256"],
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.rounds):
        for name, case in cases.items():
            start = time.perf_counter()
            case()
            best[name] = min(best[name], time.perf_counter() - start)
    for name, seconds in best.items():
        print(f"{name:14s} {seconds * 1e3:7.2f} ms")
    alone = _import_cost("")
    # What the archive layer imports besides python-debian (any rootstrap.archive module
    # imports rootstrap.formats.deb822, hence python-debian, so the libraries stand in).
    after = _import_cost("\nimport email.utils, logging, subprocess, httpx, pysequoia")
    print(f"import debian.deb822: {alone * 1e3:.1f} ms alone, {after * 1e3:.1f} ms after the "
          "archive layer's other imports")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
