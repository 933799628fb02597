"""fetch.py: the shared .deb cache and parallel downloads, against real .debs served on 127.0.0.1.

HAZARDS 37 (404 → next mirror), 46 (hash mismatch → next mirror, never the same), 47 (cached
files re-verified), 103 (two processes share a cache), 106 (free space first), 107 (ENOSPC).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootstrap.archive.http import Http
from rootstrap.archive.packages import Package
from rootstrap.build.download import DebCache, fetch_all
from rootstrap.errors import (
    ArchiveIndexError,
    DownloadError,
    IntegrityError,
    ResourceError,
    StoreError,
)
from tests.support.debs import DebSpec, build_deb
from tests.support.server import FaultServer

REPO = Path(__file__).resolve().parents[2]


def _spec(name: str, kib: int) -> DebSpec:
    # Incompressible payload, so the .deb has the size we ask for.
    payload = hashlib.shake_256(name.encode()).digest(kib * 1024)
    return DebSpec(name, "1:1.0-1", files={f"usr/share/{name}/blob": payload})


def _package(mirror_root: Path, spec: DebSpec) -> Package:
    pool = f"pool/main/{spec.name[0]}/{spec.name}"
    deb = build_deb(spec, mirror_root / pool, compression="none")
    data = deb.read_bytes()
    fields = {
        "Package": spec.name,
        "Version": spec.version,
        "Architecture": spec.arch,
        "Filename": f"{pool}/{deb.name}",
        "Size": str(len(data)),
        "SHA256": hashlib.sha256(data).hexdigest(),
    }
    return Package.from_fields(fields, "bookworm/main")


@pytest.fixture
def mirror_root(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    root.mkdir()
    return root


@pytest.fixture
def packages(mirror_root: Path) -> list[Package]:
    sizes = {"alpha": 400, "bravo": 150, "charlie": 60, "delta": 20, "echo": 5, "foxtrot": 1}
    return [_package(mirror_root, _spec(name, kib)) for name, kib in sizes.items()]


@pytest.fixture
def srv(mirror_root: Path) -> Iterator[FaultServer]:
    with FaultServer(mirror_root) as server:
        yield server


@pytest.fixture
def srv2(mirror_root: Path) -> Iterator[FaultServer]:
    with FaultServer(mirror_root) as server:
        yield server


@pytest.fixture
def http() -> Iterator[Http]:
    with Http(timeout=3, retries=2, backoff=0.01) as client:
        yield client


@pytest.fixture
def cache(tmp_path: Path) -> DebCache:
    return DebCache(tmp_path / "cache")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_all_into_an_empty_cache(
    http: Http, srv: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    ready: list[str] = []
    seen_progress: list[tuple[int, int]] = []
    lock = threading.Lock()

    def on_ready(pkg: Package, path: Path) -> None:
        assert _sha(path) == pkg.sha256  # complete and verified when announced
        with lock:
            ready.append(pkg.name)

    def progress(done: int, total: int) -> None:
        with lock:
            seen_progress.append((done, total))

    got = fetch_all(http, packages, [srv.url], cache, on_ready=on_ready, progress=progress)
    assert set(got) == {p.name for p in packages}
    for pkg in packages:
        assert got[pkg.name] == cache.dir / pkg.deb_name  # named from deb_name, not Filename
        assert got[pkg.name].name == f"{pkg.name}_1%3a1.0-1_amd64.deb"
        assert _sha(got[pkg.name]) == pkg.sha256
    assert sorted(ready) == sorted(got)
    total = sum(p.size for p in packages)
    assert max(seen_progress) == (total, total)
    assert sorted(os.listdir(cache.dir)) == sorted(p.deb_name for p in packages)


def test_file_mirror(packages: list[Package], mirror_root: Path, cache: DebCache) -> None:
    with Http() as client:
        got = fetch_all(client, packages, [mirror_root.as_uri()], cache)
    assert all(_sha(got[p.name]) == p.sha256 for p in packages)


@pytest.mark.hazard(47)
def test_cache_is_reverified_and_corrupt_files_refetched(
    http: Http, srv: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    fetch_all(http, packages, [srv.url], cache)
    srv.clear()
    again = fetch_all(http, packages, [srv.url], cache)
    assert srv.requests == []  # a valid cache is served entirely locally
    victim = next(p for p in packages if p.name == "charlie")
    path = again["charlie"]
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # same size, one bit flipped
    path.write_bytes(bytes(blob))
    assert cache.verified(victim) is None
    third = fetch_all(http, packages, [srv.url], cache)
    assert srv.fetched() == ["/" + victim.filename]
    assert _sha(third["charlie"]) == victim.sha256


def test_unusable_packages_are_refused_before_any_request(
    http: Http, srv: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    fields = dict(packages[0].fields)
    fields["Filename"] = "pool/../../../etc/passwd"
    evil = Package.from_fields(fields)
    with pytest.raises(ArchiveIndexError, match="unsafe Filename"):
        fetch_all(http, [*packages, evil], [srv.url], cache)
    assert srv.requests == []


@pytest.mark.hazard(37)
def test_404_tries_the_next_mirror(
    http: Http, srv: FaultServer, srv2: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    srv.fault("*/bravo_*.deb", "status", code=404)
    got = fetch_all(http, packages, [srv.url, srv2.url], cache)
    assert _sha(got["bravo"]) == next(p for p in packages if p.name == "bravo").sha256
    assert len(srv.fetched("*/bravo_*")) == 1
    assert srv2.fetched() == [f for f in srv.fetched() if "bravo" in f]


@pytest.mark.hazard(37)
def test_404_everywhere_suggests_mid_sync(
    http: Http, srv: FaultServer, srv2: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    srv.fault("*/delta_*.deb", "status", code=404)
    srv2.fault("*/delta_*.deb", "status", code=404)
    with pytest.raises(DownloadError) as info:
        fetch_all(http, packages, [srv.url, srv2.url], cache)
    assert "not found on any of 2 mirrors" in info.value.message
    assert "delta_1%3a1.0-1_amd64.deb" in info.value.message
    assert info.value.hint is not None and "mid-sync" in info.value.hint
    # The missing file leaves nothing; other downloads stopped in flight may keep a prefix
    # for a resume (how many were in flight depends on timing).
    assert not (cache.dir / "delta_1%3a1.0-1_amd64.deb.partial").exists()
    assert not (cache.dir / "delta_1%3a1.0-1_amd64.deb").exists()


@pytest.mark.hazard(46)
def test_hash_mismatch_goes_to_the_next_mirror_not_the_same(
    http: Http, srv: FaultServer, srv2: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    srv.fault("*/alpha_*.deb", "wrong_bytes")
    got = fetch_all(http, packages, [srv.url, srv2.url], cache)
    alpha = next(p for p in packages if p.name == "alpha")
    assert _sha(got["alpha"]) == alpha.sha256
    assert len(srv.fetched("*/alpha_*")) == 1  # never retried on the mirror that lied
    assert len(srv2.fetched("*/alpha_*")) == 1


@pytest.mark.hazard(46)
def test_hash_mismatch_everywhere_aborts_with_both_hashes(
    http: Http, srv: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    srv.fault("*/echo_*.deb", "wrong_bytes")
    echo = next(p for p in packages if p.name == "echo")
    with pytest.raises(IntegrityError) as info:
        fetch_all(http, packages, [srv.url], cache)
    assert info.value.subject == f"{srv.url}/{echo.filename}"
    assert f"expected {echo.sha256}, received " in info.value.message
    assert len(srv.fetched("*/echo_*")) == 1
    assert not (cache.dir / echo.deb_name).exists()
    # The lying file is deleted, prefix and all (others stopped in flight may keep theirs).
    assert not (cache.dir / (echo.deb_name + ".partial")).exists()


@pytest.mark.hazard(34)
def test_unreachable_mirror_aborts_naming_the_url(packages: list[Package], cache: DebCache) -> None:
    with Http(timeout=1, retries=1, backoff=0.01) as client:
        with pytest.raises(DownloadError) as info:
            fetch_all(client, packages[-1:], ["http://127.0.0.1:9"], cache)
    assert info.value.subject == f"http://127.0.0.1:9/{packages[-1].filename}"
    assert "gave up after 2 tries" in info.value.message


@pytest.mark.hazard(106)
def test_not_enough_free_space_before_the_first_byte(
    http: Http, srv: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    fields = dict(packages[0].fields)
    fields["Size"] = str(1 << 60)  # an exabyte: more than any filesystem here has free
    huge = Package.from_fields(fields)
    with pytest.raises(ResourceError) as info:
        fetch_all(http, [huge, *packages[1:]], [srv.url], cache)
    assert info.value.message.startswith(f"not enough free space in {cache.dir} (need ")
    assert ", have " in info.value.message
    assert srv.requests == []


def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)


@pytest.mark.root
@pytest.mark.hazard(106)
def test_free_space_on_a_small_filesystem(
    http: Http, srv: FaultServer, packages: list[Package], tmp_path: Path
) -> None:
    where = tmp_path / "small"
    _mount_tmpfs(where, "256k")  # the set is ~640 KiB
    try:
        with pytest.raises(ResourceError, match=r"not enough free space in .*small/debs"):
            fetch_all(http, packages, [srv.url], DebCache(where))
        assert srv.requests == []
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.root
@pytest.mark.hazard(107)
def test_disk_full_while_writing(
    http: Http, srv: FaultServer, packages: list[Package], tmp_path: Path
) -> None:
    where = tmp_path / "small"
    _mount_tmpfs(where, "1m")
    try:
        cache = DebCache(where)

        def fill_disk(pkg: Package, path: Path) -> None:
            # Another tenant takes the space after the free-space check has passed.
            if pkg.name == "alpha":
                with open(where / "filler", "wb") as f:
                    try:
                        while True:
                            f.write(b"\0" * 65536)
                    except OSError:
                        pass

        with pytest.raises(ResourceError) as info:
            fetch_all(http, packages, [srv.url], cache, workers=1, on_ready=fill_disk)
        assert info.value.message.startswith("disk full while writing ")
        assert ".partial" in info.value.message
        assert not any(name.endswith(".partial") for name in os.listdir(cache.dir)), os.listdir(
            cache.dir
        )
        assert os.listdir(cache.dir) == [packages[0].deb_name]  # alpha, complete
    finally:
        subprocess.run(["umount", str(where)], check=True)


_CHILD = """
import json, sys
from pathlib import Path
from rootstrap.archive.http import Http
from rootstrap.archive.packages import Package
from rootstrap.build.download import DebCache, fetch_all
args = json.loads(sys.argv[1])
pkgs = [Package.from_fields(f) for f in args["fields"]]
with Http(timeout=10, backoff=0.01) as http:
    got = fetch_all(http, pkgs, [args["mirror"]], DebCache(Path(args["cache"])), workers=3)
