"""OpenPGP signatures over a Release: the keyring, the verifier, and the armor rules.

Everything here is about the signature, nothing about what the signed text says (that is
:mod:`rootstrap.archive.release`). The rules are stricter than gpgv's (apt-secure(8)):

* The clearsigned file must be exactly one signed block: nothing before ``BEGIN PGP SIGNED
  MESSAGE``, nothing but blank lines after ``END PGP SIGNATURE``, armor lines spelled exactly
  (CVE-2013-1051, CVE-2016-1252; HAZARDS 3). Only the bytes pysequoia returns as verified are
  handed on (docs/decisions.md, "Signatures": text around the block is ignored by the verifier, not
  rejected), so the Release parser never sees the armor or anything outside it.
* A detached ``Release.gpg`` must hold signature packets and nothing else (CVE-2019-3462's
  payload trick; HAZARDS 4). Each packet is verified on its own (pysequoia's ``Sig`` keeps only
  the first signature of a file).
* Sequoia's standard policy rejects SHA1/MD5 signatures and revoked keys (HAZARDS 6, 7); it
  accepts a signature made before its key expired, so expiry *now* is checked here, as gpgv's
  EXPKEYSIG does, unless ``allow_expired_keys`` (snapshot archives, as mmdebstrap's
  ``gpgvnoexpkeysig``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from rootstrap.errors import KeyringError, VerificationError

log = logging.getLogger(__name__)

__all__ = [
    "SignaturePolicy",
    "load_keyring",
    "unverified_body",
    "verify_clearsigned",
    "verify_detached",
]

_BEGIN_SIGNED = b"-----BEGIN PGP SIGNED MESSAGE-----"
_BEGIN_SIG = b"-----BEGIN PGP SIGNATURE-----"
_END_SIG = b"-----END PGP SIGNATURE-----"
_ARMOR_LINE = re.compile(rb"-----(BEGIN|END) PGP")
_WEAK_HASHES = frozenset({"MD5", "SHA1", "RipeMD"})
_HASH_NAMES = {1: "MD5", 2: "SHA1", 3: "RipeMD", 8: "SHA256", 9: "SHA384", 10: "SHA512"}


class SignaturePolicy(Protocol):
    """What verification needs of a policy (:class:`rootstrap.archive.release.ReleasePolicy`)."""

    @property
    def allow_expired_keys(self) -> bool: ...

    def clock(self) -> datetime: ...


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
    policy: SignaturePolicy,
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
    data: bytes, certs: Sequence[Any], *, subject: str, policy: SignaturePolicy, keyring_names: str
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
    policy: SignaturePolicy,
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


def unverified_body(data: bytes) -> bytes:
    """The text of a clearsigned DATA without checking anything, for ``--insecure`` only.

    Still only the body between the armor lines, never text around them; DATA that is not
    clearsigned is returned as it is."""
    if not data.lstrip().startswith(_BEGIN_SIGNED):
        return data
    body = data.split(b"\n\n", 1)[1] if b"\n\n" in data else b""
    return body.split(b"\n" + _BEGIN_SIG, 1)[0]
