"""Packages indexes through the real HTTP client and a local signed archive (HAZARDS 16-25).

Bytes count only when the signed Release vouches for them: every failure is a clean error,
leaves nothing in the cache, and fetches nothing more than the alternatives it tries.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import marshal
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from rootstrap import recipes
from rootstrap.archive import Archive, open_archive
from rootstrap.archive import index as idx
from rootstrap.archive.http import Http
from rootstrap.errors import ArchiveIndexError, DownloadError, IntegrityError, RootstrapError
from tests.support.archive import Archive as FixtureArchive
from tests.support.archive import TestKey
from tests.support.debs import DebSpec
from tests.support.fixtures import LocalMirror
from tests.support.server import FaultServer

ArchiveFactory = Callable[..., FixtureArchive]
SMALL = [
    DebSpec("libc6", "2.36-9", priority="required"),
    DebSpec("hello", "1.0", depends="libc6 (>= 2.36), libfoo1", provides="greeter"),
]
INDEX = "main/binary-amd64/Packages"


def open_local(mirrors: str | list[str], keyring: Path, cache: Path, **kwargs: Any) -> Archive:
    recipe = recipes.load("bookworm")
    urls = [mirrors] if isinstance(mirrors, str) else mirrors
    with Http(retries=1, backoff=0.01, timeout=10) as http:
        return open_archive(
            recipe,
            mirrors=urls,
            arch=kwargs.pop("arch", "amd64"),
            http=http,
            cache_dir=cache,
            keyrings=[keyring],
            **kwargs,
        )


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def children() -> set[int]:
    """This process's child processes, zombies included (/proc/PID/task/TID/children)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            found.update(int(pid) for pid in (task / "children").read_text().split())
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return found


