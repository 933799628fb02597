"""Throwaway OpenPGP keys and real, signed Debian-layout archives for tests.

    from tests.support.archive import TestKey, build_archive
    from tests.support.debs import DebSpec

    key = TestKey.generate()                      # ed25519, no passphrase, own GNUPGHOME
    arch = build_archive(tmp_path / "mirror", [DebSpec("a"), DebSpec("b", depends="a")],
                         key=key, codename="bookworm", suite="stable")
    arch.keyring                                  # binary keyring file for --keyring
    arch.inrelease, arch.release, arch.release_gpg
    arch.index_path("main", "amd64", "xz")        # dists/bookworm/main/binary-amd64/Packages.xz
    arch.debs                                     # [Path] of every .deb in pool/

Layout: ``pool/<comp>/<prefix>/<source>/<name>_<ver>_<arch>.deb`` and ``dists/<codename>/``
(with ``dists/<suite>`` a symlink to it, as on Debian mirrors) holding ``Release``,
``InRelease``, ``Release.gpg`` and ``<comp>/binary-<arch>/Packages{,.xz,.gz}`` plus by-hash
copies. ``packages`` may be a list (all in the first component) or {component: list}; items
are ``DebSpec`` or paths to existing .debs (also hand-crafted ones; an unreadable one is
listed with fields guessed from its ``name_version_arch.deb`` file name). A package whose
Architecture is neither ``all`` nor one of ``arch`` is listed in every index on purpose
(wrong-arch stanzas). ``updates=[...]`` adds ``dists/<codename>-updates``.

Tampering (each re-signs unless said otherwise; pass ``key=`` to sign with another key):

    arch.release_fields["Suite"] = "oldstable"; arch.resign()          # rebuild Release + sign
    arch.resign(key=other_key)                                          # NO_PUBKEY
    arch.resign(sign=("Release.gpg",))                                  # no InRelease
    arch.resign(digest="SHA1")                                          # weak digest
    arch.sign_text("Origin: x\n...")                                    # sign arbitrary Release
    arch.rewrite_index(lambda text: text + extra)        # plain+xz+gz rewritten, Release re-hashed
    arch.rewrite_index(new, compressions=("xz",))        # only plain+xz; .gz keeps the old text
    arch.replace_file("main/binary-amd64/Packages.xz", b"junk")          # Release NOT updated
    arch.corrupt("InRelease"); arch.remove("InRelease")                 # no resign
    arch.updates.resign(); arch.dists["bookworm-updates"]               # the -updates suite
    arch.main.path / "InRelease"; arch.pool_path("hello"); arch.url_path(deb)  # "/pool/..."

Keys: ``key.clearsign(data, digest=)``, ``key.detach_sign(data, digest=, armor=)``,
``key.keyring`` (binary), ``key.armored_keyring``, ``key.fingerprint``, ``key.revoke()``
(REVKEYSIG), ``TestKey.generate(expired=True)``: created 2020-01-01, expired a day later, its
signatures dated 2020-01-01 (EXPKEYSIG). Note gpgv exits 0 on EXPKEYSIG/REVKEYSIG (read its
``--status-fd`` lines, as apt does), and Sequoia accepts a signature made while the key was
valid: expiry must be checked by the caller. Cost: a key ~50 ms, a signature ~10-30 ms, an
archive of 10 new packages ~0.3-0.6 s (debs are cached per spec and process).
"""

from __future__ import annotations

import atexit
import email.utils
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.debs import DebSpec, build_deb, cached_build, compress, read_control

__all__ = ["Archive", "Dist", "TestKey", "build_archive", "release_date"]


