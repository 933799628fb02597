"""The project's reference material is in the repository, and the hazard table is covered.

docs/ holds the architecture, the decisions and the hazard table; nothing in the repository may
send a reader to notes outside it (a maintainer who clones the project has only the clone).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Names of the notes the project started from, which live outside the repository. Each string
# is split in two so that this file does not match itself.
OUTSIDE = [
    a + b
    for a, b in [
        ("../sha", "red"),
        ("shared/DES", "IGN"),
        ("shared/HAZ", "ARDS"),
        ("shared/to", "ols"),
        ("DESIGN", ".md"),
        ("HAZARDS", ".md"),
        ("STYLE", ".md"),
        ("research", "/"),
        ("libs", ".md"),
        ("reliability", ".md"),
        ("anchors", ".md"),
        ("baseline", ".md"),
        ("aesthetics", ".md"),
    ]
]


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    files = []
    for name in listed.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():  # a file deleted in the work tree
            continue
        if b"\0" in path.read_bytes()[:8192]:  # binary
            continue
        files.append(path)
    return files


def test_hazard_coverage_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools/hazard-coverage")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("hazards covered: ")


def test_hazard_coverage_fails_on_a_marker_naming_no_row(tmp_path: Path) -> None:
    # Built in two parts, or hazard-coverage would find this marker in this file.
    marker = "@pytest.mark." + "hazard(1, 99999)"
    (tmp_path / "test_x.py").write_text(f"{marker}\ndef test_x(): ...\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools/hazard-coverage"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "marker naming no row: 99999 (in test_x.py)" in result.stdout
    assert "rows without a test: 2 " in result.stdout


def test_no_reference_to_notes_outside_the_repository() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to list")
    found = []
    for path in tracked_text_files():
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            found += [
                f"{path.relative_to(ROOT)}:{number}: {word}" for word in OUTSIDE if word in line
            ]
    assert found == []
