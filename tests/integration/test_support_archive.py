"""The test fixtures themselves: keys, archives, crafted debs and the fault server are right.

Every later test trusts these, so each is checked against an independent real tool
(gpgv, sqv, dpkg-deb, tarfile) or against the raw bytes on the wire.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.archive import Archive, TestKey, build_archive
from tests.support.debs import (
    DebSpec,
    TarEntry,
    ar_member,
    build_deb,
    crafted_deb,
    raw_deb,
    raw_tar,
    read_ar,
    read_control,
    zeros_tar,
)
from tests.support.fixtures import MIRROR_PACKAGES, LocalMirror
from tests.support.server import CAPTIVE_PORTAL, FaultServer

ArchiveFactory = Callable[..., Archive]


def gpgv_status(keyring: Path, *files: Path) -> tuple[int, str]:
    proc = subprocess.run(
        ["gpgv", "--status-fd", "1", "--keyring", str(keyring), *map(str, files)],
        capture_output=True,
        text=True,
    )
    return proc.returncode, proc.stdout


def release_entries(text: str, section: str) -> dict[str, tuple[str, int]]:
    """{path: (digest, size)} of one hash section of a Release file."""
    out: dict[str, tuple[str, int]] = {}
    inside = False
    for line in text.splitlines():
        if not line.startswith(" "):
            inside = line.rstrip() == f"{section}:"
            continue
        if inside:
            digest, size, path = line.split()
            out[path] = (digest, int(size))
    return out


def stanzas(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if not line.startswith(" "):
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        out.append(fields)
    return out


# --- keys and signatures ---------------------------------------------------------------------


def test_inrelease_and_release_gpg_verify_with_gpgv(local_mirror: LocalMirror) -> None:
    archive = local_mirror.archive
    rc, status = gpgv_status(archive.keyring, archive.inrelease)
    assert rc == 0 and f"VALIDSIG {archive.key.fingerprint}" in status
    rc, status = gpgv_status(archive.keyring, archive.release_gpg, archive.release)
    assert rc == 0 and "GOODSIG" in status
    # The clearsigned body is the Release file, byte for byte.
    body = subprocess.run(
        ["gpgv", "--keyring", str(archive.keyring), "--output", "-", str(archive.inrelease)],
        capture_output=True,
        check=True,
    ).stdout
    assert body == archive.release.read_bytes()
    assert archive.keyring.read_bytes()[:1] != b"-"  # binary, like /usr/share/keyrings/*.gpg


def test_pysequoia_verifies_inrelease(local_mirror: LocalMirror) -> None:
    import pysequoia

    archive = local_mirror.archive
    cert = pysequoia.Cert.from_bytes(archive.keyring.read_bytes())
    result = pysequoia.verify(bytes=archive.inrelease.read_bytes(), store=lambda _ids: [cert])
    # The cleartext framework's last line ending belongs to the armor (RFC 4880 7.1).
    assert result.bytes is not None and result.bytes + b"\n" == archive.release.read_bytes()


def test_sqv_accepts_release_gpg(local_mirror: LocalMirror) -> None:
    if shutil.which("sqv") is None:
        pytest.skip("sqv is not installed")
    archive = local_mirror.archive
    proc = subprocess.run(
        ["sqv", "--keyring", str(archive.keyring), str(archive.release_gpg), str(archive.release)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == archive.key.fingerprint


def test_other_key_gives_no_pubkey(archive_factory: ArchiveFactory, other_key: TestKey) -> None:
    archive = archive_factory([DebSpec("a")])
    archive.resign(key=other_key)
    rc, status = gpgv_status(archive.keyring, archive.inrelease)
    assert rc != 0 and "NO_PUBKEY" in status
    rc, status = gpgv_status(other_key.keyring, archive.inrelease)
    assert rc == 0


def test_expired_key_gives_expkeysig(archive_factory: ArchiveFactory, expired_key: TestKey) -> None:
    archive = archive_factory([DebSpec("a")], key=expired_key)
    _, status = gpgv_status(archive.keyring, archive.inrelease)
    assert "EXPKEYSIG" in status and "GOODSIG" not in status, status


def test_sha1_digest_signature(archive_factory: ArchiveFactory) -> None:
    archive = archive_factory([DebSpec("a")])
    archive.resign(digest="SHA1")
    _, status = gpgv_status(archive.keyring, archive.inrelease)
    validsig = next(line for line in status.splitlines() if "VALIDSIG" in line).split()
    assert validsig[9] == "2"  # hash algorithm 2 = SHA1 (RFC 4880 9.4)
    assert b"Hash: SHA1" in archive.inrelease.read_bytes()
    if shutil.which("sqv"):
        proc = subprocess.run(
            [
                "sqv",
                "--keyring",
                str(archive.keyring),
                str(archive.release_gpg),
                str(archive.release),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode != 0 and "SHA1" in proc.stderr


def test_revoked_key_gives_revkeysig(tmp_path: Path) -> None:
    with TestKey.generate("Revoked <revoked@example.invalid>") as key:
        archive = build_archive(tmp_path / "a", [DebSpec("a")], key=key)
        key.revoke()
        # gpgv exits 0 here; apt's gpgv method reads the status line (methods/gpgv.cc).
        _, status = gpgv_status(key.keyring, archive.inrelease)
        assert "REVKEYSIG" in status and "GOODSIG" not in status, status


def test_tampered_release_is_badsig(archive_factory: ArchiveFactory) -> None:
    archive = archive_factory([DebSpec("a")])
    text = archive.inrelease.read_bytes().replace(b"Suite: stable", b"Suite: stablx")
    archive.inrelease.write_bytes(text)
    rc, status = gpgv_status(archive.keyring, archive.inrelease)
    assert rc != 0 and "BADSIG" in status


# --- archive layout and hashes ---------------------------------------------------------------


def test_release_hashes_and_by_hash_match_files(local_mirror: LocalMirror) -> None:
    archive = local_mirror.archive
    text = archive.release.read_text()
    fields = {line.split(":")[0]: line.split(": ", 1)[-1] for line in text.splitlines()}
    for name in ("Origin", "Label", "Suite", "Codename", "Version", "Date", "Architectures"):
        assert name in fields
    assert fields["Suite"] == "stable" and fields["Codename"] == "bookworm"
    assert fields["Acquire-By-Hash"] == "yes" and fields["Components"] == "main"
    sha256 = release_entries(text, "SHA256")
    md5 = release_entries(text, "MD5Sum")
    assert (
        set(sha256)
        == set(md5)
        == {
            "main/binary-amd64/Packages",
            "main/binary-amd64/Packages.xz",
            "main/binary-amd64/Packages.gz",
        }
    )
    for rel, (digest, size) in sha256.items():
        data = (archive.main.path / rel).read_bytes()
        assert len(data) == size
        assert hashlib.sha256(data).hexdigest() == digest
        assert hashlib.md5(data).hexdigest() == md5[rel][0]
        by_hash = archive.main.path / Path(rel).parent / "by-hash" / "SHA256" / digest
        assert by_hash.read_bytes() == data
    plain = archive.index_path(compression="none").read_bytes()
    assert lzma.decompress(archive.index_path(compression="xz").read_bytes()) == plain
    assert (archive.root / "dists" / "stable").resolve() == archive.main.path.resolve()


def test_packages_stanzas_match_the_real_debs(local_mirror: LocalMirror) -> None:
    archive = local_mirror.archive
    entries = stanzas(archive.index_path(compression="none").read_text())
    names = [e["Package"] for e in entries]
    assert "foreign-arm" in names and "data-all" in names  # wrong-arch and arch:all listed
    assert len(names) == len(MIRROR_PACKAGES)
    for entry in entries:
        deb = archive.root / entry["Filename"]
        data = deb.read_bytes()
        assert int(entry["Size"]) == len(data)
        assert entry["SHA256"] == hashlib.sha256(data).hexdigest()
        assert entry["MD5sum"] == hashlib.md5(data).hexdigest()
        control = subprocess.run(
            ["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True
        ).stdout
        (fields,) = stanzas(control)
        assert fields == {
            k: v for k, v in entry.items() if k not in ("Filename", "Size", "MD5sum", "SHA256")
        }
    dash = next(e for e in entries if e["Package"] == "dash")
    assert dash["Essential"] == "yes" and dash["Pre-Depends"] == "libc6 (>= 2.34)"
    assert dash["Filename"] == "pool/main/d/dash/dash_0.5.12-2_amd64.deb"
    libc = next(e for e in entries if e["Package"] == "libc6")
    assert libc["Filename"].startswith("pool/main/libc/libc6/") and libc["Multi-Arch"] == "same"


def test_updates_suite(local_mirror: LocalMirror) -> None:
    updates = local_mirror.archive.updates
    assert updates is not None
    rc, _ = gpgv_status(local_mirror.keyring, updates.inrelease)
    assert rc == 0
    release = updates.release.read_text()
    assert "Suite: stable-updates" in release and "Codename: bookworm-updates" in release
    (entry,) = stanzas(updates.index_path(compression="none").read_text())
    assert entry["Version"] == "2.10-3+deb12u1"
    assert (local_mirror.archive.root / entry["Filename"]).is_file()


def test_tamper_helpers(archive_factory: ArchiveFactory) -> None:
    archive = archive_factory([DebSpec("a"), DebSpec("b", depends="a")])
    before = archive.release.read_bytes()
    # replace_file: Release now lies about the index (stale / mismatch cases).
    archive.replace_file("main/binary-amd64/Packages.xz", b"junk")
    assert archive.release.read_bytes() == before
    listed = release_entries(before.decode(), "SHA256")["main/binary-amd64/Packages.xz"]
    assert hashlib.sha256(b"junk").hexdigest() != listed[0]
    # rewrite_index: every compression rewritten, Release re-hashed and re-signed.
    archive.rewrite_index(lambda text: text + b"\nPackage: c\nVersion: 1\n")
    new = archive.release.read_text()
    for rel, (digest, _) in release_entries(new, "SHA256").items():
        assert hashlib.sha256((archive.main.path / rel).read_bytes()).hexdigest() == digest
    assert b"Package: c" in lzma.decompress(archive.index_path().read_bytes())
    assert gpgv_status(archive.keyring, archive.inrelease)[0] == 0
    # release_fields + resign: a validly signed Release for the wrong suite.
    archive.release_fields["Suite"] = "oldstable"
    archive.resign(sign=("InRelease",))
    assert "Suite: oldstable" in archive.inrelease.read_text()
    assert not archive.release_gpg.exists()
    assert gpgv_status(archive.keyring, archive.inrelease)[0] == 0
    archive.corrupt("InRelease")
    assert gpgv_status(archive.keyring, archive.inrelease)[0] != 0


def test_release_options(archive_factory: ArchiveFactory) -> None:
    from datetime import UTC, datetime, timedelta

    date = datetime(2023, 6, 10, 8, 50, tzinfo=UTC)
    archive = archive_factory(
        {"main": [DebSpec("a")], "contrib": [DebSpec("b", arch="all")]},
        components=("main", "contrib"),
        arch=("amd64", "arm64"),
        date=date,
        valid_until=timedelta(days=7),
        compressions=("xz", "gz", "zst"),
        hashes=("MD5Sum",),
        extra_release={"Label": None, "No-Support-for-Architecture-all": "Packages"},
    )
    text = archive.release.read_text()
    assert "Date: Sat, 10 Jun 2023 08:50:00 UTC" in text
    assert "Valid-Until: Sat, 17 Jun 2023 08:50:00 UTC" in text
    assert "Label:" not in text and "SHA256:" not in text
    assert "No-Support-for-Architecture-all: Packages" in text
    listed = release_entries(text, "MD5Sum")
    assert "contrib/binary-arm64/Packages.zst" in listed
    # b is Architecture: all, so it is in both architectures' indexes; a only in amd64's.
    arm = archive.index_path("contrib", "arm64", "none").read_text()
    assert "Package: b" in arm
    assert archive.index_path("main", "arm64", "none").read_text() == ""


def test_building_ten_new_packages_is_fast(tmp_path: Path, test_key: TestKey) -> None:
    tag = str(time.monotonic_ns())  # fresh specs: the per-process cache cannot help
    specs = [
        DebSpec(f"speed{i}", f"1.{tag}", depends=f"speed{i - 1}" if i else "", files={"f": b"x"})
        for i in range(10)
    ]
    start = time.monotonic()
    build_archive(tmp_path / "a", specs, key=test_key)
    assert time.monotonic() - start < 2.0


# --- debs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["xz", "gzip", "zstd", "none"])
def test_build_deb_is_readable_by_dpkg_deb(tmp_path: Path, compression: str) -> None:
    spec = DebSpec(
        "sample",
        "1:2.0-1",
        depends="libc6",
        files={"usr/bin/tool": b"#!/bin/sh\n", "etc/sample.conf": b"a=1\n"},
        dirs=("var/lib/sample",),
        symlinks={"usr/bin/alias": "tool"},
        modes={"usr/bin/tool": 0o4755, "var/lib/sample": 0o1777},
        scripts={"postinst": "#!/bin/sh\nexit 0\n"},
        conffiles=("/etc/sample.conf",),
        extra={"Homepage": "https://example.invalid/"},
    )
    deb = build_deb(spec, tmp_path, compression)  # type: ignore[arg-type]
    assert deb.name == "sample_2.0-1_amd64.deb"
    info = subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True, text=True, check=True)
    assert "Package: sample" in info.stdout and "postinst" in info.stdout
    assert "Homepage: https://example.invalid/" in info.stdout
    members = [name for name, _ in read_ar(deb.read_bytes())]
    suffix = {"xz": ".xz", "gzip": ".gz", "zstd": ".zst", "none": ""}[compression]
    assert members == ["debian-binary", f"control.tar{suffix}", f"data.tar{suffix}"]
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    assert "-rwsr-xr-x root/root" in listing and "./usr/bin/tool" in listing
    assert "drwxrwxrwt root/root" in listing and "./usr/bin/alias -> tool" in listing
    assert read_control(deb) == spec.control()


def test_raw_tar_round_trips_through_tarfile() -> None:
    blob = raw_tar(
        [
            TarEntry("./etc", type="dir"),
            TarEntry("./etc/passwd", b"root:x:0:0\n", mode=0o600, uid=1, gid=2),
            TarEntry("./link", type="symlink", linkname="/etc"),
            TarEntry("./hard", type="hardlink", linkname="./etc/passwd"),
            TarEntry("./null", type="chr", devmajor=1, devminor=3),
            TarEntry("./fifo", type="fifo"),
            TarEntry("./" + "d" * 150, b"long"),
            TarEntry(b"./caf\xe9", b"latin-1 name"),
        ]
    )
    with tarfile.open(fileobj=io.BytesIO(blob), encoding="utf-8", errors="surrogateescape") as tar:
        members = tar.getmembers()
        kinds = [(m.name, m.type) for m in members]
        assert kinds[0] == ("./etc", tarfile.DIRTYPE)
        assert members[1].mode == 0o600 and members[1].uid == 1 and members[1].gid == 2
        assert members[2].issym() and members[2].linkname == "/etc"
        assert members[3].islnk()
        assert members[4].ischr() and (members[4].devmajor, members[4].devminor) == (1, 3)
        assert members[5].isfifo()
        assert members[6].name == "./" + "d" * 150  # via the automatic PAX record
        assert members[7].name.encode("utf-8", "surrogateescape") == b"./caf\xe9"
        handle = tar.extractfile(members[1])
        assert handle is not None and handle.read() == b"root:x:0:0\n"


def test_raw_tar_can_lie() -> None:
    bad = raw_tar([TarEntry("./x", b"data", bad_checksum=True)])
    with pytest.raises(tarfile.ReadError):
        tarfile.open(fileobj=io.BytesIO(bad)).getmembers()
    huge = raw_tar([TarEntry("./big", b"", size=1 << 40)], end=False)
    assert len(huge) == 512
    info = tarfile.TarInfo.frombuf(huge[:512], "utf-8", "surrogateescape")
    assert info.size == 1 << 40
    volume = raw_tar([TarEntry("label", type="V")])
    assert volume[156:157] == b"V"


def test_crafted_deb_is_a_real_ar_with_evil_members(tmp_path: Path) -> None:
    blob = crafted_deb(
        "evil",
        [TarEntry("./x", type="symlink", linkname="/etc"), TarEntry("./x/passwd", b"pwned\n")],
        compression="xz",
    )
    path = tmp_path / "evil_1.0_amd64.deb"
    path.write_bytes(blob)
    listing = subprocess.run(["dpkg-deb", "-c", str(path)], capture_output=True, text=True)
    assert "./x -> /etc" in listing.stdout and "./x/passwd" in listing.stdout
    assert "Package: evil" in read_control(path)


def test_raw_deb_and_ar_member(tmp_path: Path) -> None:
    blob = raw_deb([("debian-binary", b"2.0\n"), ar_member("odd", b"abc")])
    assert read_ar(blob) == [("debian-binary", b"2.0\n"), ("odd", b"abc")]
    assert len(blob) % 2 == 0
    negative = ar_member("data.tar", b"", size=-1)
    assert negative[48:58] == b"-1".ljust(10) and len(negative) == 60
    path = tmp_path / "bad.deb"
    path.write_bytes(raw_deb([("control.tar.gz", b""), ("debian-binary", b"2.0\n")]))
    assert subprocess.run(["dpkg-deb", "-I", str(path)], capture_output=True).returncode != 0


def test_crafted_deb_can_be_put_in_an_archive(
    archive_factory: ArchiveFactory, tmp_path: Path
) -> None:
    path = tmp_path / "evil_1.0_amd64.deb"
    path.write_bytes(crafted_deb("evil", [TarEntry("../../etc/x", b"pwned")]))
    archive = archive_factory([path, DebSpec("good")])
    (entry, _) = stanzas(archive.index_path(compression="none").read_text())
    assert entry["Filename"] == "pool/main/e/evil/evil_1.0_amd64.deb"
    assert entry["SHA256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    broken = tmp_path / "broken_2.0_all.deb"
    broken.write_bytes(raw_deb([("debian-binary", b"2.0\n")]))
    archive = archive_factory([broken])
    (entry,) = stanzas(archive.index_path(compression="none").read_text())
    assert (entry["Package"], entry["Version"], entry["Architecture"]) == ("broken", "2.0", "all")
    assert entry["Size"] == str(len(broken.read_bytes()))


# --- the fault server ------------------------------------------------------------------------


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "file.bin").write_bytes(bytes(range(256)) * 40)  # 10240 bytes
    (root / "small.txt").write_bytes(b"hello world\n")
    return root


DATA = bytes(range(256)) * 40


def raw_request(server: FaultServer, path: str, extra: str = "") -> bytes:
    """The raw bytes the server sends for one GET (read until it closes or 2 s pass)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def test_server_serves_files_with_range(www: Path) -> None:
    with FaultServer(www) as srv, httpx.Client(base_url=srv.url) as client:
        resp = client.get("/dir/file.bin")
        assert resp.status_code == 200 and resp.content == DATA
        assert resp.headers["content-length"] == str(len(DATA))
        resp = client.get("/dir/file.bin", headers={"Range": "bytes=100-199"})
        assert resp.status_code == 206 and resp.content == DATA[100:200]
        assert resp.headers["content-range"] == f"bytes 100-199/{len(DATA)}"
        resp = client.get("/dir/file.bin", headers={"Range": "bytes=10000-"})
        assert resp.status_code == 206 and resp.content == DATA[10000:]
        resp = client.get("/dir/file.bin", headers={"Range": "bytes=-40"})
        assert resp.content == DATA[-40:]
        resp = client.get("/dir/file.bin", headers={"Range": f"bytes={len(DATA)}-"})
        assert resp.status_code == 416
        assert resp.headers["content-range"] == f"bytes */{len(DATA)}"
        etag = client.head("/dir/file.bin").headers["etag"]
        good = client.get("/dir/file.bin", headers={"Range": "bytes=5-", "If-Range": etag})
        assert good.status_code == 206
        stale = client.get("/dir/file.bin", headers={"Range": "bytes=5-", "If-Range": '"x"'})
        assert stale.status_code == 200 and stale.content == DATA
        assert client.get("/nope").status_code == 404
        assert client.get("/../../etc/passwd").status_code == 404
        assert srv.fetched("*.bin")[0] == "/dir/file.bin"
        assert srv.requests[1].headers["range"] == "bytes=100-199"


