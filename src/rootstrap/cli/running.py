"""The running-machine verbs: ``list``, ``status``, ``shell``, ``login``, ``poweroff``,
``reboot``, ``terminate`` and ``kill`` (machinectl's names).

Words in (cli/options.py's parser), a call into rootstrap.machines (status.py: what is
running and how; control.py: signals, shell, login), output here. Lean: no typer.
"""

from __future__ import annotations

import os
import sys
import time

from rootstrap.cli.options import parse
from rootstrap.errors import RunnerError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootstrap.cli.options import Globals, Parsed
    from rootstrap.cli.verbs import Verb

TEXT = {
    "list": "The running machines, as machinectl list shows them.\n",
    "status": "The state, leader, OS, addresses and the console's last lines of each machine\n"
    "(running, or stopped: its image); exit 3 when one is not running.\n",
    "shell": "Run USER's (root's) login shell, or CMD, inside the machine (a pty when on a\n"
    "terminal).\n",
    "login": "Attach to the console of a machine started with 'rootstrap start' (Ctrl-] three\n"
    "times within 1s detaches).\n",
    "poweroff": "Send SIGRTMIN+4 to each machine's init (a clean shutdown).\n",
    "reboot": "Send SIGINT to each machine's init (ctrl-alt-del.target: a reboot).\n",
    "terminate": "Kill every process of each machine at once (SIGKILL to its init).\n",
    "kill": "Send SIG (default SIGTERM) to every process of each machine, or to its init only\n"
    "(--kill-whom leader).\n",
}


def list_main(p: Parsed) -> int:
    """``rootstrap list``: the running machines, like ``machinectl list``."""
    if p.bare or p.rest:
        arg = (p.bare + p.rest)[0]
        raise UsageError(f"unexpected argument {arg}", hint="rootstrap list [--json]")
    from rootstrap.machines.status import listing

    rows = listing()
    if p.flag("json"):
        import json

        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No machines.")
        return 0
    header = ("MACHINE", "CLASS", "SERVICE", "OS", "VERSION", "ADDRESSES")
    table = [
        (
            str(r["machine"]),
            str(r["class"]),
            str(r["service"]),
            str(r["os"] or "-"),
            str(r["version"] or "-"),
            ", ".join(r["addresses"]) or "-",  # type: ignore[arg-type]
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print(" ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    print(f"\n{len(rows)} machines listed.")
    return 0


def shell_main(p: Parsed) -> int:
    """``rootstrap shell [USER@]NAME [CMD...]``."""
    from rootstrap.machines.control import shell

    target = p.bare[0]
    user, at, name = target.rpartition("@")
    if not at:
        user = "root"
    elif not user:
        raise UsageError("expected [USER@]NAME", subject=target)
    return shell(name, p.rest, user=user, pty=os.isatty(0) and os.isatty(1))


def signal_main(verb: str, p: Parsed) -> int:
    """poweroff, reboot, terminate and kill NAME...: signals to running machines."""
    sig = None
    whom = p.value("kill_whom", "all")
    if whom not in ("leader", "all"):
        raise UsageError("--kill-whom takes leader or all", subject=whom)
    from rootstrap.machines import control

    if "signal" in p.values:
        sig = control.signal_number(str(p.value("signal")))
    names = p.names()
    if not names:
        raise UsageError(f"{verb} needs a machine name", hint=f"rootstrap {verb} NAME")
    control.send(verb, names, sig, str(whom))
    return 0


# ---------------------------------------------------------------------------- status


def _ago(then: float) -> str:
    seconds = max(0, int(time.time() - then))
    if seconds < 60:
        return f"{seconds}s ago"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}min {seconds}s ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}min ago"
    return f"{hours // 24} days ago"


def _print_status(info: dict[str, object]) -> None:
    rows: list[tuple[str, object]] = []
    if info["state"] != "stopped":
        since = float(info["since"] or 0)  # type: ignore[arg-type]
        stamp = time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(since))
        rows += [
            ("Since", f"{stamp}; {_ago(since)}"),
            ("Leader", f"{info['leader']} ({info['leader_comm']})"),
            ("Supervisor", info["supervisor"]),
            ("Root", info["root"]),
            ("OS", info["os"]),
            ("Network", "private" if info["private_network"] else "host"),
        ]
        if info["iface"]:
            rows.append(("Iface", f"{info['iface']} (host side)"))
        addresses = info["addresses"]
        if addresses:
            rows.append(("Address", ", ".join(addresses)))  # type: ignore[arg-type]
        if info["tasks"] is not None:
            rows.append(("Tasks", info["tasks"]))
        if info["console"]:
            rows.append(("Console", f"{info['log']} ('rootstrap login {info['name']}')"))
        else:
            rows.append(("Console", "on the terminal that booted it"))
    else:
        rows += [("Root", info["root"] or "-"), ("Log", info["log"] or "-")]
    print(f"{info['name']} ({info['state']})")
    for key, value in rows:
        if value is not None:
            print(f"{key:>11}: {value}")
    console = info["console_lines"]
    if console:
        print()
        for line in console:  # type: ignore[attr-defined]
            print(f"  {line}")


def status_main(p: Parsed, store: str) -> int:
    """``rootstrap status NAME...``: 0 when all run, 3 when one is stopped (as systemctl)."""
    raw_lines = p.value("lines", "10") or ""
    if not raw_lines.isdigit():
        raise UsageError("--lines takes a number", subject=raw_lines)
    names = p.names()
    if not names:
        raise UsageError("status needs a machine name", hint="rootstrap status NAME...")
    from rootstrap.machines.status import status

    found: list[dict[str, object]] = []
    for name in names:
        info, note = status(name, store, int(raw_lines))
        if note:
            print(f"warning: {note}", file=sys.stderr)
        if info is None:
            raise RunnerError(
                "no such machine or image",
                subject=name,
                hint="'rootstrap list' shows the running ones",
            )
        found.append(info)
    if p.flag("json"):
        import json

        print(json.dumps(found, indent=2))
    else:
        for i, info in enumerate(found):
            if i:
                print()
            _print_status(info)
    return 3 if any(info["state"] == "stopped" for info in found) else 0


def login_main(p: Parsed) -> int:
    """``rootstrap login NAME``: attach to a machine's console."""
    names = p.names()
    if len(names) != 1:
        raise UsageError("login takes one machine name", hint="rootstrap login NAME")
    from rootstrap.machines.control import login

    return login(names[0])


def _usage(entry: Verb) -> str:
    return entry.usage(TEXT[entry.name])


def main(verb: str, args: list[str], g: Globals) -> int:
    from rootstrap.cli.verbs import BY_NAME

    entry = BY_NAME[verb]
    # shell: the words after the machine's name are the command's, options included.
    p = parse(verb, args, entry.options, stop=(lambda q: bool(q.bare)) if verb == "shell" else None)
    if p.help:
        print(_usage(entry), end="")
        return 0
    if verb in ("status", "shell") and not args:
        print(_usage(entry), end="")
        return 2
    if verb == "list":
        return list_main(p)
    if verb == "status":
        return status_main(p, g.store)
    if verb == "shell":
        if not p.bare:
            raise UsageError("shell needs a machine name", hint="rootstrap shell [USER@]NAME")
        return shell_main(p)
    if verb == "login":
        return login_main(p)
    return signal_main(verb, p)