class TestKey:
    """An ed25519 signing key in its own temporary GNUPGHOME. Call ``close()`` when done."""

    __test__ = False  # not a pytest test class

    def __init__(self, home: Path, fingerprint: str, uid: str, faked_time: str | None) -> None:
        self.home = home
        self.fingerprint = fingerprint
        self.uid = uid
        self._faked_time = faked_time
        self.keyring = home / "keyring.gpg"
        self.armored_keyring = home / "keyring.asc"
        self.keyring.write_bytes(self._gpg("--export", fingerprint))
        self.armored_keyring.write_bytes(self._gpg("--armor", "--export", fingerprint))

    @classmethod
    def generate(
        cls, uid: str = "Rootstrap Test Archive <archive@example.invalid>", *, expired: bool = False
    ) -> TestKey:
        """Make a fresh key (~50 ms). ``expired=True``: created 2020-01-01, expired 2020-01-02;
        its signatures are dated 2020-01-01 12:00, so verifiers report EXPKEYSIG."""
        home = Path(tempfile.mkdtemp(prefix="rs-gpg-"))  # short: gpg-agent's socket path
        home.chmod(0o700)
        faked = "20200101T120000" if expired else None
        expiry = "1d" if expired else "never"
        argv = ["--quick-gen-key", uid, "ed25519", "sign", expiry]
        _run_gpg(home, argv, faked_time=faked)
        listing = _run_gpg(home, ["--with-colons", "--list-keys"], faked_time=faked).decode()
        fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        key = cls(home, fpr, uid, faked)
        atexit.register(key.close)  # a forgotten key must not leave a gpg-agent behind
        return key

    def _gpg(self, *args: str, data: bytes | None = None) -> bytes:
        return _run_gpg(self.home, list(args), data=data, faked_time=self._faked_time)

    def clearsign(self, data: bytes | str, *, digest: str = "SHA512") -> bytes:
        """InRelease-style clearsigned bytes of DATA (~10 ms). ``digest="SHA1"`` for HAZARDS 7."""
        raw = data.encode() if isinstance(data, str) else data
        return self._gpg(
            "--local-user", self.fingerprint, "--digest-algo", digest, "--clearsign", data=raw
        )

    def detach_sign(
        self, data: bytes | str, *, digest: str = "SHA512", armor: bool = True
    ) -> bytes:
        """Release.gpg-style detached signature of DATA (armored by default, as Debian's)."""
        raw = data.encode() if isinstance(data, str) else data
        args = ["--local-user", self.fingerprint, "--digest-algo", digest, "--detach-sign"]
        return self._gpg(*(["--armor"] if armor else []), *args, data=raw)

    def revoke(self) -> None:
        """Import the key's revocation certificate and re-export the keyring (REVKEYSIG)."""
        rev = self.home / "openpgp-revocs.d" / f"{self.fingerprint}.rev"
        text = rev.read_text().replace(":-----BEGIN", "-----BEGIN")
        self._gpg("--import", data=text.encode())
        self.keyring.write_bytes(self._gpg("--export", self.fingerprint))
        self.armored_keyring.write_bytes(self._gpg("--armor", "--export", self.fingerprint))

    def close(self) -> None:
        """Stop this home's gpg-agent and delete the home. Idempotent."""
        if not self.home.exists():
            return
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> TestKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TestKey({self.fingerprint})"


def _run_gpg(
    home: Path, args: list[str], *, data: bytes | None = None, faked_time: str | None = None
) -> bytes:
    argv = ["gpg", "--homedir", str(home), "--batch", "--quiet", "--no-tty", "--yes"]
    argv += ["--pinentry-mode", "loopback", "--passphrase", ""]
    argv += ["--no-auto-check-trustdb"]
    if faked_time:
        argv += ["--faked-system-time", f"{faked_time}!", "--ignore-time-conflict"]
    # gpg writes to stdout with -o - only for signing; exports go to stdout by default.
    if any(a in args for a in ("--clearsign", "--detach-sign")):
        argv += ["--output", "-"]
    proc = subprocess.run(
        [*argv, *args],
        input=data if data is not None else b"",
        capture_output=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(home)},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {proc.stderr.decode().strip()}")
    return proc.stdout


def release_date(when: datetime | str | None) -> str:
    """RFC 2822 date in UTC as in Debian Release files; strings pass through verbatim."""
    if isinstance(when, str):
        return when
    when = when or datetime.now(UTC)
    return email.utils.format_datetime(when.astimezone(UTC)).replace("+0000", "UTC")


