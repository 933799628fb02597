"""Packages indexes: fetched against the signed Release, parsed fast, cached parsed.

Fetching (HAZARDS 16–20, 25). Each ``<component>/binary-<arch>/Packages`` the Release lists is
tried as xz, gz, zst, then plain, each by-hash first when the Release says ``Acquire-By-Hash``
(debootstrap and apt do the same: a by-hash file cannot change under us mid-sync), on every
mirror in turn: any bytes whose SHA256 the verified Release names are good, whoever serves
them. Size and SHA256 are checked while streaming (``Http.stream``), and the whole compressed
file is verified before a byte of it is decoded; the decompressed text is capped by the
uncompressed size the Release lists (or a hard limit) and hashed against it too. Decoding runs
in a forked child that pipes the text to the parser (:class:`_Inflater`: a decoder thread
fought the parser for the GIL and hardly overlapped it).

Parsing (research/libs.md §1: python-debian takes 7.5–8.9 s and 473 MiB for bookworm main).
The parse builds a compact table: per stanza its name, version, architecture and byte range,
plus Provides, Priority and Essential. A canonical Debian index is read with two C-speed regex
scans per chunk (whole stanzas with Package/Version/Architecture, whose matches must tile the
chunk; Provides/Priority/Essential in any spelling), the per-stanza work done by map() over C
methods; a chunk that is not canonical (odd case, blank-line runs, fields out of Debian's
order) goes through the general line parser instead, so odd input gives the same table, only
slower (HAZARDS 22; CRLF and whitespace-only lines are normalised first). Stanzas
become :class:`~rootstrap.archive.packages.Package` objects only when asked for, so a line
that is not a field is reported (with its line number) when its stanza is first used.

Cache: ``<cache>/indexes/<sha256>.packages`` (the uncompressed text, normalised) and
``<sha256>.table`` (marshal), keyed by the SHA256 the Release gives the uncompressed index (or
the compressed one when that is all it lists). Both are written under temporary names and
renamed once verified, so a file that exists was verified when written; the cache directory is
trusted like apt's lists directory. A warm load is one marshal read and an open file.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import logging
import lzma
import marshal
import os
import re
import select
import signal
import threading
import zlib
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from pathlib import Path
from typing import Any, Final, NoReturn, cast

from rootstrap.archive.packages import (
    ARCH_RE,
    NAME_RE,
    VERSION_RE,
    Package,
    PackageSource,
    parse_provides,
)
from rootstrap.archive.release import FileEntry, HttpLike, Release
from rootstrap.errors import (
    ArchiveIndexError,
    DownloadError,
    IntegrityError,
    ResourceError,
    RootstrapError,
    VerificationError,
)

log = logging.getLogger(__name__)

__all__ = [
    "IndexTable",
    "fetch_index",
    "load_cached",
    "parse_index_bytes",
    "parse_stanza",
]

FORMAT: Final = 2
HARD_CAP: Final = 1 << 30  # no Packages index comes near 1 GiB uncompressed (sid main: ~70 MB)
PIECE: Final = 1 << 20  # decompressor output per step: bounds memory whatever the ratio
CHUNK: Final = 512 << 10  # text parsed per step: short, so the decoder's pipe is drained often
ZSTD_FEED: Final = 1024  # zstd has no max_length: feed it small so one call stays small
COMPRESSIONS: Final = (("xz", ".xz"), ("gz", ".gz"), ("zst", ".zst"), ("", ""))

# Fields as the archive spells them; a stanza's field names are matched case-insensitively
# (deb822(5)) and stored under these spellings.
CANONICAL: Final = {
    name.lower(): name
    for name in (
        "Package", "Source", "Version", "Installed-Size", "Maintainer", "Architecture",
        "Replaces", "Provides", "Depends", "Pre-Depends", "Recommends", "Suggests", "Conflicts",
        "Breaks", "Enhances", "Description", "Description-md5", "Homepage", "Tag", "Section",
        "Priority", "Filename", "Size", "MD5sum", "SHA1", "SHA256", "SHA512", "Essential",
        "Multi-Arch", "Built-Using", "Static-Built-Using", "Protected", "Important",
        "Build-Essential", "Origin", "Bugs", "Original-Maintainer", "Build-Ids", "Ruby-Versions",
        "Lua-Versions", "Go-Import-Path", "Python-Version", "Cnf-Extra-Commands",
    )
}  # fmt: skip
# Relationship fields: folded lines carry no meaning, so they are joined with a space and a
# folded Depends reads exactly like a one-line one (debootstrap's single-line regex dropped them).
RELATIONS: Final = frozenset(
    {"Depends", "Pre-Depends", "Recommends", "Suggests", "Conflicts", "Breaks", "Enhances",
     "Replaces", "Provides", "Built-Using", "Static-Built-Using"}
)  # fmt: skip


# A whole stanza: its leading newline, Package first, then Version and Architecture in Debian's
# order, then the rest of its lines. The gaps match only non-empty lines, so a match never
# leaves its stanza; the matches of a canonical chunk tile it exactly (checked in _fast).
_STANZA = re.compile(
    rb"\nPackage:[ \t]*([^\n]*)\n(?:[^\n]+\n)*?Version:[ \t]*([^\n]*)\n"
    rb"(?:[^\n]+\n)*?Architecture:[ \t]*([^\n]*)\n(?:[^\n]+\n)*"
)
# Each value with its continuation lines: a folded Provides must not lose its tail.
_OPTIONAL = re.compile(rb"\n(?i:(provides|priority|essential)):[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)")
_Match = re.Match
_OPTIONAL_NAMES_ORDER: Final = (b"Provides", b"Priority", b"Essential")
_OPTIONAL_NAMES: Final = frozenset(_OPTIONAL_NAMES_ORDER)
_WS_LINE = re.compile(rb"\n[ \t]+(?=\n)")
_NAMES_OK = re.compile(r"(?:[a-z0-9][a-z0-9+.-]+\n)*")
_VERSIONS_OK = re.compile(r"(?:(?:[0-9]+:)?[0-9][A-Za-z0-9.+~:-]*\n)*")


# ---------------------------------------------------------------------------------------------
# The general stanza parser (slow path, and every Package materialised from a table)


def parse_stanza(text: bytes, *, where: str = "", first_line: int = 1) -> dict[str, str]:
    """One stanza's fields under their canonical names. Handles CRLF, folding, any case.

    Raises ArchiveIndexError naming WHERE and the line for a line that is neither a field nor a
    continuation, and for a field given twice. Costs ~10 µs for a typical stanza.
    """
    fields: dict[str, str] = {}
    key = ""
    for number, raw in enumerate(text.split(b"\n"), first_line):
        line = raw.rstrip(b"\r")
        if not line.strip():
            if line and fields:
                raise ArchiveIndexError(
                    f"line {number}: whitespace-only line inside a stanza", subject=where
                )
            continue
        try:
            decoded = line.decode("utf-8")
        except UnicodeDecodeError:
            decoded = line.decode("latin-1")
        if decoded[0] in " \t":
            if not key:
                raise ArchiveIndexError(
                    f"line {number}: continuation line outside a field", subject=where
                )
            if key in RELATIONS:
                fields[key] = f"{fields[key]} {decoded.strip()}".strip()
            else:
                fields[key] += "\n" + decoded.rstrip()
            continue
        name, sep, value = decoded.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise ArchiveIndexError(f"line {number}: not a field: {decoded[:60]!r}", subject=where)
        key = CANONICAL.get(name.lower(), name)
        if key in fields:
            raise ArchiveIndexError(f"line {number}: field {name!r} given twice", subject=where)
        fields[key] = value.strip()
    return fields


def _split_stanzas(text: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each stanza of TEXT; blank and whitespace-only lines separate them."""
    start = None
    pos = 0
    size = len(text)
    while pos < size:
        nl = text.find(b"\n", pos)
        end = size if nl < 0 else nl + 1
        blank = not text[pos:end].strip()
        if blank:
            if start is not None:
                yield start, pos
                start = None
        elif start is None:
            start = pos
        pos = end
    if start is not None:
        yield start, size


