"""``rootstrap show NAME [run/boot options]``: a machine's effective settings.

What ``run``/``boot`` would use after reading the machine's .nspawn file
(rootstrap.machines.settings) and the options given here, as ``KEY=VALUE`` lines named after
systemd.nspawn(5)'s keys (or ``--json``), with ``SettingsFile=`` (the file read, empty for none)
and ``State=`` (running or stopped, from the registry). Lists are space-separated words, quoted
as the settings file would need them. Lean like cli/lean.py (its words are run's), no typer.
"""

from __future__ import annotations

from rootstrap.errors import RootstrapError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootstrap.cli.options import Globals, Parsed

SHOW_TEXT = """The effective settings of machine NAME: its settings file (NAME.nspawn in
/etc/systemd/nspawn, /run/systemd/nspawn or beside the image) merged with the options given,
as systemd-nspawn merges them. Warnings about the file go to stderr; a malformed file is an
error.
"""


def _word(word: str) -> str:
    """WORD as a settings file's word list needs it (systemd unquotes, has no escapes)."""
    if word and not any(c.isspace() or c in "'\"" for c in word):
        return word
    return f"'{word}'" if '"' in word else f'"{word}"'


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def effective(args: Parsed, store: str) -> dict[str, object]:
    """The effective settings for ``run``/``boot`` words ARGS as a dict keyed by nspawn's
    names (values: str, bool or list of str). Raises as run does for a bad option, a missing
    image or a malformed settings file. Cost: a few stat(2), the settings file's parse, one
    registry read."""
    from rootstrap.cli.lean import _immutable, prepare
    from rootstrap.rules import check_machine_name, parse_boolean, parse_private_users
    from rootstrap.runner import registry

    p = prepare(args, args.bare[0] if args.bare else None, args.rest, store, "show")
    ns = p.ns
    parse_private_users(ns.private_users)  # refused here as run refuses it
    boot = bool(ns.boot)
    try:
        state = "running" if registry.lookup(p.machine) is not None else "stopped"
    except RootstrapError:
        state = "stopped"  # a name the registry cannot hold is not running
    if boot:
        nnp = False  # runner/boot.py: as nspawn --boot, no_new_privs stays off
    else:
        given = ns.no_new_privileges
        nnp = parse_boolean("yes" if given is None else given, "--no-new-privileges")
    return {
        "Name": p.machine,
        "Image": p.root,
        "SettingsFile": ns.settings_file or "",
        "SettingsTrusted": bool(ns.settings_file) and ns.settings_trusted,
        "State": state,
        "Boot": boot,
        "Parameters": list(ns.parameters),
        "Environment": list(ns.setenv),
        "User": ns.user or "",
        "WorkingDirectory": ns.chdir,
        "Hostname": check_machine_name(ns.hostname, "hostname") if ns.hostname else p.machine,
        "SystemCallFilter": list(ns.system_call_filter),
        "Capability": list(ns.capability),
        "DropCapability": list(ns.drop_capability),
        "NoNewPrivileges": nnp,
        "PrivateUsers": ns.private_users,
        "Ephemeral": ns.ephemeral,
        "ReadOnly": ns.read_only or (not ns.ephemeral and _immutable(p.root)),
        "Bind": list(ns.bind),
        "BindReadOnly": list(ns.bind_ro),
        "TemporaryFileSystem": list(ns.tmpfs),
        "Private": ns.private_network,
        "VirtualEthernet": ns.network_veth,
        "Bridge": ns.network_bridge or "",
    }


def main(verb: str, args: list[str], g: Globals) -> int:
    """``rootstrap show``: print the effective settings (``--json``: one JSON object)."""
    from rootstrap.cli.lean import words
    from rootstrap.cli.verbs import BY_NAME

    # --json is show's anywhere before '--', even after the command's first word.
    end = args.index("--") if "--" in args else len(args)
    as_json = "--json" in args[:end]
    p = words(verb, [a for i, a in enumerate(args) if not (a == "--json" and i < end)])
    if p.help:
        print(BY_NAME[verb].usage(SHOW_TEXT), end="")
        return 0
    values = effective(p, g.store)
    if as_json:
        import json

        print(json.dumps(values, indent=2))
        return 0
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            text = _yes(value)
        elif isinstance(value, list):
            text = " ".join(_word(str(v)) for v in value)
        else:
            text = str(value)
        out.append(f"{key}={text}")
    print("\n".join(out))
    return 0
