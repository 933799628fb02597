"""The lean command line: no typer and no argparse, a small hand-written parser.

Verbs: ``run`` and ``boot`` (containers) are parsed here; the running-machine verbs ``list``,
``shell``, ``login``, ``status``, ``poweroff``, ``reboot``, ``terminate``, ``kill`` (machinectl's
names; cli/running.py), ``start``/``stop`` (cli/service.py), ``enable``/``disable`` (cli/units.py)
and ``show`` (cli/show.py) come in through :func:`main` here and are parsed by their modules. They
are all off the typer app because ``rootstrap run IMAGE /bin/true`` has a budget of a few tens of
milliseconds and ``boot`` one measured against systemd-nspawn (docs/decisions.md, Targets), and the
machine verbs share their option style; __main__.LEAN_VERBS routes them here. This module imports
nothing heavy; errors print exactly like the typer boundary (``error: ...`` / ``hint: ...``, see
rootstrap.cli.report).
"""

from __future__ import annotations

import os
import sys

from rootstrap.cli import report
from rootstrap.errors import ImageNotFound, RootstrapError, UsageError
from rootstrap.machines.settings import GROUP, Options, parse_bind, settle
from rootstrap.paths import VALUED_GLOBALS, store_dir
from rootstrap.rules import (
    check_image_name,
    check_machine_name,
    machine_name_from,
    parse_boolean,
    parse_private_users,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootstrap.runner import RunSpec

# name -> (key, kind): "value" takes an argument, "list" may repeat, "flag" takes none.
_RUN_OPTIONS: dict[str, tuple[str, str]] = {
    "-D": ("directory", "value"),
    "--directory": ("directory", "value"),
    "--bind": ("bind", "list"),
    "--bind-ro": ("bind_ro", "list"),
    "--tmpfs": ("tmpfs", "list"),
    "-E": ("setenv", "list"),
    "--setenv": ("setenv", "list"),
    "--chdir": ("chdir", "value"),
    "-u": ("user", "value"),
    "--user": ("user", "value"),
    "--hostname": ("hostname", "value"),
    "-M": ("machine", "value"),
    "--machine": ("machine", "value"),
    "--read-only": ("read_only", "flag"),
    "-x": ("ephemeral", "flag"),
    "--ephemeral": ("ephemeral", "flag"),
    "--private-network": ("private_network", "flag"),
    "-n": ("network_veth", "flag"),
    "--network-veth": ("network_veth", "flag"),
    "--network-bridge": ("network_bridge", "value"),
    "--capability": ("capability", "list"),
    "--drop-capability": ("drop_capability", "list"),
    "--no-new-privileges": ("no_new_privileges", "value"),
    "--system-call-filter": ("system_call_filter", "list"),
    "--private-users": ("private_users", "value"),
    "--console": ("console", "value"),
    "-P": ("pipe", "flag"),
    "--pipe": ("pipe", "flag"),
    "-a": ("as_pid2", "flag"),
    "--as-pid2": ("as_pid2", "flag"),
    "--settings": ("settings", "value"),
}
_VALUED = frozenset(k for k, (_, kind) in _RUN_OPTIONS.items() if kind != "flag")

RUN_USAGE = """usage: rootstrap run (NAME | -D DIR) [OPTIONS] [--] CMD [ARG...]

Run a command in an image in new namespaces (systemd-nspawn's option names).

  -D, --directory DIR        the root directory instead of an image NAME
  --bind SRC[:DST[:OPTS]]    bind a host path (OPTS: rbind|norbind)
  --bind-ro SRC[:DST[:OPTS]] the same, read-only
  --tmpfs PATH[:OPTS]        a tmpfs at PATH
  -E, --setenv NAME[=VALUE]  set an environment variable
  --chdir DIR                working directory inside
  -u, --user NAME            run as NAME (from the image's /etc/passwd)
  --hostname NAME            hostname (default: the machine name)
  -M, --machine NAME         machine name (default: the image's name)
  --read-only                mount the image read-only
  -x, --ephemeral            throw-away overlay, the image is not changed
  --private-network          only a loopback interface
  --capability CAPS          add to the bounding set (CAP_X,CAP_Y or all)
  --drop-capability CAPS     remove from the bounding set
  --no-new-privileges BOOL   no_new_privs (default yes for run)
  --system-call-filter LIST  allow (NAME, @group) or deny (~NAME) system calls
  --private-users MODE       no|yes|pick|identity|UID[:COUNT]: a user namespace
  --console MODE             interactive|read-only|passive|pipe (-P = pipe)
  --settings MODE            yes|no|trusted|override: NAME.nspawn settings files, as
                             systemd-nspawn reads them (see the README, "Settings files")

With no CMD, a settings file's Parameters= gives the command, and Boot=yes boots the machine.
"""


def _parse_run_options(options: list[str]) -> Options:
    """Parse the option words split_words collected; UsageError on anything unknown. Records
    in ``given`` the setting groups the command line set (a settings file leaves them)."""
    ns = Options()
    i = 0
    while i < len(options):
        word = options[i]
        key, eq, value = word.partition("=")
        if key not in _RUN_OPTIONS:
            raise UsageError(f"unknown option {key}", hint="see 'rootstrap run --help'")
        attr, kind = _RUN_OPTIONS[key]
        if attr in GROUP:
            ns.given.add(GROUP[attr])
        if kind == "flag":
            if eq:
                raise UsageError(f"{key} takes no value", subject=word)
            setattr(ns, attr, True)
        else:
            if not eq:
                i += 1
                if i >= len(options):
                    raise UsageError(f"{key} needs a value", hint="see 'rootstrap run --help'")
                value = options[i]
            if kind == "list":
                getattr(ns, attr).append(value)
            else:
                setattr(ns, attr, value)
        i += 1
    return ns


def _immutable(root: str) -> bool:
    import fcntl

    # FS_IOC_GETFLAGS and FS_IMMUTABLE_FL (linux/fs.h), read here rather than through
    # rootstrap.linux.fsops, whose imports (re, pathlib) would cost `run` ~10 ms of start-up.
    fs_ioc_getflags, fs_immutable_fl = 0x80086601, 0x10
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False  # the runner reports a missing root itself
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, fs_ioc_getflags, buf)
        return bool(int.from_bytes(buf[:4], "little") & fs_immutable_fl)
    except OSError:
        return False  # no flags on this filesystem: never immutable
    finally:
        os.close(fd)


