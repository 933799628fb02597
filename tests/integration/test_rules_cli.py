"""The rules' tables (tests/unit/test_rules.py) through every verb that applies them, on the real
command line (``python -m rootstrap --store TMP ...``): no two verbs may disagree on a name or a
boolean again (issue 17: ``run .hidden`` failed on an image ``list-images --all`` showed, and
``show --no-new-privileges=t`` printed yes where ``run`` refused it).

Each refused value must give the rule's own message (``error: SUBJECT: not a valid image name:
RULE``) and exit 2 with nothing created; each accepted one must get past the rule to the verb's
real work (a busybox image is run, cloned, renamed, exported and imported). The whole tables go
through the lean verbs (run, boot, show, the machine verbs: ~0.05 s a process); the typer verbs
(~0.25 s of CPU a process) get every accepted name and one refused name per reason the rule can
give, plus the names of issue 17. The calls run four at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from rootstrap import rules
from rootstrap.errors import UsageError
from rootstrap.store import Store
from tests.support.fixtures import make_busybox_root
from tests.unit.test_rules import BOOLEANS, IMAGE_BAD, IMAGE_OK, NAMES, PRIVATE_USERS

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="run needs root and namespaces"),
]

T = TypeVar("T")
Run = subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # Bytecode cached for the hundreds of processes (the suite's environment turns it off);
    # no ROOTSTRAP_* from outside: --store says where.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOTSTRAP_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pyc"))
    return env


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store holding one busybox image, ``bb``."""
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    make_busybox_root(root / "bb")
    return root


def cli(env: dict[str, str], store: Path, *args: str) -> Run:
    return subprocess.run(
        [sys.executable, "-m", "rootstrap", "--store", str(store), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def parallel(calls: Iterable[Callable[[], T]]) -> list[T]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda call: call(), calls))


def refusal(check: Callable[[], object]) -> str:
    """The first line the CLI prints for the UsageError CHECK raises (cli.report's format)."""
    with pytest.raises(UsageError) as err:
        check()
    return f"error: {err.value}"


def first(done: Run) -> str:
    return done.stderr.splitlines()[0] if done.stderr else ""


def entries(store: Path) -> list[str]:
    return sorted(os.listdir(store))


def props(done: Run) -> dict[str, str]:
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


# --------------------------------------------------------------------------- image names


# One refused name per reason, and the names issue 17 found the verbs disagreeing on.
_REASONS = {rules.image_problem(name): name for name, _ in reversed(IMAGE_BAD)}
TYPER_BAD = sorted({*_REASONS.values(), "my_img", "foo-", "a.-b"})


def _image_verbs(name: str, tar: Path, tree: Path) -> Iterator[tuple[str, ...]]:
    """Every verb that takes an image NAME: the lean ones for every name (but one that looks
    like an option: they read it as one), the typer ones for TYPER_BAD."""
    if not name.startswith("-"):
        yield "run", name, "true"
        yield "boot", name
        yield "show", name
    if name not in TYPER_BAD:
        return
    for verb in ("show-image", "image-status", "remove"):
        yield verb, "--", name
    yield "read-only", "--", name, "yes"
    yield "export-tar", "--", name, str(tar)
    yield "clone", "--", "bb", name
    yield "clone", "--", name, "copy"
    yield "rename", "--", "bb", name
    yield "rename", "--", name, "renamed"
    yield "import-tar", "--", str(tar), name
    yield "import-fs", "--", str(tree), name
    if name:  # (an empty NAME is none: "an image name is needed")
        yield "bootstrap", "bookworm", "--", name  # refused before any download


@pytest.mark.hazard(67)
def test_refused_image_names_are_refused_by_every_verb(
    env: dict[str, str], store: Path, tmp_path: Path
) -> None:
    tar, tree = tmp_path / "bb.tar", tmp_path / "tree"
    assert cli(env, store, "export-tar", "bb", str(tar)).returncode == 0
    (tree / "etc").mkdir(parents=True)
    before = entries(store)
    calls = [(name, args) for name, _ in IMAGE_BAD for args in _image_verbs(name, tar, tree)]
    results = parallel(lambda args=args: cli(env, store, *args) for _, args in calls)
    for (name, args), done in zip(calls, results, strict=True):
        assert done.returncode == 2, (args, done.stderr)
        assert first(done) == refusal(lambda name=name: rules.check_image_name(name)), args
        assert "Traceback" not in done.stderr
    assert entries(store) == before