# ---------------------------------------------------------------------------------------------
# The table


class _Builder:
    """Accumulates the table while chunks of text stream past."""

    def __init__(self, where: str, lines_before: Callable[[int], int] | None = None) -> None:
        self.where = where
        # Line numbers are needed only for errors: counted then, from the text written so far.
        self.lines_before = lines_before or (lambda _offset: 0)
        self.names: list[str] = []
        self.versions: list[str] = []
        self.archs: list[str] = []
        self.starts = array("Q")
        self.ends = array("Q")
        # Built as the chunks arrive (beside the decoder), not after the last one.
        self.provides: dict[str, list[tuple[int, str | None]]] = {}
        self.last: dict[str, int] = {}  # each name's last stanza
        self.by_name: dict[str, int | list[int]] = {}  # set by finish(), for IndexTable
        self.priority: dict[str, list[int]] = {}
        self.essential: list[int] = []
        self.rejected: list[str] = []

    # -- fast path: a canonical chunk ----------------------------------------------------------

    def add_chunk(self, buf: bytes, offset: int) -> None:
        """Add the stanzas of BUF: a newline, complete stanzas, one newline; BUF[1] is at OFFSET
        in the file."""
        if not self._fast(buf, offset):
            self._slow(buf[1:], offset)

    def _fast(self, buf: bytes, offset: int) -> bool:
        # One scan finds every stanza with its Package, Version and Architecture. The chunk is
        # canonical when the matches tile it: each starts where the previous one ended (at
        # the blank line's newline), the first at 0, the last at the end. So every stanza has
        # Package first and Version and Architecture after it, one blank line separates them,
        # and no stanza lacks a match (a lower-case "package:", a blank-line run, a stanza
        # without Version all break the tiling and send the chunk to the general parser).
        # map() over the C methods keeps the per-stanza work out of the bytecode loop.
        matches = list(_STANZA.finditer(buf))
        if not matches:
            return False
        starts = list(map(_Match.start, matches))
        bounds = list(map(_Match.end, matches))
        if starts[0] != 0 or bounds[-1] != len(buf) or starts[1:] != bounds[:-1]:
            return False
        count = len(starts)
        heads = list(map(_Match.groups, matches))
        del matches
        # Provides, Priority and Essential in one scan, any spelling: an odd one ("provides:")
        # sends the chunk to the general parser. (An odd Package/Version/Architecture already
        # did: the stanza pattern misses its stanza and the tiling breaks; a field given twice
        # is caught when its stanza is parsed.)
        found = list(_OPTIONAL.finditer(buf))
        kinds = list(map(_Match.group, found, repeat(1)))
        if not _OPTIONAL_NAMES.issuperset(kinds):
            return False
        positions = list(map(_Match.start, found))
        values = list(map(_Match.group, found, repeat(2)))
        del found
        optional: list[tuple[list[int], list[bytes]]] = []
        for kind in _OPTIONAL_NAMES_ORDER:
            at = list(compress(positions, map(kind.__eq__, kinds)))
            field_values = list(compress(values, map(kind.__eq__, kinds)))
            if (
                len(at) == count
                and all(map(int.__lt__, starts, at))
                and all(map(int.__lt__, at, bounds))
            ):
                ids: list[int] = list(range(count))  # one in every stanza
            else:
                ids = [bisect_right(starts, p) - 1 for p in at]
                if len(set(ids)) != len(ids):
                    return False  # a field twice in one stanza: let the slow path say where
            optional.append((ids, field_values))
        base = len(self.names)
        names = [h[0].decode("ascii", "replace").strip() for h in heads]
        versions = [h[1].decode("ascii", "replace").strip() for h in heads]
        # A handful of distinct architectures: decoded once each, and shared (3.5 MB less).
        arch_bytes = [h[2] for h in heads]
        decoded = {a: a.decode("ascii", "replace").strip() for a in set(arch_bytes)}
        arch_names = list(map(decoded.__getitem__, arch_bytes))
        # Policy 5.6.1/5.6.12 checked in one C pass each; per item only when something is off.
        joined_ok = _NAMES_OK.fullmatch("\n".join(names) + "\n") and _VERSIONS_OK.fullmatch(
            "\n".join(versions) + "\n"
        )
        skip: set[int] = set()
        if not joined_ok or not all(ARCH_RE.match(a) for a in set(arch_names)):
            for i, (n, v, a) in enumerate(zip(names, versions, arch_names, strict=True)):
                if not (NAME_RE.match(n) and VERSION_RE.match(v) and ARCH_RE.match(a)):
                    skip.add(i)
        # buf position p (the "\n" ahead of a stanza) is the stanza's file offset - OFFSET;
        # a stanza's end is the file offset of its bound - 1.
        if skip:
            for i in sorted(skip):
                self.rejected.append(f"{names[i]!r} {versions[i]!r} {arch_names[i]!r}")
            keep = [i for i in range(count) if i not in skip]
            number: Callable[[int], int | None] = {
                old: base + new for new, old in enumerate(keep)
            }.get
            self.names += [names[i] for i in keep]
            self.versions += [versions[i] for i in keep]
            self.archs += [arch_names[i] for i in keep]
            self.starts.extend(offset + starts[i] for i in keep)
            self.ends.extend(offset + bounds[i] - 1 for i in keep)
            self.last.update(zip(self.names[base:], range(base, len(self.names)), strict=True))
        else:
            number = base.__add__
            self.names += names
            self.versions += versions
            self.archs += arch_names
            self.starts.extend(map(offset.__add__, starts))
            self.ends.extend(map((offset - 1).__add__, bounds))
            self.last.update(zip(names, range(base, base + count), strict=True))
        (prov_ids, prov_values), (prio_ids, prio_values), (ess_ids, ess_values) = optional
        provides = self.provides.setdefault
        for i, value in zip(prov_ids, prov_values, strict=True):
            j = number(i)
            if j is not None:
                for virtual, version in parse_provides(value.decode("utf-8", "replace")):
                    provides(virtual, []).append((j, version))
        if not skip and len(prio_ids) == count:
            # The common case, grouped in C: one pass per distinct value (a handful).
            for value in dict.fromkeys(prio_values):  # first-seen order, as the loop below
                self.priority.setdefault(value.decode("ascii", "replace").strip(), []).extend(
                    compress(range(base, base + count), map(value.__eq__, prio_values))
                )
        else:
            for i, value in zip(prio_ids, prio_values, strict=True):
                j = number(i)
                if j is not None:
                    self.priority.setdefault(value.decode("ascii", "replace").strip(), []).append(j)
        for i, value in zip(ess_ids, ess_values, strict=True):
            j = number(i)
            if j is not None and value.strip().lower() == b"yes":
                self.essential.append(j)
        return True

    # -- slow path: anything else ----------------------------------------------------------------

    def _slow(self, text: bytes, offset: int) -> None:
        for start, end in _split_stanzas(text):
            try:
                fields = parse_stanza(text[start:end], where=self.where)
            except ArchiveIndexError:
                line = self.lines_before(offset) + text.count(b"\n", 0, start) + 1
                parse_stanza(text[start:end], where=self.where, first_line=line)
                raise
            self.add_fields(fields, offset + start, offset + end)

    def add_fields(self, fields: dict[str, str], start: int, end: int) -> None:
        name = fields.get("Package", "")
        version = fields.get("Version", "")
        arch = fields.get("Architecture", "")
        if not (NAME_RE.match(name) and VERSION_RE.match(version) and ARCH_RE.match(arch)):
            self.rejected.append(f"byte {start}: {name!r} {version!r} {arch!r}")
            return
        j = len(self.names)
        self.names.append(name)
        self.versions.append(version)
        self.archs.append(arch)
        self.starts.append(start)
        self.ends.append(end)
        self.last[name] = j
        for virtual, pversion in parse_provides(fields.get("Provides", "")):
            self.provides.setdefault(virtual, []).append((j, pversion))
        if "Priority" in fields:
            self.priority.setdefault(fields["Priority"], []).append(j)
        if fields.get("Essential", "").lower() == "yes":
            self.essential.append(j)

    def finish(self, key: str, text_size: int) -> dict[str, Any]:
        if self.rejected:
            log.warning(
                "%s: ignored %d invalid stanza(s), first: %s",
                self.where, len(self.rejected), self.rejected[0],
            )  # fmt: skip
        arch_list = sorted(set(self.archs))
        codes = {a: i for i, a in enumerate(arch_list)}
        dups: dict[str, list[int]] = {}
        last = self.last
        if len(last) != len(self.names):  # a name given twice (versions, architectures)
            for i, name in enumerate(self.names):
                if last[name] != i:
                    dups.setdefault(name, []).append(i)
            for name, found in dups.items():
                found.append(last[name])
        self.by_name = {**last, **dups} if dups else cast("dict[str, int | list[int]]", last)
        return {
            "format": FORMAT,
            "key": key,
            "size": text_size,
            "names": self.names,
            "versions": self.versions,
            "arch_list": arch_list,
            "arch_codes": bytes(map(codes.__getitem__, self.archs)),
            "starts": self.starts.tobytes(),
            "ends": self.ends.tobytes(),
            "provides": self.provides,
            "dups": dups,
            "priority": {k: array("I", v).tobytes() for k, v in self.priority.items()},
            "essential": self.essential,
            "rejected": len(self.rejected),
        }


