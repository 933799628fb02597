"""A .deb reader of our own: the ar container, ``control.tar.*`` and a streaming ``data.tar.*``.

No host dpkg is needed, and nothing reads a whole file: the ar headers are read with ``pread``,
members are decompressed as streams (gzip, xz, lzma, bzip2 via the standard library; zstd, which
Ubuntu uses, via the ``zstandard`` package). The format rules are deb(5)'s, enforced strictly
because apt's CVE-2020-3810 and CVE-2020-27350 came from lenient ar parsing (HAZARDS 57):

- magic ``!<arch>\\n``, common ar headers only: no GNU ``/``-names, no BSD ``#1/`` long names,
  decimal sizes of at most 10 digits that fit in the file;
- ``debian-binary`` first, major version 2; then ``control.tar[.gz|.xz|.zst]`` (at most
  64 MiB, apt's limit), then ``data.tar[.gz|.xz|.zst|.bz2|.lzma]``; members whose names start
  with ``_`` may sit between them and are ignored (deb(5)); anything after ``data.tar`` is
  ignored; anything else in the middle is an error.

A truncated xz, gzip or bzip2 stream raises at its end; zstandard's stream reader ends quietly
at a truncated frame, so a zstd member's frames are walked first (block headers only, a few
preads per MiB) and must end exactly at the member's end (HAZARDS 59: an error, and no spin,
unlike dpkg's CVE-2026-2219).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rootstrap.errors import DebError
from rootstrap.formats import deb822
from rootstrap.formats.tarstream import DIRECTORY, REGULAR, TarReader

AR_MAGIC = b"!<arch>\n"
AR_HEADER = 60
#: apt's limit for control.tar (apt-pkg/deb/debfile.cc), compressed and uncompressed.
CONTROL_MAX = 64 << 20
DEBIAN_BINARY_MAX = 4096
CONTROL_SUFFIXES = ("", ".gz", ".xz", ".zst")
DATA_SUFFIXES = ("", ".gz", ".xz", ".zst", ".bz2", ".lzma")
#: Control members dpkg knows (dpkg-deb(1)); others are kept too, by name.
SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "config")


@dataclass(frozen=True, slots=True)
class ArMember:
    name: str
    offset: int  # of the data, in the file
    size: int


@dataclass(frozen=True)
class Control:
    """The control part of a .deb.

    ``fields``: the control stanza in file order; a multi-line value keeps its continuation
    lines (``"first\\n second"``, or ``"\\n line"`` when the first line is empty).
    ``members``: every file of control.tar by bare name (``control``, ``md5sums``,
    ``conffiles``, ``postinst``, ``triggers``, ``shlibs``, ...) as bytes.
    """

    fields: Mapping[str, str]
    members: Mapping[str, bytes]

    @property
    def package(self) -> str:
        return self.fields["Package"]

    @property
    def installed_size(self) -> int | None:
        """Installed-Size in KiB, or None when absent or not a number."""
        value = self.fields.get("Installed-Size", "").strip()
        return int(value) if value.isdigit() else None

    @property
    def scripts(self) -> dict[str, bytes]:
        """The maintainer scripts present (preinst, postinst, prerm, postrm, config)."""
        return {name: self.members[name] for name in SCRIPTS if name in self.members}


class _Section(io.RawIOBase):
    """Bytes [offset, offset+size) of FD, read with pread; a short read is a truncated file."""

    def __init__(self, fd: int, offset: int, size: int, subject: str, member: str) -> None:
        self._fd, self._pos, self._end = fd, offset, offset + size
        self._subject, self._member = subject, member

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._end - self._pos)
        if want <= 0:
            return 0
        data = os.pread(self._fd, want, self._pos)
        if not data:
            raise DebError(f"invalid .deb: {self._member} is truncated", subject=self._subject)
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n


def _decompressor(raw: _Section, suffix: str) -> BinaryIO:
    """A buffered decompressing reader over RAW for the member suffix."""
    buffered = io.BufferedReader(raw, 1 << 16)
    if suffix == "":
        return buffered
    if suffix == ".gz":
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if suffix == ".xz":
        return lzma.LZMAFile(buffered, format=lzma.FORMAT_XZ)  # type: ignore[return-value]
    if suffix == ".lzma":
        return lzma.LZMAFile(buffered, format=lzma.FORMAT_ALONE)  # type: ignore[return-value]
    if suffix == ".bz2":
        return bz2.BZ2File(buffered)  # type: ignore[return-value]
    if suffix == ".zst":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(
            buffered, read_size=1 << 16, read_across_frames=True
        )
        # Buffered so the tar reader's 512-byte reads do not each cross into C.
        return io.BufferedReader(reader, 1 << 17)
    raise AssertionError(suffix)


def _parse_control(text: bytes, subject: str) -> dict[str, str]:
    """The fields of a control file (one paragraph, rootstrap.formats.deb822), as spelled there."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DebError(f"invalid .deb: control is not UTF-8 ({exc})", subject=subject) from None
    try:
        found = deb822.parse(decoded, max_paragraphs=1)
    except deb822.Deb822Error as exc:
        reason = {
            "continuation": f"control line {exc.line} continues nothing",
            "field": f"control line {exc.line} is not a field",
            "duplicate": f"control field {exc.name!r} given twice (line {exc.line})",
            "paragraphs": "control has more than one stanza",
        }[exc.kind]
        raise DebError(f"invalid .deb: {reason}", subject=subject) from None
    fields = dict(found[0]) if found else {}
    if "Package" not in fields:
        raise DebError("invalid .deb: control has no Package field", subject=subject)
    return fields