def resolve_image(store: str, name: str) -> str:
    """The directory of image NAME in STORE; a clean error for a bad or missing name.

    (The image store module will take this over; keep the contract: returns a path, raises
    UsageError for an invalid name and ImageNotFound for a missing image.)"""
    check_image_name(name)
    path = os.path.join(store, name)
    if not os.path.lexists(path):
        raise ImageNotFound(
            "no such image",
            subject=name,
            hint=f"images live in {store}; see 'rootstrap list-images'",
        )
    return path


def split_words(args: list[str], *, names: bool = False) -> tuple[list[str], list[str], list[str]]:
    """(options with their values, image names, command) of ``run``/``boot`` arguments: the
    first bare word is the image (none with -D), the next starts the command. With NAMES
    (``start``), every bare word before ``--`` is an image name."""
    options: list[str] = []
    found: list[str] = []
    directory = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return options, found, args[i + 1 :]
        if arg.startswith("-") and arg != "-":
            options.append(arg)
            key = arg.split("=", 1)[0]
            if key in ("-D", "--directory"):
                directory = True
            if "=" not in arg and arg in _VALUED and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        elif names or (not found and not directory):
            found.append(arg)
        else:
            return options, found, args[i:]
        i += 1
    return options, found, []


def _private_users(value: str, machine: str) -> tuple[int, int] | None:
    parsed = parse_private_users(value)
    if parsed == "pick":
        from rootstrap.runner import pick_uid_range

        return pick_uid_range(machine)
    return parsed


class Prepared:
    """``run``/``boot``/``show`` arguments after the settings file: the options, the image
    directory and the machine name."""

    def __init__(self, ns: Options, root: str, machine: str) -> None:
        self.ns = ns
        self.root = root
        self.machine = machine


def prepare(args: list[str], store: str, verb: str) -> Prepared | None:
    """Parse ``run``/``boot``/``show`` ARGS, find the image and apply its settings file
    (rootstrap.machines.settings: nspawn's lookup, trust and precedence), printing the file's
    warnings. None after printing the help. UsageError/ImageNotFound for bad arguments, a
    missing image or a malformed settings file. Cost without a settings file: a few stat(2)."""
    options, found, command = split_words(args)
    name = found[0] if found else None
    if "-h" in options or "--help" in options:
        print(BOOT_USAGE if verb in ("boot", "start") else RUN_USAGE, end="")
        return None
    ns = _parse_run_options(options)
    if (name is None) == (ns.directory is None):
        raise UsageError(
            "name an image or give -D DIR (not both)",
            hint=f"rootstrap {verb} (NAME | -D DIR)" + (" [--] CMD" if verb == "run" else ""),
        )
    if ns.machine:  # an empty -M is no -M, as nspawn's
        check_machine_name(ns.machine)
    elif verb == "start" and name is not None:
        # machinectl start: the image's name is the machine's (its unit, log and registry entry).
        check_machine_name(name)
    if ns.directory is not None:
        root = os.path.realpath(ns.directory)
        if not os.path.isdir(root):
            raise ImageNotFound("not a directory", subject=ns.directory)
    else:
        assert name is not None
        root = resolve_image(store, name)
    # As nspawn: the image's or directory's name made a hostname (".web" runs as "web").
    machine = ns.machine or machine_name_from(name or os.path.basename(root) or "root")
    if verb in ("boot", "start"):
        ns.boot = True
    if command:
        ns.parameters = command
        ns.given.add("start")
    settle(ns, machine, root)
    for note in ns.notes:
        print(f"warning: {note}", file=sys.stderr)
    return Prepared(ns, root, machine)