class FileText:
    """An index's cached text, read with pread(2) a stanza at a time; owns its descriptor.

    Not an mmap: each page fault on a file mapping maps its neighbours too (fault-around,
    64 KiB), so reading the few hundred stanzas a bootstrap needs made 22 MB of the text
    resident in the process (measured: RssFile 17 -> 39 MB in a minbase bootstrap, the largest
    part of its peak RSS). pread copies only what is asked for; the page cache is not ours.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._size = os.fstat(fd).st_size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, where: slice) -> bytes:
        start, stop, _step = where.indices(self._size)
        return os.pread(self._fd, max(0, stop - start), start) if stop > start else b""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


class IndexTable(PackageSource):
    """One parsed Packages index: a compact table over its text; stanzas parsed on demand."""

    def __init__(
        self,
        table: dict[str, Any],
        text: bytes | FileText,
        origin: str,
        by_name: dict[str, int | list[int]] | None = None,
    ) -> None:
        """BY_NAME: the name lookup if the caller has it (a fresh parse), else built lazily."""
        self.origin = origin
        self.key: str = table["key"]
        self._names: list[str] = table["names"]
        self._versions: list[str] = table["versions"]
        self._arch_list: list[str] = table["arch_list"]
        self._arch_codes: bytes = table["arch_codes"]
        self._starts = array("Q")
        self._starts.frombytes(table["starts"])
        self._ends = array("Q")
        self._ends.frombytes(table["ends"])
        self._provides: dict[str, list[tuple[int, str | None]]] = table["provides"]
        self._dups: dict[str, list[int]] = table["dups"]
        self._priority: dict[str, bytes] = table["priority"]
        self._essential: list[int] = table["essential"]
        self._text = text
        self._by_name: dict[str, int | list[int]] | None = by_name or None
        self._cache: dict[int, Package] = {}

    def __len__(self) -> int:
        return len(self._names)

    def _index(self) -> dict[str, int | list[int]]:
        if self._by_name is None:
            # Built in C (~5 ms for bookworm main); names given twice come from the table.
            by_name: dict[str, int | list[int]] = dict(
                zip(self._names, range(len(self._names)), strict=True)
            )
            by_name.update(self._dups)
            self._by_name = by_name
        return self._by_name

    def names(self, archs: tuple[str, ...]) -> Iterable[str]:
        accepted = {c for c, a in enumerate(self._arch_list) if a in archs}
        if len(accepted) == len(self._arch_list):
            return self._index().keys()
        codes = self._arch_codes
        return {n for i, n in enumerate(self._names) if codes[i] in accepted}

    def __contains__(self, name: object) -> bool:
        return name in self._index()

    def package(self, i: int) -> Package:
        """Stanza I as a Package (parsed once, then kept)."""
        found = self._cache.get(i)
        if found is None:
            start, end = self._starts[i], self._ends[i]
            raw = bytes(self._text[start:end])
            try:
                fields = parse_stanza(raw, where=self.origin)
            except ArchiveIndexError:
                # Counted only now: the same error again, with the line number in the index.
                line = bytes(self._text[:start]).count(b"\n") + 1
                parse_stanza(raw, where=self.origin, first_line=line)
                raise
            found = Package.from_fields(fields, self.origin)
            self._cache[i] = found
        return found

    def raw(self, package: Package) -> bytes:
        """The stanza text of PACKAGE as the index has it (for ``info``)."""
        for i in self._ids(package.name):
            if self._versions[i] == package.version and self._arch(i) == package.architecture:
                return bytes(self._text[self._starts[i] : self._ends[i]])
        return b""

    def _ids(self, name: str) -> list[int]:
        found = self._index().get(name)
        if found is None:
            return []
        return found if isinstance(found, list) else [found]

    def _arch(self, i: int) -> str:
        return self._arch_list[self._arch_codes[i]]

    def packages(self, name: str, archs: tuple[str, ...]) -> list[Package]:
        return [self.package(i) for i in self._ids(name) if self._arch(i) in archs]

    def providers(self, virtual: str, archs: tuple[str, ...]) -> list[tuple[Package, str | None]]:
        return [
            (self.package(i), version)
            for i, version in self._provides.get(virtual, [])
            if self._arch(i) in archs
        ]

    def priority_names(self, priorities: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for priority in priorities:
            ids = array("I")
            ids.frombytes(self._priority.get(priority, b""))
            found.update(self._names[i] for i in ids)
        return found

    def essential_candidates(self) -> set[str]:
        return {self._names[i] for i in self._essential}


# ---------------------------------------------------------------------------------------------
# Parsing a whole text (tests, small archives, the cold path's consumer)


class _Text:
    """Normalises streamed text to whole lines, LF endings, blank whitespace-only lines."""

    def __init__(self) -> None:
        self.carry = b""

    def feed(self, data: bytes, final: bool = False) -> list[bytes | memoryview]:
        """The complete lines of CARRY + DATA (all of it when FINAL), as pieces to append."""
        if final:
            whole = self.carry + data
            self.carry = b""
            if whole and not whole.endswith(b"\n"):
                whole += b"\n"  # HAZARDS 22: a missing trailing newline ends the last field
            return [self._normal(whole)]
        last = data.rfind(b"\n")
        if last < 0:
            self.carry += data
            return []
        head, self.carry = self.carry, data[last + 1 :]
        if b"\r" in data or _WS_LINE.search(data) or (head and head[:1] in b" \t"):
            return [self._normal(head + data[: last + 1])]
        # The common case: no copy here (the chunker copies once into its buffer).
        return [head, memoryview(data)[: last + 1]]

    @staticmethod
    def _normal(data: bytes) -> bytes:
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        if _WS_LINE.search(data):
            data = _WS_LINE.sub(b"\n", data)
        if data[:1] in (b" ", b"\t") and not data.split(b"\n", 1)[0].strip():
            data = data.lstrip(b" \t")  # a whitespace-only first line
        return data


class _Chunker:
    """Cuts normalised text at stanza boundaries into the builder, writing it to SINK.

    A chunk is cut between the two newlines of a blank line, so every chunk after the first
    starts with the newline that the fast path's patterns (``\\nPackage:``) expect."""

    def __init__(self, builder: _Builder, sink: Callable[[bytes], Any] | None) -> None:
        self.builder = builder
        self.sink = sink
        self.pending = bytearray()
        self.offset = 0  # file offset of pending[0]

    def feed(self, pieces: Iterable[bytes | memoryview], final: bool = False) -> None:
        for piece in pieces:
            self.pending += piece
        if len(self.pending) < CHUNK and not final:
            return
        if final:
            cut = len(self.pending)
        else:
            cut = self.pending.rfind(b"\n\n") + 1
            if cut < 1:
                return
        chunk = bytes(memoryview(self.pending)[:cut])
        del self.pending[:cut]
        if self.sink is not None:
            self.sink(chunk)
        first = self.offset == 0
        end = len(chunk)
        if final:
            while end and chunk[end - 1] == 10:
                end -= 1
            end += end < len(chunk)  # keep one newline after the last stanza
        # BUF: a newline, whole stanzas, one newline; BUF[1] is at file offset TEXT_AT.
        start = 0 if first else 1
        text_at = self.offset + start
        if end > start:
            body = memoryview(chunk)[start:end]
            # Blank-line runs and blank lines ahead of the first stanza break the fast path's
            # tiling, which then hands the chunk to the general parser itself.
            if not first and chunk[0] != 10:
                self.builder._slow(bytes(body), text_at)
            elif first or end < len(chunk):
                self.builder.add_chunk(b"".join((b"\n", body)) if first else chunk[:end], text_at)
            else:
                self.builder.add_chunk(chunk, text_at)
        self.offset += len(chunk)


