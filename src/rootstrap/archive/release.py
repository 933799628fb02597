"""The signed Release file: fetch, verify, and check it before anything else is trusted.

The chain of trust starts here (apt-secure(8)): the Release lists the size and SHA256 of every
index, each index those of every .deb. So this module is strict where apt is lenient:

* ``InRelease`` is capped at 10 MB (apt's ``Acquire::MaxReleaseFileSize``; HAZARDS 13).
  ``Release`` + ``Release.gpg`` is tried only when ``InRelease`` is absent (404); an unsigned
  Release is never used unless the caller passes ``insecure=True`` (HAZARDS 5, apt-secure).
* The signature (armor rules, detached packets, weak digests, revoked and expired keys;
  HAZARDS 3, 4, 6, 7) is :mod:`rootstrap.archive.signature`'s; only the bytes it returns as
  verified are parsed here.
* Suite or Codename must equal the requested suite (apt only warns, acquire-item.cc:1890;
  HAZARDS 11), ``Date`` may be at most 10 s ahead, ``Valid-Until`` must not have passed
  (debmetaindex.cc; HAZARDS 8–10), and SHA256 entries must exist (hashes.cc; HAZARDS 12).
"""

from __future__ import annotations

import email.utils
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from rootstrap.archive.signature import unverified_body, verify_clearsigned, verify_detached
from rootstrap.errors import DownloadError, KeyringError, VerificationError
from rootstrap.formats import deb822

log = logging.getLogger(__name__)

__all__ = [
    "MAX_RELEASE_SIZE",
    "FileEntry",
    "HttpLike",
    "Release",
    "ReleasePolicy",
    "check_release",
    "fetch_release",
    "parse_release",
]

MAX_RELEASE_SIZE: Final = 10_000_000  # apt's Acquire::MaxReleaseFileSize default
MAX_FUTURE: Final = timedelta(seconds=10)  # apt's Acquire::Max-FutureTime default

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
# Parsing and checks


def _fields(text: str, subject: str) -> dict[str, str]:
    """The fields of a one-paragraph deb822 text; keys lowercased, each line of a value stripped.

    A second paragraph is refused: it is not something apt reads either."""
    try:
        found = deb822.parse(text, max_paragraphs=1)
    except deb822.Deb822Error as exc:
        line = exc.line
        message = {
            "continuation": f"continuation line {line} outside a field",
            "field": f"malformed Release line {line}",
            "duplicate": f"duplicate field {exc.name!r} in Release",
            "paragraphs": f"Release has more than one paragraph (line {line})",
        }[exc.kind]
        raise VerificationError(message, subject=subject) from None
    if not found:
        return {}
    return {
        name.lower(): "\n".join(part.strip() for part in value.split("\n"))
        for name, value in found[0].items()
    }


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

    CERTS is the result of :func:`rootstrap.archive.signature.load_keyring` (None only with
    ``policy.insecure``). Costs one or three requests and ~2 ms of verification. Raises
    VerificationError, KeyringError or DownloadError naming the URL; on any error nothing is
    cached or written.
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
    release = parse_release(unverified_body(data), url=url)
    check_release(release, suite, policy)
    return release
