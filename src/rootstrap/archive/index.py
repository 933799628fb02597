"""Packages indexes parsed fast into a compact table (the table the cache stores).

Parsing (docs/decisions.md, "Index": python-debian takes 7.5–8.9 s and 473 MiB for bookworm main).
The parse builds a compact table: per stanza its name, version, architecture and byte range,
plus Provides, Priority and Essential. A canonical Debian index is read with two C-speed regex
scans per chunk (whole stanzas with Package/Version/Architecture, whose matches must tile the
chunk; Provides/Priority/Essential in any spelling), the per-stanza work done by map() over C
methods; a chunk that is not canonical (odd case, blank-line runs, fields out of Debian's
order) goes through the general line parser instead, so odd input gives the same table, only
slower (HAZARDS 22; CRLF and whitespace-only lines are normalised first, by :class:`Text`).
Stanzas become :class:`~rootstrap.archive.packages.Package` objects only when asked for, so a
line that is not a field is reported (with its line number) when its stanza is first used.
Both paths agree with python-debian field by field on the whole bookworm main index
(tests/e2e/test_index_deb822.py); :func:`parse_stanza` documents where they differ on purpose.

This module knows text and tables only: where the text comes from is
:mod:`rootstrap.archive.indexfetch` (download, verification, the cache) and
:mod:`rootstrap.archive.inflate` (decompression in a forked child), which feed it through
:class:`Chunker` and :class:`Builder`.
"""

from __future__ import annotations

import logging
import os
import re
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from itertools import compress, repeat
from typing import Any, Final, cast

from rootstrap.archive.packages import (
    ARCH_RE,
    NAME_RE,
    VERSION_RE,
    Package,
    PackageSource,
    parse_provides,
)
from rootstrap.errors import ArchiveIndexError

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "Builder",
    "Chunker",
    "FileText",
    "IndexTable",
    "Text",
    "parse_index_bytes",
    "parse_stanza",
]

FORMAT: Final = 2
CHUNK: Final = 512 << 10  # text parsed per step: short, so the decoder's pipe is drained often

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

    The index parser's own piece, not :mod:`rootstrap.formats.deb822` (the reader of every
    other deb822 file): it runs for each Package materialised and on the slow path, where the
    reader costs ~7x as much (measured ~35 against ~250 µs a stanza on a loaded machine). What
    it gives differs from python-debian's reading on purpose, and tests/e2e/test_index_deb822.py
    checks that nothing else does, on the whole bookworm main index: a folded relation field
    (RELATIONS) reads as one line joined by spaces, any other folded value loses each
    continuation line's trailing whitespace, names take the archive's spelling (CANONICAL), and
    a line that is not UTF-8 is read as latin-1.
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


class Builder:
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


class Text:
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


class Chunker:
    """Cuts normalised text at stanza boundaries into the builder, writing it to SINK.

    A chunk is cut between the two newlines of a blank line, so every chunk after the first
    starts with the newline that the fast path's patterns (``\\nPackage:``) expect."""

    def __init__(self, builder: Builder, sink: Callable[[bytes], Any] | None) -> None:
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
    builder = Builder(origin, lambda offset: b"".join(parts)[:offset].count(b"\n"))
    normaliser = Text()
    chunker = Chunker(builder, parts.append)
    chunker.feed(normaliser.feed(data, final=True), final=True)
    text = b"".join(parts)
    table = builder.finish(key, len(text))
    return IndexTable(table, text, origin, builder.by_name)
