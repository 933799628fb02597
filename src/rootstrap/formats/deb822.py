"""The one deb822(5) reader: python-debian's parser behind a strict check of every line.

Used for the small files where no throughput budget applies: a Release (only the bytes the
signature verifier returned, :mod:`rootstrap.archive.release`), a .deb's control file
(:mod:`rootstrap.formats.deb`) and apt's ``.sources`` files (:mod:`rootstrap.recipes`). The
Packages indexes have their own parser, measured 10x faster on bookworm main
(:mod:`rootstrap.archive.index`), and a test that it agrees with python-debian field by field
on the whole bookworm main index (tests/e2e/test_index_deb822.py).

python-debian (``debian.deb822.Deb822``) is lenient where rootstrap must not be, so the lines
are classified here first and it only ever sees a paragraph that passed:

* it silently drops a line that is neither a field nor a continuation, and a continuation line
  with no field before it: here both are errors (:class:`Deb822Error`, with the line number);
* it keeps the last of a field given twice: here that is an error (deb822(5) forbids it);
* it unwraps OpenPGP armor it meets (``-----BEGIN PGP SIGNED MESSAGE-----`` and what follows),
  which would hide a signed block nested in a verified body: a field name may not begin with
  ``-`` (deb822(5)), so an armor line is an error here and never reaches it;
* it skips ``#`` lines everywhere: comments are accepted here only where the format has them
  (``comments=True``, apt's ``.sources``), and then also when indented, so an indented comment
  never becomes part of a value.

What python-debian gives back: each paragraph as a mapping with case-insensitive keys that keeps
the file's spelling and order; a value is its first line stripped, then ``"\\n"`` and each
continuation line as it stands (leading whitespace kept, trailing ``\\r`` removed).

Cost (bookworm's InRelease, 149 kB, 1557 lines, on the shared 2-core VM of 2026-12-08, best
of 50): this reader 3.0 ms where the hand-written one it replaced took 2.4 ms (parse_release
5.6 ms against 4.6 ms). python-debian's own ``Release`` class, which also splits the checksum
lists into dicts, takes 15 ms (35 ms under load), so it is not used: release.py reads the
SHA256 lines itself. A control file or one index stanza: ~250 µs (python-debian alone ~160 µs,
the index's parse_stanza ~35 µs). Importing ``debian.deb822`` costs ~20 ms on top of what the
archive layer imports anyway (85 ms alone); it is imported with this module, not on first use,
because the unpack workers are forked and a child must not import (a parent thread may hold an
import lock at fork time; see rootstrap.unpack.extract). Nothing on the run/boot path, nor any
command's start-up, imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal, cast

from debian.deb822 import Deb822

__all__ = ["Deb822Error", "Paragraph", "parse"]

#: One paragraph: case-insensitive keys in the file's spelling, values as python-debian has them.
Paragraph = Mapping[str, str]

Kind = Literal["continuation", "field", "duplicate", "paragraphs"]

# deb822(5): a field name is US-ASCII from "!" to "~" without ":", and does not begin with "#"
# or "-".
_FIELD: Final = re.compile(r"[!-\"$-,.-9;-~][!-9;-~]*:")


class Deb822Error(ValueError):
    """A line the reader refuses; the caller words the message for its file.

    KIND: ``continuation`` (a continuation line before any field), ``field`` (a line that is not
    a field), ``duplicate`` (field NAME given twice in a paragraph), ``paragraphs`` (more
    paragraphs than allowed). LINE counts from 1.
    """

    def __init__(self, kind: Kind, line: int, name: str = "") -> None:
        super().__init__(f"line {line}: {kind} {name}".rstrip())
        self.kind: Kind = kind
        self.line = line
        self.name = name


def parse(
    text: str, *, comments: bool = False, max_paragraphs: int | None = None
) -> list[Paragraph]:
    """The paragraphs of TEXT. Blank and whitespace-only lines separate them; CRLF is accepted.

    COMMENTS: lines whose first non-blank character is ``#`` are dropped (apt's ``.sources``);
    otherwise they are not fields. MAX_PARAGRAPHS: a further paragraph is an error. Raises
    :class:`Deb822Error`.
    """
    paragraphs: list[list[str]] = []
    current: list[str] | None = None
    seen: set[str] = set()
    for number, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip(" \t"):
            current = None
            continue
        if comments and line.lstrip(" \t").startswith("#"):
            continue
        if line[0] in " \t":
            if current is None:
                raise Deb822Error("continuation", number)
            current.append(line)
            continue
        match = _FIELD.match(line)
        if match is None:
            raise Deb822Error("field", number)
        if current is None:
            if max_paragraphs is not None and len(paragraphs) >= max_paragraphs:
                raise Deb822Error("paragraphs", number)
            current = []
            paragraphs.append(current)
            seen = set()
        name = match.group()[:-1]
        if name.lower() in seen:
            raise Deb822Error("duplicate", number, name)
        seen.add(name.lower())
        current.append(line)
    return [cast(Paragraph, Deb822(lines)) for lines in paragraphs]