@pytest.mark.hazard(67)
def test_accepted_image_names_work_in_every_verb(
    env: dict[str, str], store: Path, tmp_path: Path
) -> None:
    made = parallel(
        lambda name=name: cli(env, store, "clone", "--", "bb", name) for name in IMAGE_OK
    )
    assert [d.returncode for d in made] == [0] * len(IMAGE_OK), [d.stderr for d in made]
    for name in ("my_img", "foo-", "a.-b", "é"):  # made by another tool: no verb can name them
        (store / name).mkdir()
    listed = json.loads(cli(env, store, "list-images", "--all", "--json").stdout)
    assert sorted(i["name"] for i in listed) == sorted([*IMAGE_OK, "bb"])
    for name in ("my_img", "foo-", "a.-b", "é"):
        (store / name).rmdir()
    visible = cli(env, store, "list-images")  # hidden images only with --all
    shown = {line.split()[0] for line in visible.stdout.splitlines()[1:] if line.strip()}
    assert {n for n in IMAGE_OK if not rules.is_hidden(n)} | {"bb"} <= shown
    assert not {n for n in IMAGE_OK if rules.is_hidden(n)} & shown

    def flow(index: int, name: str) -> None:
        machine = rules.machine_name_from(name)  # nspawn's name for it: .web runs as web
        out = tmp_path / f"out{index}.tar"

        def ok(*args: str) -> Run:
            done = cli(env, store, *args)
            assert done.returncode == 0, (args, done.stderr)
            return done

        assert ok("run", name, "hostname").stdout == f"{machine}\n"
        assert props(ok("show", name))["Name"] == machine
        booted = cli(env, store, "boot", name)  # past the name: busybox has no init
        assert booted.returncode == 127 and "/sbin/init: cannot execute" in booted.stderr
        assert props(ok("show-image", "--", name))["Name"] == name
        done = cli(env, store, "read-only", "--", name, "yes")
        if rules.is_hidden(name):  # machinectl's rule for hidden images, not the name's
            assert "hidden images cannot be made read-only" in first(done)
        else:
            assert done.returncode == 0, done.stderr
        ok("export-tar", "--", name, str(out))
        ok("rename", "--", name, f"renamed{index}")
        ok("rename", "--", f"renamed{index}", name)
        ok("clone", "--", name, f"copy{index}")
        ok("remove", "--", name)
        for verb, source in (("import-tar", out), ("import-fs", store / f"copy{index}")):
            if verb == "import-fs" and not rules.is_hidden(name) and index % 3:
                continue  # the same rule as import-tar's: a few names are enough
            done = cli(env, store, verb, "--", str(source), name)
            if rules.is_hidden(name) and verb == "import-tar":  # the bootstrap's rule too
                hidden = cli(env, store, "bootstrap", "bookworm", "--", name)
                assert first(hidden) == first(done) and hidden.returncode == 2
            if rules.is_hidden(name):  # a new image from outside starts visible (importd)
                assert first(done) == refusal(lambda: rules.check_image_name(name, hidden=False))
            else:
                assert done.returncode == 0, (verb, done.stderr)
                ok("remove", "--", name)

    parallel(lambda i=i, n=n: flow(i, n) for i, n in enumerate(IMAGE_OK))
    left = {e for e in entries(store) if e != ".rootstrap-usage.json"}
    assert left == {"bb"} | {f"copy{i}" for i in range(len(IMAGE_OK))}


# --------------------------------------------------------------------------- machine names


