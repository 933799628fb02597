"""Image names (machinectl's rules), os-release parsing, and the store's small helpers."""

from __future__ import annotations

import pytest

from rootstrap.errors import UsageError
from rootstrap.store.meta import parse_os_release
from rootstrap.store.names import is_hidden, validate_name
from rootstrap.store.pool import temp_owner

BAD = {
    "": "it is empty",
    ".": "'.' and '..' are not names",
    "..": "'.' and '..' are not names",
    "a/b": "it contains '/'",
    "-rf": "a label starts or ends with '-'",
    ".#x": "reserved for operations in progress",
    "a" * 65: "it is 65 characters long, the limit is 64",
    "a\x01b": "a control character",
    "é": "a non-ASCII character",
    "a..b": "an empty label",
    "-a": "a label starts or ends with '-'",
    "a-": "a label starts or ends with '-'",
    "a_b": "it contains '_'",
    ".host": "'.host' is reserved for the host",
    "a.": "an empty label",
    "a b": "it contains ' '",
}
GOOD = ["a", "debian-12", "web.example", "x" * 64, ".hidden", ".a-b.c", "0", "A-Z"]


@pytest.mark.hazard(67)
@pytest.mark.parametrize(("name", "rule"), BAD.items())
def test_bad_names_say_the_rule(name: str, rule: str):
    with pytest.raises(UsageError) as err:
        validate_name(name)
    assert rule in err.value.message
    assert err.value.message.startswith("not a valid image name: ")
    assert err.value.hint and "64 characters" in err.value.hint
    assert err.value.exit_code == 2


@pytest.mark.parametrize("name", GOOD)
def test_good_names(name: str):
    assert validate_name(name) == name
    assert is_hidden(name) == name.startswith(".")


def test_temp_owner():
    assert temp_owner(".#web.example.0a1b2c3d") == "web.example"
    assert temp_owner(".#x.abcd1234") == "x"
    assert temp_owner(".hidden") is None
    assert temp_owner("web") is None


def test_parse_os_release():
    text = '# c\nNAME="Debian GNU/Linux"\nID=debian\nVERSION_ID=\'12\'\n\nbad line\nQ="a \\"b\\""\n'
    assert parse_os_release(text) == {
        "NAME": "Debian GNU/Linux",
        "ID": "debian",
        "VERSION_ID": "12",
        "Q": 'a "b"',
    }
