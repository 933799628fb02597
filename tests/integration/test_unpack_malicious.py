"""Malicious archives against the extractor: every case is a clean error or stays inside the
root, and the host sentinel never changes (its digest is checked after each test).

Each case runs through both doors: a crafted .deb (``extract_deb``) and a bare tar stream
with import-tar's policy (``extract_tar``, HAZARDS 70).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from rootstrap.errors import DebError, UnpackError
from rootstrap.unpack.extract import Policy, extract_deb, extract_tar
from rootstrap.unpack.pool import extract_many
from tests.support.debs import DebSpec, TarEntry, crafted_deb, raw_tar, zeros_tar

IMPORT_POLICY = Policy(allow_pax=True, skip_devices=True)
Extract = Callable[[list[TarEntry], Path], list[str]]


DEB_POLICY = Policy()


def gnu_long(entry: TarEntry) -> list[TarEntry]:
    """ENTRY with its long name in a GNU ``L`` member, as dpkg-deb (GNU tar format) writes it."""
    name = entry.name.encode() if isinstance(entry.name, str) else entry.name
    long = TarEntry("././@LongLink", name + b"\0", type="L")
    return [long, replace(entry, name=name[:99])]


def via_deb(entries: list[TarEntry], root: Path, policy: Policy = DEB_POLICY) -> list[str]:
    deb = root.parent / f"evil{len(list(root.parent.glob('*.deb')))}_1.0_amd64.deb"
    deb.write_bytes(crafted_deb("evil", entries, compression="xz"))
    return extract_deb(deb, root, policy)


def via_tar(entries: list[TarEntry], root: Path) -> list[str]:
    return extract_tar(io.BytesIO(raw_tar(entries)), root, IMPORT_POLICY, subject="evil.tar")


DOORS = pytest.mark.parametrize("extract", [via_deb, via_tar], ids=["deb", "import-tar"])


@pytest.fixture
def root(tmp_path: Path, host_sentinel: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


def outside(root: Path) -> set[str]:
    """Everything next to ROOT (debs aside): an escape would show up here."""
    return {p.name for p in root.parent.iterdir() if p.suffix != ".deb"} - {"root"}


def no_staging_left(root: Path) -> None:
    assert not [p for p in root.iterdir() if p.name.startswith(".rootstrap")]


@pytest.mark.hazard(48, 70)
@DOORS
@pytest.mark.parametrize(
    "name",
    ["../../etc/x", "./a/../../x", "a/../b", "..", "./../x"],
)
def test_dotdot_members_rejected(
    extract: Extract, root: Path, host_sentinel: Path, name: str
) -> None:
    escape = "../" * 8 + str(host_sentinel).lstrip("/") + "/etc/passwd"
    for bad in (name, escape):
        with pytest.raises(UnpackError, match=r"'\.\.' in the member name") as info:
            extract([TarEntry("./", type="dir"), TarEntry(bad, b"pwned\n")], root)
        assert bad in str(info.value)
    assert outside(root) == set()
    no_staging_left(root)


@pytest.mark.hazard(49, 70)
@DOORS
def test_absolute_member_is_root_relative(
    extract: Extract, root: Path, host_sentinel: Path
) -> None:
    target = f"{host_sentinel}/etc/passwd"
    paths = extract([TarEntry(target, b"pwned\n")], root)
    assert (root / target.lstrip("/")).read_bytes() == b"pwned\n"
    assert paths == [target]


@pytest.mark.hazard(50, 70)
@DOORS
@pytest.mark.parametrize("link", ["SENTINEL/etc", "../../../../../../../../../..SENTINEL/etc"])
def test_symlink_then_file_in_same_archive(
    extract: Extract, root: Path, host_sentinel: Path, link: str
) -> None:
    link = link.replace("SENTINEL", str(host_sentinel))
    entries = [
        TarEntry("./", type="dir"),
        TarEntry("./x", type="symlink", linkname=link),
        TarEntry("./x/passwd", b"pwned\n"),
    ]
    # dpkg's order: symlinks after everything else, so x/passwd makes a directory x and the
    # symlink then meets a directory in its way: rejected.
    with pytest.raises(UnpackError, match=r"/x: a directory is in the way"):
        extract(entries, root)
    assert not (root / "x").is_symlink()
    assert outside(root) == set()


@pytest.mark.hazard(51, 70)
@DOORS
@pytest.mark.parametrize("link", ["SENTINEL/etc", "../../../../../../../../..SENTINEL/etc"])
def test_symlink_from_an_earlier_package_is_followed_in_root(
    extract: Extract, root: Path, host_sentinel: Path, link: str
) -> None:
    link = link.replace("SENTINEL", str(host_sentinel))
    extract([TarEntry("./usr/share/foo", type="symlink", linkname=link)], root)
    paths = extract([TarEntry("./usr/share/foo/bar", b"pwned\n")], root)
    assert paths == ["/usr/share/foo/bar"]
    assert (root / str(host_sentinel).lstrip("/") / "etc/bar").read_bytes() == b"pwned\n"
    assert os.readlink(root / "usr/share/foo") == link
    assert not (host_sentinel / "etc/bar").exists()


@pytest.mark.hazard(51)
def test_symlink_from_an_earlier_package_in_extract_many(
    tmp_path: Path, root: Path, host_sentinel: Path
) -> None:
    a = tmp_path / "a_1_amd64.deb"
    b = tmp_path / "b_1_amd64.deb"
    link = TarEntry("./usr/share/foo", type="symlink", linkname=f"{host_sentinel}/etc")
    a.write_bytes(crafted_deb("a", [link]))
    b.write_bytes(crafted_deb("b", [TarEntry("./usr/share/foo/bar", b"pwned\n")]))
    extract_many([a, b], root, Policy(), workers=2)
    assert (root / str(host_sentinel).lstrip("/") / "etc/bar").read_bytes() == b"pwned\n"


@pytest.mark.hazard(53, 70)
@DOORS
@pytest.mark.parametrize(
    "entries, message",
    [
        ([TarEntry("./h", type="hardlink", linkname="SENTINEL/etc/passwd")], "absolute path"),
        ([TarEntry("./h", type="hardlink", linkname="../../../../SENTINEL/etc/passwd")], r"'\.\.'"),
        ([TarEntry("./h", type="hardlink", linkname="./etc/passwd")], "not a file extracted"),
        (
            [TarEntry("./d", type="dir"), TarEntry("./h", type="hardlink", linkname="./d")],
            "not a file extracted",
        ),
        (
            [
                TarEntry("./s", type="symlink", linkname="SENTINEL/etc/passwd"),
                TarEntry("./h", type="hardlink", linkname="./s"),
            ],
            "not a file extracted",
        ),
        (
            [TarEntry("./h", type="hardlink", linkname="./f"), TarEntry("./f", b"later")],
            "not a file extracted",
        ),
        ([TarEntry("./f", b"x"), TarEntry("./f", type="hardlink", linkname="./f")], "not a file"),
    ],
    ids=["absolute", "dotdot", "outside", "directory", "symlink", "not-yet", "itself"],
)
def test_bad_hardlinks_rejected(
    extract: Extract, root: Path, host_sentinel: Path, entries: list[TarEntry], message: str
) -> None:
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root in the image\n")
    fixed = [
        TarEntry(
            e.name,
            e.data,
            type=e.type,
            linkname=str(e.linkname).replace("SENTINEL", str(host_sentinel)),
        )
        for e in entries
    ]
    with pytest.raises(UnpackError, match=message):
        extract(fixed, root)
    assert os.stat(host_sentinel / "etc/passwd").st_nlink == 1
    assert os.stat(root / "etc/passwd").st_nlink == 1


@pytest.mark.hazard(54)
@pytest.mark.parametrize("kind", ["chr", "blk", "fifo"])
def test_device_nodes_rejected_in_a_deb_by_default(root: Path, kind: str) -> None:
    entry = TarEntry("./dev/evil", type=kind, devmajor=1, devminor=3)
    with pytest.raises(UnpackError, match="device nodes and FIFOs are not allowed") as info:
        via_deb([TarEntry("./", type="dir"), entry], root)
    assert "./dev/evil" in str(info.value)
    assert not (root / "dev/evil").exists()


@pytest.mark.hazard(54, 70)
def test_device_nodes_skipped_on_import(root: Path) -> None:
    entries = [
        TarEntry("./dev/", type="dir"),
        TarEntry("./dev/null", type="chr", devmajor=1, devminor=3),
        TarEntry("./etc/x", b"x"),
    ]
    paths = via_tar(entries, root)
    assert not (root / "dev/null").exists()
    assert paths == ["/dev", "/etc/x"]


@pytest.mark.hazard(54)
def test_device_nodes_allowed_by_explicit_policy(root: Path) -> None:
    import stat

    entries = [
        TarEntry("./dev/", type="dir"),
        TarEntry("./dev/null", type="chr", devmajor=1, devminor=3, mode=0o666),
        TarEntry("./dev/loop9", type="blk", devmajor=7, devminor=9, mode=0o660, gid=6),
        TarEntry("./run/fifo", type="fifo", mode=0o600),
    ]
    via_deb(entries, root, Policy(allow_devices=True))
    st = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(root / "dev/loop9")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 9) and st.st_gid == 6
    assert stat.S_ISFIFO(os.lstat(root / "run/fifo").st_mode)


@pytest.mark.hazard(56)
@pytest.mark.parametrize(
    "entry, message",
    [
        (TarEntry("./sparse", b"x", type="S"), "GNU sparse file"),
        (TarEntry("./vol", type="V"), "GNU volume header"),
        (TarEntry("./multi", b"x", type="M"), "GNU multivolume"),
        (TarEntry("./dump", type="D"), "GNU dumpdir"),
        (TarEntry("./odd", b"x", type="Z"), "typeflag b'Z'"),
        (TarEntry("./contig", b"x", type="contiguous"), "contiguous file"),
        (TarEntry("", b"x"), "empty member name"),
        (TarEntry("./bad", b"x", bad_checksum=True), "invalid tar header checksum"),
        (TarEntry("./pax", b"x", pax={"comment": "hi"}), "PAX extended headers are not allowed"),
        (TarEntry("./paxpath", b"x", pax={"path": "./other"}), "PAX extended headers"),
    ],
    ids=["S", "V", "M", "D", "unknown", "7", "empty", "checksum", "pax-x", "pax-path"],
)
def test_odd_members_reject_the_package(root: Path, entry: TarEntry, message: str) -> None:
    entries = [TarEntry("./", type="dir"), TarEntry("./ok", b"ok"), entry, TarEntry("./after", b"")]
    with pytest.raises(UnpackError, match=message) as info:
        via_deb(entries, root)
    shown = entry.name if entry.name else "(empty name)"
    if entry.type == "x" or entry.pax:
        shown = "./other" if "path" in entry.pax else entry.name
    assert f"evil0_1.0_amd64.deb: {shown}" in str(info.value)
    assert not (root / "after").exists()


@pytest.mark.hazard(56)
def test_pax_global_header_rejected_in_a_deb(root: Path) -> None:
    tar = bytearray(raw_tar([TarEntry("./g", type="g", data=b"8 a=bcd\n")], end=False))
    tar += raw_tar([TarEntry("./f", b"x")])
    deb = root.parent / "g_1_all.deb"
    from tests.support.debs import compress, raw_deb

    ctl = compress(raw_tar([TarEntry("./control", b"Package: g\n")]), "gz")
    deb.write_bytes(
        raw_deb([("debian-binary", b"2.0\n"), ("control.tar.gz", ctl), ("data.tar", bytes(tar))])
    )
    with pytest.raises(UnpackError, match=r"\./f: PAX extended headers"):
        extract_deb(deb, root)


@pytest.mark.hazard(56)
@pytest.mark.parametrize("cut", ["no-end", "mid-data", "mid-header"])
def test_truncated_tar_rejected(root: Path, cut: str) -> None:
    full = raw_tar([TarEntry("./", type="dir"), TarEntry("./big", b"y" * 5000)], end=False)
    tar = {"no-end": full, "mid-data": full[:-1500], "mid-header": full[:700]}[cut]
    with pytest.raises(UnpackError, match="truncated archive"):
        extract_tar(io.BytesIO(tar), root, IMPORT_POLICY, subject="t.tar")
    no_staging_left(root)


@pytest.mark.hazard(58)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("compression", ["xz", "zstd"])
def test_decompression_bomb_declared_size_stops_before_writing(
    root: Path, compression: str
) -> None:
    deb = root.parent / "bomb_1_all.deb"
    control = DebSpec("bomb", extra={"Installed-Size": "4"}).control()
    data = zeros_tar("./big", 1 << 30, compression)  # 1 GiB of zeros
    deb.write_bytes(
        crafted_deb("bomb", [], control=control, data_tar=data, compression=compression)
    )
    with pytest.raises(UnpackError, match="beyond the cap") as info:
        extract_deb(deb, root)
    assert "bomb_1_all.deb: ./big" in str(info.value)
    assert not (root / "big").exists()
    no_staging_left(root)
    assert sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) == 0


@pytest.mark.hazard(58)
def test_many_small_files_past_the_cap_stop_at_the_cap(root: Path) -> None:
    entries = [TarEntry(f"./f{i}", b"z" * 100_000) for i in range(100)]  # 10 MB, claims 1 KiB
    deb = root.parent / "many_1_all.deb"
    control = DebSpec("many", extra={"Installed-Size": "1"}).control()
    deb.write_bytes(crafted_deb("many", entries, control=control, compression="zstd"))
    with pytest.raises(UnpackError, match="beyond the cap of 1004096 bytes"):
        extract_deb(deb, root, Policy(size_factor=4, size_slack=1_000_000))
    no_staging_left(root)


@pytest.mark.hazard(58)
@pytest.mark.parametrize("workers", [1, 2])
def test_total_cap_over_many_packages(tmp_path: Path, root: Path, workers: int) -> None:
    debs = []
    for i in range(4):
        deb = tmp_path / f"p{i}_1_all.deb"
        deb.write_bytes(crafted_deb(f"p{i}", [TarEntry(f"./f{i}", b"z" * 300_000)]))
        debs.append(deb)
    with pytest.raises(UnpackError, match="expand beyond the cap"):
        extract_many(debs, root, Policy(max_bytes=1_000_000), workers=workers)
    no_staging_left(root)


@pytest.mark.hazard(61, 70)
@DOORS
def test_too_deep_rejected(extract: Extract, root: Path) -> None:
    deep = "./" + "/".join(["d"] * 129) + "/f"
    with pytest.raises(UnpackError, match="nested deeper than 128"):
        extract([TarEntry("./d", type="dir"), *gnu_long(TarEntry(deep, b"x"))], root)


@pytest.mark.hazard(61)
def test_path_longer_than_path_max_rejected(root: Path) -> None:
    long = "./" + "/".join(["n" * 200] * 21) + "/f"  # > 4096 bytes
    with pytest.raises(UnpackError, match="longer than PATH_MAX"):
        via_tar([TarEntry(long, b"x")], root)
    with pytest.raises(UnpackError, match="longer than 255"):
        via_tar([TarEntry("./" + "n" * 256, b"x")], root)


@pytest.mark.hazard(61)
@pytest.mark.parametrize("hops, ok", [(10, True), (39, True), (41, False), (60, False)])
def test_symlink_chains(root: Path, hops: int, ok: bool) -> None:
    # Package A: l0 -> l1 -> ... -> l{hops-1} -> d; package B: l0/f needs `hops`+... hops.
    chain = [TarEntry(f"./l{i}", type="symlink", linkname=f"l{i + 1}") for i in range(hops - 1)]
    chain.append(TarEntry(f"./l{hops - 1}", type="symlink", linkname="d"))
    via_tar([TarEntry("./d/", type="dir"), *chain], root)
    if ok:
        via_tar([TarEntry("./l0/f", b"x")], root)
        assert (root / "d/f").read_bytes() == b"x"
    else:
        with pytest.raises(UnpackError, match="more than 40 symlinks"):
            via_tar([TarEntry("./l0/f", b"x")], root)
        assert not (root / "d/f").exists()


@pytest.mark.hazard(61)
def test_symlink_chains_by_hand_when_openat2_is_unavailable(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rootstrap.linux.inroot as inroot

    monkeypatch.setattr(inroot, "_openat2_works", False)
    chain = [TarEntry(f"./l{i}", type="symlink", linkname=f"/l{i + 1}") for i in range(45)]
    via_tar(
        [
            TarEntry("./d/", type="dir"),
            *chain,
            TarEntry("./l45", type="symlink", linkname="../../d"),
        ],
        root,
    )
    with pytest.raises(UnpackError, match="more than 40 symlinks"):
        via_tar([TarEntry("./l0/f", b"x")], root)
    via_tar([TarEntry("./l40/f", b"x")], root)  # 6 hops: fine
    assert (root / "d/f").read_bytes() == b"x"


def test_errors_name_the_deb_and_the_member(root: Path) -> None:
    with pytest.raises((UnpackError, DebError)) as info:
        via_deb([TarEntry("./a/../../x", b"")], root)
    assert str(info.value) == "evil0_1.0_amd64.deb: ./a/../../x: '..' in the member name"


def test_worker_errors_keep_their_errno(tmp_path: Path) -> None:
    import errno
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        root = small / "root"
        root.mkdir()
        deb = tmp_path / "fat_1_all.deb"
        deb.write_bytes(crafted_deb("fat", [TarEntry("./big", bytes(range(256)) * 8192)]))
        with pytest.raises(UnpackError, match="No space left") as info:
            extract_many([deb, deb], root, Policy(), workers=2)
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno == errno.ENOSPC
    finally:
        subprocess.run(["umount", str(small)], check=True)