def _machine_verbs(name: str, accepted: bool) -> Iterator[tuple[tuple[str, ...], str]]:
    """(arguments, what the refusal calls the name) for every verb that takes a machine name.
    An accepted name goes to no verb that could stop a machine of that name (the registry is
    the host's), and to ``status`` only after the runs and boots are over."""
    if name:  # an empty -M or --hostname is none given, as nspawn's
        yield ("run", "bb", "--read-only", "-M", name, "true"), "machine name"
        yield ("show", "bb", "-M", name), "machine name"
        yield ("boot", "bb", "-x", "-M", name), "machine name"  # -x: the runs share bb
        yield ("run", "bb", "--read-only", "--hostname", name, "hostname"), "hostname"
        yield ("show", "bb", "--hostname", name), "hostname"
        if not accepted:  # (an accepted one would start a download)
            target = ("--target", "/nonexistent/rules-cli")
            yield ("bootstrap", "bookworm", *target, f"--hostname={name}"), "hostname"
    if name.startswith("-"):  # an option to the verbs below
        return
    if not accepted:
        for verb in ("poweroff", "reboot", "terminate", "kill", "stop", "shell", "login"):
            yield (verb, name), "machine name"
        if name:  # start "" names no image
            yield ("start", name), "machine name"
    yield ("enable", "--root", "/nonexistent", "--", name), "machine name"
    yield ("disable", "--root", "/nonexistent", "--", name), "machine name"


@pytest.mark.hazard(67)
def test_machine_names_through_every_verb(env: dict[str, str], store: Path) -> None:
    calls = [
        (name, why, args, what)
        for name, _, why in NAMES
        for args, what in _machine_verbs(name, why is None)
    ]
    results = parallel(lambda args=args: cli(env, store, *args) for _, _, args, _ in calls)
    accepted = [name for name, _, why in NAMES if why is None]
    calls += [(name, None, ("status", name), "machine name") for name in accepted]
    results += parallel(lambda name=name: cli(env, store, "status", name) for name in accepted)
    for (name, why, args, what), done in zip(calls, results, strict=True):
        if why is not None:
            assert done.returncode == 2, (args, done.stderr)
            assert first(done) == refusal(lambda n=name, w=what: rules.check_machine_name(n, w))
            continue
        # Accepted: the verb gets to its own answer (no such machine or image, a run).
        verb = args[0]
        if args[1] == "bb" and "-M" in args:
            if verb == "boot":  # past the names
                assert done.returncode == 127, (args, done.stderr)  # busybox has no init
            elif verb == "show":
                assert props(done)["Name"] == name
            else:
                assert done.returncode == 0, (args, done.stderr)
        elif "--hostname" in args and verb == "show":
            assert props(done)["Hostname"] == name
        elif "--hostname" in args:
            assert done.stdout == f"{name}\n", (args, done.stderr)
        elif verb == "disable":
            assert "--root is not a directory" in first(done), (args, done.stderr)
        elif verb == "enable":
            assert first(done) == f"error: {name}: no such image", done.stderr
        else:
            assert first(done) == f"error: {name}: no such machine or image", done.stderr
    assert entries(store) == ["bb"]


# --------------------------------------------------------------------------- booleans


@pytest.mark.parametrize("verb", ["run", "show", "read-only", "settings file"])
def test_booleans_through_every_verb(env: dict[str, str], store: Path, verb: str) -> None:
    """--no-new-privileges (run, show), read-only's BOOL, NoNewPrivileges= in a settings file:
    one table, one message."""
    values = BOOLEANS
    if verb == "settings file":  # a file's value is stripped, and a newline ends it
        values = [(v, e) for v, e in BOOLEANS if v.strip() == v and v]
    results: list[Run] = []
    states: list[bool] = []
    if verb == "read-only":  # each value flips the same image: one after the other
        for value, _ in values:
            results.append(cli(env, store, "read-only", "--", "bb", value))
            states.append(Store(store).image("bb").read_only)
    elif verb == "settings file":
        for value, _ in values:
            (store / "bb.nspawn").write_text(f"[Exec]\nNoNewPrivileges={value}\n")
            results.append(cli(env, store, "show", "bb"))
    elif verb == "run":
        probe = ("sh", "-c", "grep NoNewPrivs /proc/self/status")
        results = parallel(
            lambda value=value: cli(
                env, store, "run", "bb", "--read-only", f"--no-new-privileges={value}", *probe
            )
            for value, _ in values
        )
    else:
        results = parallel(
            lambda value=value: cli(env, store, "show", "bb", f"--no-new-privileges={value}")
            for value, _ in values
        )
    for i, ((value, expected), done) in enumerate(zip(values, results, strict=True)):
        if expected is None:
            assert done.returncode == 2, (value, done.stderr)
            if verb == "settings file":
                assert first(done) == (
                    f"error: {store}/bb.nspawn:2: NoNewPrivileges={value}: expected a boolean"
                )
            else:
                what = None if verb == "read-only" else "--no-new-privileges"
                assert first(done) == refusal(lambda v=value, w=what: rules.parse_boolean(v, w))
            continue
        assert done.returncode == 0, (value, done.stderr)
        if verb == "run":
            assert done.stdout.split() == ["NoNewPrivs:", "1" if expected else "0"], value
        elif verb == "read-only":
            assert states[i] is expected, value
        else:
            assert props(done)["NoNewPrivileges"] == ("yes" if expected else "no"), value