def run_main(args: list[str], store: str) -> int:
    """``rootstrap run``: parse nspawn-style options and hand a RunSpec to the runner; with
    no command and a settings file saying Boot=yes, boot the machine instead (as
    ``systemd-nspawn -M NAME`` does)."""
    p = prepare(args, store, "run")
    if p is None:
        return 0
    ns = p.ns
    if ns.boot:
        return _boot(_plan(p, "run"))
    if not ns.parameters:
        raise UsageError(
            "no command given",
            hint="rootstrap run (NAME | -D DIR) [--] CMD [ARG...], or Parameters= in NAME.nspawn",
        )
    if ns.network_veth or ns.network_bridge:
        if ns.veth_from is None:
            raise UsageError(
                "--network-veth and --network-bridge are supported by boot only",
                hint="--private-network",
            )
        # From a settings file: the machine still gets its own network, loopback only.
        print(
            f"warning: {ns.veth_from}: VirtualEthernet= and Bridge= apply to boot only; "
            "run gets a private network with loopback only",
            file=sys.stderr,
        )
        ns.network_veth, ns.network_bridge = False, None
    from rootstrap.runner import run

    return run(_spec(ns, p.root, p.machine, ns.parameters, boot=False))


def _spec(ns: Options, root: str, machine: str, command: list[str], *, boot: bool) -> RunSpec:
    """The RunSpec for settled options. BOOT: nspawn's boot defaults (its full capability
    set as the base, console read-only when not on a terminal)."""
    env: dict[str, str] = {}
    for item in ns.setenv:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError("expected NAME=VALUE", subject=item)
        env[key] = value if eq else os.environ.get(key, "")
    from rootstrap.runner import Bind, RunSpec, caps

    binds = [parse_bind(v, False) for v in ns.bind] + [parse_bind(v, True) for v in ns.bind_ro]
    try:
        keep = None
        if ns.capability:
            base = caps.NSPAWN_DEFAULT if boot else caps.RUN_DEFAULT
            keep = base | caps.parse(",".join(ns.capability))
            if ns.private_network:
                keep |= {"NET_ADMIN"}  # as the runner's own default does
        drop = caps.parse(",".join(ns.drop_capability))
    except ValueError as exc:
        raise UsageError(str(exc), hint="names as in capabilities(7), e.g. CAP_NET_ADMIN") from exc
    console = ns.console
    if ns.pipe:
        console = "pipe"
    if console is None:
        console = "interactive" if os.isatty(0) and os.isatty(1) else "pipe"
        if boot and console == "pipe":
            console = "read-only"  # nspawn's default for --boot off a terminal
    spec = RunSpec(
        root=root,
        argv=command,
        env=env,
        hostname=check_machine_name(ns.hostname, "hostname") if ns.hostname else machine,
        binds=[Bind(s, t, readonly=ro, recursive=rec) for s, t, ro, rec in binds],
        tmpfs=ns.tmpfs,
        cwd=ns.chdir,
        user=ns.user,
        # A read-only image (machinectl read-only: the immutable flag) runs read-only, as
        # under nspawn; only --ephemeral may still run it, on a throw-away overlay.
        read_only=ns.read_only or (not ns.ephemeral and _immutable(root)),
        ephemeral=ns.ephemeral,
        private_network=ns.private_network,
        capabilities=None if keep is None else frozenset(keep),
        drop_capabilities=drop,
        no_new_privileges=parse_boolean(
            "yes" if ns.no_new_privileges is None else ns.no_new_privileges, "--no-new-privileges"
        ),
        syscall_filter=ns.system_call_filter,
        private_users=_private_users(ns.private_users, machine),
        console=console,
    )
    return spec


