"""The Packages parser, its table, the PackageIndex over it, and the capped decoders."""

from __future__ import annotations

import gzip
import lzma
import marshal
import os
from pathlib import Path
from typing import Any

import pytest
import zstandard

from rootstrap.archive import index as idx
from rootstrap.archive.index import parse_index_bytes, parse_stanza
from rootstrap.archive.indexfetch import load_cached
from rootstrap.archive.inflate import PIECE, ZSTD_FEED, Corrupt, _Decoder
from rootstrap.archive.packages import PackageIndex
from rootstrap.errors import ArchiveIndexError

SHA = "a" * 64


def stanza(name: str, version: str = "1.0", arch: str = "amd64", **extra: str) -> str:
    fields = {
        "Package": name,
        "Version": version,
        "Architecture": arch,
        "Priority": "optional",
        "Filename": f"pool/main/{name[0]}/{name}/{name}_{version}_{arch}.deb",
        "Size": "1234",
        "SHA256": SHA,
    }
    fields.update({k.replace("_", "-"): v for k, v in extra.items()})
    return "".join(f"{k}: {v}\n" for k, v in fields.items() if v is not None)


CANONICAL = (
    stanza("libc6", "2.36-9", Priority="required", Multi_Arch="same")
    + "\n"
    + stanza(
        "dash",
        "0.5.12-2",
        Essential="yes",
        Priority="required",
        Pre_Depends="libc6 (>= 2.34)",
        Depends="debianutils (>= 5.6-0.1), libc6 (>= 2.36)",
        Provides="sh, posix-shell (= 1.0)",
    )
    + "\n"
    + stanza("hello", "2.10-3", Depends="libfoo1 (>= 1.0) | libfoo-compat, dash")
    + "\n"
    + stanza("data", "1", arch="all")
    + "\n"
    + stanza("foreign", "1", arch="arm64", Provides="sh")
)


def table_view(data: str | bytes) -> dict[tuple[str, str, str], dict[str, str]]:
    raw = data.encode() if isinstance(data, str) else data
    index = PackageIndex.from_sources([parse_index_bytes(raw, "test/main")], "amd64")
    return {p.key: dict(p.fields) for n in sorted(index.names()) for p in index.candidates(n)}


def test_canonical_parse_fields_and_queries() -> None:
    table = parse_index_bytes(CANONICAL.encode(), "bookworm/main")
    index = PackageIndex.from_sources([table], "amd64")
    assert sorted(index.names()) == ["dash", "data", "hello", "libc6"]  # arm64 ignored
    dash = index.best("dash")
    assert dash is not None and dash.version == "0.5.12-2" and dash.origin == "bookworm/main"
    assert dash.get("Pre-Depends") == "libc6 (>= 2.34)"
    assert index.essential_names() == ["dash"]
    assert index.with_priority("required") == ["dash", "libc6"]
    assert [(p.name, v) for p, v in index.providers("posix-shell")] == [("dash", "1.0")]
    assert [p.name for p, _v in index.providers("sh")] == ["dash"]  # not the arm64 one
    assert "foreign" not in index and "hello" in index
    assert table.raw(dash).decode().startswith("Package: dash\n")


@pytest.mark.hazard(22)
@pytest.mark.parametrize(
    "variant",
    ["folded", "crlf", "mixed-case", "whitespace-separators", "no-trailing-newline", "all"],
)
def test_odd_forms_parse_like_the_canonical_one(variant: str) -> None:
    text = CANONICAL
    if variant in ("folded", "all"):
        text = text.replace(
            "Depends: debianutils (>= 5.6-0.1), libc6 (>= 2.36)",
            "Depends: debianutils (>= 5.6-0.1),\n libc6 (>= 2.36)",
        ).replace("Provides: sh, posix-shell (= 1.0)", "Provides: sh,\n\tposix-shell (= 1.0)")
    if variant in ("mixed-case", "all"):
        text = text.replace("Package: dash", "package: dash").replace("Depends:", "DEPENDS:")
        text = text.replace("Provides: sh,", "provides: sh,").replace("Essential:", "ESSENTIAL:")
    if variant in ("whitespace-separators", "all"):
        text = text.replace("\n\n", "\n  \t\n")
    if variant in ("no-trailing-newline", "all"):
        text = text.rstrip("\n")
    if variant in ("crlf", "all"):
        text = text.replace("\n", "\r\n")
    odd = table_view(text)
    assert odd == table_view(CANONICAL)
    index = PackageIndex.from_sources([parse_index_bytes(text.encode())], "amd64")
    assert index.essential_names() == ["dash"]
    assert [p.name for p, _v in index.providers("posix-shell")] == ["dash"]
    dash = index.best("dash")
    assert dash is not None
    assert dash.get("Depends") == "debianutils (>= 5.6-0.1), libc6 (>= 2.36)"