_COMPRESSION_SUFFIX = {"none": "", "xz": ".xz", "gz": ".gz", "zst": ".zst", "bz2": ".bz2"}
_HASHERS = {"MD5Sum": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}
_BY_HASH_DIR = {"MD5Sum": "MD5Sum", "SHA1": "SHA1", "SHA256": "SHA256", "SHA512": "SHA512"}


def _compress_index(data: bytes, kind: str) -> bytes:
    if kind == "bz2":
        import bz2

        return bz2.compress(data)
    return compress(data, kind)


def _pool_dir(component: str, source: str) -> str:
    prefix = source[:4] if source.startswith("lib") and len(source) > 3 else source[:1]
    return f"pool/{component}/{prefix}/{source}"


@dataclass
class Dist:
    """One ``dists/<name>`` directory: its Release fields, index files and signing state."""

    archive_root: Path
    name: str
    key: TestKey
    components: tuple[str, ...]
    archs: tuple[str, ...]
    release_fields: dict[str, str]
    compressions: tuple[str, ...]
    by_hash: bool
    hashes: tuple[str, ...]
    sign: tuple[str, ...]
    #: (component, arch) -> Packages text, as last written
    indexes: dict[tuple[str, str], bytes] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.archive_root / "dists" / self.name

    @property
    def release(self) -> Path:
        return self.path / "Release"

    @property
    def inrelease(self) -> Path:
        return self.path / "InRelease"

    @property
    def release_gpg(self) -> Path:
        return self.path / "Release.gpg"

    def index_path(
        self, component: str = "main", arch: str | None = None, compression: str = "xz"
    ) -> Path:
        """Path of ``<component>/binary-<arch>/Packages<suffix>`` (none, xz, gz, zst, bz2)."""
        arch = arch or self.archs[0]
        return (
            self.path / component / f"binary-{arch}" / f"Packages{_COMPRESSION_SUFFIX[compression]}"
        )

    def url_path(self, relative: str = "") -> str:
        """The URL path (``/dists/<name>/<relative>``) of a file, for FaultServer patterns."""
        return f"/dists/{self.name}/{relative}".rstrip("/")

    def _index_files(self) -> list[str]:
        out = []
        for (component, arch), _ in sorted(self.indexes.items()):
            for kind in ("none", *self.compressions):
                rel = f"{component}/binary-{arch}/Packages{_COMPRESSION_SUFFIX[kind]}"
                if rel not in out:
                    out.append(rel)
        return out

    def write_index(
        self,
        component: str,
        arch: str,
        text: bytes,
        *,
        compressions: Iterable[str] | None = None,
    ) -> None:
        """Write Packages (plain + COMPRESSIONS, default all) and by-hash copies; no resign."""
        self.indexes[(component, arch)] = text
        directory = self.path / component / f"binary-{arch}"
        directory.mkdir(parents=True, exist_ok=True)
        for kind in ("none", *(self.compressions if compressions is None else compressions)):
            data = _compress_index(text, kind)
            (directory / f"Packages{_COMPRESSION_SUFFIX[kind]}").write_bytes(data)
            if self.by_hash:
                for hname in self.hashes:
                    digest = hashlib.new(_HASHERS[hname], data).hexdigest()
                    by_hash = directory / "by-hash" / _BY_HASH_DIR[hname]
                    by_hash.mkdir(parents=True, exist_ok=True)
                    # Copies, not hardlinks: corrupting Packages.xz must leave by-hash intact.
                    (by_hash / digest).write_bytes(data)

    def rewrite_index(
        self,
        edit: Callable[[bytes], bytes] | bytes,
        *,
        component: str = "main",
        arch: str | None = None,
        compressions: Iterable[str] | None = None,
        resign: bool = True,
    ) -> None:
        """Replace one index's text (every compression) and, by default, re-sign Release."""
        arch = arch or self.archs[0]
        old = self.indexes.get((component, arch), b"")
        new = edit(old) if callable(edit) else edit
        self.write_index(component, arch, new, compressions=compressions)
        if resign:
            self.resign()

    def release_text(self) -> str:
        """The Release text for the current fields and the index files now on disk."""
        lines = [f"{k}: {v}" for k, v in self.release_fields.items() if v is not None]
        files = [
            (rel, (self.path / rel).read_bytes())
            for rel in self._index_files()
            if (self.path / rel).is_file()
        ]
        width = max((len(str(len(data))) for _, data in files), default=1)
        for hname in self.hashes:
            lines.append(f"{hname}:")
            for rel, data in files:
                digest = hashlib.new(_HASHERS[hname], data).hexdigest()
                lines.append(f" {digest} {len(data):>{width}} {rel}")
        return "\n".join(lines) + "\n"

    def resign(
        self,
        *,
        key: TestKey | None = None,
        sign: Iterable[str] | None = None,
        digest: str = "SHA512",
    ) -> None:
        """Rewrite Release from ``release_fields`` and the files on disk, then sign it.

        KEY (default the dist's key) signs only this time; SIGN chooses which of InRelease
        and Release.gpg exist afterwards (the others are removed).
        """
        self.sign_text(self.release_text(), key=key, sign=sign, digest=digest)

    def sign_text(
        self,
        text: str | bytes,
        *,
        key: TestKey | None = None,
        sign: Iterable[str] | None = None,
        digest: str = "SHA512",
    ) -> None:
        """Write TEXT verbatim as Release and sign it as InRelease / Release.gpg."""
        raw = text.encode() if isinstance(text, str) else text
        key = key or self.key
        targets = tuple(self.sign if sign is None else sign)
        self.release.write_bytes(raw)
        for name in ("InRelease", "Release.gpg"):
            path = self.path / name
            if name in targets:
                signer = key.clearsign if name == "InRelease" else key.detach_sign
                path.write_bytes(signer(raw, digest=digest))
            elif path.exists():
                path.unlink()

    def replace_file(self, relative: str, data: bytes) -> Path:
        """Overwrite dists/<name>/RELATIVE with DATA, leaving Release and signatures alone."""
        path = self.path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def remove(self, relative: str) -> None:
        """Delete dists/<name>/RELATIVE if it exists (e.g. "InRelease"), no resign."""
        (self.path / relative).unlink(missing_ok=True)

    def corrupt(self, relative: str, offset: int | None = None) -> Path:
        """Flip one byte of dists/<name>/RELATIVE (default: the middle), no resign."""
        path = self.path / relative
        data = bytearray(path.read_bytes())
        where = len(data) // 2 if offset is None else offset
        data[where] ^= 0xFF
        path.write_bytes(bytes(data))
        return path


