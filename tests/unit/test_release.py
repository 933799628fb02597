"""Release verification and parsing, on bytes signed by throwaway keys (no network)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rootstrap.archive.release import ReleasePolicy, check_release, parse_release
from rootstrap.archive.signature import load_keyring, verify_clearsigned, verify_detached
from rootstrap.errors import KeyringError, VerificationError
from tests.support.archive import TestKey, release_date

NOW = datetime.now(UTC).replace(microsecond=0)
SHA = "b" * 64


def release_text(**fields: str | None) -> str:
    base: dict[str, str | None] = {
        "Origin": "Debian",
        "Label": "Debian",
        "Suite": "stable",
        "Version": "12.4",
        "Codename": "bookworm",
        "Date": release_date(NOW),
        "Acquire-By-Hash": "yes",
        "Architectures": "amd64 arm64",
        "Components": "main contrib",
        "MD5Sum": "\n d41d8cd98f00b204e9800998ecf8427e 10 main/binary-amd64/Packages",
        "SHA256": f"\n {SHA} 10 main/binary-amd64/Packages\n {SHA} 5 main/binary-amd64/Packages.xz",
    }
    base.update(fields)
    return "".join(f"{k}: {v}\n" for k, v in base.items() if v is not None)


def verify(data: bytes, key: TestKey, **policy: object) -> tuple[bytes, tuple[str, ...]]:
    certs = load_keyring([key.keyring])
    return verify_clearsigned(
        data, certs, subject="X/InRelease", policy=ReleasePolicy(**policy), keyring_names="k"
    )  # type: ignore[arg-type]


def test_good_inrelease_verifies_and_parses(test_key: TestKey) -> None:
    signed, fingerprints = verify(test_key.clearsign(release_text()), test_key)
    assert fingerprints == (test_key.fingerprint.lower(),)
    release = parse_release(signed, url="X/InRelease", fingerprints=fingerprints)
    check_release(release, "bookworm", ReleasePolicy())
    check_release(release, "stable", ReleasePolicy())
    assert (release.suite, release.codename, release.version) == ("stable", "bookworm", "12.4")
    assert release.components == ("main", "contrib") and release.acquire_by_hash
    assert release.files["main/binary-amd64/Packages.xz"].size == 5
    assert release.date == NOW and release.valid_until is None


def test_armored_keyring_works_too(test_key: TestKey) -> None:
    certs = load_keyring([test_key.armored_keyring])
    signed, _ = verify_clearsigned(
        test_key.clearsign(release_text()), certs, subject="X", policy=ReleasePolicy(),
        keyring_names="k",
    )  # fmt: skip
    assert b"Codename: bookworm" in signed


@pytest.mark.hazard(1)
def test_unknown_key_names_the_fingerprint(test_key: TestKey, other_key: TestKey) -> None:
    with pytest.raises(VerificationError, match="NO_PUBKEY " + other_key.fingerprint.lower()):
        verify(other_key.clearsign(release_text()), test_key)


@pytest.mark.hazard(2)
def test_modified_after_signing_is_badsig(test_key: TestKey) -> None:
    data = test_key.clearsign(release_text()).replace(b"Codename: bookworm", b"Codename: bookwore")
    with pytest.raises(VerificationError, match="signature invalid"):
        verify(data, test_key)


SIG = b"-----BEGIN PGP SIGNATURE-----"
MSG = b"-----BEGIN PGP SIGNED MESSAGE-----\n"
TAMPERS = {
    "prepended": (lambda d, s: b"Codename: evil\n\n" + d, "data before the signed block"),
    "appended": (lambda d, s: d + b"\nPackage: evil\n", "data after the signature block"),
    "two-blocks": (lambda d, s: d + s, "unexpected armor"),
    "space-in-armor": (lambda d, s: d.replace(SIG, SIG + b" "), "unexpected armor"),
    "indented-header": (lambda d, s: d.replace(MSG, b" " + MSG), "data before the signed"),
    "dash-escaped": (
        lambda d, s: d.replace(b"\nOrigin:", b"\n- " + SIG + b"\nOrigin:"),
        "unexpected armor",
    ),
}


@pytest.mark.hazard(3)
@pytest.mark.parametrize("case", sorted(TAMPERS))
def test_anything_outside_one_signed_block_is_refused(test_key: TestKey, case: str) -> None:
    tamper, message = TAMPERS[case]
    data = test_key.clearsign(release_text())
    second = test_key.clearsign(release_text(Codename="evil"))
    with pytest.raises(VerificationError, match=message):
        verify(tamper(data, second), test_key)


@pytest.mark.hazard(3)
def test_only_verified_bytes_are_returned(test_key: TestKey) -> None:
    signed, _ = verify(test_key.clearsign(release_text()), test_key)
    assert signed.startswith(b"Origin: Debian\n") and b"PGP" not in signed


@pytest.mark.hazard(4)
@pytest.mark.parametrize("where", ["before", "after", "between", "binary-trailer"])
def test_detached_signature_with_payload_is_refused(test_key: TestKey, where: str) -> None:
    text = release_text().encode()
    armored = test_key.detach_sign(text)
    certs = load_keyring([test_key.keyring])
    if where == "before":
        sig = b"evil payload\n" + armored
    elif where == "after":
        sig = armored + b"evil payload\n"
    elif where == "between":
        sig = armored + b"evil payload\n" + test_key.detach_sign(text)
    else:
        sig = test_key.detach_sign(text, armor=False) + b"\xcb\x05b\x00\x00\x00\x00evil"
    with pytest.raises(VerificationError, match="detached signature file has extra data"):
        verify_detached(
            text, sig, certs, subject="X/Release.gpg", policy=ReleasePolicy(), keyring_names="k"
        )


@pytest.mark.hazard(4)
def test_detached_signature_every_signature_is_tried(test_key: TestKey, other_key: TestKey) -> None:
    """Two signatures (unknown key first): pysequoia's Sig keeps only the first; we try each."""
    text = release_text().encode()
    first = base64.b64decode(b"".join(other_key.detach_sign(text).split(b"\n\n", 1)[1]
                                      .split(b"\n=")[0].split()))  # fmt: skip
    both = first + test_key.detach_sign(text, armor=False)
    certs = load_keyring([test_key.keyring])
    release, fingerprints = verify_detached(
        text, both, certs, subject="X/Release.gpg", policy=ReleasePolicy(), keyring_names="k"
    )
    assert release == text and fingerprints == (test_key.fingerprint.lower(),)
    with pytest.raises(VerificationError, match="signature invalid"):
        verify_detached(
            text.replace(b"bookworm", b"bookwore"), both, certs, subject="X",
            policy=ReleasePolicy(), keyring_names="k",
        )  # fmt: skip


