"""rootstrap.machines.settings: the .nspawn parser, lookup, trust rules and nspawn's precedence.

The behaviour asserted here was checked against systemd-nspawn 252 (see
tests/ns/test_settings_nspawn.py for the runs side by side)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rootstrap.cli.lean import _parse_run_options
from rootstrap.errors import UsageError
from rootstrap.machines.settings import (
    Options,
    apply,
    find,
    load,
    parse,
    settle,
    split_words,
)

F = "/x/m.nspawn"

EVERY_KEY = """\
# a comment
; another
[Exec]
Boot=no
Parameters=/bin/sh -c "echo a  b" 'c d'
Environment=A=1 "B=x y" C="p q"
Environment=D=4
User=nobody
WorkingDirectory=/srv
Hostname=box.example
SystemCallFilter=@basic-io
SystemCallFilter=~sethostname @mount
Capability=CAP_NET_ADMIN CAP_SYS_TIME
DropCapability=CAP_CHOWN
NoNewPrivileges=no
PrivateUsers=pick
Ephemeral=yes

[Files]
ReadOnly=on
Bind=/a
Bind=/b:/c:norbind
BindReadOnly=/d:/e
TemporaryFileSystem=/tmp:size=10M

[Network]
Private=yes
VirtualEthernet=yes
Bridge=br0
Port=tcp:8080:80
Port=53
"""


def test_every_key() -> None:
    s = parse(EVERY_KEY, F, trusted=True)
    assert s.warnings == []
    assert s.boot is False
    assert s.parameters == ["/bin/sh", "-c", "echo a  b", "c d"]
    assert s.environment == ["A=1", "B=x y", "C=p q", "D=4"]
    assert (s.user, s.working_directory, s.hostname) == ("nobody", "/srv", "box.example")
    assert s.syscall_filter == ["@basic-io", "~sethostname @mount"]
    assert s.capability == ["CAP_NET_ADMIN", "CAP_SYS_TIME"]
    assert s.drop_capability == ["CAP_CHOWN"]
    assert (s.no_new_privileges, s.private_users, s.ephemeral, s.read_only) == (
        False,
        "pick",
        True,
        True,
    )
    assert s.mounts == [
        ("bind", "/a"),
        ("bind", "/b:/c:norbind"),
        ("bind_ro", "/d:/e"),
        ("tmpfs", "/tmp:size=10M"),
    ]
    assert (s.private_network, s.virtual_ethernet, s.bridge) == (True, True, "br0")
    assert s.port == ["tcp:8080:80", "53"]
    # The line of each group, for the trust warnings.
    assert s.where("mounts") == f"{F}:21" and s.where("environment") == f"{F}:7"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("a b  c", ["a", "b", "c"]),
        ('"a b" c', ["a b", "c"]),
        ("x='1 2'y", ["x=1 2y"]),
        ('""', [""]),
        (r"a\ b", ["a\\", "b"]),  # systemd keeps the backslash and still splits (nspawn 252)
        ("", []),
    ],
)
def test_split_words(value: str, words: list[str]) -> None:
    assert split_words(value) == words


def test_empty_value_resets_and_continuation() -> None:
    text = (
        "[Exec]\nEnvironment=A=1\nEnvironment=\nEnvironment=B=2\n"
        "Parameters=/bin/echo one \\\n# comment inside\n  two\n"
        " Hostname =  spaced  \n[Files]\nBind=/a\nBind=\nBind=/b\n"
    )
    s = parse(text, F, trusted=True)
    assert s.environment == ["B=2"]
    assert s.parameters == ["/bin/echo", "one", "two"]
    assert s.hostname == "spaced"
    assert s.mounts == [("bind", "/b")]


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("[Exec]\nFoo=bar\n", 2, "unknown key Foo= in [Exec]"),
        ("[Bogus]\nX=1\n", 1, "unknown section [Bogus]"),
        ("Boot=yes\n", 1, "Boot= outside of any section"),
        ("[Exec]\nKillSignal=SIGTERM\n", 2, "KillSignal= is not supported by rootstrap"),
        ("[Files]\n\nOverlay=/a:/b\n", 3, "Overlay= is not supported"),
        ("[Network]\nZone=z\n", 2, "Zone= is not supported"),
    ],
)
def test_warnings_name_file_and_line(text: str, line: int, says: str) -> None:
    s = parse(text, F, trusted=True)
    assert len(s.warnings) == 1
    assert s.warnings[0].startswith(f"{F}:{line}: ")
    assert says in s.warnings[0]


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("[Exec]\nnot a setting\n", 2, "expected [SECTION], KEY=VALUE"),
        ("[Exec\nBoot=yes\n", 1, "malformed section header"),
        ("[Exec]\n=yes\n", 2, "expected [SECTION], KEY=VALUE"),
        ("[Exec]\nBoot=maybe\n", 2, "expected a boolean"),
        ("[Files]\nReadOnly=2\n", 2, "expected a boolean"),
        ("[Network]\nPrivate=sure\n", 2, "expected a boolean"),
        ("[Files]\nBind=relative\n", 2, "absolute host path"),
        ("[Files]\nBind=+/in/root\n", 2, "absolute host path"),
        ("[Files]\nBindReadOnly=/a:/b:idmap\n", 2, "unsupported bind option"),
        ("[Files]\nBind=/a:/b:c:d\n", 2, "SRC[:DST[:OPTS]]"),
        ("[Files]\nBind=/a:rel\n", 2, "target must be an absolute path"),
        ("[Files]\nTemporaryFileSystem=tmp\n", 2, "absolute"),
        ("[Exec]\nEnvironment=A=1 B\n", 2, "expected NAME=VALUE"),
        ("[Exec]\nParameters=/bin/echo 'open\n", 2, "unterminated quote"),
        ("[Exec]\nCapability=CAP_FLY\n", 2, "unknown capability"),
        ("[Exec]\nWorkingDirectory=srv\n", 2, "absolute path"),
        ("[Exec]\nPrivateUsers=lots\n", 2, "UID[:COUNT]"),
        ("[Exec]\nHostname=a b\n", 2, "not a valid hostname"),
        ("[Exec]\nHostname=-a\n", 2, "a label starts or ends with '-'"),
        ("[Exec]\nUser=a b\n", 2, "invalid user name"),
        ("[Network]\nBridge=averyverylongbridge\n", 2, "invalid interface name"),
        ("[Network]\nPort=http\n", 2, "HOSTPORT"),
        ("[Network]\nPort=tcp:70000\n", 2, "HOSTPORT"),
        ("# c\n\n[Exec]\nBoot=yes\nBoot=\n[Files]\nBind=rel\\\n", 7, "absolute"),
    ],
)
def test_malformed_is_an_error_naming_file_and_line(text: str, line: int, says: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text, F, trusted=True)
    assert info.value.subject == f"{F}:{line}"
    assert says in str(info.value)


def test_load_unreadable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nspawn"
    bad.write_bytes(b"[Exec]\nHostname=\xff\n")
    with pytest.raises(UsageError, match="not a UTF-8 text file") as info:
        load(str(bad), True)
    assert info.value.subject == str(bad)
    (tmp_path / "dir.nspawn").mkdir()
    with pytest.raises(UsageError, match="cannot read") as info:
        load(str(tmp_path / "dir.nspawn"), True)
    assert info.value.subject == str(tmp_path / "dir.nspawn")


def test_find_order_and_trust(tmp_path: Path) -> None:
    etc, run, store = tmp_path / "etc", tmp_path / "run", tmp_path / "store"
    for d in (etc, run, store / "m"):
        d.mkdir(parents=True)
    search = (str(etc), str(run))
    image = str(store / "m")
    assert find("m", image, search) is None
    (store / "m.nspawn").write_text("")
    assert find("m", image, search) == (str(store / "m.nspawn"), False)
    (run / "m.nspawn").write_text("")
    assert find("m", image, search) == (str(run / "m.nspawn"), True)
    (etc / "m.nspawn").write_text("")
    assert find("m", image, search) == (str(etc / "m.nspawn"), True)
    # Named after the machine (-M), not the image; the host root has no "beside".
    assert find("other", image, search) is None
    assert find("m", "/", ()) is None


def _opts(*argv: str) -> Options:
    return _parse_run_options(list(argv))


def test_command_line_groups_are_recorded() -> None:
    ns = _opts("--bind-ro", "/a", "-E", "X=1", "--drop-capability=CAP_CHOWN", "-n", "--settings=no")
    assert ns.given == {"mounts", "environment", "capability", "network"}
    assert ns.settings == "no"


def test_command_line_wins_per_group() -> None:
    s = parse(EVERY_KEY, F, trusted=True)
    ns = _opts("--tmpfs", "/run/x", "-E", "CLI=1", "--capability", "CAP_KILL")
    apply(ns, s)
    # One --tmpfs drops all of the file's mounts; one --setenv all its Environment=
    # (systemd-nspawn's merge_settings(): one mask bit per group).
    assert (ns.bind, ns.bind_ro, ns.tmpfs) == ([], [], ["/run/x"])
    assert ns.setenv == ["CLI=1"]
    # --capability masks DropCapability= too (they share SETTING_CAPABILITY).
    assert (ns.capability, ns.drop_capability) == (["CAP_KILL"], [])
    # Groups the command line left alone come from the file.
    assert (ns.hostname, ns.user, ns.chdir, ns.read_only) == ("box.example", "nobody", "/srv", True)
    assert (ns.private_network, ns.network_veth, ns.network_bridge) == (True, True, "br0")
    assert ns.private_users == "pick" and ns.no_new_privileges == "no"


def test_override_mode_turns_it_round() -> None:
    s = parse("[Exec]\nEnvironment=F=1\n[Files]\nBind=/a\n", F, trusted=True)
    ns = _opts("-E", "CLI=1", "--bind", "/b")
    apply(ns, s, override=True)
    assert ns.setenv == ["F=1"] and ns.bind == ["/a"]


def test_untrusted_file_drops_privileged_settings() -> None:
    s = parse(EVERY_KEY, F, trusted=False)
    ns = Options()
    apply(ns, s)
    # Kept: what only restricts or describes the payload.
    assert ns.setenv == ["A=1", "B=x y", "C=p q", "D=4"]
    assert ns.drop_capability == ["CAP_CHOWN"] and ns.read_only is True
    # Dropped, each with a note naming the file and line.
    assert ns.capability == [] and ns.bind == [] and ns.tmpfs == []
    assert not ns.private_network and not ns.network_veth and ns.network_bridge is None
    assert ns.private_users == "no"
    assert ns.system_call_filter == []  # it allows @basic-io: the whole filter goes
    notes = "\n".join(ns.notes)
    for where, what in [
        (13, "Capability="),
        (21, "Bind=, BindReadOnly= and TemporaryFileSystem="),
        (27, "the [Network] settings"),
        (30, "Port="),
        (16, "PrivateUsers="),
        (11, "SystemCallFilter="),
    ]:
        assert f"{F}:{where}: ignoring {what}" in notes, what


def test_untrusted_deny_only_filter_is_kept() -> None:
    s = parse("[Exec]\nSystemCallFilter=~@mount sethostname\n", F, trusted=False)
    ns = Options()
    apply(ns, s)
    assert ns.system_call_filter == ["~@mount sethostname"] and ns.notes == []


def test_trusted_port_is_a_warning() -> None:
    ns = Options()
    apply(ns, parse("[Network]\nPort=8080\n", F, trusted=True))
    assert ns.notes == [f"{F}:2: ignoring Port=: rootstrap's runner does not forward ports"]


@pytest.mark.parametrize(
    ("text", "verb_boot", "command", "boot", "parameters"),
    [
        # run NAME, no command: Boot=yes boots with Parameters= as the init's arguments.
        ("Boot=yes\nParameters=a 'b c'", None, [], True, ["a", "b c"]),
        # ... Parameters= alone (or with Boot=no) is the command.
        ("Parameters=/bin/echo hi", None, [], None, ["/bin/echo", "hi"]),
        ("Boot=no\nParameters=/bin/echo hi", None, [], None, ["/bin/echo", "hi"]),
        # A command on the command line wins over both.
        ("Boot=yes\nParameters=a", None, ["/bin/true"], None, ["/bin/true"]),
        # boot NAME: Parameters= with Boot=yes are the init's arguments, unless given.
        ("Boot=yes\nParameters=a", True, [], True, ["a"]),
        ("Boot=yes\nParameters=a", True, ["x"], True, ["x"]),
        # boot NAME with Boot=no: Parameters= is a command, not init arguments.
        ("Boot=no\nParameters=/bin/echo", True, [], True, []),
    ],
)
def test_start_mode(
    text: str,
    verb_boot: bool | None,
    command: list[str],
    boot: bool | None,
    parameters: list[str],
) -> None:
    ns = Options()
    ns.boot = verb_boot
    if command:
        ns.parameters = command
        ns.given.add("start")
    apply(ns, parse("[Exec]\n" + text + "\n", F, trusted=False))
    assert (ns.boot, ns.parameters) == (boot, parameters)


def test_bridge_implies_veth_and_private() -> None:
    ns = Options()
    apply(ns, parse("[Network]\nBridge=br0\n", F, trusted=True))
    assert (ns.private_network, ns.network_veth, ns.network_bridge) == (True, True, "br0")
    assert ns.veth_from == f"{F}:2"


def _setup(tmp_path: Path, text: str, beside: bool = True) -> tuple[str, tuple[str, ...]]:
    (tmp_path / "store" / "m").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    where = tmp_path / "store" if beside else tmp_path / "etc"
    (where / "m.nspawn").write_text(text)
    return str(tmp_path / "store" / "m"), (str(tmp_path / "etc"),)


def test_settle_modes(tmp_path: Path) -> None:
    image, search = _setup(tmp_path, "[Exec]\nEnvironment=F=1\n[Files]\nBind=/a\n")
    ns = Options()
    settle(ns, "m", image, search)
    assert ns.settings_file == str(tmp_path / "store/m.nspawn") and not ns.settings_trusted
    assert ns.setenv == ["F=1"] and ns.bind == []
    ns = _opts("--settings=trusted")
    settle(ns, "m", image, search)
    assert ns.settings_trusted and ns.bind == ["/a"]
    ns = _opts("--settings=no")
    settle(ns, "m", image, search)
    assert ns.settings_file is None and ns.setenv == []
    ns = _opts("--settings=0")  # a boolean, as nspawn takes it
    settle(ns, "m", image, search)
    assert ns.settings_file is None
    with pytest.raises(UsageError, match="--settings takes yes, no, trusted or override"):
        settle(_opts("--settings=sometimes"), "m", image, search)


def test_settle_refuses_a_machine_name_with_a_slash(tmp_path: Path) -> None:
    image, search = _setup(tmp_path, "[Exec]\nEnvironment=F=1\n", beside=False)
    with pytest.raises(UsageError, match="not a valid machine name"):
        settle(Options(), "../etc/m", image, search)


def test_settle_malformed_file_is_an_error(tmp_path: Path) -> None:
    image, search = _setup(tmp_path, "[Exec]\nBoot=yes\nnonsense\n", beside=False)
    with pytest.raises(UsageError) as info:
        settle(Options(), "m", image, search)
    assert info.value.subject == f"{tmp_path}/etc/m.nspawn:3"


# --------------------------------------------------------------------------- the CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rootstrap", *args], capture_output=True, text=True, timeout=60
    )


def test_show_beside_the_image(tmp_path: Path) -> None:
    (tmp_path / "rs-show-unit").mkdir()
    (tmp_path / "rs-show-unit.nspawn").write_text(
        "[Exec]\nBoot=yes\nParameters=quiet 'a b'\nEnvironment=F=1\nFrobnicate=1\n"
        "[Files]\nBind=/srv\n"
    )
    store = str(tmp_path)
    r = _cli("--store", store, "show", "rs-show-unit", "--hostname", "h1")
    assert r.returncode == 0, r.stderr
    values = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert values["SettingsFile"] == str(tmp_path / "rs-show-unit.nspawn")
    assert values["SettingsTrusted"] == "no" and values["State"] == "stopped"
    assert values["Boot"] == "yes" and values["Parameters"] == 'quiet "a b"'
    assert values["Environment"] == "F=1" and values["Hostname"] == "h1"
    assert values["Bind"] == "" and values["NoNewPrivileges"] == "no"
    assert f"warning: {tmp_path}/rs-show-unit.nspawn:5: unknown key Frobnicate=" in r.stderr
    assert f"warning: {tmp_path}/rs-show-unit.nspawn:7: ignoring Bind=" in r.stderr
    r = _cli("--store", store, "show", "--settings=trusted", "--json", "rs-show-unit", "-E", "X=2")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["Bind"] == ["/srv"] and got["Environment"] == ["X=2"]
    assert got["Parameters"] == ["quiet", "a b"] and got["SettingsTrusted"] is True


def test_show_without_a_file_and_errors(tmp_path: Path) -> None:
    (tmp_path / "rs-show-bare").mkdir()
    r = _cli("--store", str(tmp_path), "show", "rs-show-bare", "--", "/bin/echo", "x y")
    assert r.returncode == 0, r.stderr
    assert "SettingsFile=\n" in r.stdout and 'Parameters=/bin/echo "x y"\n' in r.stdout
    assert "Boot=no\n" in r.stdout and "NoNewPrivileges=yes\n" in r.stdout
    r = _cli("--store", str(tmp_path), "show", "rs-show-missing")
    assert r.returncode == 1
    assert r.stderr.startswith("error: rs-show-missing: no such image\n")
    assert "Traceback" not in r.stderr
    (tmp_path / "rs-show-bare.nspawn").write_text("[Files]\nReadOnly=perhaps\n")
    r = _cli("--store", str(tmp_path), "show", "rs-show-bare")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"error: {tmp_path}/rs-show-bare.nspawn:2: ReadOnly=")
    assert "Traceback" not in r.stderr


def test_run_refuses_user_when_the_file_boots(tmp_path: Path) -> None:
    """Boot=yes with User= cannot start (the init runs as root): a clean error naming the
    file, before anything is set up."""
    (tmp_path / "rs-boot-user").mkdir()
    path = tmp_path / "rs-boot-user.nspawn"
    path.write_text("[Exec]\nBoot=yes\nUser=nobody\n")
    r = _cli("--store", str(tmp_path), "run", "rs-boot-user")
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: {path}: User= does not apply when booting")
    # A command on the command line means no boot: User= is fine then (not run here: the
    # runner needs root), and --settings=no reads no file at all.
    r = _cli("--store", str(tmp_path), "show", "--settings=no", "rs-boot-user")
    assert r.returncode == 0 and "SettingsFile=\n" in r.stdout and "Boot=no\n" in r.stdout
