"""A strict, streaming tar reader: one pass, bounded memory, every oddity an error.

Why not ``tarfile``: in stream mode it ends the archive *silently* at a header with a bad
checksum or a truncated header after the first member (``TarFile.next`` swallows
``InvalidHeaderError`` unless it is at offset 0), treats unknown typeflags as regular files, and
keeps every member it has seen in ``TarFile.members``. A rootfs extractor needs the opposite:
deb(5) says "Unrecognized tar typeflags are considered an error", dpkg's ``tarfn.c`` rejects a
bad checksum, an empty name and the GNU sparse/volume/multivolume/dumpdir types (HAZARDS 56).

Formats read: v7, ustar (with the ``prefix`` field), GNU (``L``/``K`` long names, base-256
numbers) and, only when the caller allows it (import-tar, not .deb), PAX ``x``/``g`` headers
with ``path``, ``linkpath``, ``size``, ``uid``, ``gid``, ``mtime`` and ``SCHILY.xattr.*``.
Names stay bytes, so non-UTF-8 names survive byte-exact (HAZARDS 62).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from rootstrap.errors import RootstrapError, UnpackError

BLOCK = 512
PATH_MAX = 4096  # linux/limits.h, including the NUL
#: A PAX header is a few records; a megabyte is far beyond any honest one.
PAX_MAX = 1 << 20

REGULAR = (b"0", b"\0")
HARDLINK = b"1"
SYMLINK = b"2"
CHAR = b"3"
BLOCKDEV = b"4"
DIRECTORY = b"5"
FIFO = b"6"
#: The member types a filesystem tree is made of; everything else is refused by the extractor.
TREE_TYPES = frozenset((*REGULAR, HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIRECTORY, FIFO))

_DEVICES = (CHAR, BLOCKDEV)
_GNU_LONGNAME = b"L"
_GNU_LONGLINK = b"K"
_PAX_LOCAL = b"x"
_PAX_GLOBAL = b"g"
_TYPE_NAMES = {
    b"S": "GNU sparse file",
    b"V": "GNU volume header",
    b"M": "GNU multivolume continuation",
    b"D": "GNU dumpdir",
    b"N": "GNU old long name",
    b"A": "Solaris ACL",
    b"E": "Solaris extended attributes",
    b"X": "Solaris extended header",
    b"7": "contiguous file",
}
_PAX_RECORD = re.compile(rb"(\d+) ")


@dataclass(slots=True)
class Member:
    """One tar member. ``name``/``linkname`` are raw bytes; ``mtime_ns`` is nanoseconds."""

    name: bytes
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    #: xattr name (bytes, e.g. b"security.capability") -> raw value, from PAX SCHILY.xattr.*
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    #: True when PAX headers (x or g) applied to this member
    pax: bool = False

    @property
    def display(self) -> str:
        """The name for messages (undecodable bytes escaped)."""
        return self.name.decode("utf-8", "backslashreplace")

    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, f"typeflag {self.type!r}")


def _number(field_: bytes) -> int:
    """A numeric header field: octal ASCII (spaces/NULs around) or GNU base-256."""
    if field_ and field_[0] & 0x80:
        value = int.from_bytes(field_[1:], "big")
        if field_[0] == 0xFF:  # negative base-256
            value -= 1 << (8 * (len(field_) - 1))
        return value
    text = field_.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    # int() would also take "_" and "+": only octal digits are a number here.
    if text.translate(None, b"01234567"):
        raise ValueError(f"bad numeric field {field_!r}")
    return int(text, 8)


def _signed_sum(block: bytes) -> int:
    # Some old tars summed signed chars (tarfile accepts both, so do we).
    rest = block[:148] + block[156:]
    return sum(rest) + 256 - 256 * (len(rest) - len(rest.translate(None, bytes(range(128, 256)))))


def _cstr(field_: bytes) -> bytes:
    return field_.split(b"\0", 1)[0]


class TarReader:
    """Iterate the members of the tar stream STREAM; read each member's data before moving on.

    ``max_bytes`` caps the decompressed bytes read (headers, data and padding): a declared size
    past the cap fails before a byte of it is read (HAZARDS 58). Errors are ``error`` (default
    :class:`UnpackError`) with ``subject`` and the member's name in the message. Memory: one
    block plus the caller's chunk; no per-member state is kept.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        subject: str,
        max_bytes: int | None = None,
        allow_pax: bool = False,
        error: type[RootstrapError] = UnpackError,
    ) -> None:
        self._stream = stream
        self.subject = subject
        self.max_bytes = max_bytes
        self.allow_pax = allow_pax
        self._error = error
        self.consumed = 0  # decompressed bytes read so far
        self._pending = 0  # unread data + padding of the current member
        self._current = "(start of archive)"

    # -- errors and raw reads ---------------------------------------------------------------

    def fail(self, message: str, member: str | None = None) -> RootstrapError:
        """An error naming the subject and MEMBER (default: the member being read)."""
        return self._error(f"{member or self._current}: {message}", subject=self.subject)

    def _charge(self, n: int) -> None:
        if self.max_bytes is not None and self.consumed + n > self.max_bytes:
            raise self.fail(
                f"archive expands beyond the cap of {self.max_bytes} bytes"
                " (a decompression bomb, or an Installed-Size that lies)"
            )

    def _read(self, n: int) -> bytes:
        self._charge(n)
        try:
            data = self._stream.read(n)
        except RootstrapError:
            raise
        except (OSError, EOFError, ValueError) as exc:  # lzma/zlib/zstd errors, truncation
            raise self.fail(f"corrupt compressed stream ({exc})") from exc
        except Exception as exc:  # zstandard.ZstdError derives from Exception only
            raise self.fail(f"corrupt compressed stream ({exc})") from exc
        if len(data) != n:
            raise self.fail("truncated archive (unexpected end of data)")
        self.consumed += n
        return data

    def _skip(self, n: int) -> None:
        while n:
            chunk = min(n, 1 << 20)
            self._read(chunk)
            n -= chunk

    # -- members -------------------------------------------------------------------------------

    def data(self, member: Member, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Yield the data of MEMBER (the one just returned) in pieces of at most CHUNK bytes."""
        left = member.size
        while left:
            piece = self._read(min(left, chunk))
            left -= len(piece)
            self._pending -= len(piece)
            yield piece
        pad = self._pending
        self._pending = 0
        if pad:
            self._read(pad)

    def __iter__(self) -> Iterator[Member]:
        pax_global: dict[bytes, bytes] = {}
        pax_local: dict[bytes, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            if self._pending:
                self._skip(self._pending)
                self._pending = 0
            header = self._read_header()
            if header is None:
                if long_name is not None or long_link is not None or pax_local:
                    raise self.fail("archive ends after an extended header")
                self._drain()
                return
            member = self._parse(header)
            kind = member.type
            if kind in (_GNU_LONGNAME, _GNU_LONGLINK):
                if member.size > PATH_MAX:
                    raise self.fail(f"long name of {member.size} bytes exceeds PATH_MAX")
                value = _cstr(b"".join(self._data_raw(member)))
                if kind == _GNU_LONGNAME:
                    long_name = value
                else:
                    long_link = value
                continue
            if kind in (_PAX_LOCAL, _PAX_GLOBAL):
                if member.size > PAX_MAX:
                    raise self.fail(f"PAX header of {member.size} bytes")
                records = self._pax_records(b"".join(self._data_raw(member)))
                (pax_global if kind == _PAX_GLOBAL else pax_local).update(records)
                if kind == _PAX_GLOBAL:
                    pax_global.pop(b"comment", None)
                continue
            if long_name is not None:
                member.name = long_name
            if long_link is not None:
                member.linkname = long_link
            if pax_global or pax_local:
                self._apply_pax(member, {**pax_global, **pax_local})
            long_name = long_link = None
            pax_local = {}
            self._current = member.display or "(empty name)"
            if member.pax and not self.allow_pax:
                raise self.fail("PAX extended headers are not allowed here (dpkg rejects them)")
            if not member.name:
                raise self.fail("empty member name")
            if len(member.name) >= PATH_MAX or len(member.linkname) >= PATH_MAX:
                raise self.fail("name longer than PATH_MAX")
            self._charge(member.size)  # fail before reading a bomb's first byte
            self._pending = member.size + (-member.size % BLOCK)
            yield member

    def _data_raw(self, member: Member) -> Iterator[bytes]:
        self._pending = member.size + (-member.size % BLOCK)
        return self.data(member)

    def _read_header(self) -> bytes | None:
        try:
            block = self._stream.read(BLOCK)
        except (OSError, EOFError, ValueError) as exc:
            raise self.fail(f"corrupt compressed stream ({exc})") from exc
        except RootstrapError:
            raise
        except Exception as exc:
            raise self.fail(f"corrupt compressed stream ({exc})") from exc
        if len(block) != BLOCK:
            raise self.fail("truncated archive (no end-of-archive marker)")
        self._charge(BLOCK)
        self.consumed += BLOCK
        if block == bytes(BLOCK):
            return None
        return block

    def _drain(self) -> None:
        """Read to the end of the stream (within the cap) so the decompressor checks its CRC."""
        while True:
            try:
                chunk = self._stream.read(1 << 16)
            except RootstrapError:
                raise
            except Exception as exc:
                raise self.fail(f"corrupt compressed stream ({exc})", "(end of archive)") from exc
            if not chunk:
                return
            self._charge(len(chunk))
            self.consumed += len(chunk)

    def _parse(self, block: bytes) -> Member:
        name = _cstr(block[0:100])
        shown = name.decode("utf-8", "backslashreplace") or "(empty name)"
        stored = block[148:156]
        try:
            checksum = _number(stored)
        except ValueError:
            checksum = -1
        unsigned = sum(block) - sum(stored) + 256  # the checksum field counts as 8 spaces
        if checksum != unsigned and checksum != _signed_sum(block):
            raise self.fail("invalid tar header checksum", shown)
        magic = block[257:263]
        if magic == b"ustar\x00" and block[345:500].strip(b"\0"):
            # POSIX ustar: a prefix field precedes the name. GNU ("ustar  ") uses those bytes
            # for atime/ctime, so only the POSIX magic means "prefix".
            name = _cstr(block[345:500]) + b"/" + name
        try:
            member = Member(
                name=name,
                type=block[156:157],
                mode=_number(block[100:108]),
                uid=_number(block[108:116]),
                gid=_number(block[116:124]),
                size=_number(block[124:136]),
                mtime_ns=_number(block[136:148]) * 1_000_000_000,
                linkname=_cstr(block[157:257]),
                devmajor=_number(block[329:337]) if block[156:157] in _DEVICES else 0,
                devminor=_number(block[337:345]) if block[156:157] in _DEVICES else 0,
            )
        except ValueError as exc:
            raise self.fail(str(exc), shown) from None
        if member.size < 0 or member.uid < 0 or member.gid < 0:
            raise self.fail("negative size or owner", shown)
        return member

    def _pax_records(self, data: bytes) -> dict[bytes, bytes]:
        records: dict[bytes, bytes] = {}
        pos = 0
        data = data.rstrip(b"\0")
        while pos < len(data):
            match = _PAX_RECORD.match(data, pos)
            if not match:
                raise self.fail("malformed PAX header")
            length = int(match.group(1))
            end = pos + length
            record = data[match.end() : end]
            if length <= 0 or end > len(data) or not record.endswith(b"\n") or b"=" not in record:
                raise self.fail("malformed PAX header record")
            key, value = record[:-1].split(b"=", 1)
            records[key] = value
            pos = end
        return records

    def _apply_pax(self, member: Member, records: dict[bytes, bytes]) -> None:
        member.pax = True
        try:
            for key, value in records.items():
                if key == b"path":
                    member.name = value
                elif key == b"linkpath":
                    member.linkname = value
                elif key == b"size":
                    member.size = int(value)
                elif key == b"uid":
                    member.uid = int(value)
                elif key == b"gid":
                    member.gid = int(value)
                elif key == b"mtime":
                    member.mtime_ns = _pax_time_ns(value)
                elif key.startswith(b"SCHILY.xattr."):
                    member.xattrs[key[len(b"SCHILY.xattr.") :]] = value
                elif key.startswith(b"GNU.sparse."):
                    raise self.fail("GNU sparse file (PAX)", member.display)
        except ValueError as exc:
            raise self.fail(f"bad PAX value ({exc})", member.display) from None
        if member.size < 0 or member.uid < 0 or member.gid < 0:
            raise self.fail("negative size or owner", member.display)


def _pax_time_ns(value: bytes) -> int:
    text = value.decode("ascii")
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("-").partition(".")
    frac = (frac + "000000000")[:9]
    return sign * (int(whole or "0") * 1_000_000_000 + int(frac))