print(json.dumps({k: str(v) for k, v in got.items()}))
"""


@pytest.mark.hazard(103)
def test_two_processes_share_one_cache(
    srv: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    # Slow the bodies down so the two runs overlap for a good while.
    srv.fault("*.deb", "slow_drip", interval=0.01, chunk=16384)
    expected = {p.deb_name: p.sha256 for p in packages}
    stop = threading.Event()
    bad: list[str] = []
    looks = [0]

    def watch() -> None:
        # A reader of the cache: every complete-looking name must verify, at any moment.
        while not stop.is_set():
            if cache.dir.is_dir():
                for name in os.listdir(cache.dir):
                    if name.endswith(".deb"):
                        looks[0] += 1
                        try:
                            if _sha(cache.dir / name) != expected[name]:
                                bad.append(name)
                        except FileNotFoundError:
                            bad.append(f"{name} vanished")
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    arg = json.dumps(
        {"fields": [dict(p.fields) for p in packages], "mirror": srv.url, "cache": str(cache.root)}
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, arg],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    stop.set()
    watcher.join()
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err.decode()
        got = json.loads(out)
        assert set(got) == {p.name for p in packages}
    assert bad == []
    assert looks[0] > 0
    for pkg in packages:
        assert _sha(cache.dir / pkg.deb_name) == pkg.sha256
    # Each file crossed the network once: the second run waited on the first one's lock.
    assert sorted(srv.fetched("*.deb")) == sorted("/" + p.filename for p in packages)
    assert sorted(os.listdir(cache.dir)) == sorted(expected)


def test_clean(http: Http, srv: FaultServer, packages: list[Package], cache: DebCache) -> None:
    fetch_all(http, packages, [srv.url], cache)
    (cache.dir / "stale.deb.partial").write_bytes(b"x")
    keep = {packages[0].deb_name}
    assert cache.clean(keep) == len(packages)  # the others and the stale partial
    assert os.listdir(cache.dir) == [packages[0].deb_name]
    with cache.using(), pytest.raises(StoreError, match="in use"):
        # another process would hold this; flock is per open file, so one process shows it too
        cache.clean()
    assert cache.clean() == 1
    assert os.listdir(cache.dir) == []


def test_cli_cache_list_and_clean(
    http: Http, srv: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    fetch_all(http, packages, [srv.url], cache)
    env = dict(os.environ, ROOTSTRAP_CACHE=str(cache.root))
    listed = subprocess.run(
        [sys.executable, "-m", "rootstrap", "cache", "list", "--json"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    names = [e["name"] for e in json.loads(listed.stdout)]
    assert names == sorted(p.deb_name for p in packages)
    cleaned = subprocess.run(
        [sys.executable, "-m", "rootstrap", "cache", "clean"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert cleaned.stdout.startswith(f"removed {len(packages)} files, freed ")
    assert os.listdir(cache.dir) == []


def test_any_failing_mirror_falls_through_to_the_next(
    http: Http, srv: FaultServer, srv2: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    srv.fault("*/foxtrot_*.deb", "status", code=403)
    srv.fault("*/echo_*.deb", "html")  # a captive portal answering for the .deb
    got = fetch_all(http, packages, [srv.url, srv2.url], cache)
    assert {p.name for p in packages} == set(got)
    assert sorted(srv2.fetched()) == sorted(
        "/" + p.filename for p in packages if p.name in ("foxtrot", "echo")
    )


def test_unusable_cache_directory_is_a_clean_error(
    http: Http, srv: FaultServer, packages: list[Package], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ResourceError, match="cannot create the download cache") as info:
        fetch_all(http, packages, [srv.url], DebCache(blocker / "cache"))
    assert info.value.subject == str(blocker / "cache/debs")
    assert srv.requests == []


def test_first_failure_stops_the_other_downloads(
    http: Http, srv: FaultServer, packages: list[Package], cache: DebCache
) -> None:
    srv.fault("*/alpha_*.deb", "slow_drip", interval=0.05, chunk=2048)  # ~10 s for alpha
    # The 404 comes late enough that alpha is surely dripping by then (under load, too).
    srv.fault("*/delta_*.deb", "status", code=404, delay=1.0)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="not found on the mirror"):
        fetch_all(http, packages, [srv.url], cache)
    assert time.monotonic() - start < 5  # alpha was abandoned, not waited for
    alpha = next(p for p in packages if p.name == "alpha")
    assert not (cache.dir / alpha.deb_name).exists()
    # its prefix stays for a later run to resume
    partial = cache.dir / (alpha.deb_name + ".partial")
    kept = partial.stat().st_size
    assert 0 < kept < alpha.size
    srv.clear()
    got = fetch_all(http, packages, [srv.url], cache)
    assert _sha(got["alpha"]) == alpha.sha256
    assert [r.headers["Range"] for r in srv.requests if "alpha" in r.path] == [f"bytes={kept}-"]


def test_symlinks_planted_in_the_cache_are_not_followed(
    http: Http, srv: FaultServer, packages: list[Package], cache: DebCache, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    alpha, bravo = packages[0], packages[1]
    cache.ensure()
    (cache.dir / (alpha.deb_name + ".partial")).symlink_to(victim)
    # a "cached" file that is a link to a genuine copy elsewhere is not trusted either
    elsewhere = tmp_path / "elsewhere.deb"
    elsewhere.write_bytes((srv.root / bravo.filename).read_bytes())
    (cache.dir / bravo.deb_name).symlink_to(elsewhere)
    assert cache.verified(bravo) is None
    with pytest.raises(ResourceError, match="cannot write"):
        fetch_all(http, [alpha], [srv.url], cache)
    assert victim.read_bytes() == b"precious\n"
    got = fetch_all(http, [bravo], [srv.url], cache)
    assert not got["bravo"].is_symlink()
    assert _sha(got["bravo"]) == bravo.sha256