def test_fault_status_with_count_and_headers(www: Path) -> None:
    with FaultServer(www) as srv, httpx.Client(base_url=srv.url) as client:
        srv.fault("*.txt", "status", code=429, count=2, headers={"Retry-After": "3"})
        first = client.get("/small.txt")
        assert first.status_code == 429 and first.headers["retry-after"] == "3"
        assert client.get("/small.txt").status_code == 429
        assert client.get("/small.txt").content == b"hello world\n"
        assert [r.fault for r in srv.requests] == ["status", "status", None]


def test_fault_wrong_bytes(www: Path) -> None:
    with FaultServer(www) as srv, httpx.Client(base_url=srv.url) as client:
        srv.fault("/dir/*", "wrong_bytes")
        body = client.get("/dir/file.bin").content
        assert len(body) == len(DATA) and body != DATA
        assert sum(a != b for a, b in zip(body, DATA, strict=True)) == 1


def test_fault_truncate(www: Path) -> None:
    with FaultServer(www) as srv:
        srv.fault("*.bin", "truncate", after=100)
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(srv.url + "/dir/file.bin")
        raw = raw_request(srv, "/dir/file.bin")
        head, _, body = raw.partition(b"\r\n\r\n")
        assert f"Content-Length: {len(DATA)}".encode() in head and body == DATA[:100]