@dataclass
class Archive:
    """A built archive. The methods of the main ``Dist`` are available directly on it."""

    root: Path
    key: TestKey
    main: Dist
    updates: Dist | None = None
    #: every .deb placed in pool/, in build order
    debs: list[Path] = field(default_factory=list)
    #: package name -> path of its .deb (the last one built wins)
    deb_by_name: dict[str, Path] = field(default_factory=dict)
    dists: dict[str, Dist] = field(default_factory=dict)

    @property
    def keyring(self) -> Path:
        return self.key.keyring

    @property
    def codename(self) -> str:
        return self.main.name

    @property
    def release_fields(self) -> dict[str, str]:
        return self.main.release_fields

    @property
    def release(self) -> Path:
        return self.main.release

    @property
    def inrelease(self) -> Path:
        return self.main.inrelease

    @property
    def release_gpg(self) -> Path:
        return self.main.release_gpg

    def index_path(
        self, component: str = "main", arch: str | None = None, compression: str = "xz"
    ) -> Path:
        return self.main.index_path(component, arch, compression)

    def resign(
        self,
        *,
        key: TestKey | None = None,
        sign: Iterable[str] | None = None,
        digest: str = "SHA512",
    ) -> None:
        self.main.resign(key=key, sign=sign, digest=digest)

    def sign_text(
        self,
        text: str | bytes,
        *,
        key: TestKey | None = None,
        sign: Iterable[str] | None = None,
        digest: str = "SHA512",
    ) -> None:
        self.main.sign_text(text, key=key, sign=sign, digest=digest)

    def rewrite_index(
        self,
        edit: Callable[[bytes], bytes] | bytes,
        *,
        component: str = "main",
        arch: str | None = None,
        compressions: Iterable[str] | None = None,
        resign: bool = True,
    ) -> None:
        self.main.rewrite_index(
            edit, component=component, arch=arch, compressions=compressions, resign=resign
        )

    def replace_file(self, relative: str, data: bytes) -> Path:
        return self.main.replace_file(relative, data)

    def corrupt(self, relative: str, offset: int | None = None) -> Path:
        return self.main.corrupt(relative, offset)

    def remove(self, relative: str) -> None:
        self.main.remove(relative)

    def pool_path(self, name: str) -> Path:
        """The .deb of package NAME (raises KeyError if absent)."""
        return self.deb_by_name[name]

    def url_path(self, path: Path) -> str:
        """The URL path of a file under the archive root (``/pool/main/...``)."""
        return "/" + Path(path).relative_to(self.root).as_posix()

    def add_dist(
        self,
        name: str,
        packages: Sequence[DebSpec | Path] | Mapping[str, Sequence[DebSpec | Path]],
        *,
        suite: str | None = None,
        **release: str,
    ) -> Dist:
        """Add another suite ``dists/NAME`` sharing this pool (e.g. ``bookworm-updates``)."""
        base = self.main
        fields = dict(base.release_fields)
        fields["Suite"] = suite or name
        fields["Codename"] = name
        fields.update(release)
        dist = Dist(
            self.root,
            name,
            self.key,
            base.components,
            base.archs,
            fields,
            base.compressions,
            base.by_hash,
            base.hashes,
            base.sign,
        )
        _populate_dist(self, dist, packages)
        self.dists[name] = dist
        return dist


