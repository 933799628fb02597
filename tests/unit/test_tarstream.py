"""The strict tar reader: formats it must read exactly, and what it must refuse."""

from __future__ import annotations

import io
import tarfile

import pytest

from rootstrap.errors import UnpackError
from rootstrap.formats.tarstream import Member, TarReader
from tests.support.debs import TarEntry, raw_tar


def read(blob: bytes, **kwargs: object) -> list[tuple[Member, bytes]]:
    reader = TarReader(io.BytesIO(blob), subject="t.tar", **kwargs)  # type: ignore[arg-type]
    return [(m, b"".join(reader.data(m))) for m in reader]


def gnu_tar(*infos: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in infos:
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_gnu_long_names_base256_numbers_and_data() -> None:
    long_name = "./" + "x" * 150 + "/file"
    info = tarfile.TarInfo(long_name)
    info.size, info.uid, info.gid, info.mode, info.mtime = 5, 3_000_000_000, 7, 0o4755, 12345
    link = tarfile.TarInfo("./l")
    link.type, link.linkname = tarfile.SYMTYPE, "/" + "t" * 200
    [(m, data), (lm, _)] = read(gnu_tar((info, b"hello"), (link, b"")))
    assert (m.name, data) == (long_name.encode(), b"hello")
    assert (m.uid, m.gid, m.mode, m.mtime_ns) == (3_000_000_000, 7, 0o4755, 12345 * 10**9)
    assert lm.linkname == link.linkname.encode()
    assert not m.pax


def test_ustar_prefix_field() -> None:
    name = "./" + "/".join(["dir"] * 40) + "/f"  # > 100 bytes, fits prefix + name
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"z"))
    [(m, data)] = read(out.getvalue())
    assert m.name == name.encode() and data == b"z"


def test_pax_records_when_allowed() -> None:
    entry = TarEntry(
        "./short",
        b"abc",
        pax={
            "path": "./caf\xe9-long",
            "mtime": "1700000000.25",
            "uid": "70000",
            "SCHILY.xattr.user.k": b"\x00\xffbin",
        },
    )
    [(m, _)] = read(raw_tar([entry]), allow_pax=True)
    assert m.name == "./caf\xe9-long".encode()
    assert m.mtime_ns == 1_700_000_000_250_000_000 and m.uid == 70000
    assert m.xattrs == {b"user.k": b"\x00\xffbin"} and m.pax
    with pytest.raises(UnpackError, match="PAX extended headers are not allowed"):
        read(raw_tar([entry]))


def test_signed_checksum_accepted() -> None:
    block = bytearray(raw_tar([TarEntry("./\xe9\xe9", b"x")], end=False)[:512])
    signed = sum(b if b < 128 else b - 256 for b in block[:148] + block[156:]) + 256
    block[148:156] = f"{signed:06o}".encode() + b"\0 "
    blob = bytes(block) + b"x" + bytes(511) + bytes(1024)
    assert read(blob)[0][1] == b"x"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:124] + b"0000000_777\0" + b[136:], "bad numeric field"),
        (lambda b: b[:100] + b"+0000644" + b[108:], "bad numeric field"),
    ],
)
def test_numbers_are_octal_only(mutate, message) -> None:  # type: ignore[no-untyped-def]
    block = bytearray(mutate(raw_tar([TarEntry("./f", b"x")])[:512]))
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}".encode() + b"\0 "
    with pytest.raises(UnpackError, match=message):
        read(bytes(block) + bytes(2048))


def test_cap_counts_decompressed_bytes() -> None:
    blob = raw_tar([TarEntry(f"./f{i}", b"y" * 1000) for i in range(10)])
    read(blob, max_bytes=len(blob) + 10)
    with pytest.raises(UnpackError, match="beyond the cap of 5000 bytes"):
        read(blob, max_bytes=5000)


def test_skipping_unread_data_keeps_the_stream_aligned() -> None:
    blob = raw_tar([TarEntry("./a", b"A" * 3000), TarEntry("./b", b"B" * 10)])
    reader = TarReader(io.BytesIO(blob), subject="t.tar")
    names = []
    for member in reader:
        names.append(member.name)
        if member.name == b"./b":
            assert b"".join(reader.data(member)) == b"B" * 10
    assert names == [b"./a", b"./b"]
