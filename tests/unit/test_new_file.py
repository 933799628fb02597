"""fsops.new_file: a file written whole or not at all, and nothing left by a killed writer
(HAZARDS 118): the data lives in an unnamed O_TMPFILE inode until it is linked into place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rootstrap.linux import fsops

SRC = str(Path(fsops.__file__).resolve().parents[2])


def test_the_file_appears_whole_and_only_at_the_end(tmp_path: Path) -> None:
    target = tmp_path / "out.tar"
    with fsops.new_file(target) as out:
        out.write(b"first half ")
        out.flush()
        assert os.listdir(tmp_path) == []  # not even a hidden temp name
        out.write(b"second half")
    assert target.read_bytes() == b"first half second half"
    assert os.listdir(tmp_path) == ["out.tar"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_error_in_the_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), fsops.new_file(tmp_path / "out") as out:
        out.write(b"partial")
        raise RuntimeError("the writer failed")
    assert os.listdir(tmp_path) == []


def test_an_existing_file_is_kept_unless_replace(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError) as info, fsops.new_file(target) as out:
        out.write(b"new")
    assert info.value.filename == str(target)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out"]
    with fsops.new_file(target, replace=True) as out:
        out.write(b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["out"]


@pytest.mark.hazard(118)
def test_a_sigkilled_writer_leaves_nothing(tmp_path: Path) -> None:
    code = (
        f"import sys, time\nsys.path.insert(0, {SRC!r})\n"
        "from pathlib import Path\nfrom rootstrap.linux import fsops\n"
        f"with fsops.new_file(Path({str(tmp_path / 'out')!r})) as out:\n"
        "    out.write(b'x' * 100000); out.flush(); print('written', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "written\n"
    proc.kill()
    proc.wait()
    assert os.listdir(tmp_path) == []
