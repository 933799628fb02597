"""Finding and obtaining Ubuntu's archive keyring (rootstrap.archive.keyrings).

The order is --keyring, then the host's /usr/share/keyrings, then a copy fetched into the cache;
with none, a clean error with the hint. The CLI cases run in a private mount namespace with a
tmpfs over /usr/share/keyrings, so they hold whether or not the host has ubuntu-keyring.
Obtaining the keyring is proven twice: against a local Debian-layout archive carrying a
synthetic ubuntu-keyring (the whole trust chain, tampering included), and against the host's
real Debian mirror (trixie's ubuntu-keyring, marked network).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootstrap import recipes
from rootstrap.archive.keyrings import cached_keyring, find_keyring
from rootstrap.build.keyringfetch import fetch_keyring, read_member
from rootstrap.cli.app import main
from rootstrap.errors import IntegrityError, KeyringError, VerificationError
from tests.support.archive import Archive, TestKey, build_archive
from tests.support.debs import DebSpec, build_deb
from tests.support.server import FaultServer
from tests.support.ubuntu import build_ubuntu_archive

UBUNTU_KEYRING = Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg")
#: The Ubuntu Archive Automatic Signing Key (2018), which signs jammy's and noble's Releases.
UBUNTU_2018_KEY = "F6ECB3762474EDA9D21B7022871920D1991BC93C"

_MASK = (
    "mount -t tmpfs -o mode=0755 tmpfs /usr/share/keyrings && "
    '{ [ -z "$HOST_KEYRING" ] || cp "$HOST_KEYRING" "/usr/share/keyrings/$KEYRING_NAME"; }'
    ' && exec "$@"'
)


@pytest.fixture(scope="module")
def ubuntu(
    tmp_path_factory: pytest.TempPathFactory, test_key: TestKey
) -> Iterator[tuple[Archive, FaultServer]]:
    archive = build_ubuntu_archive(tmp_path_factory.mktemp("ubuntu"), key=test_key)
    with FaultServer(archive.root) as server:
        yield archive, server


def masked(
    *args: str, cache: Path, host_keyring: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``rootstrap --cache-dir CACHE ARGS`` with /usr/share/keyrings replaced by an empty tmpfs
    (holding only HOST_KEYRING as ubuntu-archive-keyring.gpg, if given). Needs root."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private /usr/share/keyrings")
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cache.parent),
        "LC_ALL": "C.UTF-8",
        "HOST_KEYRING": str(host_keyring or ""),
        "KEYRING_NAME": UBUNTU_KEYRING.name,
        **(env or {}),
    }
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MASK, "sh"]
    argv += [sys.executable, "-m", "rootstrap", "--cache-dir", str(cache), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=120)


def host_offers_ubuntu_keyring() -> bool:
    """Whether the host's apt has an ubuntu-keyring candidate (the hint then names it)."""
    if shutil.which("apt-cache") is None:
        return False
    out = subprocess.run(
        ["apt-cache", "policy", "ubuntu-keyring"], capture_output=True, text=True
    ).stdout
    return any(
        line.strip().startswith("Candidate:") and "(none)" not in line for line in out.splitlines()
    )


def expected_error() -> str:
    hint = "run 'rootstrap keyring fetch ubuntu', or pass --keyring FILE"
    if host_offers_ubuntu_keyring():
        hint = "run 'apt-get install ubuntu-keyring', or " + hint
    return f"error: {UBUNTU_KEYRING}: no ubuntu archive keyring on this host\nhint: {hint}\n"


# --------------------------------------------------------------------------- no keyring at all


@pytest.mark.hazard(14)
@pytest.mark.parametrize(
    "args",
    [
        ("info", "noble"),  # no mirror configured either: the keyring is checked first
        ("info", "noble", "--mirror", "{url}"),
        ("info", "noble", "apt", "--mirror", "{url}"),
        ("resolve", "noble", "--mirror", "{url}"),
    ],
    ids=["info-no-mirror", "info", "info-package", "resolve"],
)
def test_no_keyring_is_a_clean_error_with_the_hint(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path, args: tuple[str, ...]
) -> None:
    _archive, server = ubuntu
    server.clear()
    done = masked(*(a.format(url=server.url) for a in args), cache=tmp_path / "cache")
    assert done.returncode == 1, done.stderr
    assert done.stderr == expected_error()
    assert done.stdout == ""
    assert not server.requests, "nothing may be fetched without a keyring to verify it"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*"))