def _stanza(control: str, filename: str, data: bytes) -> str:
    control = control.rstrip("\n")
    return (
        f"{control}\nFilename: {filename}\nSize: {len(data)}\n"
        f"MD5sum: {hashlib.md5(data).hexdigest()}\n"
        f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
    )


def _control_arch(control: str) -> str:
    for line in control.splitlines():
        if line.lower().startswith("architecture:"):
            return line.split(":", 1)[1].strip()
    return ""


def _control_field(control: str, name: str) -> str:
    for line in control.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _control_or_guess(data: bytes, filename: str) -> str:
    """The .deb's control text; for a deliberately broken .deb, fields from its file name
    (``name_version_arch.deb``), so broken packages can still be listed in an index."""
    try:
        return read_control(data)
    except Exception:
        name, _, rest = filename.removesuffix(".deb").partition("_")
        version, _, arch = rest.partition("_")
        return DebSpec(name, version or "1.0", arch or "amd64").control()


def _populate_dist(
    archive: Archive,
    dist: Dist,
    packages: Sequence[DebSpec | Path] | Mapping[str, Sequence[DebSpec | Path]],
    deb_compression: str = "xz",
) -> None:
    by_comp = packages if isinstance(packages, Mapping) else {dist.components[0]: packages}
    specs = {item for items in by_comp.values() for item in items if isinstance(item, DebSpec)}
    if len(specs) > 1:
        # dpkg-deb is a subprocess: two at a time halves the cold build (2 cores here).
        with ThreadPoolExecutor(max_workers=2) as executor:
            list(executor.map(lambda spec: cached_build(spec, deb_compression), specs))  # type: ignore[arg-type]
    stanzas: dict[tuple[str, str], list[str]] = {
        (c, a): [] for c in dist.components for a in dist.archs
    }
    for component, items in by_comp.items():
        if component not in dist.components:
            raise ValueError(f"component {component!r} not in {dist.components}")
        for item in items:
            if isinstance(item, DebSpec):
                source = item.source.split(" ")[0] or item.name
                pool = archive.root / _pool_dir(component, source)
                deb = build_deb(item, pool, deb_compression)  # type: ignore[arg-type]
                control = read_control(deb)
            else:
                data = Path(item).read_bytes()
                control = _control_or_guess(data, Path(item).name)
                name = _control_field(control, "Package") or Path(item).stem
                source = _control_field(control, "Source").split(" ")[0] or name
                pool = archive.root / _pool_dir(component, source)
                pool.mkdir(parents=True, exist_ok=True)
                deb = pool / Path(item).name
                if Path(item).resolve() != deb.resolve():
                    shutil.copyfile(item, deb)
            data = deb.read_bytes()
            filename = deb.relative_to(archive.root).as_posix()
            stanza = _stanza(control, filename, data)
            archive.debs.append(deb)
            archive.deb_by_name[_control_field(control, "Package")] = deb
            pkg_arch = _control_arch(control)
            targets = [a for a in dist.archs if pkg_arch in (a, "all")] or list(dist.archs)
            for a in targets:
                stanzas[(component, a)].append(stanza)
    for (component, a), entries in stanzas.items():
        dist.write_index(component, a, "\n".join(entries).encode())
    dist.resign()