BOOT_USAGE = """usage: rootstrap boot (NAME | -D DIR) [OPTIONS] [-- INIT-ARG...]

Boot an image: its /sbin/init (systemd) as PID 1 in new namespaces, the console on this
terminal. Ctrl-] three times within a second kills the machine; SIGTERM powers it off
(a second SIGTERM kills it). The options are run's (see 'rootstrap run --help'), with
systemd-nspawn's boot defaults: its full capability set, no_new_privs off, --console
interactive on a terminal and read-only otherwise.

  -n, --network-veth         a private network with a veth pair: ve-NAME on the host,
                             host0 inside, both addressed (a /30 of 10.231.0.0/16)
  --network-bridge BR        the same, its host end vb-NAME on bridge BR (no addresses)

The image needs an init and a bus: 'rootstrap bootstrap SUITE NAME --include
systemd-sysv,dbus'. To log in at the console, give root a password first:
'rootstrap run NAME passwd'. While it runs: 'rootstrap list', 'rootstrap shell NAME'.
"""


class BootPlan:
    """What ``boot`` and ``start`` hand to runner/boot.py: the spec, the machine name, the
    init's arguments and the network choice."""

    def __init__(
        self,
        spec: RunSpec,
        machine: str,
        init_args: list[str],
        network_veth: bool,
        network_bridge: str | None,
    ) -> None:
        self.spec = spec
        self.machine = machine
        self.init_args = init_args
        self.network_veth = network_veth
        self.network_bridge = network_bridge


def boot_plan(args: list[str], store: str, verb: str = "boot") -> BootPlan | None:
    """Parse ``boot``'s arguments (also ``start``'s, one image each) into a BootPlan, the
    machine's settings file applied; None after printing the help."""
    p = prepare(args, store, verb)
    return None if p is None else _plan(p, verb)


def _plan(p: Prepared, verb: str) -> BootPlan:
    """The BootPlan for settled options; UsageError for what booting cannot take."""
    ns = p.ns
    if ns.user is not None and "user" not in ns.given:
        raise UsageError(
            "User= does not apply when booting (the init runs as root)",
            subject=ns.settings_file,
            hint="remove User= or Boot=yes from the settings file, or --settings=no",
        )
    if ns.user is not None or ns.as_pid2:
        raise UsageError(
            f"--user and --as-pid2 do not apply to {verb}"
            + (" (booting: the settings file says Boot=yes)" if verb == "run" else "")
        )
    spec = _spec(ns, p.root, p.machine, ["/sbin/init"], boot=True)
    return BootPlan(spec, p.machine, ns.parameters, ns.network_veth, ns.network_bridge)


def _boot(plan: BootPlan) -> int:
    from rootstrap.runner.boot import boot

    return boot(
        plan.spec,
        plan.machine,
        init_args=plan.init_args,
        network_veth=plan.network_veth,
        network_bridge=plan.network_bridge,
    )


def boot_main(args: list[str], store: str) -> int:
    """``rootstrap boot``: the image's init as PID 1 (runner/boot.py)."""
    plan = boot_plan(args, store)
    return 0 if plan is None else _boot(plan)


def main(argv: list[str]) -> int:
    """Entry for the lean verbs; the error boundary of this path."""
    store = store_dir()
    debug = False
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        key, eq, value = arg.partition("=")
        if key in VALUED_GLOBALS:
            if not eq:
                i += 1
                value = argv[i] if i < len(argv) else ""
            if key == "--store":
                store = store_dir(value)
        elif arg == "--debug":
            debug = True
        elif arg in ("-h", "--help"):
            print(RUN_USAGE, end="")
            return 0
        elif arg not in ("-q", "--quiet", "-v", "--verbose"):
            return report(UsageError(f"unknown global option {key}"), debug)
        i += 1
    verb, rest = (argv[i], argv[i + 1 :]) if i < len(argv) else ("", [])
    try:
        if verb in ("run", "boot"):
            code = run_main(rest, store) if verb == "run" else boot_main(rest, store)
            if argv == sys.argv[1:]:
                # The process is ours: skip interpreter teardown (tens of ms with ctypes
                # loaded); nothing is left to flush but stdio.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            return code
        if verb in ("list", "shell", "login", "status", "poweroff", "reboot", "terminate", "kill"):
            from rootstrap.cli import running

            return running.main(verb, rest, store)
        if verb in ("start", "stop"):
            from rootstrap.cli import service

            return service.main(verb, rest, store)
        if verb in ("enable", "disable"):
            from rootstrap.cli import units

            return units.main(verb, rest, store)
        if verb == "show":
            from rootstrap.cli import show

            return show.main(rest, store)
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