@pytest.mark.hazard(14)
def test_bootstrap_without_keyring_writes_nothing(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path
) -> None:
    _archive, server = ubuntu
    store = tmp_path / "store"
    store.mkdir()
    done = masked(
        # The name lock is host-wide (/run/rootstrap/locks): a name no other test uses.
        "--store", str(store), "bootstrap", "noble", f"keyless-{os.getpid()}",
        "--variant", "minbase",
        "--mirror", server.url, cache=tmp_path / "cache",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.endswith(expected_error()), done.stderr
    assert "Traceback" not in done.stderr
    assert list(store.iterdir()) == []


# --------------------------------------------------------------------------- where it is found


def test_fetched_copy_in_the_cache_is_used(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path
) -> None:
    archive, server = ubuntu
    cache = tmp_path / "cache"
    (cache / "keyrings").mkdir(parents=True)
    shutil.copy(archive.keyring, cache / "keyrings/ubuntu-archive-keyring.gpg")
    done = masked("info", "noble", "--mirror", server.url, cache=cache)
    assert done.returncode == 0, done.stderr
    assert f"Signed-By:       {archive.key.fingerprint.lower()}" in done.stdout


def test_keyring_option_always_wins(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path, other_key: TestKey
) -> None:
    archive, server = ubuntu
    cache = tmp_path / "cache"
    (cache / "keyrings").mkdir(parents=True)
    shutil.copy(archive.keyring, cache / "keyrings/ubuntu-archive-keyring.gpg")
    # The right key on the host and in the cache; --keyring names a wrong one: it is used.
    done = masked(
        "info", "noble", "--mirror", server.url, "--keyring", str(other_key.keyring),
        cache=cache, host_keyring=archive.keyring,
    )  # fmt: skip
    assert done.returncode == 1
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"error: {server.url}/dists/noble/InRelease: ")
    assert "NO_PUBKEY" in first
    assert f"keyring used: {other_key.keyring}" in done.stderr


def test_host_keyring_comes_before_the_cache(
    ubuntu: tuple[Archive, FaultServer], tmp_path: Path, other_key: TestKey
) -> None:
    archive, server = ubuntu
    cache = tmp_path / "cache"
    (cache / "keyrings").mkdir(parents=True)
    shutil.copy(other_key.keyring, cache / "keyrings/ubuntu-archive-keyring.gpg")
    done = masked(
        "info", "noble", "--mirror", server.url, cache=cache, host_keyring=archive.keyring
    )
    assert done.returncode == 0, done.stderr
    assert archive.key.fingerprint.lower() in done.stdout


def _recipe(tmp_path: Path, keyring: Path) -> recipes.Recipe:
    path = tmp_path / "ubuntu-test.toml"
    path.write_text(
        'distribution = "ubuntu"\ncodename = "noble"\n'
        f'keyrings = ["{keyring}"]\nkeyring-package = "ubuntu-keyring"\n'
    )
    return recipes.load(str(path))


def test_find_keyring_order_in_process(tmp_path: Path) -> None:
    host = tmp_path / "host/ubuntu-archive-keyring.gpg"
    recipe = _recipe(tmp_path, host)
    cache = tmp_path / "cache"
    given = [tmp_path / "given.gpg"]
    assert find_keyring(recipe, given, cache_dir=cache) == given  # even if it does not exist
    with pytest.raises(KeyringError) as caught:
        find_keyring(recipe, (), cache_dir=cache)
    assert caught.value.subject == str(host)
    assert caught.value.hint is not None and "rootstrap keyring fetch ubuntu" in caught.value.hint
    assert find_keyring(recipe, (), cache_dir=cache, required=False) == []
    cached = cached_keyring(recipe, cache)
    assert cached == cache / "keyrings/ubuntu-archive-keyring.gpg"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find_keyring(recipe, (), cache_dir=cache) == [cached]
    host.parent.mkdir()
    host.write_bytes(b"x")
    assert find_keyring(recipe, (), cache_dir=cache) == [host]