def pipes() -> int:
    """How many pipe ends this process holds open (the decoder's are the only pipes here)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
        except FileNotFoundError:
            pass  # the listing's own descriptor
    return count


def fails(
    server: FaultServer,
    cache: Path,
    keyring: Path,
    match: str,
    error: type[RootstrapError] = IntegrityError,
    **kwargs: Any,
) -> RootstrapError:
    before, open_pipes = children(), pipes()
    with pytest.raises(error, match=match) as info:
        open_local(server.url, keyring, cache, **kwargs)
    assert files_under(cache) == [], "a failed index left something in the cache"
    assert "\n" not in str(info.value)
    # The forked decoder is killed and reaped, its pipes closed, whatever the failure.
    assert children() <= before, "a decoder process outlived the failure"
    assert pipes() == open_pipes
    return info.value


def sign_listing(arch: FixtureArchive, files: dict[str, bytes]) -> None:
    """Write FILES under dists/<codename>/ and sign a Release listing exactly those."""
    lines = [f"{k}: {v}" for k, v in arch.release_fields.items() if v is not None]
    lines.append("SHA256:")
    for rel, data in files.items():
        arch.replace_file(rel, data)
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {rel}")
    arch.sign_text("\n".join(lines) + "\n")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def plain_archive(archive_factory: ArchiveFactory) -> FixtureArchive:
    """No by-hash, xz only (plus the plain Packages every archive lists)."""
    return archive_factory(SMALL, by_hash=False, compressions=("xz",))


@pytest.mark.hazard(16)
def test_hash_mismatch_falls_back_to_the_next_compression(
    local_mirror: LocalMirror, cache: Path
) -> None:
    srv = local_mirror.server
    srv.fault("*/binary-amd64/by-hash/*", "wrong_bytes", count=1)
    srv.fault("*/binary-amd64/Packages.xz", "wrong_bytes")
    archive = open_local(local_mirror.url, local_mirror.keyring, cache)
    assert archive.index.best("hello") is not None
    fetched = srv.fetched("*/binary-amd64/*")
    assert [p.rsplit("/", 1)[-1].split(".")[-1] for p in fetched[:2]] == [
        fetched[0].rsplit("/", 1)[-1],  # by-hash of the .xz
        "xz",
    ]
    assert "/by-hash/" in fetched[2]  # then the .gz, by hash, which is good
    assert len(fetched) == 3


@pytest.mark.hazard(16)
def test_hash_mismatch_everywhere_lists_expected_and_received(
    local_mirror: LocalMirror, cache: Path
) -> None:
    srv = local_mirror.server
    srv.fault("*/binary-amd64/*", "wrong_bytes")
    exc = fails(srv, cache, local_mirror.keyring, "Hash Sum mismatch")
    expected = hashlib.sha256(local_mirror.archive.index_path().read_bytes()).hexdigest()
    assert f"expected SHA256 {expected}" in str(exc)
    assert "received SHA256 " in str(exc)
    # Every variant was tried once: by hash and by name, for xz, gz and the plain Packages.
    assert len(srv.fetched("*/binary-amd64/*")) == 6


@pytest.mark.hazard(16)
def test_hash_mismatch_on_mirror_1_then_mirror_2(local_mirror: LocalMirror, cache: Path) -> None:
    bad = local_mirror.server
    good = local_mirror.serve_again()
    bad.fault("*/binary-amd64/*", "wrong_bytes")
    archive = open_local([bad.url, good.url], local_mirror.keyring, cache)
    assert archive.mirror == bad.url  # its Release was good
    assert good.fetched("*/binary-amd64/*") and archive.index.best("hello") is not None


@pytest.mark.hazard(17)
def test_index_larger_than_the_release_says(plain_archive: FixtureArchive, fault_server: Any,
                                            cache: Path, test_key: TestKey) -> None:  # fmt: skip
    srv = fault_server(plain_archive.root)
    srv.fault("*/binary-amd64/*", "extra_length", extra=4096)
    fails(srv, cache, test_key.keyring, r"unexpected size.*mirror sync in progress\?")


@pytest.mark.hazard(17)
def test_index_smaller_than_the_release_says(
    plain_archive: FixtureArchive, fault_server: Any, cache: Path, test_key: TestKey
) -> None:
    for rel in (INDEX + ".xz", INDEX):
        data = (plain_archive.main.path / rel).read_bytes()
        plain_archive.replace_file(rel, data[:-40])
    srv = fault_server(plain_archive.root)
    fails(srv, cache, test_key.keyring, r"unexpected size.*expected \d+.*mirror sync")


@pytest.mark.hazard(17)
def test_decompressed_size_is_checked(
    plain_archive: FixtureArchive, fault_server: Any, cache: Path, test_key: TestKey
) -> None:
    text = plain_archive.main.indexes[("main", "amd64")]
    longer = text + b"\nPackage: extra\nVersion: 1\nArchitecture: all\n"
    sign_listing(plain_archive, {INDEX: text, INDEX + ".xz": lzma.compress(longer)})
    (plain_archive.main.path / INDEX).unlink()  # only the .xz is there to fetch
    srv = fault_server(plain_archive.root)
    fails(srv, cache, test_key.keyring, "decompresses to more than|decompressed to")


@pytest.mark.hazard(18)
def test_stale_index_with_a_new_release(
    plain_archive: FixtureArchive, fault_server: Any, cache: Path, test_key: TestKey
) -> None:
    old = {rel: (plain_archive.main.path / rel).read_bytes() for rel in (INDEX, INDEX + ".xz")}
    plain_archive.rewrite_index(lambda t: t + b"\nPackage: new\nVersion: 2\nArchitecture: all\n")
    for rel, data in old.items():
        plain_archive.replace_file(rel, data)  # the mirror still serves the previous files
    srv = fault_server(plain_archive.root)
    fails(srv, cache, test_key.keyring, "unexpected size|Hash Sum mismatch")


@pytest.mark.hazard(19)
@pytest.mark.parametrize(
    ("kwargs", "label"),
    [
        ({"components": ["contrib"]}, "contrib/binary-amd64"),
        ({"arch": "arm64"}, "main/binary-arm64"),
    ],
)
def test_component_or_architecture_not_provided(
    local_mirror: LocalMirror, cache: Path, kwargs: dict[str, Any], label: str
) -> None:
    exc = fails(
        local_mirror.server, cache, local_mirror.keyring,
        f"repository does not provide {label}", ArchiveIndexError, **kwargs,
    )  # fmt: skip
    assert local_mirror.server.fetched("*/binary-*") == []
    assert exc.hint and "main" in exc.hint


def _xz_junk(text: bytes) -> bytes:
    return lzma.compress(text) + b"trailing junk!"


def _gz_corrupt(text: bytes) -> bytes:
    data = bytearray(gzip.compress(text))
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


def _zst_truncated(text: bytes) -> bytes:
    data = zstandard.ZstdCompressor(write_content_size=False).compress(text * 50)
    return data[: len(data) * 2 // 3]


@pytest.mark.hazard(20)
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("ext", "damage"), [(".xz", _xz_junk), (".gz", _gz_corrupt), (".zst", _zst_truncated)]
)
def test_broken_compression_with_a_matching_hash(
    plain_archive: FixtureArchive,
    fault_server: Any,
    cache: Path,
    test_key: TestKey,
    ext: str,
    damage: Callable[[bytes], bytes],
) -> None:
    text = plain_archive.main.indexes[("main", "amd64")]
    sign_listing(plain_archive, {INDEX + ext: damage(text)})
    srv = fault_server(plain_archive.root)
    exc = fails(srv, cache, test_key.keyring, "corrupt|truncated|trailing", ArchiveIndexError)
    assert "archive itself is broken" in str(exc)


@pytest.mark.hazard(20)
def test_broken_compression_falls_back_to_another(
    plain_archive: FixtureArchive, fault_server: Any, cache: Path, test_key: TestKey
) -> None:
    text = plain_archive.main.indexes[("main", "amd64")]
    sign_listing(plain_archive, {INDEX + ".xz": _xz_junk(text), INDEX + ".gz": gzip.compress(text)})
    srv = fault_server(plain_archive.root)
    archive = open_local(srv.url, test_key.keyring, cache)
    assert archive.index.best("hello") is not None
    assert srv.fetched("*/binary-amd64/*") == [
        f"/dists/bookworm/{INDEX}.xz",
        f"/dists/bookworm/{INDEX}.gz",
    ]


def _index_text(arch: FixtureArchive) -> bytes:
    return arch.main.indexes[("main", "amd64")]


@pytest.mark.hazard(21)
def test_duplicate_stanzas_highest_version_wins(
    archive_factory: ArchiveFactory, fault_server: Any, cache: Path, test_key: TestKey
) -> None:
    arch = archive_factory([DebSpec("dup", "1.0"), DebSpec("dup", "2.0"), DebSpec("dup", "1.5")])
    arch.debs[0].unlink()  # the lower version's Filename 404s; it must not be chosen
    archive = open_local(fault_server(arch.root).url, test_key.keyring, cache)
    assert [p.version for p in archive.index.candidates("dup")] == ["2.0", "1.5", "1.0"]
    best = archive.index.best("dup")
    assert best is not None and best.version == "2.0"
    assert (arch.root / best.filename).is_file()


def _odd_forms(text: bytes) -> bytes:
    out = text.replace(b"Depends: libc6 (>= 2.36), libfoo1", b"depends: libc6 (>= 2.36),\n libfoo1")
    out = out.replace(b"Package: hello", b"PACKAGE: hello").replace(b"\n\n", b"\n \t \n")
    return out.replace(b"\n", b"\r\n").rstrip(b"\r\n")


@pytest.mark.hazard(22)
def test_odd_but_valid_forms_parse_like_the_canonical(
    archive_factory: ArchiveFactory, fault_server: Any, tmp_path: Path, test_key: TestKey
) -> None:
    arch = archive_factory(SMALL)
    srv = fault_server(arch.root)
    canonical = open_local(srv.url, test_key.keyring, tmp_path / "c1")
    text = _index_text(arch)
    assert b"Depends: libc6 (>= 2.36), libfoo1" in text
    arch.rewrite_index(_odd_forms)
    odd = open_local(srv.url, test_key.keyring, tmp_path / "c2")
    for name in ("hello", "libc6"):
        a, b = canonical.index.best(name), odd.index.best(name)
        assert a is not None and b is not None
        assert dict(a.fields) == dict(b.fields)
    hello = odd.index.best("hello")
    assert hello is not None and hello.get("Depends") == "libc6 (>= 2.36), libfoo1"
    assert [p.name for p, _v in odd.index.providers("greeter")] == ["hello"]


@pytest.mark.hazard(23)
def test_stanza_without_strong_hash_is_unusable(
    archive_factory: ArchiveFactory, fault_server: Any, cache: Path, test_key: TestKey
) -> None:
    arch = archive_factory(SMALL)
    arch.rewrite_index(
        lambda t: b"\n".join(x for x in t.split(b"\n") if not x.startswith(b"SHA256:"))
    )
    archive = open_local(fault_server(arch.root).url, test_key.keyring, cache)
    hello = archive.index.best("hello")
    assert hello is not None and hello.get("MD5sum")
    assert hello.usable() == "no strong hash (SHA256 missing)"


@pytest.mark.hazard(24)
def test_invalid_stanzas_are_dropped(
    archive_factory: ArchiveFactory, fault_server: Any, cache: Path, test_key: TestKey
) -> None:
    def stanza(name: str, version: str = "1.0", filename: str = "pool/main/x/x.deb") -> bytes:
        return (
            f"Package: {name}\nVersion: {version}\nArchitecture: amd64\nFilename: {filename}\n"
            f"Size: 10\nSHA256: {'0' * 64}\n"
        ).encode()

    extra = [
        *(stanza(name) for name in ("../../evil", "a/b", "Upper", "sp ace")),
        stanza("badver", "1.0;rm"),
        stanza("escape", filename="../../../etc/passwd"),
    ]
    arch = archive_factory(SMALL)
    arch.rewrite_index(lambda t: b"\n".join([t.rstrip(b"\n") + b"\n", *extra]))
    archive = open_local(fault_server(arch.root).url, test_key.keyring, cache)
    assert sorted(archive.index.names()) == ["escape", "hello", "libc6"]
    escape = archive.index.best("escape")
    assert escape is not None and (escape.usable() or "").startswith("unsafe Filename")
    assert escape.deb_name == "escape_1.0_amd64.deb"


def _bomb(text: bytes) -> bytes:
    compressor = lzma.LZMACompressor(preset=0)
    zeros = b"\0" * (1 << 20)
    parts: Iterable[bytes] = (compressor.compress(zeros) for _ in range(48))
    return compressor.compress(text) + b"".join(parts) + compressor.flush()


@pytest.mark.hazard(25)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("plain_listed", [True, False])
def test_decompression_bomb_is_capped(
    plain_archive: FixtureArchive,
    fault_server: Any,
    cache: Path,
    test_key: TestKey,
    plain_listed: bool,
) -> None:
    text = _index_text(plain_archive)
    files = {INDEX + ".xz": _bomb(text)}
    if plain_listed:
        files[INDEX] = text
    sign_listing(plain_archive, files)
    if plain_listed:
        (plain_archive.main.path / INDEX).unlink()
    srv = fault_server(plain_archive.root)
    exc = fails(srv, cache, test_key.keyring, "decompresses to more than")
    assert ("as Release lists" in str(exc)) == plain_listed


@pytest.mark.hazard(36)
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [
        ("status", {"code": 404}, r"HTTP 404.*\(6 source\(s\) tried\)"),
        ("status", {"code": 500}, r"HTTP 500.*gave up after 2 tries.*\(6 source\(s\) tried\)"),
        ("reset", {}, r"gave up after 2 tries.*\(6 source\(s\) tried\)"),
    ],
)
def test_any_index_fetch_failure_is_fatal(
    local_mirror: LocalMirror, cache: Path, kind: str, params: dict[str, Any], match: str
) -> None:
    srv = local_mirror.server
    srv.fault("*/binary-amd64/*", kind, **params)
    exc = fails(srv, cache, local_mirror.keyring, match, DownloadError)
    assert exc.subject and "/dists/bookworm/main/binary-amd64/" in exc.subject


# -- the forked decoder (inflate.py's Inflater) ----------------------------------------------


def _big_index(stanzas: int) -> bytes:
    """A canonical index of STANZAS packages: several MiB, so its decoder is still running
    when the parent is interrupted after the first chunk."""
    filler = " ".join(f"word{i}" for i in range(60))
    return "\n".join(
        f"Package: pkg{i}\nVersion: 1.{i}\nArchitecture: amd64\nPriority: optional\n"
        f"Filename: pool/main/p/pkg{i}/pkg{i}_1.{i}_amd64.deb\nSize: 1000\nSHA256: {'a' * 64}\n"
        f"Description: package {i}\n {filler}\n"
        for i in range(stanzas)
    ).encode()


@pytest.mark.hazard(66)
@pytest.mark.timeout(60)
def test_sigint_during_the_parse_kills_the_decoder(
    plain_archive: FixtureArchive,
    fault_server: Any,
    cache: Path,
    test_key: TestKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sign_listing(plain_archive, {INDEX + ".xz": lzma.compress(_big_index(20000))})
    srv = fault_server(plain_archive.root)
    seen: list[set[int]] = []
    original = idx.Builder.add_chunk

    def interrupted(self: idx.Builder, buf: bytes, offset: int) -> None:
        original(self, buf, offset)
        seen.append(children())
        os.kill(os.getpid(), signal.SIGINT)  # a real signal: KeyboardInterrupt right here

    monkeypatch.setattr(idx.Builder, "add_chunk", interrupted)
    before, open_pipes = children(), pipes()
    with pytest.raises(KeyboardInterrupt):
        open_local(srv.url, test_key.keyring, cache)
    decoders = seen[0] - before
    assert len(decoders) == 1, "the decoder was not running beside the parse"
    assert not children() & decoders and not any(Path(f"/proc/{p}").exists() for p in decoders)
    assert pipes() == open_pipes
    assert files_under(cache) == []


@pytest.mark.timeout(60)
def test_a_decoder_killed_from_outside_is_a_clean_error(
    plain_archive: FixtureArchive,
    fault_server: Any,
    cache: Path,
    test_key: TestKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel's OOM killer, say: the parent sees the pipe end early and says why."""
    sign_listing(plain_archive, {INDEX + ".xz": lzma.compress(_big_index(20000))})
    srv = fault_server(plain_archive.root)
    original = idx.Builder.add_chunk
    killed: list[int] = []

    def kill_decoder(self: idx.Builder, buf: bytes, offset: int) -> None:
        if not killed:
            for pid in children():
                if Path(f"/proc/{pid}/status").read_text().startswith("Name:\tpython"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
        original(self, buf, offset)

    monkeypatch.setattr(idx.Builder, "add_chunk", kill_decoder)
    exc = fails(srv, cache, test_key.keyring, r"killed by signal 9", RootstrapError)
    assert killed and exc.hint == "out of memory?"
    assert exc.subject and exc.subject.endswith(".xz")


@pytest.mark.parametrize("ext", [".xz", ".gz", ".zst", ""])
def test_every_compression_gives_the_same_table(
    plain_archive: FixtureArchive,
    fault_server: Any,
    tmp_path: Path,
    test_key: TestKey,
    ext: str,
) -> None:
    """Decoded in the child (or read as is when plain): the cache holds the same text and
    table as parsing the text in memory."""
    text = _big_index(3000)
    data = {
        ".xz": lzma.compress,
        ".gz": gzip.compress,
        ".zst": zstandard.ZstdCompressor().compress,
        "": bytes,
    }[ext](text)
    sign_listing(plain_archive, {INDEX + ext: data})
    srv = fault_server(plain_archive.root)
    cache = tmp_path / ext.strip(".")
    archive = open_local(srv.url, test_key.keyring, cache)
    assert len(archive.tables[0]) == 3000
    key = archive.tables[0].key
    assert (cache / "indexes" / f"{key}.packages").read_bytes() == text
    table = marshal.loads((cache / "indexes" / f"{key}.table").read_bytes())
    expected = idx.Builder("x")
    chunker = idx.Chunker(expected, None)
    chunker.feed(idx.Text().feed(text, final=True), final=True)
    assert table == expected.finish(key, len(text))


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bookworm_main_fast_table_equals_the_general_parsers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real index, through the real path (download, forked xz decoder, fast parse, cache):
    its cached table equals what the general parser builds from the same text."""
    mirror = recipes.host_mirror("debian")
    if mirror is None:
        pytest.skip("the host's apt sources name no Debian mirror")
    with Http() as http:
        archive = open_archive(
            recipes.load("bookworm"),
            mirrors=[mirror],
            arch="amd64",
            http=http,
            cache_dir=tmp_path,
            components=["main"],
        )
    (table,) = archive.tables
    assert len(table) > 50000
    base = tmp_path / "indexes" / table.key
    text = base.with_suffix(".packages").read_bytes()
    cached = base.with_suffix(".table").read_bytes()
    monkeypatch.setattr(idx.Builder, "_fast", lambda self, buf, offset: False)
    builder = idx.Builder("bookworm/main")
    chunker = idx.Chunker(builder, None)
    normaliser = idx.Text()
    for pos in range(0, len(text), 1 << 20):
        chunker.feed(normaliser.feed(text[pos : pos + (1 << 20)]))
    chunker.feed(normaliser.feed(b"", final=True), final=True)
    assert builder.finish(table.key, len(text)) == marshal.loads(cached)