@pytest.mark.hazard(22)
def test_garbage_line_is_rejected_with_its_line_number() -> None:
    text = CANONICAL.replace("Priority: optional\n", "Priority: optional\nnot a field\n", 1)
    number = text.splitlines().index("not a field") + 1
    index = PackageIndex.from_sources([parse_index_bytes(text.encode(), "sid/main")], "amd64")
    with pytest.raises(ArchiveIndexError, match=rf"^sid/main: line {number}: not a field"):
        index.best("hello")
    # Through the general parser (odd case) the whole index is rejected, with the same line.
    odd = text.replace("Version:", "version:").encode()
    with pytest.raises(ArchiveIndexError, match=rf"^sid/main: line {number}: not a field"):
        parse_index_bytes(odd, "sid/main")


@pytest.mark.hazard(22)
def test_continuation_outside_a_field_is_rejected() -> None:
    with pytest.raises(ArchiveIndexError, match="line 1: continuation line outside a field"):
        parse_stanza(b" oops\nPackage: a\n")


@pytest.mark.hazard(21)
def test_duplicate_stanzas_highest_version_wins() -> None:
    text = "\n".join([stanza("dup", "1.0"), stanza("dup", "1:0.5"), stanza("dup", "2.0~rc1")])
    index = PackageIndex.from_sources([parse_index_bytes(text.encode())], "amd64")
    assert [p.version for p in index.candidates("dup")] == ["1:0.5", "2.0~rc1", "1.0"]
    best = index.best("dup")
    assert best is not None and best.version == "1:0.5"


@pytest.mark.hazard(21)
def test_several_indexes_merge_and_highest_wins() -> None:
    main = parse_index_bytes(
        (stanza("base", "1.0") + "\n" + stanza("only-main")).encode(), "bookworm/main"
    )
    updates = parse_index_bytes(stanza("base", "1.1").encode(), "bookworm-updates/main")
    index = PackageIndex.from_sources([main, updates], "amd64")
    best = index.best("base")
    assert best is not None and (best.version, best.origin) == ("1.1", "bookworm-updates/main")
    assert len(index) == 2 and sorted(index.names()) == ["base", "only-main"]


@pytest.mark.hazard(23)
@pytest.mark.parametrize(
    ("drop", "reason"),
    [("SHA256", "no strong hash"), ("Size", "no Size"), ("Filename", "no Filename")],
)
def test_stanza_without_sha256_size_or_filename_is_unusable(drop: str, reason: str) -> None:
    text = stanza("weak", MD5sum="d41d8cd98f00b204e9800998ecf8427e", **{drop: None})  # type: ignore[arg-type]
    index = PackageIndex.from_sources([parse_index_bytes(text.encode())], "amd64")
    package = index.best("weak")
    assert package is not None
    assert (package.usable() or "").startswith(reason)


@pytest.mark.hazard(24)
def test_invalid_names_and_versions_are_dropped_and_unsafe_filenames_unusable() -> None:
    bad = [
        stanza("../evil"),
        stanza("a/b"),
        stanza("UPPER"),
        stanza("has space"),
        stanza("ok-version-bad", "1.0 beta"),
        stanza("ok-version-bad2", "1.0$"),
    ]
    unsafe = [
        stanza("abs", Filename="/etc/passwd"),
        stanza("dotdot", Filename="pool/../../x.deb"),
        stanza("url", Filename="http://evil.invalid/x.deb"),
    ]
    text = "\n".join([stanza("good"), *bad, *unsafe])
    index = PackageIndex.from_sources([parse_index_bytes(text.encode())], "amd64")
    assert sorted(index.names()) == ["abs", "dotdot", "good", "url"]
    for name in ("abs", "dotdot", "url"):
        package = index.best(name)
        assert package is not None
        assert (package.usable() or "").startswith("unsafe Filename")
        assert package.deb_name == f"{name}_1.0_amd64.deb"  # never taken from Filename
    good = index.best("good")
    assert good is not None and good.usable() is None


