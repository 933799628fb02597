"""The signed Release through the real HTTP client and a local signed archive (HAZARDS 1-15, 44).

Each failure must be a clean error naming the URL, must come before any index is fetched
(the server's request log), and must leave nothing in the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rootstrap import recipes
from rootstrap.archive import Archive, ReleasePolicy, open_archive
from rootstrap.archive.http import Http
from rootstrap.errors import KeyringError, RootstrapError, VerificationError
from tests.support.archive import Archive as FixtureArchive
from tests.support.archive import TestKey
from tests.support.debs import DebSpec
from tests.support.fixtures import LocalMirror
from tests.support.server import FaultServer

ArchiveFactory = Callable[..., FixtureArchive]
SMALL = [DebSpec("hello", "1.0", depends="libc6"), DebSpec("libc6", "2.36-9")]


def open_local(
    mirrors: str | list[str], keyring: Path | None, cache: Path, **kwargs: Any
) -> Archive:
    recipe = recipes.load(kwargs.pop("suite", "bookworm"))
    urls = [mirrors] if isinstance(mirrors, str) else mirrors
    with Http(retries=1, backoff=0.01, timeout=10) as http:
        return open_archive(
            recipe,
            mirrors=urls,
            arch=kwargs.pop("arch", "amd64"),
            http=http,
            cache_dir=cache,
            keyrings=[keyring] if keyring else None,
            **kwargs,
        )


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def refused(
    server: FaultServer,
    cache: Path,
    keyring: Path | None,
    match: str,
    error: type[RootstrapError] = VerificationError,
    **kwargs: Any,
) -> RootstrapError:
    """Open the archive, expect ERROR matching MATCH, no index fetched, nothing cached."""
    with pytest.raises(error, match=match) as info:
        open_local(server.url, keyring, cache, **kwargs)
    assert server.fetched("*/Packages*") == [], "an index was fetched after a bad Release"
    assert files_under(cache) == [], "something was written"
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return info.value


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_good_archive_opens_and_second_open_uses_the_cache(
    local_mirror: LocalMirror, cache: Path
) -> None:
    srv = local_mirror.server
    archive = open_local(local_mirror.url, local_mirror.keyring, cache)
    assert archive.release.codename == "bookworm" and archive.mirror == local_mirror.url
    assert archive.release.fingerprints == (local_mirror.archive.key.fingerprint.lower(),)
    assert archive.recipe.name == "debian-bookworm"
    hello = archive.index.best("hello")
    assert hello is not None and hello.version == "2.10-3"
    assert "foreign-arm" not in archive.index
    # by-hash first, xz first (HAZARDS 16's order); then nothing but InRelease on a warm run.
    assert srv.fetched("*/Packages*") == []
    indexes = srv.fetched("*/binary-amd64/*")
    assert len(indexes) == 1 and "/by-hash/SHA256/" in indexes[0]
    srv.clear()
    again = open_local(local_mirror.url, local_mirror.keyring, cache)
    assert srv.fetched() == ["/dists/bookworm/InRelease"]
    assert again.index.best("hello") == hello


def test_pockets_merge_and_highest_version_wins(local_mirror: LocalMirror, cache: Path) -> None:
    archive = open_local(
        local_mirror.url, local_mirror.keyring, cache, pockets=["bookworm-updates"]
    )
    hello = archive.index.best("hello")
    assert hello is not None
    assert (hello.version, hello.origin) == ("2.10-3+deb12u1", "bookworm-updates/main")
    assert [p.version for p in archive.index.candidates("hello")] == ["2.10-3+deb12u1", "2.10-3"]


def test_alias_resolves_through_the_signed_codename(local_mirror: LocalMirror, cache: Path) -> None:
    archive = open_local(local_mirror.url, local_mirror.keyring, cache, suite="stable")
    assert archive.recipe.name == "debian-bookworm" and archive.recipe.suite == "stable"


@pytest.mark.hazard(1)
def test_unknown_key(local_mirror: LocalMirror, cache: Path, other_key: TestKey) -> None:
    local_mirror.archive.resign(key=other_key)
    exc = refused(local_mirror.server, cache, local_mirror.keyring, "NO_PUBKEY")
    assert other_key.fingerprint.lower() in str(exc)
    assert str(exc).startswith(f"{local_mirror.url}/dists/bookworm/InRelease: ")


@pytest.mark.hazard(2)
def test_modified_after_signing(local_mirror: LocalMirror, cache: Path) -> None:
    data = local_mirror.archive.inrelease.read_bytes()
    local_mirror.archive.replace_file("InRelease", data.replace(b"Label: ", b"Label: x"))
    refused(local_mirror.server, cache, local_mirror.keyring, "signature invalid")


@pytest.mark.hazard(3)
@pytest.mark.parametrize("where", ["before", "after", "second-block", "armor-whitespace"])
def test_unsigned_data_around_the_block(local_mirror: LocalMirror, cache: Path, where: str) -> None:
    data = local_mirror.archive.inrelease.read_bytes()
    tampered = {
        "before": b"Suite: bookworm\nSHA256:\n" + data,
        "after": data + b"\nPackage: evil\nVersion: 1\n",
        "second-block": data + data,
        "armor-whitespace": data.replace(b"-----END PGP", b" -----END PGP"),
    }[where]  # fmt: skip
    local_mirror.archive.replace_file("InRelease", tampered)
    refused(local_mirror.server, cache, local_mirror.keyring, "refusing|malformed")


@pytest.mark.hazard(4)
def test_release_gpg_fallback_works(local_mirror: LocalMirror, cache: Path) -> None:
    local_mirror.archive.remove("InRelease")
    archive = open_local(local_mirror.url, local_mirror.keyring, cache)
    assert archive.release.url.endswith("/dists/bookworm/Release")
    assert local_mirror.server.fetched("/dists/bookworm/*")[:3] == [
        "/dists/bookworm/InRelease",
        "/dists/bookworm/Release",
        "/dists/bookworm/Release.gpg",
    ]


@pytest.mark.hazard(4)
@pytest.mark.parametrize("where", ["prepended", "appended", "interleaved"])
def test_release_gpg_with_payload(local_mirror: LocalMirror, cache: Path, where: str) -> None:
    arch = local_mirror.archive
    arch.remove("InRelease")
    sig = arch.release_gpg.read_bytes()
    payload = b"evil payload\n"
    data = {
        "prepended": payload + sig,
        "appended": sig + payload,
        "interleaved": sig + payload + arch.key.detach_sign(arch.release.read_bytes()),
    }[where]
    arch.replace_file("Release.gpg", data)
    refused(
        local_mirror.server, cache, local_mirror.keyring, "detached signature file has extra data"
    )


@pytest.mark.hazard(5)
def test_no_signature_at_all_is_refused(local_mirror: LocalMirror, cache: Path) -> None:
    local_mirror.archive.remove("InRelease")
    local_mirror.archive.remove("Release.gpg")
    refused(local_mirror.server, cache, local_mirror.keyring, "not signed .*refusing")


@pytest.mark.hazard(5)
def test_inrelease_replaced_by_plain_release(local_mirror: LocalMirror, cache: Path) -> None:
    arch = local_mirror.archive
    arch.replace_file("InRelease", arch.release.read_bytes())
    refused(local_mirror.server, cache, local_mirror.keyring, "not a clearsigned file")


@pytest.mark.hazard(5)
def test_insecure_is_explicit_and_loud(
    local_mirror: LocalMirror, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    local_mirror.archive.remove("InRelease")
    local_mirror.archive.remove("Release.gpg")
    with caplog.at_level(logging.WARNING):
        archive = open_local(local_mirror.url, local_mirror.keyring, cache, insecure=True)
    assert archive.release.fingerprints == ()
    assert "UNVERIFIED" in caplog.text
    assert archive.index.best("hello") is not None


@pytest.mark.hazard(6)
def test_expired_key(local_mirror: LocalMirror, cache: Path, expired_key: TestKey) -> None:
    local_mirror.archive.resign(key=expired_key)
    refused(
        local_mirror.server,
        cache,
        expired_key.keyring,
        "EXPKEYSIG " + expired_key.fingerprint.lower(),
    )
    archive = open_local(
        local_mirror.url, expired_key.keyring, cache,
        policy=ReleasePolicy(allow_expired_keys=True),
    )  # fmt: skip
    assert archive.release.fingerprints == (expired_key.fingerprint.lower(),)


@pytest.mark.hazard(6)
def test_revoked_key(archive_factory: ArchiveFactory, fault_server: Any, cache: Path) -> None:
    with TestKey.generate("Revoked <revoked@example.invalid>") as key:
        arch = archive_factory(SMALL, key=key)
        key.revoke()
        refused(fault_server(arch.root), cache, key.keyring, "REVKEYSIG")


@pytest.mark.hazard(7)
def test_sha1_signature(local_mirror: LocalMirror, cache: Path) -> None:
    local_mirror.archive.resign(digest="SHA1")
    refused(local_mirror.server, cache, local_mirror.keyring, r"weak digest \(SHA1\)")


@pytest.mark.hazard(8)
def test_date_in_the_future(
    archive_factory: ArchiveFactory, fault_server: Any, cache: Path, test_key: TestKey
) -> None:
    arch = archive_factory(SMALL, date=datetime.now(UTC) + timedelta(minutes=5))
    refused(fault_server(arch.root), cache, test_key.keyring, "not valid yet")


@pytest.mark.hazard(9)
def test_valid_until_past(
    archive_factory: ArchiveFactory, fault_server: Any, cache: Path, test_key: TestKey
) -> None:
    arch = archive_factory(
        SMALL, date=datetime.now(UTC) - timedelta(days=9), valid_until=timedelta(days=7)
    )
    server = fault_server(arch.root)
    refused(server, cache, test_key.keyring, "expired since")
    archive = open_local(
        server.url, test_key.keyring, cache, policy=ReleasePolicy(ignore_valid_until=True)
    )
    assert archive.release.valid_until is not None


@pytest.mark.hazard(10)
@pytest.mark.parametrize("field", ["Date", "Valid-Until"])
def test_unparseable_dates(
    archive_factory: ArchiveFactory, fault_server: Any, cache: Path, test_key: TestKey, field: str
) -> None:
    arch = archive_factory(SMALL, extra_release={field: "the day after tomorrow"})
    refused(fault_server(arch.root), cache, test_key.keyring, f"invalid {field}")


@pytest.mark.hazard(11)
def test_replayed_release_of_another_suite(local_mirror: LocalMirror, cache: Path) -> None:
    local_mirror.archive.release_fields.update(Suite="oldstable", Codename="bullseye")
    local_mirror.archive.resign()
    refused(local_mirror.server, cache, local_mirror.keyring, "not bookworm")


@pytest.mark.hazard(12)
def test_only_weak_hashes(
    archive_factory: ArchiveFactory, fault_server: Any, cache: Path, test_key: TestKey
) -> None:
    arch = archive_factory(SMALL, hashes=("MD5Sum",))
    refused(fault_server(arch.root), cache, test_key.keyring, "only weak security information")


@pytest.mark.hazard(13)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["declared", "endless"])
def test_inrelease_over_10_mb(local_mirror: LocalMirror, cache: Path, how: str) -> None:
    srv = local_mirror.server
    if how == "declared":
        big = local_mirror.archive.inrelease.read_bytes() + b"\n" * 10_000_001
        srv.fault("*/InRelease", "content", data=big)
    else:
        srv.fault("*/InRelease", "extra_length", endless=True)
    refused(srv, cache, local_mirror.keyring, "larger than 10000000 bytes")


@pytest.mark.hazard(14)
@pytest.mark.parametrize("problem", ["missing", "empty", "not-a-keyring", "directory"])
def test_bad_keyring(local_mirror: LocalMirror, cache: Path, tmp_path: Path, problem: str) -> None:
    path = tmp_path / "keyring.gpg"
    if problem == "empty":
        path.write_bytes(b"")
    elif problem == "not-a-keyring":
        path.write_text("<html>not a keyring</html>\n")
    elif problem == "directory":
        path.mkdir()
    with pytest.raises(KeyringError) as info:
        open_local(local_mirror.url, path, cache)
    assert info.value.subject == str(path)
    assert local_mirror.server.requests == [], "nothing is fetched without a usable keyring"
    assert files_under(cache) == []


@pytest.mark.hazard(15)
def test_bad_mirror_then_good_mirror(local_mirror: LocalMirror, cache: Path) -> None:
    bad = local_mirror.server
    good = local_mirror.serve_again()
    data = local_mirror.archive.inrelease.read_bytes()
    bad.fault("*/InRelease", "content", data=data.replace(b"Label: ", b"Label: x"))
    archive = open_local([bad.url, good.url], local_mirror.keyring, cache)
    assert archive.mirror == good.url
    assert archive.release.url.startswith(good.url)
    assert bad.fetched() == ["/dists/bookworm/InRelease"]  # nothing else from the bad one
    assert good.fetched("*/binary-amd64/*")


@pytest.mark.hazard(15)
def test_two_bad_mirrors_fail(local_mirror: LocalMirror, cache: Path, other_key: TestKey) -> None:
    first = local_mirror.server
    second = local_mirror.serve_again()
    first.fault("*/InRelease", "html")
    local_mirror.archive.resign(key=other_key)  # the second serves a validly signed, unknown file
    with pytest.raises(VerificationError, match=r"authentication.*1 other mirror"):
        open_local([first.url, second.url], local_mirror.keyring, cache)
    assert not first.fetched("*/Packages*") and not second.fetched("*/Packages*")
    assert files_under(cache) == []


@pytest.mark.hazard(44)
def test_captive_portal(local_mirror: LocalMirror, cache: Path) -> None:
    local_mirror.server.fault("*/InRelease", "html")
    refused(
        local_mirror.server, cache, local_mirror.keyring,
        r"not a clearsigned file; does the network require authentication\?",
    )  # fmt: skip
