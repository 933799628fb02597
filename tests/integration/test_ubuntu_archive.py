"""``rootstrap info`` and ``resolve`` against the Ubuntu-shaped archive (tests/support/ubuntu.py).

No Ubuntu mirror is reachable here: these prove the traits of Ubuntu's archive one by one on a
local, signed copy that has them (Release fields, pockets whose Codename is the release's,
by-hash indexes with no plain Packages, index-only Priority and Task, t64 Provides, zstd .debs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rootstrap import recipes
from rootstrap.cli.app import main
from tests.support.archive import Archive, TestKey
from tests.support.server import FaultServer
from tests.support.ubuntu import UBUNTU_ARCHITECTURES, build_ubuntu_archive


@pytest.fixture(scope="module")
def ubuntu(
    tmp_path_factory: pytest.TempPathFactory, test_key: TestKey
) -> Iterator[tuple[Archive, FaultServer]]:
    archive = build_ubuntu_archive(tmp_path_factory.mktemp("ubuntu"), key=test_key)
    with FaultServer(archive.root) as server:
        yield archive, server


def cli(
    ubuntu: tuple[Archive, FaultServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    verb: str,
    *args: str,
) -> tuple[int, str, str]:
    archive, server = ubuntu
    argv = ["--cache-dir", str(tmp_path / "cache"), verb, "noble", *args]
    argv += ["--mirror", server.url, "--keyring", str(archive.keyring), "--arch", "amd64"]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def plan(
    ubuntu: tuple[Archive, FaultServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *args: str,
) -> dict[str, Any]:
    code, out, err = cli(ubuntu, tmp_path, capsys, "resolve", "--json", *args)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_info_shows_ubuntus_release(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(ubuntu, tmp_path, capsys, "info")
    assert code == 0, err
    rows = dict(line.split(":", 1) for line in out.splitlines())
    shown = {k.strip(): v.strip() for k, v in rows.items()}
    assert shown["Origin"] == "Ubuntu" and shown["Label"] == "Ubuntu"
    assert shown["Suite"] == "noble" and shown["Codename"] == "noble"
    assert shown["Version"] == "24.04"
    assert shown["Components"] == "main restricted universe multiverse"
    assert shown["Architectures"] == " ".join(UBUNTU_ARCHITECTURES)
    assert shown["Acquire-By-Hash"] == "yes"
    assert shown["Valid-Until"] == "-"  # Ubuntu's Release files carry none
    assert shown["Signed-By"] == ubuntu[0].key.fingerprint.lower()


def test_info_json_and_ubuntu_stanza_fields(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(ubuntu, tmp_path, capsys, "info", "apt", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["release"]["origin"] == "Ubuntu" and data["release"]["acquire_by_hash"] is True
    (apt,) = data["packages"]
    fields = apt["fields"]
    # Index-only fields Ubuntu's archive adds: Task (germinate seeds), Origin, SHA1/SHA512.
    assert fields["Task"] == "minimal, server-minimal"
    assert fields["Origin"] == "Ubuntu"
    assert len(fields["SHA512"]) == 128 and len(fields["SHA1"]) == 40
    assert apt["origin"].endswith("noble/main")


def test_minbase_resolves_through_t64_provides(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = plan(ubuntu, tmp_path, capsys, "--variant", "minbase")
    versions = {p["name"]: p["version"] for p in data["packages"]}
    why = {p["name"]: p["why"] for p in data["packages"]}
    # apt still Depends on the pre-t64 names; only the t64 packages Provide them, versioned.
    assert versions["libfoo1t64"] == "1.2-3"
    assert versions["libapt-pkg6.0t64"] == "2.7.14build2"
    assert why["libfoo1t64"] == "apt Depends: libfoo1 (>= 1.2)"
    assert why["libapt-pkg6.0t64"] == "apt Depends: libapt-pkg6.0 (>= 2.7.14)"
    assert "libfoo1" not in versions and "libapt-pkg6.0" not in versions
    # The index's Priority (Launchpad override) counts, not the control file's "optional".
    assert why["ubuntu-baseline"] == "seed (Priority: required)"
    expected = "apt base-files coreutils dash libapt-pkg6.0t64 libc6 libfoo1t64 ubuntu-baseline"
    assert sorted(versions) == [*expected.split(), "ubuntu-keyring"]
    assert sorted(data["essential"]) == ["base-files", "coreutils", "dash", "libc6"]


def test_pockets_and_universe_never_pick_the_old_library(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--variant", "minbase", "--include", "universe-tool"]
    args += ["--components", "main,universe", "--pockets", "noble-updates,noble-security"]
    data = plan(ubuntu, tmp_path, capsys, *args)
    versions = {p["name"]: p["version"] for p in data["packages"]}
    # The highest version over the release and its pockets (Codename noble in each). The
    # -updates one is phased at 10%; apt ignores phasing for fresh installs in a chroot.
    assert versions["libfoo1t64"] == "1.2-3ubuntu0.1"
    assert versions["base-files"] == "13ubuntu10.1"
    # universe's real libfoo1 1.1-1 is too old for ">= 1.2": the t64 Provides must win.
    assert "libfoo1" not in versions
    assert versions["foo-user"] == "2.0-1" and versions["universe-tool"] == "0.9-2"


def test_indexes_come_by_hash_and_plain_packages_is_never_needed(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, server = ubuntu
    server.clear()
    plan(ubuntu, tmp_path, capsys, "--variant", "minbase", "--pockets", "noble-updates")
    index_requests = [r.path for r in server.requests if "/binary-" in r.path]
    assert index_requests, "no index was fetched"
    assert all("/by-hash/SHA256/" in path for path in index_requests), index_requests
    # The plain Packages the Release lists is absent, as on Ubuntu's mirrors.
    assert not archive.index_path("main", "amd64", "none").exists()
    assert "main/binary-amd64/Packages\n" in archive.release.read_text()
    assert any("/dists/noble-updates/" in path for path in index_requests)


def test_unknown_package_in_ubuntu_archive_is_clean(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = cli(ubuntu, tmp_path, capsys, "info", "libfoo1")
    # libfoo1 is only in universe (not requested) and virtual in main: the hint says so.
    assert code == 1
    assert err.splitlines()[0] == "error: libfoo1: no such package in noble main (amd64)"
    assert "provided by libfoo1t64" in err


# --------------------------------------------------------------------------- recipes and mirrors


def test_ubuntu_recipes_name_no_mirror_host() -> None:
    found = [p for p in recipes.available() if p.name.startswith("ubuntu-")]
    assert {p.stem for p in found} >= {"ubuntu-jammy", "ubuntu-noble"}
    for path in found:
        recipe = recipes.load(str(path))
        assert recipe.distribution == "ubuntu" and recipe.mirrors == {}
        assert "://" not in path.read_text() and ".com" not in path.read_text()
        assert recipe.suite == recipe.codename  # no moving alias, unlike Debian's stable
        assert recipe.pockets == tuple(
            f"{recipe.codename}-{p}" for p in ("updates", "security", "backports")
        )
        assert recipe.merged_usr and recipe.keyring_package == "ubuntu-keyring"


def test_mirror_from_rootstrap_mirror_ubuntu(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path
) -> None:
    archive, server = ubuntu
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ROOTSTRAP_MIRROR_UBUNTU": server.url,
        "ROOTSTRAP_MIRROR_DEBIAN": "http://127.0.0.1:9",  # another distribution's: ignored
    }
    done = subprocess.run(
        [sys.executable, "-m", "rootstrap", "--cache-dir", str(tmp_path), "info", "noble",
         "--keyring", str(archive.keyring)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"Mirror:          {server.url}\n" in done.stdout


def test_mirror_from_the_hosts_ubuntu_apt_sources(tmp_path: Path) -> None:
    sources = tmp_path / "etc/apt/sources.list.d"
    sources.mkdir(parents=True)
    # As an Ubuntu 24.04 host writes them; the security archive alone is not a full mirror.
    (sources / "ubuntu.sources").write_text(
        "Types: deb\nURIs: http://127.0.0.1:8001/ubuntu-security/\nSuites: noble-security\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://127.0.0.1:8000/ubuntu/\nSuites: noble noble-updates\n"
        "Components: main restricted universe\n"
        "Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n"
    )
    assert recipes.host_mirror("ubuntu", root=tmp_path) == "http://127.0.0.1:8000/ubuntu"
    assert recipes.host_mirror("debian", root=tmp_path) is None


def test_a_new_release_is_a_new_small_file(
    tmp_path: Path, test_key: TestKey, capsys: pytest.CaptureFixture[str]
) -> None:
    noble = recipes.load("noble")
    assert noble.path is not None
    text = noble.path.read_text().replace("noble", "oracular").replace("24.04", "24.10")
    recipe_file = tmp_path / "ubuntu-oracular.toml"
    recipe_file.write_text(text)
    archive = build_ubuntu_archive(
        tmp_path / "oracular", key=test_key, codename="oracular", version="24.10"
    )
    with FaultServer(archive.root) as server:
        code = main(
            ["--cache-dir", str(tmp_path / "cache"), "resolve", str(recipe_file), "--json",
             "--variant", "minbase", "--mirror", server.url, "--keyring", str(archive.keyring),
             "--arch", "amd64", "--pockets", "oracular-updates"]
        )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    versions = {p["name"]: p["version"] for p in json.loads(out)["packages"]}
    assert versions["libfoo1t64"] == "1.2-3ubuntu0.1" and "apt" in versions


def test_arm64_on_the_primary_archive_is_a_clean_error(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, server = ubuntu
    # The Release lists binary-arm64 (one Release for the primary and the ports archive), the
    # primary mirror does not have it: apt users meet this 404 when they add arm64 there.
    assert "main/binary-arm64/Packages.xz\n" in archive.release.read_text()
    argv = ["--cache-dir", str(tmp_path / "cache"), "resolve", "noble", "--mirror", server.url]
    code = main([*argv, "--keyring", str(archive.keyring), "--arch", "arm64"])
    _out, err = capsys.readouterr()
    assert code == 1
    first = err.splitlines()[0]
    assert first.startswith(f"error: {server.url}/dists/noble/main/binary-arm64/"), err
    assert "Traceback" not in err


def test_jammy_recipe_against_a_jammy_shaped_archive(
    tmp_path: Path, test_key: TestKey, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = build_ubuntu_archive(
        tmp_path / "jammy", key=test_key, codename="jammy", version="22.04"
    )
    with FaultServer(archive.root) as server:
        base = ["--cache-dir", str(tmp_path / "cache")]
        tail = ["--mirror", server.url, "--keyring", str(archive.keyring), "--arch", "amd64"]
        assert main([*base, "info", "jammy", "--json", *tail]) == 0
        release = json.loads(capsys.readouterr().out)["release"]
        assert (release["codename"], release["version"]) == ("jammy", "22.04")
        code = main([*base, "resolve", "jammy", "--variant", "minbase", "--json", *tail])
        out, err = capsys.readouterr()
    assert code == 0, err
    assert "apt" in {p["name"] for p in json.loads(out)["packages"]}
