"""`rootstrap bootstrap` from a mirror with faults, through the real command line.

The local signed archive of test_bootstrap_local.py (real bookworm minbase .debs) is served by
the fault-injecting server of tests/support/server.py, one server per test so its request log
(and the bytes it sent) are the test's alone; each test downloads into an empty cache.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import defaultdict
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.integration.test_bootstrap_local import (
    Mirror,
    assert_clean_failure,
    bootstrap_args,
    leftovers,
    mirror,
    mounts_under,
    rootstrap,
    status_of,
)
from tests.support.server import FaultServer, LoggedRequest

pytestmark = [pytest.mark.network, pytest.mark.slow]

__all__ = ["mirror"]  # the module-scoped fixture, used by name


def by_file(srv: FaultServer, root: Path) -> dict[Path, list[LoggedRequest]]:
    """The requests for each file of ROOT that exists (a probe for a missing one is a 404)."""
    found: dict[Path, list[LoggedRequest]] = defaultdict(list)
    for request in srv.requests:
        path = root / unquote(urlsplit(request.path).path).lstrip("/")
        if path.is_file():
            found[path].append(request)
    return found


@pytest.mark.hazard(34, 39)
def test_every_file_cut_off_then_refused_is_survived(mirror: Mirror, tmp_path: Path) -> None:
    """Each file's first request breaks off halfway, its second is answered 503: the build
    completes, every file resumed where it broke off (Range), so each crossed the wire once."""
    store = tmp_path / "store"
    with FaultServer(mirror.archive.root) as srv:
        srv.fault("*", "truncate", count=1, per_path=True)
        srv.fault("*", "status", code=503, count=1, per_path=True)
        done = rootstrap(
            *bootstrap_args(mirror, store, "flaky", cache=tmp_path / "cache", url=srv.url + "/")
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        files = by_file(srv, mirror.archive.root)
    installed = status_of(store / "flaky")
    assert installed and set(installed.values()) == {"install ok installed"}
    debs = [path for path in files if path.suffix == ".deb"]
    assert len(debs) == len(installed)
    assert any(path.name == "InRelease" for path in files)
    assert any("binary-amd64" in path.parts for path in files)  # the Packages index (by-hash)
    for path, (cut, refused, rest) in ((p, tuple(r)) for p, r in files.items()):
        size = path.stat().st_size
        assert (cut.fault, refused.fault, rest.fault) == ("truncate", "status", None), path
        assert cut.sent == size // 2, path
        assert refused.headers["Range"] == rest.headers["Range"] == f"bytes={cut.sent}-", path
        assert cut.sent + rest.sent == size, f"{path}: {cut.sent} + {rest.sent} bytes"


@pytest.mark.hazard(46)
def test_every_deb_corrupt_fails_cleanly_and_leaves_nothing(mirror: Mirror, tmp_path: Path) -> None:
    store, cache = tmp_path / "store", tmp_path / "cache"
    with FaultServer(mirror.archive.root) as srv:
        srv.fault("*.deb", "wrong_bytes")
        done = rootstrap(*bootstrap_args(mirror, store, "corrupt", cache=cache, url=srv.url + "/"))
    text = assert_clean_failure(done)
    # Said once: not again as a warning, nor once per package that failed meanwhile.
    assert len([line for line in done.stderr.splitlines() if "SHA256" in line]) == 1, done.stderr
    error = re.fullmatch(
        r"error: (http://127\.0\.0\.1:\d+/\S+\.deb): SHA256 mismatch: "
        r"expected ([0-9a-f]{64}), received ([0-9a-f]{64})",
        text.splitlines()[0],
    )
    assert error is not None, done.stderr
    assert text.splitlines()[1].startswith("hint: "), done.stderr
    url, expected, received = error.groups()
    served = mirror.archive.root / unquote(urlsplit(url).path).lstrip("/")
    assert hashlib.sha256(served.read_bytes()).hexdigest() == expected != received
    assert leftovers(store) == []
    assert mounts_under(tmp_path) == []
    # No .deb is kept. The downloads in flight when the first mismatch stopped them keep their
    # prefix as NAME.partial, as apt keeps partial/: a later run resumes it, and the whole
    # file's SHA256 decides then (a bad prefix is refetched from zero; test_http.py).
    kept = [p for p in (cache / "debs").iterdir() if p.name != ".lock"]
    assert all(p.name.endswith(".deb.partial") for p in kept), kept


@pytest.mark.hazard(39, 40)
def test_server_ignoring_range_still_gives_correct_files(mirror: Mirror, tmp_path: Path) -> None:
    """Every .deb breaks off halfway, then the server answers the Range request with the
    whole file (200): the partial bytes are dropped, not prepended, and every file kept is
    the mirror's, byte for byte (--extract-only: the downloads are what is tested here)."""
    store, cache = tmp_path / "store", tmp_path / "cache"
    with FaultServer(mirror.archive.root) as srv:
        srv.fault("*.deb", "truncate", count=1, per_path=True)
        srv.fault("*.deb", "ignore_range")
        argv = bootstrap_args(mirror, store, "norange", cache=cache, url=srv.url + "/")
        done = rootstrap(*argv, "--extract-only")
        assert done.returncode == 0, done.stderr
        files = by_file(srv, mirror.archive.root)
    debs = {path: requests for path, requests in files.items() if path.suffix == ".deb"}
    assert len(debs) > 50 and (store / "norange/usr/bin/dpkg").is_file()
    for path, (cut, whole) in ((p, tuple(r)) for p, r in debs.items()):
        assert cut.fault == "truncate" and cut.sent == path.stat().st_size // 2, path
        assert whole.headers["Range"] == f"bytes={cut.sent}-", path
        assert whole.fault == "ignore_range" and whole.sent == path.stat().st_size, path
    served = {hashlib.sha256(path.read_bytes()).hexdigest() for path in debs}
    kept = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (cache / "debs").iterdir()}
    assert kept == served


@pytest.mark.hazard(35)
def test_retry_after_is_waited_instead_of_the_backoff(mirror: Mirror, tmp_path: Path) -> None:
    """Three 503s for InRelease, the third with Retry-After: 2. The command line's own backoff
    waits 1 s, then 2 s, then would wait 4 s: the server's 2 s is what it waits instead."""
    with FaultServer(mirror.archive.root) as srv:
        srv.fault("*/InRelease", "status", code=503, count=2)
        srv.fault("*/InRelease", "status", code=503, count=1, headers={"Retry-After": "2"})
        done = rootstrap(
            "--cache-dir", str(tmp_path / "cache"), "info", "bookworm",
            "--mirror", srv.url, "--keyring", str(mirror.keyring),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        asked = [r for r in srv.requests if r.path.endswith("/InRelease")]
    assert [r.fault for r in asked] == ["status", "status", "status", None]
    waits = [later.time - earlier.time for earlier, later in itertools.pairwise(asked)]
    # Upper bounds with a margin for a loaded machine, below what the backoff would wait next.
    assert 1.0 <= waits[0] < 1.9 and 2.0 <= waits[1] < 3.6, waits  # the backoff: 1 s, 2 s
    assert 2.0 <= waits[2] < 3.6, waits  # Retry-After: 2, not the backoff's 4 s