class DebFile:
    """An opened, structurally validated .deb. Cheap: only the ar headers have been read."""

    def __init__(self, path: Path, members: dict[str, ArMember], control: str, data: str):
        self.path = path
        self.subject = path.name
        self.members = members
        self.control_member = control
        self.data_member = data

    @property
    def data_compression(self) -> str:
        return self.data_member[len("data.tar") :].lstrip(".") or "none"

    def _open_fd(self) -> int:
        try:
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise DebError(f"cannot open: {exc.strerror}", subject=str(self.path)) from exc

    def control(self) -> Control:
        """Read and parse control.tar. Cost: one small decompression (≤ 64 MiB, capped)."""
        member = self.members[self.control_member]
        fd = self._open_fd()
        try:
            raw = _Section(fd, member.offset, member.size, self.subject, member.name)
            stream = _decompressor(raw, member.name[len("control.tar") :])
            files: dict[str, bytes] = {}
            reader = TarReader(stream, subject=self.subject, max_bytes=CONTROL_MAX, error=DebError)
            for tm in reader:
                name = tm.name.decode("utf-8", "surrogateescape")
                bare = name[2:] if name.startswith("./") else name
                if tm.type == DIRECTORY and bare.strip("/") in ("", "."):
                    continue
                if tm.type not in REGULAR or not bare or "/" in bare or bare in ("..", "."):
                    raise reader.fail(f"unexpected {tm.type_name()} in {member.name}")
                files[bare] = b"".join(reader.data(tm))
        finally:
            os.close(fd)
        if "control" not in files:
            raise DebError(f"invalid .deb: {member.name} has no control file", subject=self.subject)
        return Control(_parse_control(files["control"], self.subject), files)

    @contextlib.contextmanager
    def data(self) -> Iterator[BinaryIO]:
        """The decompressed data.tar as a stream (read it with TarReader); closed on exit."""
        member = self.members[self.data_member]
        fd = self._open_fd()
        try:
            if member.name.endswith(".zst"):
                _check_zstd_frames(fd, member, self.subject)
            raw = _Section(fd, member.offset, member.size, self.subject, member.name)
            stream = _decompressor(raw, member.name[len("data.tar") :])
            try:
                yield stream
            finally:
                stream.close()
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def tar(self, max_bytes: int | None = None) -> Iterator[TarReader]:
        """The data.tar's members: ``for m in reader: reader.data(m)``; strict (no PAX), capped
        at MAX_BYTES decompressed bytes. Errors are UnpackError naming this .deb and the member."""
        with self.data() as stream:
            yield TarReader(stream, subject=self.subject, max_bytes=max_bytes)


_ZSTD_MAGIC = 0xFD2FB528
_FCS_SIZES = (0, 2, 4, 8)
_DICT_SIZES = (0, 1, 2, 4)


def _check_zstd_frames(fd: int, member: ArMember, subject: str) -> None:
    """Walk the zstd frames of MEMBER (RFC 8878 §3.1) by their block headers; they must end
    exactly at the member's end. Cost: one pread per block (≤ 128 KiB of output each)."""
    pos, end = member.offset, member.offset + member.size

    def need(n: int) -> bytes:
        data = os.pread(fd, n, pos) if pos + n <= end else b""
        if len(data) != n:
            raise DebError(
                f"invalid .deb: {member.name} is a truncated zstd stream", subject=subject
            )
        return data

    while pos < end:
        magic = int.from_bytes(need(4), "little")
        pos += 4
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
            pos += 4 + int.from_bytes(need(4), "little")
            continue
        if magic != _ZSTD_MAGIC:
            raise DebError(f"invalid .deb: {member.name} is not zstd data", subject=subject)
        fhd = need(1)[0]
        pos += 1
        single = fhd >> 5 & 1
        fcs = _FCS_SIZES[fhd >> 6] or (1 if single else 0)
        pos += (0 if single else 1) + _DICT_SIZES[fhd & 3] + fcs
        last = 0
        while not last:
            header = int.from_bytes(need(3), "little")
            pos += 3
            last, kind, size = header & 1, header >> 1 & 3, header >> 3
            if kind == 3:
                raise DebError(f"invalid .deb: {member.name}: bad zstd block", subject=subject)
            pos += 1 if kind == 1 else size
        pos += 4 if fhd & 4 else 0  # content checksum
    if pos != end:
        raise DebError(f"invalid .deb: {member.name} is a truncated zstd stream", subject=subject)


