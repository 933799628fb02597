"""The one command line: the registry of verbs against what routing, help and completion
do with it, the start-up imports of the lean verbs, and bash completion run for real.

Every check runs ``python -m rootstrap`` (or bash with the generated script) as a process:
the registry is only worth something if the real entry point reads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootstrap.cli import options, verbs
from rootstrap.runner import registry
from tests.support.fixtures import make_busybox_root

VISIBLE = [v for v in verbs.VERBS if not v.hidden]
BIN = Path(sys.executable).parent
# What the lean verbs must never import (each costs tens of ms to 0.3 s of start-up).
HEAVY = ("typer", "click", "httpx", "rich", "debian", "pysequoia")


def rootstrap(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rootstrap", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with two images (busybox roots) and a hidden one."""
    store = tmp_path / "store"
    for name in ("alpha", "beta", ".hidden"):
        make_busybox_root(store / name)
    return store


# ---- help ----


def test_top_help_lists_every_verb() -> None:
    done = rootstrap("--help")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("usage: rootstrap ")
    for verb in VISIBLE:
        assert any(line.split()[:1] == [verb.name] and verb.help in line for line in lines), verb
    for opt in options.table(options.GLOBAL):
        assert opt in done.stdout
    assert "__complete" not in done.stdout


def test_bare_rootstrap_prints_help_and_fails() -> None:
    done = rootstrap()
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("usage: rootstrap ")


@pytest.mark.parametrize("verb", [v.name for v in VISIBLE])
def test_every_verb_has_help(verb: str) -> None:
    done = rootstrap(verb, "--help")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.lower().startswith(f"usage: rootstrap {verb}"), done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "error: frobnicate: no such verb"),
        (["--store"], "error: --store needs a value"),
        (["--bogus", "list"], "error: unknown global option --bogus"),
        (["-q"], "error: a verb is needed"),
        (["list", "--bogus"], "error: unknown option --bogus"),
        (
            ["run", "-D", "/", "--read-only=1", "true"],
            "error: --read-only=1: --read-only takes no value",
        ),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    done = rootstrap(*args)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == message
    assert "Traceback" not in done.stderr


def test_registry_matches_the_typer_app() -> None:
    """Every typer verb of the registry is a command of its module, and nothing else is: a
    verb added to typer but not to the registry would be unreachable."""
    import typer.main

    from rootstrap.cli import app

    typer_verbs = [v for v in verbs.VERBS if v.door == "typer"]
    for verb in typer_verbs:
        app.register(verb)
    group = typer.main.get_group(app.app)
    assert sorted(group.commands) == sorted(v.name for v in typer_verbs)
    for verb in typer_verbs:
        choices = [k for k in verb.complete if k.startswith("choice:")]
        sub = getattr(group.commands[verb.name], "commands", None)
        if sub is not None:  # a group: completion offers its subcommands
            assert choices == ["choice:" + ",".join(sub)], verb.name


def test_lean_verbs_are_served_and_their_options_known() -> None:
    import importlib

    keys = {opt.key for opt in options.TABLE}
    for verb in verbs.VERBS:
        assert set(verb.options) <= keys, verb.name
        if verb.door == "lean":
            assert callable(importlib.import_module(f"rootstrap.cli.{verb.module}").main)
            assert verb.synopsis.startswith(f"rootstrap {verb.name}")
        names = [n for opt in options.TABLE if opt.key in verb.options for n in opt.names]
        assert len(names) == len(set(names)), f"{verb.name}: an option name twice"


def test_console_choices_are_the_runners() -> None:
    from rootstrap.runner import CONSOLE_MODES

    (console,) = [opt for opt in options.TABLE if opt.key == "console"]
    assert console.choices == tuple(m for m in CONSOLE_MODES if m != "service")


# ---- what the fast verbs import ----