def test_show_and_run_agree_on_t(env: dict[str, str], store: Path) -> None:
    """The reviewer's case: show printed yes for t, run refused it."""
    assert props(cli(env, store, "show", "bb", "--no-new-privileges=t"))["NoNewPrivileges"] == "yes"
    done = cli(env, store, "run", "bb", "--no-new-privileges=t", "true")
    assert done.returncode == 0, done.stderr
    assert props(cli(env, store, "show", "bb", "--no-new-privileges=F"))["NoNewPrivileges"] == "no"


# --------------------------------------------------------------------------- --private-users


def test_private_users_through_run_show_and_settings(env: dict[str, str], store: Path) -> None:
    """--private-users (run, show) and PrivateUsers= (a trusted settings file): one parser."""
    values = [(v, e) for v, e in PRIVATE_USERS if v]

    def run(value: str) -> Run:
        if value == "100000:1":  # the runner itself needs more uids than root (devpts' gid 5)
            return cli(env, store, "run", "bb", "--read-only", "cat", "/proc/self/uid_map")
        return cli(
            env,
            store,
            "run",
            "bb",
            "--read-only",
            f"--private-users={value}",
            "cat",
            "/proc/self/uid_map",
        )

    runs = parallel(lambda value=value: run(value) for value, _ in values)
    shows = parallel(
        lambda value=value: cli(env, store, "show", "bb", f"--private-users={value}")
        for value, _ in values
    )
    files = []
    for value, _ in values:
        if value.strip() != value:
            files.append(None)
            continue
        (store / "bb.nspawn").write_text(f"[Exec]\nPrivateUsers={value}\n")
        files.append(cli(env, store, "show", "bb", "--settings=trusted"))
    for (value, expected), ran, shown, filed in zip(values, runs, shows, files, strict=True):
        if isinstance(expected, str) and expected != "pick":
            line = refusal(lambda v=value: rules.parse_private_users(v))
            assert (ran.returncode, first(ran)) == (2, line), value
            assert (shown.returncode, first(shown)) == (2, line), value
            if filed is not None:
                assert (
                    first(filed) == f"error: {store}/bb.nspawn:2: PrivateUsers={value}: {expected}"
                )
            continue
        assert ran.returncode == 0, (value, ran.stderr)
        mapping = ran.stdout.split()
        if value == "100000:1":
            pass  # not run (see run())
        elif expected is None:
            assert mapping == ["0", "0", "4294967295"], value  # no user namespace
        elif expected == "pick":
            assert mapping[0] == "0" and int(mapping[1]) >= 0x80000 and mapping[2] == "65536"
        else:
            assert isinstance(expected, tuple)
            assert mapping == ["0", str(expected[0]), str(expected[1])], value
        assert props(shown)["PrivateUsers"] == value
        if filed is not None:
            assert props(filed)["PrivateUsers"] == value


# --------------------------------------------------------------------------- paths


def test_every_door_reads_rootstrap_store(env: dict[str, str], store: Path) -> None:
    """ROOTSTRAP_STORE, without --store: the lean verbs, list-images and the typer verbs all
    find the same image."""
    with_env = {**env, "ROOTSTRAP_STORE": str(store)}

    def bare(*args: str) -> Run:
        return subprocess.run(
            [sys.executable, "-m", "rootstrap", *args],
            capture_output=True, text=True, env=with_env, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    assert bare("run", "bb", "true").returncode == 0
    assert props(bare("show", "bb"))["Image"] == str(store / "bb")
    assert "bb" in bare("list-images").stdout
    assert props(bare("show-image", "bb"))["Path"] == str(store / "bb")
    assert bare("--store", "/nonexistent", "show-image", "bb").returncode == 1  # the option wins
