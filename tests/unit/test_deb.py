"""The .deb reader: ar structure (deb(5)), control parsing, compressions, limits."""

from __future__ import annotations

import io
import lzma
import time
from pathlib import Path

import pytest
import zstandard

from rootstrap.errors import DebError, UnpackError
from rootstrap.formats.deb import CONTROL_MAX, open_deb
from tests.support.debs import (
    DebSpec,
    TarEntry,
    ar_member,
    build_deb,
    compress,
    crafted_deb,
    raw_deb,
    raw_tar,
    read_ar,
)

CTL = compress(raw_tar([TarEntry("./", type="dir"), TarEntry("./control", b"Package: x\n")]), "gz")
DATA = compress(raw_tar([TarEntry("./", type="dir"), TarEntry("./f", b"hi")]), "gz")


def write(tmp_path: Path, blob: bytes, name: str = "x_1_all.deb") -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def data_names(path: Path) -> list[bytes]:
    deb = open_deb(path)
    with deb.tar() as reader:
        names = []
        for member in reader:
            names.append(member.name)
            b"".join(reader.data(member))
        return names


@pytest.mark.parametrize("compression", ["xz", "gzip", "zstd", "none"])
def test_real_deb_every_compression(tmp_path: Path, compression: str) -> None:
    spec = DebSpec(
        "hello",
        "1.0-1",
        files={"usr/bin/hello": b"#!/bin/sh\necho hi\n"},
        modes={"usr/bin/hello": 0o755},
        scripts={"postinst": "#!/bin/sh\nexit 0\n", "triggers": "interest-noawait /usr\n"},
        conffiles=(),
        description="a greeting\n second line\n .\n third",
    )
    path = build_deb(spec, tmp_path, compression)  # type: ignore[arg-type]
    deb = open_deb(path)
    control = deb.control()
    assert control.package == "hello"
    assert control.fields["Version"] == "1.0-1"
    assert control.fields["Description"] == "a greeting\n second line\n .\n third"
    assert control.scripts == {"postinst": b"#!/bin/sh\nexit 0\n"}
    assert control.members["triggers"] == b"interest-noawait /usr\n"
    assert control.installed_size == spec.installed_size()
    assert b"./usr/bin/hello" in data_names(path)


@pytest.mark.parametrize("compression", ["bz2", "lzma"])
def test_other_data_compressions(tmp_path: Path, compression: str) -> None:
    import bz2

    tar = raw_tar([TarEntry("./", type="dir"), TarEntry("./f", b"x")])
    blob = bz2.compress(tar) if compression == "bz2" else lzma.compress(tar, lzma.FORMAT_ALONE)
    path = write(
        tmp_path,
        raw_deb(
            [
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", CTL),
                (f"data.tar.{compression}", blob),
            ]
        ),
    )
    assert data_names(path) == [b"./", b"./f"]


def test_underscore_members_are_ignored_and_trailing_members_too(tmp_path: Path) -> None:
    blob = raw_deb(
        [
            ("debian-binary", b"2.0\n"),
            ("_gpgorigin", b"sig"),
            ("control.tar.gz", CTL),
            ("data.tar.gz", DATA),
            ("whatever", b"future member"),
        ]
    )
    assert data_names(write(tmp_path, blob)) == [b"./", b"./f"]


def test_minor_version_and_extra_lines_tolerated(tmp_path: Path) -> None:
    blob = raw_deb(
        [("debian-binary", b"2.9\nmore\n"), ("control.tar.gz", CTL), ("data.tar.gz", DATA)]
    )
    assert open_deb(write(tmp_path, blob)).control().package == "x"


