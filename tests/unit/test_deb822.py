"""The deb822 reader: python-debian behind a strict line check, and its three users."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from debian.deb822 import Deb822

from rootstrap import recipes
from rootstrap.archive.index import parse_stanza
from rootstrap.archive.release import parse_release
from rootstrap.errors import VerificationError
from rootstrap.formats.deb822 import Deb822Error, parse

SHA = "c" * 64


def test_fields_values_and_spelling() -> None:
    text = (
        "Package: hello\r\n"
        "description: a greeting\n"
        " second line  \n"
        " .\n"
        "\tthird\n"
        "Empty:\n"
        "\n"
        "\n"
        "Package: other\n"
    )
    first, second = parse(text)
    assert list(first) == ["Package", "description", "Empty"]  # the file's spelling and order
    assert first["Description"] == first["description"] == "a greeting\n second line  \n .\n\tthird"
    assert first["Empty"] == "" and first["package"] == "hello"  # CRLF: no "\r" in the value
    assert dict(second) == {"Package": "other"}


def test_whitespace_only_lines_separate_paragraphs() -> None:
    assert [dict(p) for p in parse("A: 1\n \t\nB: 2\n")] == [{"A": "1"}, {"B": "2"}]
    assert parse("") == [] and parse("\n\n  \n") == []


@pytest.mark.parametrize(
    "text, kind, line",
    [
        (" orphan\nA: 1\n", "continuation", 1),
        ("A: 1\n\n continues the blank\n", "continuation", 3),
        ("A: 1\nno colon here\n", "field", 2),
        ("A: 1\nName : spaced\n", "field", 2),
        ("A: 1\n:empty name\n", "field", 2),
        ("A: 1\nFeld\xfc: non-ASCII name\n", "field", 2),
        ("A: 1\n# a comment where the format has none\n", "field", 2),
        ("A: 1\n-Dash: x\n", "field", 2),
        ("A: 1\nB: 2\na: 3\n", "duplicate", 3),
    ],
)
def test_lines_python_debian_would_accept_are_refused(text: str, kind: str, line: int) -> None:
    with pytest.raises(Deb822Error) as info:
        parse(text)
    assert (info.value.kind, info.value.line) == (kind, line)
    # python-debian alone reads each of these without complaint (the reason for the check).
    Deb822(text.splitlines())


def test_duplicate_names_the_field() -> None:
    with pytest.raises(Deb822Error) as info:
        parse("Version: 1\nversion: 2\n")
    assert info.value.name == "version"
    # The same name in another paragraph is fine.
    assert len(parse("Version: 1\n\nVersion: 2\n")) == 2


def test_max_paragraphs() -> None:
    assert len(parse("A: 1\n\n\n", max_paragraphs=1)) == 1
    with pytest.raises(Deb822Error) as info:
        parse("A: 1\n\nB: 2\n", max_paragraphs=1)
    assert (info.value.kind, info.value.line) == ("paragraphs", 3)


def test_comments_only_when_asked_and_never_inside_a_value() -> None:
    text = "# head\nURIs: http://a/\n  # an indented comment\n http://b/\n# between\nSuites: x\n"
    (found,) = parse(text, comments=True)
    assert found["URIs"].split() == ["http://a/", "http://b/"]
    assert found["Suites"] == "x"
    # python-debian alone takes the indented comment for part of the value.
    assert "#" in Deb822(text.splitlines())["URIs"]


@pytest.mark.hazard(3)
def test_armor_inside_verified_bytes_is_not_unwrapped() -> None:
    """python-debian unwraps a clearsigned block it meets; a Release never contains one."""
    inner = (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: evil\n"
        "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"
    )
    assert Deb822(inner.splitlines())["Suite"] == "evil"  # what the check keeps from happening
    with pytest.raises(Deb822Error) as info:
        parse(inner)
    assert (info.value.kind, info.value.line) == ("field", 1)
    body = f"Suite: stable\nDate: Sat, 10 Jun 2023 08:00:00 UTC\nSHA256:\n {SHA} 1 x\n" + inner
    with pytest.raises(VerificationError, match="malformed Release line 5"):
        parse_release(body.encode(), url="X/InRelease")


def test_release_values_and_checksums() -> None:
    body = (
        "Suite: stable\nCodename: bookworm\nDate: Sat, 10 Jun 2023 08:00:00 UTC\n"
        f"Components: main contrib\nMD5Sum:\n {'d' * 32} 9 weak\nSHA256:\n"
        f" {SHA}   10 main/binary-amd64/Packages\n {SHA} 5 main/binary-amd64/Packages.xz\n"
    )
    release = parse_release(body.encode(), url="X/InRelease")
    assert release.files["main/binary-amd64/Packages"].size == 10
    assert release.weak_only == {"weak"}
    # Each line of a value stripped, as before the reader.
    assert release.fields["sha256"].split("\n")[1] == f"{SHA}   10 main/binary-amd64/Packages"
    with pytest.raises(VerificationError, match="duplicate field 'Suite' in Release"):
        parse_release(("suite: evil\n" + body).encode(), url="X/InRelease")
    with pytest.raises(VerificationError, match="continuation line 1 outside a field"):
        parse_release((" x\n" + body).encode(), url="X/InRelease")


def test_host_sources(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lists = tmp_path / "etc/apt/sources.list.d"
    lists.mkdir(parents=True)
    (lists / "a.sources").write_text(
        "# written by hand\n"
        "types: deb deb-src\n"
        "uris: http://127.0.0.1:9/debian\n"
        "  # the old mirror:\n"
        "suites: bookworm\n"
        "  bookworm-updates\n"
        "components: main\n\n"
        "Types: deb\nURIs: http://127.0.0.1:9/off\nSuites: bookworm\nEnabled: no\n"
    )
    (lists / "b.sources").write_text("Types: deb\nURIs http://127.0.0.1:9/broken\n")
    with caplog.at_level(logging.WARNING):
        found = recipes.host_sources(tmp_path)
    assert found == [
        recipes.AptSource("http://127.0.0.1:9/debian", ("bookworm", "bookworm-updates"), ("main",))
    ]
    assert "b.sources: line 2: not a valid deb822 file (field); ignored" in caplog.text
    assert recipes.host_mirror("debian", tmp_path) == "http://127.0.0.1:9/debian"


def test_index_parse_stanza_differs_from_python_debian_only_as_documented() -> None:
    """The normalisations tests/e2e/test_index_deb822.py allows for, which bookworm main never
    needs (no field of it is folded): here on a stanza that needs each."""
    stanza = (
        "package: hello\n"
        "Version: 1.0\n"
        "Depends: libc6 (>= 2.34),\n"
        "  libfoo\n"
        "Description: a greeting  \n"
        " second line   \n"
        " .\n"
    )
    ours = parse_stanza(stanza.encode())
    theirs = Deb822(stanza.splitlines())
    assert list(theirs) == ["package", "Version", "Depends", "Description"]
    assert list(ours) == ["Package", "Version", "Depends", "Description"]  # CANONICAL spelling
    assert theirs["Depends"] == "libc6 (>= 2.34),\n  libfoo"
    assert ours["Depends"] == "libc6 (>= 2.34), libfoo"  # a relation: one line
    assert theirs["Description"] == "a greeting\n second line   \n ."
    assert ours["Description"] == "a greeting\n second line\n ."  # trailing whitespace dropped
    assert ours["Version"] == theirs["Version"]