# --------------------------------------------------------------------------- obtaining it


def keyring_deb(tmp_path: Path, content: bytes, *, symlinked: bool = False) -> DebSpec:
    """A synthetic ubuntu-keyring package holding CONTENT (optionally behind a symlink)."""
    files = {"usr/share/keyrings/ubuntu-master-keyring.gpg": b"not this one\n"}
    symlinks = {}
    if symlinked:
        files["usr/share/keyrings/ubuntu-archive-keyring-2018.gpg"] = content
        symlinks["usr/share/keyrings/ubuntu-archive-keyring.gpg"] = (
            "../keyrings/./ubuntu-archive-keyring-2018.gpg"
        )
    else:
        files["usr/share/keyrings/ubuntu-archive-keyring.gpg"] = content
    return DebSpec(
        "ubuntu-keyring", "2023.11.28.1-0.2", arch="all", priority="optional",
        files=files, symlinks=symlinks,
    )  # fmt: skip


@pytest.fixture
def debian_with_ubuntu_keyring(
    tmp_path: Path, test_key: TestKey, other_key: TestKey
) -> Iterator[tuple[Archive, FaultServer]]:
    """A local Debian trixie archive signed by OTHER_KEY (the "Debian" key here), carrying an
    ubuntu-keyring whose archive keyring is TEST_KEY's (the key of the Ubuntu-shaped archive)."""
    spec = keyring_deb(tmp_path, test_key.keyring.read_bytes(), symlinked=True)
    debian = build_archive(
        tmp_path / "debian", [spec, DebSpec("hello")], key=other_key,
        codename="trixie", suite="stable", version="13.2",
    )  # fmt: skip
    with FaultServer(debian.root) as server:
        yield debian, server


def test_fetch_keyring_through_a_verified_debian_archive(
    debian_with_ubuntu_keyring: tuple[Archive, FaultServer],
    ubuntu: tuple[Archive, FaultServer],
    tmp_path: Path,
    other_key: TestKey,
    test_key: TestKey,
) -> None:
    _debian, server = debian_with_ubuntu_keyring
    cache = tmp_path / "cache"
    path = fetch_keyring(
        recipes.load("noble"),
        cache_dir=cache,
        mirrors=[server.url],
        arch="amd64",
        anchor_keyrings=[other_key.keyring],
    )
    assert path == cache / "keyrings/ubuntu-archive-keyring.gpg"
    assert path.read_bytes() == test_key.keyring.read_bytes()  # through the symlink
    assert path.stat().st_mode & 0o777 == 0o644
    note = path.with_name(path.name + ".source").read_text()
    assert "ubuntu-keyring 2023.11.28.1-0.2" in note and "Debian trixie" in note
    assert other_key.fingerprint.lower() in note
    # Now the Ubuntu-shaped archive verifies with no --keyring (the cached copy is found).
    _archive, ubuntu_server = ubuntu
    done = masked("info", "noble", "--mirror", ubuntu_server.url, cache=cache)
    assert done.returncode == 0, done.stderr
    assert test_key.fingerprint.lower() in done.stdout


@pytest.mark.hazard(1)
def test_fetch_keyring_refuses_an_unanchored_archive(
    debian_with_ubuntu_keyring: tuple[Archive, FaultServer],
    tmp_path: Path,
    test_key: TestKey,
) -> None:
    _debian, server = debian_with_ubuntu_keyring
    cache = tmp_path / "cache"
    with pytest.raises(VerificationError, match="NO_PUBKEY"):
        fetch_keyring(
            recipes.load("noble"),
            cache_dir=cache,
            mirrors=[server.url],
            arch="amd64",
            anchor_keyrings=[test_key.keyring],  # not the key that signed this "Debian"
        )
    assert not (cache / "keyrings").exists()
    assert not server.fetched("*.deb")