def test_fault_extra_length_declared_and_endless(www: Path) -> None:
    with FaultServer(www) as srv:
        srv.fault("/small.txt", "extra_length", extra=5000)
        resp = httpx.get(srv.url + "/small.txt")
        assert resp.headers["content-length"] == str(12 + 5000)
        assert resp.content.startswith(b"hello world\n") and len(resp.content) == 5012
        srv.fault("/dir/file.bin", "extra_length", endless=True)
        received = 0
        with httpx.stream("GET", srv.url + "/dir/file.bin") as resp:
            assert "content-length" not in resp.headers
            for chunk in resp.iter_bytes():
                received += len(chunk)
                if received > 5 * len(DATA) + 1_000_000:
                    break
        assert received > 1_000_000


def test_fault_slow_drip(www: Path) -> None:
    with FaultServer(www) as srv:
        srv.fault("*.txt", "slow_drip", interval=0.1)
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(srv.url + "/small.txt", timeout=httpx.Timeout(5.0, read=0.05))
        assert time.monotonic() - start < 2
        srv.clear()
        srv.fault("*.txt", "slow_drip", interval=0.05, chunk=4)
        start = time.monotonic()
        assert httpx.get(srv.url + "/small.txt").content == b"hello world\n"
        assert time.monotonic() - start >= 0.1  # 3 chunks, 2+ intervals