def _imported(*args: str, cwd: Path | None = None) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rootstrap", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = {
        line.split("|")[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "rootstrap.cli" in modules  # the -X importtime output was read
    return modules


@pytest.mark.parametrize(
    "args", [("run", "--help"), ("boot", "--help"), ("list-images", "--help"), ("list",)]
)
def test_lean_verbs_import_nothing_heavy(args: tuple[str, ...]) -> None:
    modules = _imported(*args)
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith("typer."))
    assert heavy == [], heavy


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="runs a container: needs root")
def test_run_imports_nothing_heavy(tmp_path: Path) -> None:
    root = make_busybox_root(tmp_path / "bb")
    modules = _imported("run", "-D", str(root), "/bin/true")
    assert "rootstrap.runner" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], heavy


# ---- completion ----


def test_completion_scripts() -> None:
    for shell, marker in (("bash", "complete -o default -F _rootstrap rootstrap"),
                          ("zsh", "compdef _rootstrap rootstrap"),
                          ("fish", "complete -c rootstrap")):  # fmt: skip
        done = rootstrap("completion", shell)
        assert done.returncode == 0 and marker in done.stdout, done.stderr
    bad = rootstrap("completion", "tcsh")
    assert bad.returncode == 2 and bad.stderr.startswith("error: tcsh: completion takes one")


@pytest.fixture
def machine() -> Iterator[str]:
    """A live entry in the registry of running machines: a sleeping process registered the
    way boot registers its init (the registry checks the leader is alive by its start
    time), removed afterwards."""
    name = f"t-complete-{os.getpid()}"
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        registry.register({"name": name, "leader": sleeper.pid})
        yield name
    finally:
        registry.unregister(name, sleeper.pid)
        sleeper.kill()
        sleeper.wait()


def bash_complete(*words: str, store: Path) -> list[str]:
    """COMPREPLY of the generated bash function for WORDS (the last one being completed),
    as bash calls it on TAB."""
    quoted = " ".join(f"'{w}'" for w in ("rootstrap", *words))
    script = (
        'eval "$(rootstrap completion bash)"\n'
        "complete -p rootstrap\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words)}\n"
        '_rootstrap; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    bash = shutil.which("bash")
    assert bash is not None
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ROOTSTRAP_STORE": str(store)}
    done = subprocess.run(
        [bash, "--norc", "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "complete -o default -F _rootstrap rootstrap"
    return [line for line in lines[1:] if line]


def test_bash_completes_verbs(store: Path) -> None:
    assert bash_complete("li", store=store) == ["list-images", "list"]
    assert bash_complete("st", store=store) == ["start", "stop", "status"]
    everything = bash_complete("", store=store)
    assert everything == [v.name for v in VISIBLE]


def test_bash_completes_images_and_options(store: Path, tmp_path: Path) -> None:
    assert bash_complete("run", "", store=store) == ["alpha", "beta"]
    assert bash_complete("run", "al", store=store) == ["alpha"]
    assert bash_complete("run", "alpha", "", store=store) == []  # the command: files
    assert bash_complete("run", "--con", store=store) == ["--console"]
    assert bash_complete("run", "--console", "p", store=store) == ["passive", "pipe"]
    assert bash_complete("remove", "alpha", "", store=store) == ["alpha", "beta"]
    assert bash_complete("clone", "--", store=store) == ["--force", "--help", "--read-only"]
    # --store before the verb wins over the environment.
    other = tmp_path / "other"
    make_busybox_root(other / "gamma")
    assert bash_complete("--store", str(other), "boot", "", store=store) == ["gamma"]


@pytest.mark.skipif(os.geteuid() != 0, reason="writes the registry of running machines")
def test_bash_completes_machine_names(store: Path, machine: str) -> None:
    assert machine in bash_complete("shell", "", store=store)
    assert bash_complete("shell", machine[:-2], store=store) == [machine]
    assert bash_complete("shell", f"me@{machine}", store=store) == [f"me@{machine}"]
    assert machine in bash_complete("poweroff", "", store=store)
    assert machine in bash_complete("kill", "--signal", "KILL", "", store=store)
    assert bash_complete("shell", machine, "", store=store) == []  # the command's words