@pytest.mark.hazard(46)
def test_fetch_keyring_refuses_a_tampered_package(
    debian_with_ubuntu_keyring: tuple[Archive, FaultServer],
    tmp_path: Path,
    other_key: TestKey,
) -> None:
    _debian, server = debian_with_ubuntu_keyring
    server.fault("*/ubuntu-keyring_*.deb", "wrong_bytes")
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError):
        fetch_keyring(
            recipes.load("noble"),
            cache_dir=cache,
            mirrors=[server.url],
            arch="amd64",
            anchor_keyrings=[other_key.keyring],
        )
    assert not (cache / "keyrings").exists()


def test_a_package_without_the_keyring_file_is_a_clean_error(tmp_path: Path) -> None:
    spec = DebSpec("ubuntu-keyring", "1", arch="all", files={"usr/share/doc/x": b"x"})
    deb = build_deb(spec, tmp_path, compression="zstd")
    with pytest.raises(Exception) as caught:
        read_member(deb, "usr/share/keyrings/ubuntu-archive-keyring.gpg")
    assert str(caught.value) == (
        f"{deb.name}: no file /usr/share/keyrings/ubuntu-archive-keyring.gpg in the package"
    )


def test_a_symlink_out_of_the_package_is_not_followed(tmp_path: Path) -> None:
    spec = DebSpec(
        "ubuntu-keyring", "1", arch="all",
        symlinks={"usr/share/keyrings/ubuntu-archive-keyring.gpg": "/etc/shadow"},
    )  # fmt: skip
    deb = build_deb(spec, tmp_path, compression="zstd")
    with pytest.raises(Exception, match="no file /usr/share/keyrings/ubuntu-archive-keyring"):
        read_member(deb, "usr/share/keyrings/ubuntu-archive-keyring.gpg")


# --------------------------------------------------------------------------- the real thing


@pytest.fixture(scope="module")
def real_fetch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if recipes.host_mirror("debian") is None:
        pytest.skip("no Debian mirror in the host's apt sources")
    cache = tmp_path_factory.mktemp("keyring-cache")
    done = subprocess.run(
        [sys.executable, "-m", "rootstrap", "--cache-dir", str(cache),
         "keyring", "fetch", "ubuntu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(cache / "keyrings/ubuntu-archive-keyring.gpg")
    return cache


@pytest.mark.network
def test_real_ubuntu_keyring_from_debian_trixie(real_fetch: Path) -> None:
    path = real_fetch / "keyrings/ubuntu-archive-keyring.gpg"
    listing = subprocess.run(
        ["gpg", "--homedir", str(real_fetch), "--with-colons", "--show-keys", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    assert UBUNTU_2018_KEY in fingerprints
    note = path.with_name(path.name + ".source").read_text()
    assert note.startswith("usr/share/keyrings/ubuntu-archive-keyring.gpg from ubuntu-keyring ")
    assert "Debian trixie Release" in note


@pytest.mark.network
def test_real_keyring_is_found_afterwards(real_fetch: Path, tmp_path: Path) -> None:
    recipe = recipes.load("noble")
    found = find_keyring(recipe, (), cache_dir=real_fetch)
    if UBUNTU_KEYRING.is_file():
        assert found == [UBUNTU_KEYRING]  # the host's own copy comes first
    else:
        assert found == [real_fetch / "keyrings/ubuntu-archive-keyring.gpg"]


def test_keyring_fetch_verb_with_a_local_debian_mirror(
    debian_with_ubuntu_keyring: tuple[Archive, FaultServer],
    tmp_path: Path,
    other_key: TestKey,
    test_key: TestKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _debian, server = debian_with_ubuntu_keyring
    cache = tmp_path / "cache"
    argv = ["--cache-dir", str(cache), "keyring", "fetch", "ubuntu", "--mirror", server.url]
    assert main([*argv, "--anchor-keyring", str(other_key.keyring)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(cache / "keyrings/ubuntu-archive-keyring.gpg")
    assert out[1].startswith("usr/share/keyrings/ubuntu-archive-keyring.gpg from ubuntu-keyring")
    assert Path(out[0]).read_bytes() == test_key.keyring.read_bytes()


def test_keyring_fetch_of_an_unknown_distribution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--cache-dir", str(tmp_path), "keyring", "fetch", "fedora"]) == 1
    err = capsys.readouterr().err
    assert err == "error: fedora: unknown distribution or suite\nhint: known: debian, ubuntu\n"