def parse_index_bytes(data: bytes, origin: str = "", key: str = "") -> IndexTable:
    """Parse a whole uncompressed Packages text in memory (tests and small indexes)."""
    parts: list[bytes] = []
    builder = _Builder(origin, lambda offset: b"".join(parts)[:offset].count(b"\n"))
    normaliser = _Text()
    chunker = _Chunker(builder, parts.append)
    chunker.feed(normaliser.feed(data, final=True), final=True)
    text = b"".join(parts)
    table = builder.finish(key, len(text))
    return IndexTable(table, text, origin, builder.by_name)


# ---------------------------------------------------------------------------------------------
# Decompression with caps and strict ends (HAZARDS 20, 25)


class _Corrupt(Exception):
    """The compressed data cannot be decoded (the hash decides whose fault that is)."""


class _Decoder:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._xz = lzma.LZMADecompressor(format=lzma.FORMAT_XZ) if kind == "xz" else None
        self._gz = zlib.decompressobj(wbits=31) if kind == "gz" else None
        self._zst: Any = None
        self._zstd_module: Any = None
        if kind == "zst":
            import zstandard

            self._zstd_module = zstandard
            self._zst = zstandard.ZstdDecompressor().decompressobj()
        self.ended = kind == ""

    def feed(self, data: bytes | memoryview) -> Iterator[bytes]:
        try:
            if self.kind == "":
                yield bytes(data)
            elif self._xz is not None:
                yield from self._feed_xz(data)
            elif self._gz is not None:
                yield from self._feed_gz(data)
            else:
                yield from self._feed_zst(data)
        except (lzma.LZMAError, zlib.error, EOFError) as exc:
            raise _Corrupt(f"corrupt {self.kind} data: {exc}") from exc
        except Exception as exc:
            if self._zstd_module is not None and isinstance(exc, self._zstd_module.ZstdError):
                raise _Corrupt(f"corrupt zst data: {exc}") from exc
            raise

    def _feed_xz(self, data: bytes | memoryview) -> Iterator[bytes]:
        d = self._xz
        assert d is not None
        if d.eof:
            if data:
                raise _Corrupt("trailing data after the xz stream")
            return
        out = d.decompress(data, max_length=PIECE)
        yield out
        while not d.eof and not d.needs_input:
            yield d.decompress(b"", max_length=PIECE)
        if d.eof and d.unused_data:
            raise _Corrupt("trailing data after the xz stream")
        self.ended = d.eof

    def _feed_gz(self, data: bytes | memoryview) -> Iterator[bytes]:
        d = self._gz
        assert d is not None
        if d.eof:
            if data:
                raise _Corrupt("trailing data after the gzip stream")
            return
        yield d.decompress(data, PIECE)
        while d.unconsumed_tail and not d.eof:
            yield d.decompress(d.unconsumed_tail, PIECE)
        if d.eof and d.unused_data:
            raise _Corrupt("trailing data after the gzip stream")
        self.ended = d.eof

    def _feed_zst(self, data: bytes | memoryview) -> Iterator[bytes]:
        for pos in range(0, len(data), ZSTD_FEED):
            piece = data[pos : pos + ZSTD_FEED]
            while piece:
                if self._zst.eof:  # a further frame (pzstd writes several)
                    self._zst = self._zstd_module.ZstdDecompressor().decompressobj()
                out = self._zst.decompress(piece)
                piece = self._zst.unused_data if self._zst.eof else b""
                if out:
                    yield out
        self.ended = bool(self._zst.eof)

    def close(self) -> None:
        if not self.ended:
            raise _Corrupt(f"truncated {self.kind} data (the stream ends early)")


