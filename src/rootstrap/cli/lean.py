"""``run`` and ``boot``: systemd-nspawn's grammar, read without typer.

``rootstrap run IMAGE /bin/true`` has a budget of a few tens of milliseconds and ``boot`` one
measured against systemd-nspawn (docs/decisions.md, Targets; bench/README.md), so the verbs
whose words follow nspawn's grammar (these two, and ``start`` and ``show``, which reuse what
is here) are read by cli/options.py's one parser against its one table; rootstrap/__main__.py
routes them here from cli/verbs.py. This module imports nothing heavy; errors go through the
one boundary (rootstrap.cli.guard).
"""

from __future__ import annotations

import os
import sys

from rootstrap.cli.options import NSPAWN, Parsed, parse
from rootstrap.errors import ImageNotFound, UsageError
from rootstrap.machines.settings import GROUP, Options, parse_bind, settle
from rootstrap.rules import (
    check_image_name,
    check_machine_name,
    machine_name_from,
    parse_boolean,
    parse_private_users,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootstrap.cli.options import Globals
    from rootstrap.machines.supervisor import BootPlan
    from rootstrap.runner import RunSpec

RUN_TEXT = """Run a command in an image in new namespaces (systemd-nspawn's option names).
With no CMD, a settings file's Parameters= gives the command, and Boot=yes boots the machine.
"""


def _command_starts(p: Parsed) -> bool:
    """run/boot/show: the first bare word is the image (none with -D), the next starts the
    command (or the init's arguments)."""
    return bool(p.bare) or "directory" in p.values


def read_options(p: Parsed) -> Options:
    """The nspawn options P holds as rootstrap.machines.settings.Options (whose attributes
    are the table's keys), with the setting groups the command line set in ``given`` (a
    settings file leaves those alone)."""
    ns = Options()
    for key, value in p.values.items():
        if key not in NSPAWN:
            continue  # start's and show's own
        if key in GROUP:
            ns.given.add(GROUP[key])
        if isinstance(value, list):
            getattr(ns, key).extend(value)
        else:
            setattr(ns, key, value)
    return ns


def _parse_run_options(words: list[str]) -> Options:
    """OPTIONS words of ``run`` (no image, no command) as Options; UsageError on anything
    unknown."""
    return read_options(parse("run", words, NSPAWN))


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


def words(verb: str, args: list[str], keys: tuple[str, ...] = NSPAWN) -> Parsed:
    """ARGS of ``run``/``boot``/``show`` read against KEYS: options, the image (first bare
    word, none with -D), the command (the rest)."""
    return parse(verb, args, keys, stop=_command_starts)


def prepare(p: Parsed, name: str | None, command: list[str], store: str, verb: str) -> Prepared:
    """Find image NAME (or -D's directory) for VERB's options P and COMMAND, and apply its
    settings file (rootstrap.machines.settings: nspawn's lookup, trust and precedence),
    printing the file's warnings. UsageError/ImageNotFound for bad arguments, a missing
    image or a malformed settings file. Cost without a settings file: a few stat(2)."""
    ns = read_options(p)
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


def run_main(p: Parsed, store: str) -> int:
    """``rootstrap run``: hand a RunSpec to the runner; with no command and a settings file
    saying Boot=yes, boot the machine instead (as ``systemd-nspawn -M NAME`` does)."""
    prepared = prepare(p, p.bare[0] if p.bare else None, p.rest, store, "run")
    ns = prepared.ns
    if ns.boot:
        from rootstrap.machines.supervisor import boot

        return boot(plan(prepared, "run"))
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

    return run(_spec(ns, prepared.root, prepared.machine, ns.parameters, boot=False))


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


BOOT_TEXT = """Boot an image: its /sbin/init (systemd) as PID 1 in new namespaces, the console on
this terminal. Ctrl-] three times within a second kills the machine; SIGTERM powers it off
(a second SIGTERM kills it). The options are run's, with systemd-nspawn's boot defaults:
its full capability set, no_new_privs off, --console interactive on a terminal and
read-only otherwise; -n and --network-bridge give it a network of its own.

The image needs an init and a bus: 'rootstrap bootstrap SUITE NAME --include
systemd-sysv,dbus'. To log in at the console, give root a password first:
'rootstrap run NAME passwd'. While it runs: 'rootstrap list', 'rootstrap shell NAME'.
"""


def plan(p: Prepared, verb: str) -> BootPlan:
    """The BootPlan (rootstrap.machines.supervisor) for settled options; UsageError for what
    booting cannot take."""
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
    from rootstrap.machines.supervisor import BootPlan

    return BootPlan(spec, p.machine, ns.parameters, ns.network_veth, ns.network_bridge)


def main(verb: str, args: list[str], g: Globals) -> int:
    """``rootstrap run`` and ``rootstrap boot`` (the image's init as PID 1: runner/boot.py)."""
    from rootstrap.cli.verbs import BY_NAME

    p = words(verb, args)
    if p.help:
        print(BY_NAME[verb].usage(RUN_TEXT if verb == "run" else BOOT_TEXT), end="")
        return 0
    if verb == "run":
        return run_main(p, g.store)
    from rootstrap.machines.supervisor import boot

    prepared = prepare(p, p.bare[0] if p.bare else None, p.rest, g.store, "boot")
    return boot(plan(prepared, "boot"))
