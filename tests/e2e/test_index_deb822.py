"""The fast Packages parser against python-debian, field by field, on the whole bookworm main index.

rootstrap.archive.index parses Packages indexes itself (10x faster than python-debian:
bench/index_load.py), in two pieces: the fast path (``Builder``: two regex scans per chunk that
record each stanza's byte range and the columns read without parsing a stanza: Package, Version,
Architecture, Provides, Priority, Essential) and ``parse_stanza`` (every field of one stanza,
when its Package is asked for). Both are compared here with python-debian's own parser
(``Packages.iter_paragraphs``, ``use_apt_pkg=False``) over the bookworm main amd64 index of the
host's Debian mirror: the same number of stanzas, in the same order, and for each stanza the
columns, then every field, names in order and values.

parse_stanza's documented normalisations (its docstring), applied to python-debian's value
before comparing and counted (the counts are printed; ``-s`` shows them):

1. a relation field (Depends, Provides, ...) folded over several lines reads as one line, its
   parts joined by one space; python-debian keeps ``"\\n"`` and the continuation line as is;
2. any other folded value (Description) loses each continuation line's trailing whitespace;
   python-debian keeps it;
3. field names take the archive's spelling (``CANONICAL``) whatever their case in the file;
   python-debian keeps the file's. Bookworm spells every name canonically, so names are
   compared as they are.

On bookworm main (2026-12-08: 63,440 stanzas, 1,090,783 fields) 1 and 2 never apply: no field
is folded (an index carries only a Description's first line; the rest is in Translation-*).

Private attributes of IndexTable are read on purpose: the columns and byte ranges are what is
under test, and no public method hands them out unparsed.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from debian.deb822 import Packages, PkgRelation

from rootstrap import recipes
from rootstrap.archive import Archive, open_archive
from rootstrap.archive.http import Http
from rootstrap.archive.index import RELATIONS, IndexTable, parse_stanza
from rootstrap.archive.indexfetch import index_path
from tests.support.realdebs import TEST_CACHE

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def archive() -> Archive:
    mirror = recipes.host_mirror("debian")
    if mirror is None:
        pytest.skip("the host's apt sources name no Debian mirror")
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    with Http() as http:
        return open_archive(
            recipes.load("bookworm"), mirrors=[mirror], arch="amd64", http=http,
            cache_dir=TEST_CACHE, components=["main"],
        )  # fmt: skip


def _expected(name: str, value: str, counts: Counter[str]) -> str:
    """python-debian's VALUE as parse_stanza gives it (the normalisations of the docstring)."""
    if "\n" not in value:
        return value
    first, *rest = value.split("\n")
    if name in RELATIONS:
        counts["relation fields folded onto one line"] += 1
        joined = first
        for line in rest:
            joined = f"{joined} {line.strip()}".strip()
        return joined
    trimmed = [line.rstrip() for line in rest]
    if trimmed != rest:
        counts["folded values with trailing whitespace dropped"] += 1
    return "\n".join([first, *trimmed])


def _provides(value: str) -> list[tuple[str, str | None]]:
    """python-debian's reading of a Provides value: (name, version of "(= version)")."""
    found = []
    for (item,) in PkgRelation.parse_relations(value):  # Provides has no alternatives
        version = item["version"]
        found.append((item["name"], version[1] if version else None))
    return found


def test_fast_parser_agrees_with_python_debian_on_bookworm_main(archive: Archive) -> None:
    (table,) = archive.tables
    assert isinstance(table, IndexTable)
    # The cached text is the decompressed index after rootstrap's normalisation (CRLF,
    # whitespace-only lines): its SHA256 being the Release's proves it is the mirror's bytes.
    text_path = TEST_CACHE / "indexes" / f"{table.key}.packages"
    text = text_path.read_bytes()
    entry = archive.release.files[index_path("main", "amd64")]
    assert (len(text), hashlib.sha256(text).hexdigest()) == (entry.size, entry.sha256)
    # parse_stanza reads a non-UTF-8 line as latin-1 where python-debian guesses (chardet):
    # a case the comparison below would not cover, so it must not arise.
    text.decode("utf-8")

    # The fast path's columns, by stanza.
    provides: dict[int, list[tuple[str, str | None]]] = {}
    for virtual, found in table._provides.items():
        for i, version in found:
            provides.setdefault(i, []).append((virtual, version))
    priority: dict[int, str] = {}
    for value, ids in table._priority.items():
        for i in memoryview(ids).cast("I"):
            priority[i] = value
    essential = set(table._essential)

    counts: Counter[str] = Counter()
    i = -1
    with open(text_path, "rb") as f:
        for i, theirs in enumerate(Packages.iter_paragraphs(f, use_apt_pkg=False)):
            assert i < len(table), "python-debian found more stanzas"
            where = f"stanza {i} ({theirs.get('Package')})"
            # Columns: read by the solver without parsing the stanza.
            assert (table._names[i], table._versions[i], table._arch(i)) == (
                theirs["Package"], theirs["Version"], theirs["Architecture"]
            ), where  # fmt: skip
            assert sorted(provides.get(i, [])) == sorted(
                _provides(theirs["Provides"]) if "Provides" in theirs else []
            ), where
            assert priority.get(i) == theirs.get("Priority"), where
            assert (i in essential) == (theirs.get("Essential") == "yes"), where
            # Every field of the stanza, from the byte range the fast path recorded.
            ours = parse_stanza(text[table._starts[i] : table._ends[i]], where=where)
            assert list(ours) == list(theirs), where
            for name, value in theirs.items():
                assert ours[name] == _expected(name, value, counts), f"{where}: {name}"
            counts["fields"] += len(ours)
    assert i + 1 == len(table), f"python-debian found {i + 1} stanzas, rootstrap {len(table)}"
    assert len(table) > 60_000 and counts["fields"] > 60_000 * 10
    folded = (
        "relation fields folded onto one line",
        "folded values with trailing whitespace dropped",
    )
    print(
        f"\n{len(table)} stanzas, {counts['fields']} fields; "
        + ", ".join(f"{k}: {counts[k]}" for k in folded)
    )