@pytest.mark.hazard(6)
def test_expired_key_is_refused_unless_allowed(expired_key: TestKey) -> None:
    data = expired_key.clearsign(release_text())
    with pytest.raises(VerificationError, match="EXPKEYSIG " + expired_key.fingerprint.lower()):
        verify(data, expired_key)
    _signed, fingerprints = verify(data, expired_key, allow_expired_keys=True)
    assert fingerprints == (expired_key.fingerprint.lower(),)


@pytest.mark.hazard(6)
def test_revoked_key_is_refused() -> None:
    with TestKey.generate("Revoked <revoked@example.invalid>") as key:
        data = key.clearsign(release_text())
        assert verify(data, key)[1]
        key.revoke()
        with pytest.raises(VerificationError, match="REVKEYSIG " + key.fingerprint.lower()):
            verify(data, key)


@pytest.mark.hazard(7)
def test_sha1_signature_is_a_weak_digest(test_key: TestKey) -> None:
    data = test_key.clearsign(release_text(), digest="SHA1")
    with pytest.raises(VerificationError, match=r"weak digest \(SHA1\)"):
        verify(data, test_key)


@pytest.mark.hazard(8)
def test_date_in_the_future_is_not_valid_yet() -> None:
    release = parse_release(
        release_text(Date=release_date(NOW + timedelta(seconds=60))).encode(), url="X"
    )
    with pytest.raises(VerificationError, match="not valid yet"):
        check_release(release, "bookworm", ReleasePolicy(now=NOW))
    check_release(release, "bookworm", ReleasePolicy(now=NOW + timedelta(seconds=51)))
    check_release(release, "bookworm", ReleasePolicy(now=NOW, ignore_date=True))


@pytest.mark.hazard(9)
def test_valid_until_in_the_past_is_expired() -> None:
    text = release_text(Date=release_date(NOW - timedelta(days=8)),
                        **{"Valid-Until": release_date(NOW - timedelta(days=1))})  # fmt: skip
    release = parse_release(text.encode(), url="X")
    with pytest.raises(VerificationError, match="expired since"):
        check_release(release, "bookworm", ReleasePolicy(now=NOW))
    check_release(release, "bookworm", ReleasePolicy(now=NOW, ignore_valid_until=True))


@pytest.mark.hazard(10)
@pytest.mark.parametrize("field", ["Date", "Valid-Until"])
def test_unparseable_dates_are_rejected(field: str) -> None:
    with pytest.raises(VerificationError, match=f"invalid {field} 'next tuesday'"):
        parse_release(release_text(**{field: "next tuesday"}).encode(), url="X")


@pytest.mark.hazard(10)
def test_missing_date_is_rejected() -> None:
    with pytest.raises(VerificationError, match="invalid Date"):
        parse_release(release_text(Date=None).encode(), url="X")


@pytest.mark.hazard(11)
def test_wrong_suite_is_a_hard_failure() -> None:
    release = parse_release(release_text(Suite="oldstable", Codename="bullseye").encode(), url="X")
    with pytest.raises(VerificationError, match="not bookworm"):
        check_release(release, "bookworm", ReleasePolicy())


@pytest.mark.hazard(12)
def test_only_weak_hashes_are_refused() -> None:
    with pytest.raises(VerificationError, match="only weak security information"):
        parse_release(release_text(SHA256=None).encode(), url="X")


@pytest.mark.hazard(14)
def test_keyring_problems_are_errors(tmp_path: Path, test_key: TestKey) -> None:
    empty = tmp_path / "empty.gpg"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.gpg"
    junk.write_bytes(b"this is not a keyring\n" * 10)
    for path, message in [
        (tmp_path / "missing.gpg", "keyring not found"),
        (empty, "keyring is empty"),
        (junk, "not an OpenPGP keyring"),
        (tmp_path, "keyring is a directory"),
    ]:
        with pytest.raises(KeyringError, match=message) as info:
            load_keyring([path])
        assert info.value.subject == str(path)
    with pytest.raises(KeyringError, match="no keyring given"):
        load_keyring([])
    assert load_keyring([test_key.keyring])


def test_second_paragraph_is_refused() -> None:
    with pytest.raises(VerificationError, match="more than one paragraph"):
        parse_release((release_text() + "\nCodename: evil\n").encode(), url="X")
