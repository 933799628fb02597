"""The signed Release file: fetch, verify, and check it before anything else is trusted.

The chain of trust starts here (apt-secure(8)): the Release lists the size and SHA256 of every
index, each index those of every .deb. So this module is strict where apt is lenient:

* ``InRelease`` is capped at 10 MB (apt's ``Acquire::MaxReleaseFileSize``; HAZARDS 13).
  ``Release`` + ``Release.gpg`` is tried only when ``InRelease`` is absent (404); an unsigned
  Release is never used unless the caller passes ``insecure=True`` (HAZARDS 5, apt-secure).
* The clearsigned file must be exactly one signed block: nothing before ``BEGIN PGP SIGNED
  MESSAGE``, nothing but blank lines after ``END PGP SIGNATURE``, armor lines spelled exactly
  (CVE-2013-1051, CVE-2016-1252; HAZARDS 3). Only the bytes pysequoia returns as verified are
  parsed (docs/decisions.md, "Signatures": text around the block is ignored by the verifier,
  not rejected).
* A detached ``Release.gpg`` must hold signature packets and nothing else (CVE-2019-3462's
  payload trick; HAZARDS 4). Each packet is verified on its own (pysequoia's ``Sig`` keeps only
  the first signature of a file).
* Sequoia's standard policy rejects SHA1/MD5 signatures and revoked keys (HAZARDS 6, 7); it
  accepts a signature made before its key expired, so expiry *now* is checked here, as gpgv's
  EXPKEYSIG does, unless ``allow_expired_keys`` (snapshot archives, as mmdebstrap's
  ``gpgvnoexpkeysig``).
* Suite or Codename must equal the requested suite (apt only warns, acquire-item.cc:1890;
  HAZARDS 11), ``Date`` may be at most 10 s ahead, ``Valid-Until`` must not have passed
  (debmetaindex.cc; HAZARDS 8–10), and SHA256 entries must exist (hashes.cc; HAZARDS 12).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from rootstrap.errors import DownloadError, KeyringError, VerificationError

log = logging.getLogger(__name__)

__all__ = [
    "MAX_RELEASE_SIZE",
    "FileEntry",
    "HttpLike",
    "Release",
    "ReleasePolicy",
    "check_release",
    "fetch_release",
    "load_keyring",
    "parse_release",
    "verify_clearsigned",
    "verify_detached",
]

MAX_RELEASE_SIZE: Final = 10_000_000  # apt's Acquire::MaxReleaseFileSize default
MAX_FUTURE: Final = timedelta(seconds=10)  # apt's Acquire::Max-FutureTime default

_BEGIN_SIGNED = b"-----BEGIN PGP SIGNED MESSAGE-----"
_BEGIN_SIG = b"-----BEGIN PGP SIGNATURE-----"
_END_SIG = b"-----END PGP SIGNATURE-----"
_ARMOR_LINE = re.compile(rb"-----(BEGIN|END) PGP")
_WEAK_HASHES = frozenset({"MD5", "SHA1", "RipeMD"})
_HASH_NAMES = {1: "MD5", 2: "SHA1", 3: "RipeMD", 8: "SHA256", 9: "SHA384", 10: "SHA512"}
_SHA256_LINE = re.compile(r"^([0-9a-f]{64})\s+([0-9]+)\s+(\S+)$")


class HttpLike(Protocol):
    """What this layer needs of :class:`rootstrap.archive.http.Http`."""

    def get(self, url: str, *, max_size: int) -> bytes: ...

    def stream(
        self, url: str, *, size: int | None, sha256: str | None, max_size: int
    ) -> Any: ...  # Iterator[bytes]


@dataclass(frozen=True)
class ReleasePolicy:
    """The checks a Release must pass. The defaults are the safe ones.

    ``insecure``: accept an unsigned or unverifiable Release (logged loudly).
    ``allow_expired_keys`` and ``ignore_valid_until``: for snapshot archives, whose keys and
    Valid-Until have long passed (mmdebstrap documents the same two opt-ins).
    """

    insecure: bool = False
    allow_expired_keys: bool = False
    ignore_valid_until: bool = False
    ignore_date: bool = False
    now: datetime | None = None  # for tests; default: the clock

    def clock(self) -> datetime:
        return self.now or datetime.now(UTC)


@dataclass(frozen=True)
class FileEntry:
    """An index file the Release vouches for."""

    size: int
    sha256: str


@dataclass(frozen=True)
class Release:
    """A verified and checked Release file. ``files`` maps paths below ``dists/<suite>/``."""

    url: str
    origin: str
    label: str
    suite: str
    codename: str
    version: str
    date: datetime
    valid_until: datetime | None
    architectures: tuple[str, ...]
    components: tuple[str, ...]
    acquire_by_hash: bool
    files: dict[str, FileEntry] = field(repr=False)
    fingerprints: tuple[str, ...]  # primary keys of the valid signatures; () when insecure
    weak_only: frozenset[str] = field(default=frozenset(), repr=False)  # MD5/SHA1-only paths
    fields: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def base(self) -> str:
        """The ``dists/<suite>`` URL the Release came from (its paths are relative to it)."""
        return self.url.rsplit("/", 1)[0]


# ---------------------------------------------------------------------------------------------
# Keyrings


def load_keyring(paths: Iterable[Path]) -> list[Any]:
    """Every certificate of the keyring files PATHS (binary or armored). Costs ~1 ms per file.

    A missing, unreadable, empty or non-OpenPGP file is an error, never a warning: debootstrap
    carries on without checking when its keyring is missing (HAZARDS 14), we do not.
    """
    import pysequoia

    certs: list[Any] = []
    paths = list(paths)
    if not paths:
        raise KeyringError("no keyring given", hint="pass --keyring FILE")
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise KeyringError(
                "keyring not found",
                subject=str(path),
                hint="install the distribution's archive keyring package or pass --keyring FILE",
            ) from exc
        except IsADirectoryError as exc:
            raise KeyringError("keyring is a directory", subject=str(path)) from exc
        except OSError as exc:
            raise KeyringError(f"cannot read keyring: {exc.strerror}", subject=str(path)) from exc
        if not data.strip():
            raise KeyringError("keyring is empty", subject=str(path))
        try:
            found = pysequoia.Cert.split_bytes(data)
        except Exception as exc:  # pysequoia raises bare exceptions with a Rust backtrace
            raise KeyringError("not an OpenPGP keyring", subject=str(path)) from exc
        if not found:
            raise KeyringError("not an OpenPGP keyring (no certificates)", subject=str(path))
        certs.extend(found)
    return certs


def _cert_keys(cert: Any) -> dict[str, datetime | None]:
    """Fingerprint and key id (lowercase hex) of the primary key and each subkey -> its expiry.

    The primary key's expiry is pysequoia's; a subkey's comes from its newest binding signature.
    """
    from pysequoia.packet import PacketPile, Tag

    keys: dict[str, datetime | None] = {}
    primary = cert.fingerprint.lower()
    keys[primary] = cert.expiration
    current: str | None = None
    created: datetime | None = None
    newest: datetime | None = None
    for packet in PacketPile.from_bytes(bytes(cert)):
        if packet.tag in (Tag.PublicKey, Tag.PublicSubkey):
            current = packet.fingerprint.lower()
            created = packet.key_created
            newest = None
            keys.setdefault(current, None)
        elif packet.tag == Tag.Signature and current and current != primary and created:
            when = packet.signature_created
            if newest is None or (when is not None and when >= newest):
                newest = when
                period = packet.key_validity_period
                keys[current] = created + period if period else None
    for fpr in list(keys):
        keys.setdefault(fpr[-16:], keys[fpr])
    return keys


# ---------------------------------------------------------------------------------------------
# Signatures


def _signed_body(data: bytes, subject: str) -> None:
    """Check that DATA is exactly one clearsigned block (HAZARDS 3, 5, 44) or raise."""
    text = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if not text.startswith(_BEGIN_SIGNED):
        head = text.lstrip()[:200].lower()
        if head.startswith((b"<!doctype", b"<html", b"<?xml")) or b"<html" in head:
            raise VerificationError(
                "not a clearsigned file; does the network require authentication? (got an "
                "HTML page)",
                subject=subject,
                hint="a captive portal or a proxy login page answered instead of the mirror",
            )
        if _BEGIN_SIGNED in text:
            raise VerificationError(
                "data before the signed block; refusing the whole file", subject=subject
            )
        raise VerificationError(
            "not a clearsigned file; does the network require authentication?",
            subject=subject,
            hint="an unsigned Release is never used; --insecure overrides (not recommended)",
        )
    lines = text.split(b"\n")
    armor = []
    for number, line in enumerate(lines, 1):
        if _ARMOR_LINE.search(line):
            armor.append((number, line.rstrip(b"\r")))
    kinds = [line for _n, line in armor]
    if kinds != [_BEGIN_SIGNED, _BEGIN_SIG, _END_SIG]:
        expected = (_BEGIN_SIGNED, _BEGIN_SIG, _END_SIG)
        wrong = [n for (n, line), want in zip(armor, expected, strict=False) if line != want]
        bad = wrong[0] if wrong else armor[min(len(armor), 4) - 1][0]
        raise VerificationError(
            f"malformed clearsigned file (unexpected armor at line {bad}: exactly one signed "
            "block is allowed)",
            subject=subject,
        )
    end_line = armor[2][0]
    trailer = b"\n".join(lines[end_line:])
    if trailer.strip():
        raise VerificationError(
            "data after the signature block; refusing the whole file", subject=subject
        )
    # Release fields never begin with '-': a dash-escaped line is someone hiding armor.
    begin_sig = armor[1][0]
    for number in range(2, begin_sig):
        if lines[number - 1].startswith(b"-"):
            raise VerificationError(
                f"malformed clearsigned file (dash-escaped line {number})", subject=subject
            )


def _describe_failure(
    signatures: Sequence[tuple[str | None, int | None]],
    certs: Sequence[Any],
    subject: str,
    keyring_names: str,
) -> VerificationError:
    """Turn pysequoia's one generic failure into apt's distinctions (NO_PUBKEY, weak, revoked)."""
    known: dict[str, Any] = {}
    for cert in certs:
        for key in _cert_keys(cert):
            known[key] = cert
    if not signatures:
        return VerificationError("no signature found", subject=subject)
    issuers = []
    for issuer, _algo in signatures:
        issuer = (issuer or "unknown").lower()
        issuers.append(issuer)
    weak = [(i, a) for i, (_f, a) in zip(issuers, signatures, strict=True)
            if _HASH_NAMES.get(a or 0) in _WEAK_HASHES]  # fmt: skip
    mine = [i for i in issuers if i in known or i[-16:] in known]
    if not mine:
        return VerificationError(
            f"signed by a key not in the keyring (NO_PUBKEY {', '.join(issuers)})",
            subject=subject,
            hint=f"keyring used: {keyring_names}; pass --keyring with the archive's key",
        )
    for issuer in mine:
        cert = known.get(issuer) or known[issuer[-16:]]
        if cert.is_revoked:
            return VerificationError(
                f"signed by a revoked key (REVKEYSIG {cert.fingerprint.lower()})", subject=subject
            )
    if weak:
        issuer, algo = weak[0]
        return VerificationError(
            f"signature uses a weak digest ({_HASH_NAMES.get(algo or 0)}) by {issuer}; refusing",
            subject=subject,
        )
    return VerificationError(
        f"signature invalid (BADSIG by {', '.join(mine)}): the file was modified after signing",
        subject=subject,
        hint="the mirror may be broken or tampered with; try another mirror",
    )


def _hash_id(algo: Any) -> int | None:
    name = str(algo).rsplit(".", 1)[-1]
    return next((k for k, v in _HASH_NAMES.items() if v == name), None)


def _check_expiry(
    valid: list[tuple[str, str]],
    certs: Sequence[Any],
    policy: ReleasePolicy,
    subject: str,
) -> tuple[str, ...]:
    """The primary fingerprints of VALID signatures whose keys have not expired (EXPKEYSIG)."""
    now = policy.clock()
    by_fpr = {cert.fingerprint.lower(): cert for cert in certs}

    def expiry(primary: str, signing: str) -> datetime | None:
        cert = by_fpr.get(primary)
        if cert is None:
            return None
        dates = [cert.expiration]
        if signing != primary:
            # Parsing a certificate's packets costs ~15 ms: only for a subkey signature.
            dates.append(_cert_keys(cert).get(signing))
        # A signature is as dead as the first of its primary key and its subkey.
        found = [d for d in dates if d is not None]
        return min(found) if found else None

    good: list[str] = []
    expired: list[tuple[str, datetime]] = []
    for primary, signing in valid:
        when = expiry(primary.lower(), signing.lower())
        if when is not None and when <= now:
            expired.append((primary.lower(), when))
        else:
            good.append(primary.lower())
    if not good and expired:
        if not policy.allow_expired_keys:
            fpr, when = expired[0]
            raise VerificationError(
                f"signed by an expired key (EXPKEYSIG {fpr}, expired {when:%Y-%m-%d})",
                subject=subject,
                hint="for snapshot archives pass --allow-expired-keys",
            )
        log.warning("%s: accepting a signature by expired key %s", subject, expired[0][0])
        good = [fpr for fpr, _when in expired]
    return tuple(dict.fromkeys(good))


def verify_clearsigned(
    data: bytes, certs: Sequence[Any], *, subject: str, policy: ReleasePolicy, keyring_names: str
) -> tuple[bytes, tuple[str, ...]]:
    """Verify an InRelease; return (the signed text only, primary fingerprints of valid signers).

    Costs ~2 ms for Debian's 150 kB InRelease. Raises VerificationError naming SUBJECT.
    """
    import pysequoia
    from pysequoia.packet import PacketPile, Tag

    _signed_body(data, subject)
    try:
        result = pysequoia.verify(bytes=data, store=lambda _ids: list(certs))
    except Exception as exc:  # a generic RuntimeError; say which of apt's cases it was
        try:
            sigs = [
                (p.issuer_fingerprint or p.issuer_key_id, _hash_id(p.hash_algorithm))
                for p in PacketPile.from_bytes(data)
                if p.tag == Tag.Signature
            ]
        except Exception:
            sigs = []
        raise _describe_failure(sigs, certs, subject, keyring_names) from exc
    valid = [(s.certificate, s.signing_key) for s in result.valid_sigs]
    if not valid:
        raise VerificationError("no valid signature", subject=subject)
    fingerprints = _check_expiry(valid, certs, policy, subject)
    if result.bytes is None:
        raise VerificationError("the verifier returned no signed text", subject=subject)
    return bytes(result.bytes), fingerprints


def _dearmor(data: bytes, subject: str) -> bytes:
    """The binary packets of an armored detached signature; anything else is extra data."""
    lines = [line.rstrip(b"\r") for line in data.split(b"\n")]
    armor = [n for n, line in enumerate(lines) if _ARMOR_LINE.search(line)]
    if [lines[n] for n in armor] != [_BEGIN_SIG, _END_SIG]:
        raise VerificationError("detached signature file has extra data", subject=subject)
    begin, end = armor
    if any(line.strip() for line in lines[:begin]) or any(
        line.strip() for line in lines[end + 1 :]
    ):
        raise VerificationError("detached signature file has extra data", subject=subject)
    body = lines[begin + 1 : end]
    # RFC 4880 §6.2: armor headers, a blank line, base64, then an optional "=CRC" line.
    if b"" in body:
        body = body[body.index(b"") + 1 :]
    if body and body[-1].startswith(b"="):
        body = body[:-1]
    try:
        return base64.b64decode(b"".join(body), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("detached signature is not valid base64", subject=subject) from exc


def _split_packets(data: bytes, subject: str) -> list[bytes]:
    """OpenPGP packets of DATA (RFC 4880 §4.2), each as its own bytes; only signatures allowed."""
    packets = []
    pos = 0
    while pos < len(data):
        first = data[pos]
        if not first & 0x80:
            raise VerificationError("detached signature file has extra data", subject=subject)
        if first & 0x40:  # new format
            tag = first & 0x3F
            octet = data[pos + 1] if pos + 1 < len(data) else 0
            if octet < 192:
                length, head = octet, 2
            elif octet < 224:
                length, head = ((octet - 192) << 8) + data[pos + 2] + 192, 3
            elif octet == 255:
                length, head = int.from_bytes(data[pos + 2 : pos + 6], "big"), 6
            else:  # partial body lengths never frame a signature
                raise VerificationError("detached signature file has extra data", subject=subject)
        else:
            tag = (first >> 2) & 0x0F
            kind = first & 0x03
            if kind == 3:
                raise VerificationError("detached signature file has extra data", subject=subject)
            width = 1 << kind
            length = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
            head = 1 + width
        end = pos + head + length
        if tag != 2 or end > len(data):
            raise VerificationError("detached signature file has extra data", subject=subject)
        packets.append(data[pos:end])
        pos = end
    if not packets:
        raise VerificationError("detached signature file holds no signature", subject=subject)
    return packets


def verify_detached(
    release: bytes,
    signature: bytes,
    certs: Sequence[Any],
    *,
    subject: str,
    policy: ReleasePolicy,
    keyring_names: str,
) -> tuple[bytes, tuple[str, ...]]:
    """Verify Release against Release.gpg; return (Release, primary fingerprints of valid signers).

    Every packet of SIGNATURE must be a signature (HAZARDS 4); each is checked on its own."""
    import pysequoia

    stripped = signature.lstrip()
    binary = _dearmor(signature, subject) if stripped.startswith(b"-----") else signature
    packets = _split_packets(binary, subject)
    valid: list[tuple[str, str]] = []
    described: list[tuple[str | None, int | None]] = []
    for packet in packets:
        try:
            sig = pysequoia.Sig.from_bytes(packet)
        except Exception as exc:
            raise VerificationError("unreadable signature packet", subject=subject) from exc
        described.append(
            (sig.issuer_fingerprint or sig.issuer_key_id, _hash_id(sig.hash_algorithm))
        )
        try:
            result = pysequoia.verify(bytes=release, store=lambda _ids: list(certs), signature=sig)
        except Exception:
            continue
        valid += [(s.certificate, s.signing_key) for s in result.valid_sigs]
    if not valid:
        raise _describe_failure(described, certs, subject, keyring_names)
    return release, _check_expiry(valid, certs, policy, subject)


# ---------------------------------------------------------------------------------------------
# Parsing and checks


def _fields(text: str, subject: str) -> dict[str, str]:
    """The fields of a one-paragraph deb822 text; keys lowercased."""
    fields: dict[str, str] = {}
    key = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line:
            if fields:
                # A second paragraph in a Release is not something apt reads either.
                rest = text.splitlines()[number:]
                if any(r.strip() for r in rest):
                    raise VerificationError(
                        f"Release has more than one paragraph (line {number + 1})", subject=subject
                    )
            continue
        if line[0] in " \t":
            if not key:
                raise VerificationError(f"continuation line {number} outside a field",
                                        subject=subject)  # fmt: skip
            fields[key] += "\n" + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or " " in name:
            raise VerificationError(f"malformed Release line {number}", subject=subject)
        key = name.lower()
        if key in fields:
            raise VerificationError(f"duplicate field {name!r} in Release", subject=subject)
        fields[key] = value.strip()
    return fields


def _date(fields: dict[str, str], name: str, subject: str) -> datetime | None:
    value = fields.get(name.lower())
    if value is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError) as exc:
        raise VerificationError(f"invalid {name} {value!r}", subject=subject) from exc
    if when.tzinfo is None:
        # RFC 2822 "-0000" means "no zone information"; Release dates are UTC (debmetaindex.cc).
        when = when.replace(tzinfo=UTC)
    return when


def parse_release(text: bytes, *, url: str, fingerprints: tuple[str, ...] = ()) -> Release:
    """Parse the verified bytes of a Release (no checks of dates or suite; see check_release)."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VerificationError("Release is not UTF-8", subject=url) from exc
    fields = _fields(decoded, url)
    date = _date(fields, "Date", url)
    if date is None:
        raise VerificationError("invalid Date (missing)", subject=url)
    valid_until = _date(fields, "Valid-Until", url)
    files: dict[str, FileEntry] = {}
    for number, line in enumerate(fields.get("sha256", "").split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        match = _SHA256_LINE.match(line)
        if not match:
            raise VerificationError(f"malformed SHA256 entry {number}: {line!r}", subject=url)
        digest, size, path = match.groups()
        files[path] = FileEntry(int(size), digest)
    weak: set[str] = set()
    for name in ("md5sum", "sha1"):
        for line in fields.get(name, "").split("\n"):
            parts = line.split()
            if len(parts) == 3 and parts[2] not in files:
                weak.add(parts[2])
    if not files:
        raise VerificationError(
            "Release provides only weak security information (no SHA256 entries)"
            if weak
            else "Release lists no SHA256 entries",
            subject=url,
            hint="MD5 and SHA1 are not accepted (apt refuses them the same way)",
        )
    return Release(
        url=url,
        origin=fields.get("origin", ""),
        label=fields.get("label", ""),
        suite=fields.get("suite", ""),
        codename=fields.get("codename", ""),
        version=fields.get("version", ""),
        date=date,
        valid_until=valid_until,
        architectures=tuple(fields.get("architectures", "").split()),
        components=tuple(fields.get("components", "").split()),
        acquire_by_hash=fields.get("acquire-by-hash", "").lower() == "yes",
        files=files,
        fingerprints=fingerprints,
        weak_only=frozenset(weak),
        fields=fields,
    )


def check_release(release: Release, suite: str, policy: ReleasePolicy) -> None:
    """Suite/Codename, Date and Valid-Until checks (HAZARDS 8–11). Raises VerificationError."""
    url = release.url
    if suite not in (release.suite, release.codename):
        raise VerificationError(
            f"Release is for suite {release.suite or '?'} (codename {release.codename or '?'}),"
            f" not {suite}: refusing a replayed or misplaced Release",
            subject=url,
            hint="the mirror serves the wrong release at this path; try another mirror",
        )
    now = policy.clock()
    if not policy.ignore_date and release.date > now + MAX_FUTURE:
        ahead = int((release.date - now).total_seconds())
        raise VerificationError(
            f"Release is not valid yet (Date {release.date:%Y-%m-%d %H:%M:%S} UTC is {ahead} s "
            "in the future)",
            subject=url,
            hint="check this machine's clock",
        )
    if release.valid_until is not None and not policy.ignore_valid_until:
        if release.valid_until < now:
            raise VerificationError(
                f"Release expired since {release.valid_until:%Y-%m-%d %H:%M:%S} UTC (Valid-Until)",
                subject=url,
                hint="the mirror is stale or replays an old Release; for snapshot archives "
                "pass --ignore-valid-until",
            )


def _not_found(exc: DownloadError) -> bool:
    return getattr(exc, "status", None) in (404, 410)


def fetch_release(
    http: HttpLike,
    mirror: str,
    suite: str,
    certs: Sequence[Any] | None,
    *,
    policy: ReleasePolicy = ReleasePolicy(),
    keyring_names: str = "",
) -> Release:
    """Fetch, verify, parse and check ``<mirror>/dists/<suite>/InRelease`` (or Release.gpg).

    CERTS is the result of :func:`load_keyring` (None only with ``policy.insecure``). Costs one
    or three requests and ~2 ms of verification. Raises VerificationError, KeyringError or
    DownloadError naming the URL; on any error nothing is cached or written.
    """
    base = f"{mirror.rstrip('/')}/dists/{suite}"
    inrelease = f"{base}/InRelease"
    try:
        data = http.get(inrelease, max_size=MAX_RELEASE_SIZE)
    except DownloadError as exc:
        if not _not_found(exc):
            if "cap" in exc.message:
                raise VerificationError(
                    f"InRelease is larger than {MAX_RELEASE_SIZE} bytes; refusing",
                    subject=inrelease,
                ) from exc
            raise
        log.info("%s: not found; trying Release + Release.gpg", inrelease)
        return _fetch_detached(http, base, suite, certs, policy, keyring_names)
    if certs is None:
        if not policy.insecure:
            raise KeyringError("no keyring to verify with", subject=inrelease)
        return _insecure(data, inrelease, suite, policy)
    try:
        signed, fingerprints = verify_clearsigned(
            data, certs, subject=inrelease, policy=policy, keyring_names=keyring_names
        )
    except VerificationError:
        if policy.insecure:
            return _insecure(data, inrelease, suite, policy)
        raise
    release = parse_release(signed, url=inrelease, fingerprints=fingerprints)
    check_release(release, suite, policy)
    return release


def _fetch_detached(
    http: HttpLike,
    base: str,
    suite: str,
    certs: Sequence[Any] | None,
    policy: ReleasePolicy,
    keyring_names: str,
) -> Release:
    url = f"{base}/Release"
    try:
        data = http.get(url, max_size=MAX_RELEASE_SIZE)
    except DownloadError as exc:
        if _not_found(exc):
            raise VerificationError(
                "the repository has no InRelease and no Release file", subject=base,
                hint="check the mirror URL and the suite name",
            ) from exc  # fmt: skip
        raise
    try:
        signature = http.get(f"{url}.gpg", max_size=MAX_RELEASE_SIZE)
    except DownloadError as exc:
        if not _not_found(exc):
            raise
        if policy.insecure:
            return _insecure(data, url, suite, policy)
        raise VerificationError(
            "the repository is not signed (no InRelease, no Release.gpg); refusing",
            subject=url,
            hint="an unsigned repository is never used; --insecure overrides (not recommended)",
        ) from exc
    if certs is None:
        if not policy.insecure:
            raise KeyringError("no keyring to verify with", subject=url)
        return _insecure(data, url, suite, policy)
    try:
        signed, fingerprints = verify_detached(
            data, signature, certs, subject=f"{url}.gpg", policy=policy,
            keyring_names=keyring_names,
        )  # fmt: skip
    except VerificationError:
        if policy.insecure:
            return _insecure(data, url, suite, policy)
        raise
    release = parse_release(signed, url=url, fingerprints=fingerprints)
    check_release(release, suite, policy)
    return release


def _insecure(data: bytes, url: str, suite: str, policy: ReleasePolicy) -> Release:
    """The explicit, loudly logged escape hatch: parse a Release nobody vouches for."""
    log.warning("WARNING: %s: using an UNVERIFIED Release because of --insecure", url)
    text = data
    if data.lstrip().startswith(_BEGIN_SIGNED):
        # Still parse only the body between the armor lines, never text around them.
        body = data.split(b"\n\n", 1)[1] if b"\n\n" in data else b""
        text = body.split(b"\n" + _BEGIN_SIG, 1)[0]
    release = parse_release(text, url=url)
    check_release(release, suite, policy)
    return release