def _ar_header(header: bytes, subject: str) -> tuple[str, int]:
    if len(header) != AR_HEADER or header[58:60] != b"`\n":
        raise DebError("invalid .deb: bad ar member header", subject=subject)
    raw_name = header[0:16].rstrip(b" ")
    if raw_name.startswith(b"#1/"):
        raise DebError("invalid .deb: BSD ar long member names are not allowed", subject=subject)
    if raw_name.startswith(b"/"):
        raise DebError("invalid .deb: GNU ar long name or symbol table", subject=subject)
    name_bytes = raw_name.removesuffix(b"/")
    if not name_bytes.strip(b" /"):
        raise DebError("invalid .deb: member name of only spaces or slashes", subject=subject)
    if not all(0x21 <= c <= 0x7E for c in name_bytes):
        raise DebError(f"invalid .deb: bad member name {name_bytes!r}", subject=subject)
    size_field = header[48:58].rstrip(b" ")
    if not size_field or not size_field.isdigit():
        raise DebError(
            f"invalid .deb: member {name_bytes.decode()} has an invalid size {size_field!r}",
            subject=subject,
        )
    return name_bytes.decode("ascii"), int(size_field)


def open_deb(path: Path | str) -> DebFile:
    """Validate PATH's ar structure (deb(5)) and return a DebFile. Raises DebError
    ("invalid .deb: ...") naming the file. Cost: a few preads, independent of the file size."""
    path = Path(path)
    subject = path.name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise DebError(f"cannot open: {exc.strerror}", subject=str(path)) from exc
    try:
        file_size = os.fstat(fd).st_size
        if os.pread(fd, len(AR_MAGIC), 0) != AR_MAGIC:
            raise DebError("invalid .deb: not an ar archive", subject=subject)
        members: dict[str, ArMember] = {}
        order: list[str] = []
        pos = len(AR_MAGIC)
        control = data = ""
        while not data:
            if pos >= file_size:
                missing = "control.tar" if not control else "data.tar"
                raise DebError(f"invalid .deb: no {missing} member", subject=subject)
            name, size = _ar_header(os.pread(fd, AR_HEADER, pos), subject)
            start = pos + AR_HEADER
            if start + size > file_size:
                raise DebError(
                    f"invalid .deb: member {name} of {size} bytes extends past the end of the file",
                    subject=subject,
                )
            if name in members:
                raise DebError(f"invalid .deb: duplicate member {name}", subject=subject)
            members[name] = ArMember(name, start, size)
            order.append(name)
            if len(order) == 1:
                if name != "debian-binary":
                    raise DebError(
                        f"invalid .deb: first member is {name!r}, not debian-binary",
                        subject=subject,
                    )
                _check_version(os.pread(fd, min(size, DEBIAN_BINARY_MAX + 1), start), subject)
            elif name.startswith("_"):
                pass  # deb(5): reserved, to be ignored
            elif not control and name in {f"control.tar{s}" for s in CONTROL_SUFFIXES}:
                if size > CONTROL_MAX:
                    raise DebError(
                        f"invalid .deb: {name} of {size} bytes exceeds 64 MiB", subject=subject
                    )
                control = name
            elif control and name in {f"data.tar{s}" for s in DATA_SUFFIXES}:
                data = name
            else:
                raise DebError(f"invalid .deb: unexpected member {name!r}", subject=subject)
            pos = start + size + (size & 1)
    finally:
        os.close(fd)
    return DebFile(path, members, control, data)


def _check_version(content: bytes, subject: str) -> None:
    if len(content) > DEBIAN_BINARY_MAX:
        raise DebError("invalid .deb: debian-binary is too large", subject=subject)
    first = content.split(b"\n", 1)[0].strip()
    major, _, minor = first.partition(b".")
    if not major.isdigit() or (minor and not minor.isdigit()):
        raise DebError(f"invalid .deb: bad format version {first!r}", subject=subject)
    if int(major) != 2:
        raise DebError(
            f"invalid .deb: format version {first.decode()} is not supported (major must be 2)",
            subject=subject,
        )