def build_archive(
    root: Path,
    packages: Sequence[DebSpec | Path] | Mapping[str, Sequence[DebSpec | Path]],
    *,
    key: TestKey,
    codename: str = "bookworm",
    suite: str = "stable",
    version: str = "12.0",
    components: Sequence[str] = ("main",),
    arch: str | Sequence[str] = "amd64",
    origin: str = "Debian",
    label: str = "Debian",
    date: datetime | str | None = None,
    valid_until: datetime | str | timedelta | None = None,
    compressions: Sequence[str] = ("xz", "gz"),
    by_hash: bool = True,
    hashes: Sequence[str] = ("MD5Sum", "SHA256"),
    extra_release: Mapping[str, str | None] | None = None,
    sign: Sequence[str] = ("InRelease", "Release.gpg"),
    deb_compression: str = "xz",
    updates: Sequence[DebSpec | Path] | Mapping[str, Sequence[DebSpec | Path]] | None = None,
) -> Archive:
    """Write a signed Debian-layout archive under ROOT and return it.

    ``date`` defaults to now; ``valid_until`` may be a timedelta after ``date``. Fields in
    ``extra_release`` are added, replaced, or (value None) removed. ``compressions`` are the
    compressed Packages variants (xz, gz, zst, bz2); plain ``Packages`` is always written and
    listed. ``updates`` adds ``dists/<codename>-updates`` (Suite ``<suite>-updates``).
    Cost: ~20-40 ms per new .deb, ~30 ms per signature.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archs = (arch,) if isinstance(arch, str) else tuple(arch)
    when = date if date is not None else datetime.now(UTC).replace(microsecond=0)
    fields: dict[str, str] = {
        "Origin": origin,
        "Label": label,
        "Suite": suite,
        "Version": version,
        "Codename": codename,
        "Date": release_date(when),
    }
    if valid_until is not None:
        if isinstance(valid_until, timedelta):
            if not isinstance(when, datetime):
                raise ValueError("a timedelta valid_until needs a datetime date")
            valid_until = when + valid_until
        fields["Valid-Until"] = release_date(valid_until)
    if by_hash:
        fields["Acquire-By-Hash"] = "yes"
    fields["Architectures"] = " ".join(archs)
    fields["Components"] = " ".join(components)
    fields["Description"] = f"Rootstrap test archive {codename}"
    for name, value in (extra_release or {}).items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    dist = Dist(
        root,
        codename,
        key,
        tuple(components),
        archs,
        fields,
        tuple(compressions),
        by_hash,
        tuple(hashes),
        tuple(sign),
    )
    archive = Archive(root, key, dist)
    archive.dists[codename] = dist
    _populate_dist(archive, dist, packages, deb_compression)
    if suite != codename:
        link = root / "dists" / suite
        if not link.exists():
            link.symlink_to(codename)
    if updates is not None:
        archive.updates = archive.add_dist(f"{codename}-updates", updates, suite=f"{suite}-updates")
    return archive
