"""open_in_root: the one way to open a path inside an image, through openat2(RESOLVE_IN_ROOT)
and through the hand-made walk that replaces it where the syscall is filtered: same answers."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootstrap.linux import inroot


@pytest.fixture
def root(tmp_path: Path) -> Iterator[int]:
    """A tree whose links point everywhere, the host included; yields its directory fd."""
    top = tmp_path / "root"
    (top / "usr/lib").mkdir(parents=True)
    (top / "etc").mkdir()
    (top / "usr/lib/os-release").write_text("ID=inside\n")
    (top / "etc/hostname").write_text("inside\n")
    (top / "etc/os-release").symlink_to("../usr/lib/os-release")
    (top / "abs").symlink_to("/usr/lib/os-release")
    (top / "escape").symlink_to("../../../../../../etc/hostname")
    (top / "usrlink").symlink_to("/usr")
    (top / "hostfile").symlink_to("/etc/passwd")  # the host has one; the root does not
    (top / "dangling").symlink_to("nowhere")
    (top / "loop1").symlink_to("loop2")
    (top / "loop2").symlink_to("loop1")
    (top / "chain0").symlink_to("usr/lib/os-release")
    for i in range(1, 30):
        (top / f"chain{i}").symlink_to(f"chain{i - 1}")
    (top / "dir").mkdir()
    (top / "dir/up").symlink_to("../../../etc/hostname")
    (top / "dir/self").symlink_to(".")
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


# path -> the file's text, or the errno open(2) gives.
CASES: list[tuple[str, str | int]] = [
    ("usr/lib/os-release", "ID=inside\n"),
    ("/usr/lib/os-release", "ID=inside\n"),
    ("etc/os-release", "ID=inside\n"),
    ("abs", "ID=inside\n"),  # an absolute link starts again at the root
    ("escape", "inside\n"),  # '..' stops at the root
    ("../../etc/hostname", "inside\n"),
    ("usrlink/lib/os-release", "ID=inside\n"),
    ("dir/up", "inside\n"),
    ("dir/self/self/up", "inside\n"),
    ("dir/../etc/./hostname", "inside\n"),
    ("chain29", "ID=inside\n"),
    ("hostfile", errno.ENOENT),  # never the host's /etc/passwd
    ("dangling", errno.ENOENT),
    ("missing", errno.ENOENT),
    ("etc/hostname/x", errno.ENOTDIR),
    ("loop1", errno.ELOOP),
    ("", errno.ENOENT),  # as open(2)
]


def _read(root_fd: int, path: str) -> str | int:
    try:
        fd = inroot.open_in_root(root_fd, path)
    except OSError as exc:
        return exc.errno or 0
    try:
        return os.read(fd, 1000).decode()
    finally:
        os.close(fd)


@pytest.fixture(params=["openat2", "by hand"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    # "by hand" is what a seccomp filter or a pre-5.6 kernel leaves (openat2 -> ENOSYS/EPERM).
    monkeypatch.setattr(inroot, "_openat2_works", request.param == "openat2")
    return str(request.param)


@pytest.mark.parametrize(("path", "expected"), CASES)
def test_open_in_root(root: int, mode: str, path: str, expected: str | int) -> None:
    assert _read(root, path) == expected


@pytest.mark.parametrize("path", ["/", ".", "..", "dir/..", "usrlink/..", "dir/self"])
def test_directories(root: int, mode: str, path: str) -> None:
    fd = inroot.open_in_root(root, path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = set(os.listdir(fd))
    finally:
        os.close(fd)
    assert names == ({"up", "self"} if path == "dir/self" else set(os.listdir(root)))


def test_o_path_follows_the_last_link(root: int, mode: str) -> None:
    fd = inroot.open_in_root(root, "etc/os-release", os.O_PATH)
    try:
        assert os.path.realpath(f"/proc/self/fd/{fd}").endswith("/root/usr/lib/os-release")
    finally:
        os.close(fd)


def test_fallback_is_taken_when_openat2_is_refused(
    root: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(root_fd: int, path: bytes, flags: int) -> int:
        raise OSError(errno.ENOSYS, "filtered")

    monkeypatch.setattr(inroot, "_openat2_works", True)
    monkeypatch.setattr(inroot, "_openat2_in_root", refused)
    assert _read(root, "abs") == "ID=inside\n"
    assert inroot._openat2_works is False  # and stays on the walk from then on