def test_fault_redirect_raw_location(www: Path) -> None:
    with FaultServer(www) as srv:
        srv.fault("/a", "redirect", location=srv.url + "/small.txt")
        resp = httpx.get(srv.url + "/a", follow_redirects=True)
        assert resp.content == b"hello world\n" and srv.fetched() == ["/a", "/small.txt"]
        srv.fault("/evil", "redirect", location="http://127.0.0.1/x\r\nX-Injected: 1")
        raw = raw_request(srv, "/evil")
        assert b"Location: http://127.0.0.1/x\r\nX-Injected: 1\r\n" in raw
        srv.fault("/enc", "redirect", location="/x%0aInjected", code=301)
        assert b"301" in raw_request(srv, "/enc").split(b"\r\n")[0]


def test_fault_redirect_loop(www: Path) -> None:
    with FaultServer(www) as srv:
        srv.fault("/loop", "redirect_loop", cycle=3)
        with pytest.raises(httpx.TooManyRedirects):
            httpx.get(srv.url + "/loop", follow_redirects=True)
        hops = [r.path for r in srv.requests[:4]]
        assert hops == ["/loop", "/loop?hop=1", "/loop?hop=2", "/loop"]
        srv.clear()
        srv.fault("/chain", "redirect_loop", cycle=0)
        with httpx.Client(max_redirects=5) as client, pytest.raises(httpx.TooManyRedirects):
            client.get(srv.url + "/chain", follow_redirects=True)
        assert len(set(srv.fetched())) == 1 and len({r.path for r in srv.requests}) == 6


