"""``rootstrap info`` as a user runs it, against the local signed archive on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures import LocalMirror


def rootstrap(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rootstrap", "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def info(mirror: LocalMirror, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return rootstrap(
        "info", *args, "--mirror", mirror.url, "--keyring", str(mirror.keyring), cache=cache
    )


def test_info_prints_the_verified_summary(local_mirror: LocalMirror, tmp_path: Path) -> None:
    done = info(local_mirror, tmp_path / "cache", "bookworm")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert lines["Codename"].strip() == "bookworm" and lines["Suite"].strip() == "stable"
    assert lines["Signed-By"].strip() == local_mirror.archive.key.fingerprint.lower()
    assert lines["Mirror"].strip() == local_mirror.url
    assert lines["Components"].strip() == "main"
    assert not local_mirror.server.fetched("*/binary-*"), "no index needed for the summary"
    assert not (tmp_path / "cache").exists()


def test_info_prints_stanzas_like_apt_cache_show(local_mirror: LocalMirror, tmp_path: Path) -> None:
    done = info(local_mirror, tmp_path / "cache", "bookworm", "hello", "dash")
    assert done.returncode == 0, done.stderr
    stanzas = done.stdout.split("\n\n")
    assert stanzas[1].startswith("Package: hello\n") and "\nVersion: 2.10-3\n" in stanzas[1]
    assert stanzas[2].startswith("Package: dash\n") and "\nProvides: sh\n" in stanzas[2]
    assert "\nSHA256: " in stanzas[1] and "\nFilename: pool/main/h/hello/" in stanzas[1]


def test_info_json(local_mirror: LocalMirror, tmp_path: Path) -> None:
    done = info(local_mirror, tmp_path / "cache", "stable", "hello", "--json", "--pockets",
                "bookworm-updates")  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["release"]["codename"] == "bookworm"
    assert data["release"]["signed_by"] == [local_mirror.archive.key.fingerprint.lower()]
    versions = [p["version"] for p in data["packages"]]
    assert versions == ["2.10-3+deb12u1", "2.10-3"]
    assert data["packages"][0]["fields"]["Package"] == "hello"


def test_unknown_package_is_one_clean_error(local_mirror: LocalMirror, tmp_path: Path) -> None:
    done = info(local_mirror, tmp_path / "cache", "bookworm", "no-such-thing")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines()[0] == (
        "error: no-such-thing: no such package in bookworm main (amd64)"
    )
    virtual = info(local_mirror, tmp_path / "cache", "bookworm", "mail-transport-agent")
    assert virtual.returncode == 1
    assert "provided by exim-lite, postfix-lite" in virtual.stderr


@pytest.mark.hazard(2)
def test_tampered_inrelease_is_one_error_line_and_non_zero(
    local_mirror: LocalMirror, tmp_path: Path
) -> None:
    data = local_mirror.archive.inrelease.read_bytes()
    local_mirror.archive.replace_file("InRelease", data.replace(b"Suite: stable", b"Suite: stabl3"))
    done = info(local_mirror, tmp_path / "cache", "bookworm", "hello")
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert errors[0].startswith(f"error: {local_mirror.url}/dists/bookworm/InRelease: ")
    assert "signature invalid" in errors[0]
    assert done.stdout == ""
    assert not local_mirror.server.fetched("*/binary-*")
    assert not (tmp_path / "cache").exists()


@pytest.mark.hazard(14)
def test_missing_keyring_is_one_error_line(local_mirror: LocalMirror, tmp_path: Path) -> None:
    done = rootstrap(
        "info", "bookworm", "--mirror", local_mirror.url, "--keyring", str(tmp_path / "nope.gpg"),
        cache=tmp_path / "cache",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == f"error: {tmp_path / 'nope.gpg'}: keyring not found"
    assert local_mirror.server.requests == []
