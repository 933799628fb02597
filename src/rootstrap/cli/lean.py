"""The lean command line for run (and later boot, shell): argparse only, no typer.

``rootstrap run IMAGE /bin/true`` has a budget of a few tens of milliseconds (DESIGN.md,
Targets), so this module imports nothing heavy; errors print exactly like the typer boundary
(``error: ...`` / ``hint: ...``, see rootstrap.cli.report).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from rootstrap.errors import ImageNotFound, RootstrapError, UsageError

DEFAULT_STORE = "/var/lib/machines"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Options of `run` that take a value (so the command can be told apart from them).
_VALUED = frozenset(
    "-D --directory --bind --bind-ro --tmpfs -E --setenv --chdir -u --user --hostname -M "
    "--machine --capability --drop-capability --system-call-filter --private-users --console "
    "--no-new-privileges".split()
)
_GLOBAL_VALUED = frozenset({"--store", "--cache-dir"})


def report(exc: RootstrapError, debug: bool) -> int:
    """Print an error as the typer boundary does (rootstrap.cli.report), return its code."""
    if debug:
        traceback.print_exc()
    print(f"error: {exc}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    return exc.exit_code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"see '{self.prog} --help'")


def resolve_image(store: str, name: str) -> str:
    """The directory of image NAME in STORE; a clean error for a bad or missing name.

    (The image store module will take this over; keep the contract: returns a path, raises
    UsageError for an invalid name and ImageNotFound for a missing image.)"""
    if not _NAME.fullmatch(name) or ".." in name:
        raise UsageError(
            "invalid image name", subject=name, hint="names are [A-Za-z0-9._-], 1-64 long"
        )
    path = os.path.join(store, name)
    if not os.path.lexists(path):
        raise ImageNotFound(
            "no such image",
            subject=name,
            hint=f"images live in {store}; see 'rootstrap list-images'",
        )
    return path


def _split_run(args: list[str]) -> tuple[list[str], str | None, list[str]]:
    """(options, NAME or None, command) for ``run`` arguments."""
    options: list[str] = []
    name: str | None = None
    directory = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return options, name, args[i + 1 :]
        if arg.startswith("-") and arg != "-":
            options.append(arg)
            key = arg.split("=", 1)[0]
            if key in ("-D", "--directory"):
                directory = True
            if "=" not in arg and arg in _VALUED and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        elif name is None and not directory:
            name = arg
        else:
            return options, name, args[i:]
        i += 1
    return options, name, []


def _run_parser() -> _Parser:
    p = _Parser(prog="rootstrap run", add_help=True, description="Run a command in an image.")
    p.add_argument("-D", "--directory")
    p.add_argument("--bind", action="append", default=[])
    p.add_argument("--bind-ro", action="append", default=[])
    p.add_argument("--tmpfs", action="append", default=[])
    p.add_argument("-E", "--setenv", action="append", default=[])
    p.add_argument("--chdir", default="/")
    p.add_argument("-u", "--user")
    p.add_argument("--hostname")
    p.add_argument("-M", "--machine")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("-x", "--ephemeral", action="store_true")
    p.add_argument("--private-network", action="store_true")
    p.add_argument("--capability", action="append", default=[])
    p.add_argument("--drop-capability", action="append", default=[])
    p.add_argument("--no-new-privileges", default="yes")
    p.add_argument("--system-call-filter", action="append", default=[])
    p.add_argument("--private-users", default="no")
    p.add_argument("--console")
    p.add_argument("-P", "--pipe", action="store_true")
    p.add_argument("-a", "--as-pid2", action="store_true", help="(the default for run)")
    return p


def _bool(value: str, option: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "yes", "y", "true", "on"):
        return True
    if lowered in ("0", "no", "n", "false", "off"):
        return False
    raise UsageError(f"{option} takes yes or no", subject=value)


def _bind(value: str, readonly: bool) -> tuple[str, str, bool]:
    parts = value.split(":")
    if len(parts) > 3 or not parts[0]:
        raise UsageError("expected SRC[:DST[:OPTS]]", subject=value)
    source = parts[0]
    target = parts[1] if len(parts) > 1 and parts[1] else source.lstrip("+")
    for opt in parts[2].split(",") if len(parts) > 2 else []:
        if opt not in ("", "rbind", "norbind"):
            raise UsageError(
                f"unsupported bind option {opt!r}", subject=value, hint="rbind|norbind"
            )
    return source, target, readonly


def _private_users(value: str, machine: str) -> tuple[int, int] | None:
    from rootstrap.runner import pick_uid_range

    lowered = value.lower()
    if lowered in ("no", "false", "0", "off"):
        return None
    if lowered in ("yes", "pick", "true", "on", "1"):
        return pick_uid_range(machine)
    if lowered == "identity":
        return (0, 0x10000)
    base, _, count = value.partition(":")
    try:
        parsed = (int(base), int(count) if count else 0x10000)
    except ValueError:
        raise UsageError("expected no, yes, pick, identity or UID[:COUNT]", subject=value) from None
    if parsed[0] < 0 or parsed[1] <= 0 or parsed[0] + parsed[1] > 1 << 32:
        raise UsageError("uid range out of bounds", subject=value)
    return parsed


def run_main(args: list[str], store: str) -> int:
    """``rootstrap run``: parse nspawn-style options and hand a RunSpec to the runner."""
    options, name, command = _split_run(args)
    if "-h" in options or "--help" in options:
        _run_parser().print_help()
        return 0
    ns = _run_parser().parse_args(options)
    if (name is None) == (ns.directory is None):
        raise UsageError(
            "name an image or give -D DIR (not both)", hint="rootstrap run (NAME | -D DIR) [--] CMD"
        )
    if not command:
        raise UsageError("no command given", hint="rootstrap run (NAME | -D DIR) [--] CMD [ARG...]")
    if ns.directory is not None:
        root = os.path.realpath(ns.directory)
        if not os.path.isdir(root):
            raise ImageNotFound("not a directory", subject=ns.directory)
    else:
        assert name is not None
        root = resolve_image(store, name)
    machine = ns.machine or name or os.path.basename(root) or "root"
    env: dict[str, str] = {}
    for item in ns.setenv:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError("expected NAME=VALUE", subject=item)
        env[key] = value if eq else os.environ.get(key, "")
    from rootstrap.runner import Bind, RunSpec, caps, run

    binds = [_bind(v, False) for v in ns.bind] + [_bind(v, True) for v in ns.bind_ro]
    try:
        keep = None
        if ns.capability:
            keep = caps.RUN_DEFAULT | caps.parse(",".join(ns.capability))
        drop = caps.parse(",".join(ns.drop_capability))
    except ValueError as exc:
        raise UsageError(str(exc), hint="names as in capabilities(7), e.g. CAP_NET_ADMIN") from exc
    console = ns.console
    if ns.pipe:
        console = "pipe"
    if console is None:
        console = "interactive" if os.isatty(0) and os.isatty(1) else "pipe"
    spec = RunSpec(
        root=Path(root),
        argv=command,
        env=env,
        hostname=ns.hostname or machine,
        binds=[Bind(source=Path(s), target=t, readonly=ro) for s, t, ro in binds],
        tmpfs=ns.tmpfs,
        cwd=ns.chdir,
        user=ns.user,
        read_only=ns.read_only,
        ephemeral=ns.ephemeral,
        private_network=ns.private_network,
        capabilities=None if keep is None else frozenset(keep),
        drop_capabilities=drop,
        no_new_privileges=_bool(ns.no_new_privileges, "--no-new-privileges"),
        syscall_filter=ns.system_call_filter,
        private_users=_private_users(ns.private_users, machine),
        console=console,
    )
    return run(spec)


def main(argv: list[str]) -> int:
    """Entry for the lean verbs; the error boundary of this path."""
    store = os.environ.get("ROOTSTRAP_STORE") or DEFAULT_STORE
    debug = False
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        key, eq, value = arg.partition("=")
        if key in _GLOBAL_VALUED:
            if not eq:
                i += 1
                value = argv[i] if i < len(argv) else ""
            if key == "--store":
                store = value
        elif arg == "--debug":
            debug = True
        i += 1
    verb, rest = (argv[i], argv[i + 1 :]) if i < len(argv) else ("", [])
    try:
        if verb == "run":
            return run_main(rest, store)
        raise UsageError(
            f"'{verb}' is not implemented yet", hint="rootstrap run (NAME | -D DIR) CMD"
        )
    except RootstrapError as exc:
        return report(exc, debug)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