BAD_AR = {
    "not ar": b"PK\x03\x04" + bytes(100),
    "first member not debian-binary": raw_deb([("control.tar.gz", CTL), ("data.tar.gz", DATA)]),
    "major version 3": raw_deb(
        [("debian-binary", b"3.0\n"), ("control.tar.gz", CTL), ("data.tar.gz", DATA)]
    ),
    "version garbage": raw_deb(
        [("debian-binary", b"two\n"), ("control.tar.gz", CTL), ("data.tar.gz", DATA)]
    ),
    "name of spaces": raw_deb([ar_member("debian-binary", b"2.0\n"), ar_member(b"   ", b"x")]),
    "name of slashes": raw_deb([ar_member("debian-binary", b"2.0\n"), ar_member(b"//", b"x")]),
    "negative size": raw_deb([ar_member("debian-binary", b"2.0\n", size=-1)]),
    "size overflowing the file": raw_deb([ar_member("debian-binary", b"2.0\n", size="9999999999")]),
    "hex size": raw_deb([ar_member("debian-binary", b"2.0\n", size="0x4")]),
    "bsd long name": raw_deb(
        [ar_member("debian-binary", b"2.0\n"), ar_member("#1/200", b"control.tar.gz")]
    ),
    "bsd long name longer than member": raw_deb(
        [ar_member("debian-binary", b"2.0\n"), ar_member("#1/99999", b"abc")]
    ),
    "gnu long name table": raw_deb(
        [ar_member("debian-binary", b"2.0\n"), ar_member("//", b"x/\n")]
    ),
    "gnu long name ref": raw_deb([ar_member("debian-binary", b"2.0\n"), ar_member("/0", b"x")]),
    "unknown member in the middle": raw_deb(
        [
            ("debian-binary", b"2.0\n"),
            ("evil", b"x"),
            ("control.tar.gz", CTL),
            ("data.tar.gz", DATA),
        ]
    ),
    "data before control": raw_deb(
        [("debian-binary", b"2.0\n"), ("data.tar.gz", DATA), ("control.tar.gz", CTL)]
    ),
    "no data member": raw_deb([("debian-binary", b"2.0\n"), ("control.tar.gz", CTL)]),
    "duplicate control": raw_deb(
        [("debian-binary", b"2.0\n"), ("control.tar.gz", CTL), ("control.tar.gz", CTL)]
    ),
    "truncated file": raw_deb(
        [("debian-binary", b"2.0\n"), ("control.tar.gz", CTL), ("data.tar.gz", DATA)]
    )[:-10],
    "bad header magic": raw_deb([ar_member("debian-binary", b"2.0\n")])[:66] + b"XX",
}


@pytest.mark.hazard(57)
@pytest.mark.parametrize("case", sorted(BAD_AR))
def test_invalid_ar_is_rejected(tmp_path: Path, case: str) -> None:
    path = write(tmp_path, BAD_AR[case])
    with pytest.raises(DebError) as info:
        deb = open_deb(path)
        deb.control()
    assert str(info.value).startswith("x_1_all.deb: invalid .deb: ")


@pytest.mark.hazard(57, 111)
def test_control_tar_over_64_mib_rejected_before_reading(tmp_path: Path) -> None:
    # A sparse file: the header claims CONTROL_MAX + 2 bytes and the file really is that big.
    path = tmp_path / "big_1_all.deb"
    header = b"!<arch>\n" + ar_member("debian-binary", b"2.0\n")
    head = ar_member("control.tar", b"", size=CONTROL_MAX + 2, pad=False)
    with path.open("wb") as f:
        f.write(header + head)
        f.truncate(len(header) + len(head) + CONTROL_MAX + 2)
        f.seek(0, io.SEEK_END)
        f.write(ar_member("data.tar", raw_tar([TarEntry("./", type="dir")])))
    with pytest.raises(DebError, match="exceeds 64 MiB"):
        open_deb(path)


@pytest.mark.hazard(111)
def test_control_members_expanding_past_64_mib_rejected(tmp_path: Path) -> None:
    huge = raw_tar(
        [TarEntry("./control", b"Package: x\n"), TarEntry("./postinst", size=CONTROL_MAX)]
    )
    ctl = lzma.compress(huge[:2048], preset=0)  # headers only: the declared size trips the cap
    blob = raw_deb([("debian-binary", b"2.0\n"), ("control.tar.xz", ctl), ("data.tar.gz", DATA)])
    with pytest.raises(DebError, match="beyond the cap"):
        open_deb(write(tmp_path, blob)).control()