def test_fast_and_slow_paths_agree() -> None:
    many = "\n".join(
        stanza(f"pkg{i}", f"1.{i}", Provides=f"virt{i % 7}" if i % 3 == 0 else None)  # type: ignore[arg-type]
        for i in range(500)
    )
    fast = table_view(many)
    slow = table_view(many.replace("Version:", "VERSION:"))  # odd case: the general parser
    assert fast == slow and len(fast) == 500


def test_fast_path_is_taken_for_canonical_text(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = idx.Builder._slow

    def spy(self: idx.Builder, text: bytes, offset: int) -> None:
        calls.append("slow")
        original(self, text, offset)

    monkeypatch.setattr(idx.Builder, "_slow", spy)
    parse_index_bytes(CANONICAL.encode())
    assert calls == []
    parse_index_bytes(CANONICAL.replace("Package: hello", "package: hello").encode())
    assert calls == ["slow"]


def test_chunked_parse_matches_whole_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    many = "\n".join(stanza(f"p{i}", "1.0", Depends="libc6") for i in range(2000)).encode()
    whole = table_view(many)
    monkeypatch.setattr(idx, "CHUNK", 997)  # cut mid-stanza, mid-line, everywhere
    assert table_view(many) == whole
    # parse_index_bytes hands over one piece; the decoder's pieces arrive 1000 bytes at a time
    # here, so the 997-byte chunks really are cut (byte ranges and all).
    assert raw_table(many, 997, True, monkeypatch) == raw_table(many, 1 << 30, True, monkeypatch)


# -- decoders (HAZARDS 20, 25) --------------------------------------------------------------


def decode_all(kind: str, data: bytes, step: int = 4096) -> bytes:
    decoder = _Decoder(kind)
    out = b"".join(
        piece for pos in range(0, len(data), step) for piece in decoder.feed(data[pos : pos + step])
    )
    decoder.close()
    return out


PAYLOAD = CANONICAL.encode() * 200

COMPRESSORS = {
    "xz": lzma.compress,
    "gz": gzip.compress,
    "zst": lambda d: zstandard.ZstdCompressor().compress(d),
}


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_decoders_round_trip(kind: str) -> None:
    assert decode_all(kind, COMPRESSORS[kind](PAYLOAD)) == PAYLOAD


def test_zstd_multi_frame_is_read_whole() -> None:
    frames = COMPRESSORS["zst"](PAYLOAD[:5000]) + COMPRESSORS["zst"](PAYLOAD[5000:])
    assert decode_all("zst", frames) == PAYLOAD


@pytest.mark.hazard(20)
@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
@pytest.mark.parametrize("damage", ["truncated", "trailing-junk", "flipped"])
def test_damaged_compression_is_detected(kind: str, damage: str) -> None:
    data = COMPRESSORS[kind](PAYLOAD)
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "trailing-junk":
        data += b"GARBAGE!" * 4
    else:
        middle = len(data) // 2
        data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
    try:
        out = decode_all(kind, data)
    except Corrupt as exc:
        assert str(exc).startswith(("corrupt", "truncated", "trailing"))
        return
    # zstd frames carry no checksum by default: a flipped byte may decode to other bytes,
    # which is why the Release's SHA256 of the decompressed index is checked as well.
    assert kind == "zst" and damage == "flipped" and out != PAYLOAD


@pytest.mark.hazard(25)
@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_decoder_output_is_bounded_per_step(kind: str) -> None:
    bomb = COMPRESSORS[kind](b"\0" * (64 << 20))
    decoder = _Decoder(kind)
    biggest = max(len(piece) for piece in decoder.feed(bomb))
    # zstd has no max_length: it is fed ZSTD_FEED bytes at a time, ~32k-fold at most.
    assert biggest <= (PIECE if kind != "zst" else ZSTD_FEED * 32768 + PIECE)


def _oracle(text: bytes) -> tuple[dict[tuple[str, str, str], dict[str, str]], set[str], set[str]]:
    """What any correct reader must find: stanzas split by blank or whitespace-only lines."""
    import re

    lines = re.sub(rb"(?m)^[ \t]+$", b"", text.replace(b"\r\n", b"\n"))
    packages: dict[tuple[str, str, str], dict[str, str]] = {}
    essential: set[str] = set()
    virtual: set[str] = set()
    for part in re.split(rb"\n\n+", lines.strip(b"\n")):
        fields = parse_stanza(part)
        key = (fields["Package"], fields["Version"], fields["Architecture"])
        packages[key] = fields
        if fields.get("Essential") == "yes":
            essential.add(fields["Package"])
        virtual |= {n for n, _v in idx.parse_provides(fields.get("Provides", ""))}
    return packages, essential, virtual


@pytest.mark.hazard(22)
@pytest.mark.parametrize("seed", range(int(os.environ.get("ROOTSTRAP_FUZZ_SEEDS", "12"))))
def test_random_indexes_fast_path_matches_the_oracle(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    rng = random.Random(seed)
    monkeypatch.setattr(idx, "CHUNK", rng.choice([64, 300, 4096, 1 << 20]))
    stanzas = []
    for i in range(rng.randint(1, 60)):
        extra: dict[str, str] = {}
        if rng.random() < 0.3:
            extra["Provides"] = ", ".join(f"v{rng.randint(0, 5)}" for _ in range(3))
        if rng.random() < 0.1:
            extra["Essential"] = "yes"
        if rng.random() < 0.5:
            extra["Depends"] = f"libc6 (>= 2.{i}), pkg{i + 1} | other"
        text = stanza(f"pkg{i}", f"1.{rng.randint(0, 3)}", rng.choice(["amd64", "all"]), **extra)
        if rng.random() < 0.2:
            text = text.replace(", ", ",\n ", 1)  # fold the first list
        if rng.random() < 0.1:
            text = text.replace("Provides:", "provides:").replace("Version:", "VERSION:")
        stanzas.append(text)
    separator = rng.choice(["\n", "\n", "\n \n", "\n\n"])
    data = separator.join(stanzas)
    if rng.random() < 0.3:
        data = data.replace("\n", "\r\n")
    if rng.random() < 0.3:
        data = data.rstrip("\r\n")
    raw = data.encode()
    packages, essential, virtual = _oracle(raw)
    index = PackageIndex.from_sources([parse_index_bytes(raw, "x/main")], "amd64")
    found = {p.key: dict(p.fields) for n in index.names() for p in index.candidates(n)}
    assert found == packages
    assert set(index.essential_names()) == essential
    assert {v for v in virtual if index.providers(v)} == virtual


def raw_table(data: bytes, chunk: int, fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The table exactly as cached (byte ranges, priorities, provides, essential, rejects)."""
    with monkeypatch.context() as m:
        m.setattr(idx, "CHUNK", chunk)
        if not fast:
            m.setattr(idx.Builder, "_fast", lambda self, buf, offset: False)
        builder = idx.Builder("x/main")
        parts: list[bytes] = []
        chunker = idx.Chunker(builder, parts.append)
        text = idx.Text()
        for pos in range(0, len(data), 1000):  # as the decoder's pieces arrive
            chunker.feed(text.feed(data[pos : pos + 1000]))
        chunker.feed(text.feed(b"", final=True), final=True)
        return builder.finish("k", len(b"".join(parts)))


ODDITIES = {
    "blank-run": lambda t: t.replace("\n\nPackage:", "\n\n\nPackage:", 1),
    "leading-blank": lambda t: "\n\n" + t,
    "no-version": lambda t: t.replace("Version: 1.3\n", "", 1),
    "arch-first": lambda t: t.replace("Version:", "Xv:", 1).replace(
        "Architecture:", "Version: 9\nArchitecture:", 1
    ),
    "odd-case": lambda t: t.replace("Priority:", "PRIORITY:", 1),
    "bad-name": lambda t: t.replace("Package: pkg2\n", "Package: Pkg_2\n", 1),
    "essential-early": lambda t: t.replace("Version: 1.1\n", "Version: 1.1\nEssential: yes\n", 1),
    "folded-provides": lambda t: t.replace("Provides: v", "Provides:\n v", 1),
}


@pytest.mark.hazard(22)
@pytest.mark.parametrize("seed", range(16))
def test_fast_path_table_is_identical_to_the_general_parsers(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte ranges included: whatever a chunk holds, the fast path either builds exactly the
    general parser's table or hands the chunk over."""
    import random

    rng = random.Random(seed)
    texts = []
    for i in range(rng.randint(20, 120)):
        extra: dict[str, str] = {}
        if rng.random() < 0.3:
            extra["Provides"] = ", ".join(f"v{rng.randint(0, 5)}" for _ in range(2)) + " (= 1)"
        if rng.random() < 0.1:
            extra["Essential"] = rng.choice(["yes", "no", "Yes"])
        if rng.random() < 0.2:
            extra["Priority"] = rng.choice(["required", "important", "extra"])
        if rng.random() < 0.2:
            extra["Priority"] = None  # type: ignore[assignment]
        arch = rng.choice(["amd64", "all", "arm64"])
        texts.append(stanza(f"pkg{i}", f"1.{i % 4}", arch, **extra))
    data = "\n".join(texts)
    for name in rng.sample(sorted(ODDITIES), rng.randint(0, 2)):
        data = ODDITIES[name](data)
    raw = data.encode()
    taken: list[bool] = []
    original = idx.Builder._fast

    def spy(self: idx.Builder, buf: bytes, offset: int) -> bool:
        taken.append(original(self, buf, offset))
        return taken[-1]

    monkeypatch.setattr(idx.Builder, "_fast", spy)
    for chunk in (300, 4096, 1 << 20):
        assert raw_table(raw, chunk, True, monkeypatch) == raw_table(raw, chunk, False, monkeypatch)
    assert any(taken), "the fast path never ran: the comparison would be slow against slow"


@pytest.mark.hazard(21)
def test_the_name_lookup_handed_over_equals_the_one_built_lazily() -> None:
    raw = "\n".join(
        [stanza("aa"), stanza("dup", "1"), stanza("bb"), stanza("dup", "2", "all"), stanza("dup")]
    ).encode()
    fresh = parse_index_bytes(raw, "x/main")
    builder = idx.Builder("x/main")
    chunker = idx.Chunker(builder, None)
    chunker.feed(idx.Text().feed(raw, final=True), final=True)
    lazy = idx.IndexTable(builder.finish("", len(raw)), raw, "x/main")
    assert lazy._by_name is None and fresh._by_name is not None
    assert fresh._index() == lazy._index() == {"aa": 0, "dup": [1, 3, 4], "bb": 2}


def _rss_file_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


def test_a_cached_index_costs_no_resident_memory_per_stanza_read(tmp_path: Path) -> None:
    """Reading stanzas spread over a cached index maps none of its text into the process.

    (Through an mmap, each fault maps 64 KiB around it: 300 stanzas of this 20 MB index made
    ~18 MB resident.)"""
    text = "".join(
        stanza(f"pkg{i}", "1.0", Description="x" * 200) + "\n" for i in range(60000)
    ).encode()
    builder = idx.Builder("x/main")
    chunker = idx.Chunker(builder, None)
    chunker.feed(idx.Text().feed(text, final=True), final=True)
    key = "b" * 64
    (tmp_path / "indexes").mkdir()
    (tmp_path / "indexes" / f"{key}.packages").write_bytes(text.rstrip(b"\n") + b"\n")
    table = builder.finish(key, len(text.rstrip(b"\n")) + 1)
    (tmp_path / "indexes" / f"{key}.table").write_bytes(marshal.dumps(table))
    loaded = load_cached(tmp_path, key, "x/main")
    assert loaded is not None and len(loaded) == 60000
    before = _rss_file_kib()
    for i in range(0, 60000, 200):
        assert loaded.package(i).name == f"pkg{i}"
    assert _rss_file_kib() - before < 2048


@pytest.mark.hazard(114)
def test_a_killed_writers_index_temps_are_swept(tmp_path: Path) -> None:
    """A writer SIGKILLed while building an index leaves .KEY.PID.TID[.table].tmp behind:
    the next fetch removes those of a dead PID and leaves a live writer's alone."""
    import subprocess

    from rootstrap.archive.indexfetch import sweep_stale_temps

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead, live = gone.pid, os.getpid()
    names = [
        f".abc123.{dead}.140.tmp",
        f".abc123.{dead}.140.table.tmp",
        f".def456.{live}.141.tmp",
        "abc123.packages",
        ".notours.tmp",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = sweep_stale_temps(tmp_path)
    assert sorted(removed) == sorted(names[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
    assert sweep_stale_temps(tmp_path / "missing") == []
