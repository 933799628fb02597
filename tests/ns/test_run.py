"""rootstrap run: the command line, exit statuses, reaping, ephemeral and read-only modes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rootstrap.errors import RunnerError
from rootstrap.runner import Bind, RunSpec, run
from tests.conftest import tree_digest
from tests.ns.conftest import MIN_DEV, lines, rootstrap, sh


def test_done_when_pid_hostname_and_minimal_dev(bb_root: Path) -> None:
    result = sh(bb_root, "echo $$; hostname; ls /dev", "--hostname", "box1")
    assert result.returncode == 0, result.stderr
    out = lines(result.stdout)
    assert out[0] == "2"  # the reaper is pid 1, the command pid 2 (nspawn --as-pid2)
    assert out[1] == "box1"
    assert set(out[2:]) == MIN_DEV


def test_hostname_defaults_to_the_directory_name(bb_root: Path) -> None:
    assert lines(sh(bb_root, "hostname").stdout) == ["bbroot"]
    assert lines(sh(bb_root, "hostname", "-M", "mach").stdout) == ["mach"]


@pytest.mark.parametrize(
    ("script", "code"),
    [("exit 0", 0), ("exit 7", 7), ("exit 255", 255), ("kill -9 $$", 137), ("kill -TERM $$", 143)],
)
def test_exit_status_propagates(bb_root: Path, script: str, code: int) -> None:
    assert sh(bb_root, script).returncode == code


def test_command_not_found_is_a_clean_127(bb_root: Path) -> None:
    result = rootstrap("run", "-D", str(bb_root), "/no/such/cmd")
    assert result.returncode == 127
    assert result.stderr.startswith("error: ")
    assert "/no/such/cmd" in result.stderr and "Traceback" not in result.stderr


def test_pid1_reaps_orphans(bb_root: Path) -> None:
    # The inner sh exits at once, so its background sleep is re-parented to pid 1. Once the
    # sleep ends it must be reaped, not left a zombie.
    script = "sh -c 'sleep 0.2 & exit 0'; sleep 1; cat /proc/[0-9]*/stat"
    result = sh(bb_root, script)
    assert result.returncode == 0, result.stderr
    states = {line.split(") ")[1].split()[0] for line in lines(result.stdout)}
    assert "Z" not in states, result.stdout


def test_environment_is_scrubbed(bb_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    result = sh(bb_root, "env", "--setenv", "FOO=bar", "-E", "BAZ=1")
    env = dict(line.split("=", 1) for line in lines(result.stdout))
    assert env["container"] == "rootstrap"
    assert env["FOO"] == "bar" and env["BAZ"] == "1"
    assert "SECRET_TOKEN" not in env
    assert env["PATH"].startswith("/usr/local/sbin:")
    assert len(env["container_uuid"]) == 36


def test_chdir_and_user(bb_root: Path) -> None:
    result = sh(
        bb_root, "pwd; id -u; grep CapEff /proc/self/status", "--chdir", "/etc", "--user", "nobody"
    )
    assert lines(result.stdout) == ["/etc", "65534", "CapEff:\t0000000000000000"]
    bad = sh(bb_root, "true", "--user", "nosuchuser")
    assert bad.returncode != 0 and "nosuchuser" in bad.stderr


def test_ephemeral_leaves_no_trace(bb_root: Path) -> None:
    before = tree_digest(bb_root)
    result = sh(bb_root, "echo data > /written; mkdir /newdir; rm /bin/ls; cat /written", "-x")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "data\n"
    assert tree_digest(bb_root) == before
    assert not (bb_root / "written").exists()


@pytest.mark.hazard(77)
def test_read_only_gives_erofs(bb_root: Path) -> None:
    before = tree_digest(bb_root)
    result = sh(
        bb_root, "touch /nope 2>&1; echo rc=$?; touch /tmp/ok && echo tmp-ok", "--read-only"
    )
    assert "Read-only file system" in result.stdout
    assert "rc=1" in result.stdout and "tmp-ok" in result.stdout
    assert tree_digest(bb_root) == before


def test_binds(bb_root: Path, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("from host\n")
    result = sh(
        bb_root,
        "cat /mnt/h/in; echo out > /mnt/h/out; echo x > /ro/x",
        "--bind",
        f"{host}:/mnt/h",
        "--bind-ro",
        f"{host}:/ro",
    )
    assert "from host" in result.stdout
    assert "Read-only file system" in result.stderr
    assert (host / "out").read_text() == "out\n"
    assert not (host / "x").exists()
    missing = sh(bb_root, "true", "--bind", f"{tmp_path}/nonexistent:/x")
    assert missing.returncode != 0
    assert missing.stderr.startswith("error: ") and "nonexistent" in missing.stderr


def test_tmpfs_option(bb_root: Path) -> None:
    result = sh(bb_root, "grep ' /scratch ' /proc/mounts", "--tmpfs", "/scratch:mode=0700")
    assert result.stdout.startswith("tmpfs /scratch tmpfs")
    assert "mode=700" in result.stdout


def test_api_passes_fds_and_returns_status(bb_root: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        code = run(
            RunSpec(
                root=bb_root,
                argv=["sh", "-c", "echo to-pipe; echo err >&2; exit 3"],
                stdout=write_end,
                stderr=write_end,
                hostname="api",
            )
        )
    finally:
        os.close(write_end)
    with os.fdopen(read_end) as f:
        assert f.read() == "to-pipe\nerr\n"
    assert code == 3


def test_api_binds_and_errors(bb_root: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    r, w = os.pipe()
    code = run(
        RunSpec(root=bb_root, argv=["cat", "/f"], binds=[Bind(tmp_path / "f", "/f")], stdout=w)
    )
    os.close(w)
    assert os.read(r, 10) == b"x" and code == 0
    os.close(r)
    with pytest.raises(RunnerError) as info:
        run(RunSpec(root=bb_root, argv=["true"], cwd="/no/such/dir"))
    assert "/no/such/dir" in str(info.value)


def test_usage_errors_are_clean(bb_root: Path) -> None:
    for args in (
        ["run"],
        ["run", "-D", str(bb_root)],
        ["run", "-D", str(bb_root), "--bogus", "x"],
        ["run", "bad/name", "true"],
        ["run", "-D", str(bb_root), "--capability=CAP_NOPE", "true"],
        ["run", "-D", str(bb_root), "--system-call-filter=@nope", "true"],
    ):
        result = rootstrap(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_image_name_resolves_in_the_store(bb_root: Path) -> None:
    store = bb_root.parent
    result = rootstrap("--store", str(store), "run", "bbroot", "hostname")
    assert result.stdout == "bbroot\n"
    missing = rootstrap("--store", str(store), "run", "other", "true")
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[0] == "error: other: no such image"


def test_private_network_has_only_lo(bb_root: Path) -> None:
    result = sh(
        bb_root,
        "ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping-ok",
        "--private-network",
    )
    out = lines(result.stdout)
    assert out[0] == "lo"
    assert "ping-ok" in out


@pytest.mark.parametrize(
    "options",
    [
        ("--private-users=pick", "--private-network"),
        ("--private-users=pick", "-x"),
        ("--private-users=identity", "--read-only"),
    ],
)
def test_user_namespace_combinations(bb_root: Path, options: tuple[str, ...]) -> None:
    before = tree_digest(bb_root)
    result = sh(
        bb_root, "id -u; ls /sys/class/net | head -1; echo x > /tmp/x && cat /tmp/x", *options
    )
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout)[0] == "0"
    assert lines(result.stdout)[-1] == "x"
    if "--private-network" in options:
        assert lines(result.stdout)[1] == "lo"
    assert tree_digest(bb_root) == before


def test_as_pid1_execs_the_command_as_init(bb_root: Path) -> None:
    r, w = os.pipe()
    code = run(RunSpec(bb_root, ["sh", "-c", "echo $$; exit 6"], stdout=w, as_pid1=True))
    os.close(w)
    with os.fdopen(r) as f:
        assert f.read() == "1\n"
    assert code == 6


def test_store_entry_that_is_a_symlink_is_refused(bb_root: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "evil").symlink_to(bb_root)
    result = rootstrap("--store", str(store), "run", "evil", "true")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {store}/evil: cannot open image")
    assert "Traceback" not in result.stderr