class _Capped(Exception):
    """The text decodes to more than the cap (HAZARDS 25)."""


class _Inflater:
    """Decodes verified compressed bytes in a forked child; the parent reads the text from a pipe.

    Why a process and not a thread: lzma and zlib release the GIL while they work, but a
    decoder thread must take it back after every call, and while the parser holds it each
    hand-over waits up to the switch interval (5 ms, sys.getswitchinterval()). Measured on
    bookworm main: the thread design spent 1.43 s wall for 1.58 s of CPU on 2 cores, i.e. it
    hardly overlapped. A child has its own interpreter and GIL. It also counts and caps the
    decoded bytes, hashes them and normalises the text (:class:`_Text`), so the parent only
    parses: with both cores busy the parent was the slower side (measured ~0.9 s of parent
    CPU against ~0.8 s in the child). A plain index needs no child: the parent does all that.

    Use as a context manager: leaving it kills and reaps a child still running, so no process
    outlives an error or an interrupt. The child ignores SIGINT and SIGTERM (the parent decides
    and kills it); if the parent dies without cleaning up, the child's next write fails (EPIPE)
    and it exits.
    """

    READ: Final = 1 << 20  # one pipe's worth (the default pipe-max-size)
    STEP: Final = 512 << 10  # text handed to the parser between two drains of the pipe (~7 ms)
    BACKLOG: Final = 16 << 20  # text read ahead of the parser at most (memory bound)
    FEED: Final = 1 << 16  # compressed input per decoder call in the child

    def __init__(self, kind: str, data: bytes, subject: str, cap: int) -> None:
        self.kind = kind
        self.subject = subject
        self.cap = cap
        self._data: bytes | None = data
        self._pid = 0
        self._read_fd = -1
        self._status_fd = -1
        self._total = 0
        self._hasher = hashlib.sha256()

    def __enter__(self) -> _Inflater:
        data = self._data
        assert data is not None
        if self.kind == "":
            return self
        decoder = _Decoder(self.kind)  # before the fork: the child imports nothing
        read_fd, write_fd = os.pipe()
        status_fd, status_write_fd = os.pipe()
        try:
            for fd in (read_fd, write_fd):
                fcntl.fcntl(fd, _F_SETPIPE_SZ, self.READ)
        except OSError:
            pass  # a smaller pipe only costs a few more hand-overs
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (read_fd, write_fd, status_fd, status_write_fd):
                os.close(fd)
            raise ResourceError(
                f"cannot start the decompressor: {exc.strerror}", subject=self.subject
            ) from exc
        if pid == 0:  # pragma: no cover - the child ends in os._exit, coverage never sees it
            _inflate_child(decoder, data, write_fd, status_write_fd, self.cap)
        os.close(write_fd)
        os.close(status_write_fd)
        self._pid, self._read_fd, self._status_fd = pid, read_fd, status_fd
        self._data = None  # the child has its copy; the parent's may be freed
        return self

    def pieces(self) -> Iterator[bytes | memoryview]:
        """The normalised text in pieces of about STEP bytes, as the child produces them.

        Between two pieces the pipe is drained into a backlog without blocking: a pipe holds
        1 MiB (about 15 ms of xz output), and a child that finds it full stops decoding. With
        the parser taking a few ms per piece, the child never waits (measured before this:
        2 MiB parse steps left the child blocked 0.3 s of its 0.8 s, and the parent as long).
        """
        if self.kind == "":
            yield from self._plain()
            return
        read, step = os.read, self.STEP
        fd = self._read_fd
        os.set_blocking(fd, False)
        waiter = select.poll()  # not select(): that fails for descriptors past 1023
        waiter.register(fd, select.POLLIN)
        backlog: deque[bytes] = deque()
        held = 0
        ended = False
        while True:
            while not ended and held < self.BACKLOG:
                try:
                    data = read(fd, self.READ)
                except BlockingIOError:
                    if backlog:
                        break
                    waiter.poll()  # nothing to parse: wait for the child
                    continue
                if not data:
                    ended = True
                    break
                held += len(data)
                self._total += len(data)
                if self._total > self.cap + 1:  # the child caps the raw text; +1: a final "\n"
                    raise _Capped()
                backlog.extend(data[pos : pos + step] for pos in range(0, len(data), step))
            if not backlog:
                return
            piece = backlog.popleft()
            held -= len(piece)
            yield piece

    def _plain(self) -> Iterator[bytes | memoryview]:
        data = self._data or b""
        if len(data) > self.cap:
            raise _Capped()
        text = _Text()
        for pos in range(0, len(data), self.STEP):
            piece = data[pos : pos + self.STEP]
            self._hasher.update(piece)
            yield from text.feed(piece)
        self._total = len(data)
        yield from text.feed(b"", final=True)

    def finish(self) -> tuple[int, str]:
        """After the last piece: the size and SHA256 of the text as decoded (before it was
        normalised); _Corrupt with the decoder's reason, or _Capped."""
        if self.kind == "":
            return self._total, self._hasher.hexdigest()
        report = b""
        while block := os.read(self._status_fd, 4096):
            report += block
        _pid, status = os.waitpid(self._pid, 0)
        self._pid = 0
        verdict, _sep, detail = report.decode("utf-8", "replace").partition(" ")
        code = os.waitstatus_to_exitcode(status)
        if code == 0 and verdict == "ok":
            size, _sep, digest = detail.partition(" ")
            return int(size), digest
        if verdict == "corrupt":
            raise _Corrupt(detail)
        if verdict == "capped":
            raise _Capped()
        raise ResourceError(
            f"the {self.kind} decompressor process failed "
            + (f"(killed by signal {-code})" if code < 0 else f"(exit status {code})"),
            subject=self.subject,
            hint="out of memory?" if code == -signal.SIGKILL else None,
        )

    def __exit__(self, *exc_info: object) -> None:
        if self._pid:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self._pid, 0)
            self._pid = 0
        for fd in (self._read_fd, self._status_fd):
            if fd >= 0:
                os.close(fd)
        self._read_fd = self._status_fd = -1
        self._data = None


