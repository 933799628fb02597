"""``rootstrap resolve`` against the signed local archive (tests/support: MIRROR_PACKAGES)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rootstrap.cli.app import main
from tests.support.fixtures import LocalMirror


def run(
    mirror: LocalMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    argv = ["--cache-dir", str(tmp_path / "cache"), "resolve", mirror.suite]
    argv += ["--mirror", mirror.url, "--keyring", str(mirror.keyring), "--arch", "amd64", *args]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def plan_json(
    mirror: LocalMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> dict[str, Any]:
    code, out, err = run(mirror, tmp_path, capsys, "--json", *args)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


@pytest.mark.hazard(32)
def test_default_variant_plan(
    local_mirror: LocalMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = plan_json(local_mirror, tmp_path, capsys)
    names = [p["name"] for p in data["packages"]]
    # Essential + required + important (tools); foreign-arm (arm64) never appears.
    assert sorted(names) == ["base-files", "coreutils", "dash", "libc6", "tools"]
    assert names.index("libc6") < names.index("dash")  # Pre-Depends honoured
    assert data["essential"] == names[:4]
    assert data["download_size"] == sum(p["size"] for p in data["packages"]) > 0
    why = {p["name"]: p["why"] for p in data["packages"]}
    assert why["tools"] == "seed (Priority: important)"
    assert why["libc6"] == "seed (Priority: required)"


def test_table_why_and_pockets(
    local_mirror: LocalMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        local_mirror, tmp_path, capsys, "--include", "hello", "--pockets", "bookworm-updates"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "ARCH", "SIZE", "WHY"]
    hello = next(line for line in lines if line.startswith("hello "))
    assert "2.10-3+deb12u1" in hello and "seed (--include)" in hello  # the newer pocket wins
    assert lines[-1].startswith("7 packages (4 in the essential set), download ")
    code, out, err = run(local_mirror, tmp_path, capsys, "--include", "hello", "--why", "libfoo1")
    assert code == 0, err
    assert out.splitlines() == [
        "hello 2.10-3  ← seed (--include)",
        "  libfoo1 1.2-1  ← hello Depends: libfoo1 (>= 1.0) | libfoo-compat",
    ]


def test_recommends_and_cycles(
    local_mirror: LocalMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = plan_json(local_mirror, tmp_path, capsys, "--variant", "required")
    assert "hello" not in [p["name"] for p in plain["packages"]]
    data = plan_json(
        local_mirror, tmp_path, capsys, "--recommends", "--include", "cycle-a,data-all"
    )
    names = [p["name"] for p in data["packages"]]
    assert {"hello", "libfoo1", "cycle-a", "cycle-b", "data-all"} <= set(names)
    assert next(p for p in data["packages"] if p["name"] == "hello")["via"] == "Recommends"


@pytest.mark.hazard(26, 30, 32)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--include", "exim-lite,postfix-lite"],
            "error: exim-lite: exim-lite 4.96-1 conflicts with postfix-lite 3.7.9-1 "
            "(Conflicts: mail-transport-agent); pulled in by exim-lite and postfix-lite",
        ),
        (["--include", "foreign-arm"], "error: foreign-arm: cannot be installed: "),
        (
            ["--include", "hello", "--exclude", "libfoo1"],
            "error: hello: depends on libfoo1 (>= 1.0) | libfoo-compat but libfoo1 is excluded",
        ),
        (["--variant", "nosuch"], "error: nosuch: unknown variant 'nosuch'"),
        (["--variant", "minbase"], "error: apt: cannot be installed: no index has apt"),
        (["--why", "hello"], "error: hello: is not in the plan"),
    ],
)
def test_clean_errors(
    local_mirror: LocalMirror,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    code, out, err = run(local_mirror, tmp_path, capsys, *args)
    assert code in (1, 2)
    assert out == ""
    assert err.startswith(message), err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
