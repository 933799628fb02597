"""os-release parsing and the store's small helpers (image names: tests/unit/test_rules.py)."""

from __future__ import annotations

from rootstrap.store.meta import parse_os_release
from rootstrap.store.pool import temp_owner


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