_F_SETPIPE_SZ: Final = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # fcntl(2); Python 3.10+ names it


def _inflate_child(
    decoder: _Decoder, data: bytes, out_fd: int, status_fd: int, cap: int
) -> NoReturn:
    """The forked decoder: DATA through DECODER, normalised, into OUT_FD; then on STATUS_FD
    "ok <size> <sha256>" of the decoded text, "capped" past CAP bytes or "corrupt <reason>".
    Never returns."""
    code = 70
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        gc.disable()  # a collection would touch (and copy) every object shared with the parent
        # Only the two write ends stay open: another pipe's reader (the unpack workers', say)
        # must not wait on this child for its EOF, nor our own read end keep a pipe alive.
        low, high = sorted((out_fd, status_fd))
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, 1 << 16)
        hasher = hashlib.sha256()
        text = _Text()
        total = 0
        view = memoryview(data)
        step = _Inflater.FEED
        for pos in range(0, len(view), step):
            for out in decoder.feed(view[pos : pos + step]):
                total += len(out)
                if total > cap:
                    raise _Capped()
                hasher.update(out)
                for piece in text.feed(out):
                    _write_all(out_fd, piece)
        decoder.close()
        for piece in text.feed(b"", final=True):
            _write_all(out_fd, piece)
        _write_all(status_fd, f"ok {total} {hasher.hexdigest()}".encode())
        code = 0
    except _Capped:
        try:
            _write_all(status_fd, b"capped")
            code = 4
        except BaseException:
            pass
    except _Corrupt as exc:
        try:
            _write_all(status_fd, f"corrupt {exc}".encode("utf-8", "replace")[:4096])
            code = 3
        except BaseException:
            pass
    except BaseException:
        pass  # BrokenPipeError: the parent stopped reading (an error, a cap): just go
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# ---------------------------------------------------------------------------------------------
# Fetching