def test_fault_html_ignore_range_reset_content(www: Path) -> None:
    with FaultServer(www) as srv, httpx.Client(base_url=srv.url) as client:
        srv.fault("*/InRelease", "html")
        resp = client.get("/dists/bookworm/InRelease")
        assert resp.status_code == 200 and resp.content == CAPTIVE_PORTAL
        assert resp.headers["content-type"].startswith("text/html")
        srv.fault("*.bin", "ignore_range")
        resp = client.get("/dir/file.bin", headers={"Range": "bytes=100-"})
        assert resp.status_code == 200 and resp.content == DATA
        srv.fault("/small.txt", "content", data=b"other bytes")
        assert client.get("/small.txt").content == b"other bytes"
        srv.fault("/reset", "reset")
        with pytest.raises(httpx.ReadError):
            client.get("/reset")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=2) as sock:
            sock.sendall(b"GET /reset HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(ConnectionResetError):
                sock.recv(10)


def test_fault_pattern_delay_and_second_server(www: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "small.txt").write_bytes(b"mirror two\n")
    with FaultServer(www) as one, FaultServer(other) as two:
        assert one.port != two.port
        one.fault("small.txt", "status", code=404)  # a pattern without the leading slash
        assert httpx.get(one.url + "/small.txt").status_code == 404
        assert httpx.get(two.url + "/small.txt").content == b"mirror two\n"
        one.fault("/dir/*", "status", code=200, delay=0.3, body=b"late")
        start = time.monotonic()
        assert httpx.get(one.url + "/dir/file.bin").content == b"late"
        assert time.monotonic() - start >= 0.3
        with pytest.raises(ValueError):
            one.fault("*", "nonsense")


def test_tls_server_redirects_to_plain_http(www: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    with FaultServer(www) as plain, FaultServer(www, tls=True) as secure:
        assert secure.url.startswith("https://") and secure.ca_file is not None
        secure.fault("/down", "redirect", location=plain.url + "/small.txt")
        context = ssl.create_default_context(cafile=str(secure.ca_file))
        silent = socket.create_connection(("127.0.0.1", secure.port))  # never says hello
        with silent, httpx.Client(verify=context, timeout=5) as client:
            assert client.get(secure.url + "/small.txt").content == b"hello world\n"
            resp = client.get(secure.url + "/down")
            assert resp.status_code == 302
            assert resp.headers["location"].startswith("http://127.0.0.1:")


def test_server_closes_promptly_with_hanging_clients(www: Path) -> None:
    srv = FaultServer(www)
    srv.fault("*", "slow_drip", interval=10)
    results: list[BaseException | None] = []

    def client() -> None:
        try:
            httpx.get(srv.url + "/small.txt", timeout=30)
            results.append(None)
        except httpx.HTTPError as exc:
            results.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.2)
    idle = socket.create_connection(("127.0.0.1", srv.port))  # a keep-alive that never asks
    start = time.monotonic()
    srv.close()
    assert time.monotonic() - start < 2
    thread.join(5)
    assert not thread.is_alive() and results and results[0] is not None
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()


def test_local_mirror_over_http(local_mirror: LocalMirror, tmp_path: Path) -> None:
    resp = httpx.get(f"{local_mirror.url}/dists/{local_mirror.suite}/InRelease")
    assert resp.status_code == 200
    (tmp_path / "InRelease").write_bytes(resp.content)
    assert gpgv_status(local_mirror.keyring, tmp_path / "InRelease")[0] == 0
    path = local_mirror.archive.pool_path("hello")
    deb = httpx.get(local_mirror.server.url_for(path)).content
    assert deb == path.read_bytes()
    assert local_mirror.server.fetched() == [
        "/dists/stable/InRelease",
        local_mirror.archive.url_path(path),
    ]
    second = local_mirror.serve_again()
    assert second.url != local_mirror.url
    assert httpx.get(second.url_for(path)).content == path.read_bytes()


def test_unsigned_archive_and_remove(archive_factory: ArchiveFactory) -> None:
    archive = archive_factory([DebSpec("a")], sign=())
    assert archive.release.is_file()
    assert not archive.inrelease.exists() and not archive.release_gpg.exists()
    archive.resign()  # still unsigned: the dist remembers sign=()
    assert not archive.inrelease.exists()
    archive.resign(sign=("InRelease", "Release.gpg"))
    assert archive.inrelease.exists() and archive.release_gpg.exists()
    archive.remove("InRelease")
    assert not archive.inrelease.exists() and archive.release_gpg.exists()


def test_zeros_tar_is_a_small_bomb(tmp_path: Path) -> None:
    size = 16 << 20
    for compression in ("xz", "gzip", "zstd"):
        blob = zeros_tar("./bomb", size, compression)
        assert len(blob) < size // 100
        suffix = {"xz": ".xz", "gzip": ".gz", "zstd": ".zst"}[compression]
        deb = tmp_path / f"bomb{suffix}.deb"
        deb.write_bytes(crafted_deb("bomb", [], compression=compression, data_tar=blob))
        listing = subprocess.run(
            ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
        ).stdout
        assert listing.split()[2] == str(size) and listing.split()[-1] == "./bomb"


def test_debspec_is_hashable_and_build_checks(tmp_path: Path) -> None:
    spec = DebSpec("a", files={"x": b"1"})
    assert len({spec, DebSpec("a", files={"x": b"1"}), DebSpec("a")}) == 2
    with pytest.raises(RuntimeError, match="dpkg-deb --build"):
        build_deb(DebSpec("Bad_Name"), tmp_path)
    deb = build_deb(DebSpec("Bad_Name"), tmp_path, check=False)
    assert "Package: Bad_Name" in read_control(deb)


def test_build_deb_is_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import debs

    spec = DebSpec("repro", files={"a/b": b"x"}, scripts={"postinst": "#!/bin/sh\n"})
    first = build_deb(spec, tmp_path / "1", "zstd").read_bytes()
    monkeypatch.setattr(debs, "_cache", {})  # force a second real dpkg-deb run
    time.sleep(1.1)  # a different wall-clock second must not leak into the bytes
    second = build_deb(spec, tmp_path / "2", "zstd").read_bytes()
    assert first == second
