"""Where the suite keeps what it builds once and reuses: ``ROOTSTRAP_TEST_CACHE``.

Debian trees made by debootstrap, the bootable image, real .debs fetched from the host's mirror
take minutes to make, so a developer's machine keeps them between runs (default
``/var/cache/rootstrap-test``). Every test gets them from a fixture or helper that makes them on
demand (tests/support/fixtures.py, realdebs.py, ubuntu.py), never by assuming another test ran
first. CI (``.ci/run``) points this at a new empty directory and removes it afterwards, so a CI
run proves the suite from nothing: a test that passes only on a warm cache fails there.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["TEST_CACHE"]

TEST_CACHE = Path(os.environ.get("ROOTSTRAP_TEST_CACHE") or "/var/cache/rootstrap-test")