@dataclass(frozen=True)
class _Source:
    url: str
    path: str  # relative to dists/<suite>/
    entry: FileEntry
    kind: str


def index_path(component: str, arch: str) -> str:
    return f"{component}/binary-{arch}/Packages"


def _sources(release: Release, bases: Sequence[str], component: str, arch: str) -> list[_Source]:
    """Every URL the index may come from, best first (HAZARDS 16, 19)."""
    path = index_path(component, arch)
    label = f"{component}/binary-{arch}"
    listed = [(kind, path + ext) for kind, ext in COMPRESSIONS if path + ext in release.files]
    provided = (not release.components or component in release.components) and (
        not release.architectures or arch in release.architectures or arch == "all"
    )
    if not provided or not listed:
        if any(path + ext in release.weak_only for _k, ext in COMPRESSIONS):
            raise VerificationError(
                f"Release provides only weak security information for {label} (no SHA256)",
                subject=release.url,
            )
        raise ArchiveIndexError(
            f"repository does not provide {label}",
            subject=release.url,
            hint=f"it has components {', '.join(release.components) or '?'} and architectures "
            f"{', '.join(release.architectures) or '?'}",
        )
    found = []
    for base in bases:
        for kind, rel in listed:
            entry = release.files[rel]
            if release.acquire_by_hash:
                found.append(
                    _Source(f"{base}/{component}/binary-{arch}/by-hash/SHA256/{entry.sha256}",
                            rel, entry, kind)
                )  # fmt: skip
            found.append(_Source(f"{base}/{rel}", rel, entry, kind))
    return found


def _cache_key(release: Release, component: str, arch: str, source: _Source) -> str:
    plain = release.files.get(index_path(component, arch))
    return plain.sha256 if plain else source.entry.sha256