@pytest.mark.parametrize(
    "entries, message",
    [
        ([TarEntry("./postinst", b"#!/bin/sh\n")], "has no control file"),
        ([TarEntry("./control", b"Version: 1\n")], "no Package field"),
        ([TarEntry("./control", b"\xff\xfe")], "not UTF-8"),
        ([TarEntry("./control", b" cont\n")], "continues nothing"),
        ([TarEntry("./control", b"Package: a\n\nPackage: b\n")], "more than one stanza"),
        ([TarEntry("./control", b"Package: a\npackage: b\n")], "'package' given twice"),
        ([TarEntry("./control", b"Package: a\nnot a field\n")], "line 2 is not a field"),
        (
            [TarEntry("./control", b"Package: a\n"), TarEntry("./x", type="symlink", linkname="/")],
            "unexpected",
        ),
        ([TarEntry("./control", b"Package: a\n"), TarEntry("./sub/x", b"")], "unexpected"),
    ],
)
def test_bad_control_rejected(tmp_path: Path, entries: list[TarEntry], message: str) -> None:
    ctl = compress(raw_tar(entries), "gz")
    blob = raw_deb([("debian-binary", b"2.0\n"), ("control.tar.gz", ctl), ("data.tar.gz", DATA)])
    with pytest.raises(DebError, match=message):
        open_deb(write(tmp_path, blob)).control()


@pytest.mark.hazard(59)
@pytest.mark.timeout(20)
@pytest.mark.parametrize("compression", ["xz", "zstd", "gzip"])
@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_compressed_stream_errors_quickly(
    tmp_path: Path, compression: str, fraction: float
) -> None:
    entries = [TarEntry("./", type="dir")]
    entries += [TarEntry(f"./f{i}", bytes([i % 251]) * 50_000) for i in range(40)]
    full = read_ar(crafted_deb("t", entries, compression=compression))
    name, data = full[2]
    cut = data[: int(len(data) * fraction)]
    blob = raw_deb([full[0], full[1], (name, cut)])
    start = time.monotonic()
    with pytest.raises((UnpackError, DebError), match=r"truncated|corrupt"):
        data_names(write(tmp_path, blob))
    assert time.monotonic() - start < 10


@pytest.mark.hazard(59)
@pytest.mark.parametrize("cut", [1, 4, 20])
def test_truncated_zstd_frame_inside_complete_member(tmp_path: Path, cut: int) -> None:
    # zstandard's stream reader ends quietly on a cut frame, even one cut only in its checksum
    # after the tar's end marker: the frame walk catches every cut.
    tar = raw_tar([TarEntry("./", type="dir"), TarEntry("./f", b"a" * 100_000)])
    zst = zstandard.ZstdCompressor(write_checksum=True).compress(tar)
    whole = raw_deb([("debian-binary", b"2.0\n"), ("control.tar.gz", CTL), ("data.tar.zst", zst)])
    assert data_names(write(tmp_path, whole)) == [b"./", b"./f"]
    blob = raw_deb(
        [("debian-binary", b"2.0\n"), ("control.tar.gz", CTL), ("data.tar.zst", zst[:-cut])]
    )
    with pytest.raises(DebError, match="truncated zstd stream"):
        data_names(write(tmp_path, blob))


def test_zstd_multiple_and_skippable_frames(tmp_path: Path) -> None:
    tar = raw_tar([TarEntry("./", type="dir"), TarEntry("./f", b"b" * 300_000)])
    c = zstandard.ZstdCompressor(level=1)
    skip = (0x184D2A53).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    zst = c.compress(tar[:4096]) + skip + c.compress(tar[4096:])
    blob = raw_deb([("debian-binary", b"2.0\n"), ("control.tar.gz", CTL), ("data.tar.zst", zst)])
    assert data_names(write(tmp_path, blob)) == [b"./", b"./f"]


def test_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(DebError, match="cannot open"):
        open_deb(tmp_path / "nope.deb")