def load_cached(cache_dir: Path, key: str, origin: str) -> IndexTable | None:
    """The parsed index cached under KEY, or None. Costs one marshal load (~20-40 ms for
    bookworm main) and an open(); the text is read only for stanzas asked for."""
    base = cache_dir / "indexes"
    try:
        with open(base / f"{key}.table", "rb") as f:
            # marshal.load(file) reads in tiny pieces (~20x slower here): read, then loads.
            table = marshal.loads(f.read())
        fd = os.open(base / f"{key}.packages", os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    text = FileText(fd)  # owns FD from here
    if not isinstance(table, dict) or table.get("format") != FORMAT or table.get("key") != key:
        text.close()
        return None
    if table.get("size") != len(text):
        text.close()
        return None
    return IndexTable(table, text, origin)


class _Failure:
    """Why one source failed; the last word goes to the most telling failure."""

    def __init__(self) -> None:
        self.mismatch: list[str] = []
        self.size: list[str] = []
        self.corrupt: list[str] = []
        self.other: list[RootstrapError] = []


def fetch_index(
    http: HttpLike,
    release: Release,
    component: str,
    arch: str,
    *,
    mirrors: Sequence[str],
    cache_dir: Path,
    suite: str,
) -> IndexTable:
    """The verified, parsed index of COMPONENT/binary-ARCH, from the cache or the mirrors.

    MIRRORS are tried in order (the Release's own mirror first); any bytes matching the
    Release's SHA256 are accepted. Cost: bookworm main amd64 ~0.9 s cold on 2 idle cores (one
    9 MB download, then ~0.8 s of xz in a forked child beside ~0.6 s of parsing here), ~0.07 s
    warm; memory: the compressed file plus a few MiB of chunks, and the table (~80 MiB peak).
    Raises ArchiveIndexError (not provided, unparseable), IntegrityError (Hash Sum mismatch,
    size), DownloadError; a failed fetch leaves nothing in the cache.
    """
    origin = f"{suite}/{component}"
    bases = [f"{m.rstrip('/')}/dists/{suite}" for m in mirrors]
    sources = _sources(release, bases, component, arch)
    for key in dict.fromkeys(_cache_key(release, component, arch, s) for s in sources):
        cached = load_cached(cache_dir, key, origin)
        if cached is not None:
            log.debug("%s: index %s from the cache", origin, key[:12])
            return cached
    plain = release.files.get(index_path(component, arch))
    failure = _Failure()
    for source in sources:
        try:
            table = _fetch_one(http, source, plain, cache_dir, origin,
                               _cache_key(release, component, arch, source))  # fmt: skip
            _trim_heap()
            return table
        except _SourceFailed as exc:
            log.info("%s: %s", source.url, exc.reason)
            if exc.kind == "other":
                failure.other.append(exc.error or DownloadError(exc.reason, subject=source.url))
            else:
                getattr(failure, exc.kind).append(exc.reason)
    first = sources[0]
    tried = f"{len(sources)} source(s) tried"
    if failure.mismatch:
        raise IntegrityError(
            f"Hash Sum mismatch: {failure.mismatch[0]} ({tried})",
            subject=first.url,
            hint="the mirror may be mid-sync or tampered with; try again later or another mirror",
        )
    if failure.size:
        raise IntegrityError(
            f"{failure.size[0]} ({tried})",
            subject=first.url,
            hint="mirror sync in progress? try again later or another mirror",
        )
    if failure.corrupt:
        raise ArchiveIndexError(f"{failure.corrupt[0]} ({tried})", subject=first.url)
    if failure.other:
        # HAZARDS 36: no index, no bootstrap (apt would only warn and use old lists).
        error = failure.other[0]
        error.message = f"{error.message} ({tried})"
        error.args = (error.message,)
        raise error
    raise DownloadError(f"cannot fetch the index ({tried})", subject=first.url)


def _trim_heap() -> None:
    """Give the parse's freed heap back to the kernel (glibc's malloc_trim(3); ~2 ms).

    The parse's MiB-sized pieces and chunks come from the brk heap (glibc raises its mmap
    threshold after the first is freed) and the table's small objects land between them, so
    the heap cannot shrink from its top: measured, 16 MB of freed memory stayed resident after
    a cold bookworm load, for the rest of a bootstrap. Elsewhere than glibc: a no-op.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


class _SourceFailed(Exception):
    def __init__(self, kind: str, reason: str, error: RootstrapError | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.error = error


def _download(http: HttpLike, source: _Source) -> bytes:
    """SOURCE's compressed bytes, whole; Http.stream checks size and SHA256 against the Release
    before returning, so nothing is decoded or parsed from unverified bytes. Bounded by the
    signed size (bookworm main: 8.8 MB)."""
    blocks: list[bytes] = []
    received = 0
    expected = source.entry.size
    stream = http.stream(source.url, size=expected, sha256=source.entry.sha256,
                         max_size=expected)  # fmt: skip
    try:
        for block in stream:
            received += len(block)
            blocks.append(block)
    except IntegrityError as exc:
        if "announces" in exc.message or "cap" in exc.message:
            reason = f"unexpected size: {exc.message} (mirror sync in progress?)"
            raise _SourceFailed("size", reason, exc) from exc
        if received != expected or "more than" in exc.message:
            reason = (
                f"unexpected size: received {received} bytes, expected {expected} "
                "(mirror sync in progress?)"
            )
            raise _SourceFailed("size", reason, exc) from exc
        reason = (
            f"{source.path}: expected SHA256 {source.entry.sha256} ({expected} bytes), "
            f"received SHA256 {hashlib.sha256(b''.join(blocks)).hexdigest()} ({received} bytes) "
            f"from {source.url}"
        )
        raise _SourceFailed("mismatch", reason, exc) from exc
    except DownloadError as exc:
        raise _SourceFailed("other", exc.message, exc) from exc
    finally:
        # Closed here whatever happens: an abandoned response generator kept alive by a
        # traceback is otherwise closed by the garbage collector at a random moment, possibly
        # inside httpcore's pool lock in another request (a deadlock seen in tests).
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return b"".join(blocks)


def _fetch_one(
    http: HttpLike,
    source: _Source,
    plain: FileEntry | None,
    cache_dir: Path,
    origin: str,
    key: str,
) -> IndexTable:
    directory = cache_dir / "indexes"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResourceError(f"cannot create the cache: {exc.strerror}",
                            subject=str(directory)) from exc  # fmt: skip
    final = directory / f"{key}.packages"
    tmp = directory / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
    cap = plain.size if plain else min(HARD_CAP, 16 * PIECE + 32 * source.entry.size)
    data = _download(http, source)
    out = open(tmp, "wb")

    def lines_before(offset: int) -> int:
        out.flush()
        with open(tmp, "rb") as f:
            return f.read(offset).count(b"\n")

    builder = _Builder(origin, lines_before)
    inflater = _Inflater(source.kind, data, source.url, cap)
    del data  # the child has its copy; ours goes now
    try:
        chunker = _Chunker(builder, out.write)
        with inflater:
            try:
                for piece in inflater.pieces():
                    chunker.feed((piece,))
                total, digest = inflater.finish()
            except _Capped:
                raise _SourceFailed(
                    "size",
                    f"index decompresses to more than {cap} bytes "
                    f"({'as Release lists' if plain else 'hard limit'}); refusing",
                ) from None
            except _Corrupt as exc:
                raise _SourceFailed(
                    "corrupt",
                    f"{exc} in {source.url} "
                    "(its SHA256 matches the Release: the archive itself is broken)",
                ) from exc
        if plain is not None:
            if total != plain.size:
                raise _SourceFailed(
                    "size", f"unexpected size: decompressed to {total} bytes, Release "
                    f"lists {plain.size} (mirror sync in progress?)")  # fmt: skip
            if digest != plain.sha256:
                raise _SourceFailed(
                    "mismatch", f"{source.path} decompressed: expected SHA256 {plain.sha256}, "
                    f"received SHA256 {digest} from {source.url}")  # fmt: skip
        chunker.feed((), final=True)
        out.flush()
        size = out.tell()
        out.close()
        table = builder.finish(key, size)
        table_tmp = tmp.with_suffix(".table.tmp")
        with open(table_tmp, "wb") as f:
            marshal.dump(table, f)
        os.replace(tmp, final)
        os.replace(table_tmp, directory / f"{key}.table")
    except BaseException:
        out.close()
        for path in (tmp, tmp.with_suffix(".table.tmp")):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        raise
    # The table just built, over the file just renamed (not a second copy read back).
    text = FileText(os.open(final, os.O_RDONLY | os.O_CLOEXEC))
    return IndexTable(table, text, origin, builder.by_name)
