"""The running-machine verbs: ``list``, ``shell``, ``login``, ``status``, ``poweroff``,
``reboot``, ``terminate`` and ``kill`` (machinectl's names).

They read the registry of running machines (rootstrap.runner.registry) and act on one
machine or several; ``login`` attaches to a background machine's console
(runner/consoleserver.py), ``status`` adds the console log's last lines. Starting and
stopping are cli/service.py. Lean like cli/lean.py: no typer, errors through its boundary.
"""

from __future__ import annotations

import os
import sys
import time

from rootstrap.errors import RunnerError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootstrap.runner.registry import Machine

LOG_DIR = "/var/log/rootstrap"  # start's console logs, NAME.log

MACHINE_USAGE = """usage: rootstrap list [--json]
       rootstrap status NAME... [-n LINES] [--json]
       rootstrap shell [USER@]NAME [CMD [ARG...]]
       rootstrap login NAME
       rootstrap poweroff NAME... | reboot NAME... | terminate NAME...
       rootstrap kill NAME... [--signal SIG] [--kill-whom leader|all]

Running machines (machinectl's verbs). status shows the state, leader, OS, addresses and
the console's last lines (exit 3: not running). shell runs USER's (root's) login shell, or
CMD, inside the machine (a pty when on a terminal); login attaches to the console of a
machine started with 'rootstrap start' (Ctrl-] three times within 1s detaches). poweroff
sends SIGRTMIN+4 to its init, reboot SIGINT, terminate kills every process, kill sends SIG
(default SIGTERM) to every process or the init.
"""


def log_path(machine: str) -> str:
    """Where ``start`` puts MACHINE's console."""
    return os.path.join(LOG_DIR, f"{machine}.log")


def take_options(
    args: list[str], valued: tuple[str, ...], flags: tuple[str, ...]
) -> tuple[dict[str, str], list[str]]:
    """Pull this verb's own options out of ARGS (before any ``--``); the rest stays in order."""
    mine: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        key, eq, value = arg.partition("=")
        if key in valued:
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(f"{key} needs a value")
                value = args[i]
            mine[key] = value
        elif arg in flags:
            mine[arg] = ""
        else:
            rest.append(arg)
        i += 1
    return mine, rest


def _signal_number(value: str) -> int:
    import signal

    text = value.upper().removeprefix("SIG")
    if text.isdigit():
        return int(text)
    if text.startswith("RTMIN"):
        offset = text[5:].lstrip("+") or "0"
        if offset.isdigit():
            return int(signal.SIGRTMIN) + int(offset)
    try:
        return int(signal.Signals["SIG" + text])
    except KeyError:
        raise UsageError("unknown signal", subject=value, hint="e.g. TERM, KILL, RTMIN+4") from None


def _addresses(pid: int) -> list[str]:
    """The machine's IPv4 addresses (its own network namespace's local ones, from
    /proc/PID/net/fib_trie; loopback left out)."""
    out: list[str] = []
    try:
        with open(f"/proc/{pid}/net/fib_trie", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    from itertools import pairwise

    for prev, line in pairwise(lines):
        if "/32 host LOCAL" in line:
            address = prev.split()[-1]
            if not address.startswith("127.") and address not in out:
                out.append(address)
    return out


def list_main(args: list[str]) -> int:
    """``rootstrap list``: the running machines, like ``machinectl list``."""
    as_json = False
    for arg in args:
        if arg == "--json" or arg.startswith("--json="):
            as_json = True
        elif arg in ("-h", "--help"):
            print(MACHINE_USAGE, end="")
            return 0
        else:
            raise UsageError(f"unexpected argument {arg}", hint="rootstrap list [--json]")
    from rootstrap.runner import registry

    rows = []
    for m in registry.machines():
        addresses = _addresses(m.leader) if m.get("private_network") else []
        rows.append(
            {
                "machine": m.name,
                "class": m.get("class", "container"),
                "service": m.get("service", "rootstrap"),
                "os": m.get("os") or None,
                "version": m.get("version") or None,
                "addresses": addresses,
                "leader": m.leader,
                "root": m.get("root"),
            }
        )
    if as_json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No machines.")
        return 0
    header = ("MACHINE", "CLASS", "SERVICE", "OS", "VERSION", "ADDRESSES")
    table = [
        (
            r["machine"],
            r["class"],
            r["service"],
            r["os"] or "-",
            r["version"] or "-",
            ", ".join(r["addresses"]) or "-",
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print(" ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    print(f"\n{len(rows)} machines listed.")
    return 0


def shell_main(args: list[str]) -> int:
    """``rootstrap shell NAME [CMD...]``."""
    if not args or args[0] in ("-h", "--help"):
        print(MACHINE_USAGE, end="")
        return 0 if args else 2
    from rootstrap.runner import registry
    from rootstrap.runner.enter import enter

    user, at, name = args[0].rpartition("@")
    if not at:
        user = "root"
    elif not user:
        raise UsageError("expected [USER@]NAME", subject=args[0])
    machine = registry.get(name)
    command = args[1:]
    if command and command[0] == "--":
        command = command[1:]
    return enter(machine, command, pty=os.isatty(0) and os.isatty(1), user=user)


def machine_verb_main(verb: str, args: list[str]) -> int:
    """poweroff, reboot, terminate and kill NAME...: signals to a running machine."""
    import signal

    names: list[str] = []
    sig = int(signal.SIGTERM)
    whom = "all"
    i = 0
    while i < len(args):
        arg = args[i]
        key, eq, value = arg.partition("=")
        if key in ("-s", "--signal", "--kill-whom") and verb == "kill":
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(f"{key} needs a value")
                value = args[i]
            if key == "--kill-whom":
                if value not in ("leader", "all"):
                    raise UsageError("--kill-whom takes leader or all", subject=value)
                whom = value
            else:
                sig = _signal_number(value)
        elif arg in ("-h", "--help"):
            print(MACHINE_USAGE, end="")
            return 0
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {key}", hint="see 'rootstrap list --help'")
        else:
            names.append(arg)
        i += 1
    if not names:
        raise UsageError(f"{verb} needs a machine name", hint=f"rootstrap {verb} NAME")
    from rootstrap.runner import cgroup, registry
    from rootstrap.runner.boot import POWEROFF, REBOOT

    machines = [registry.get(name) for name in names]  # all found, or nothing is sent
    for m in machines:
        if verb == "poweroff":
            targets, number = [m.leader], POWEROFF
        elif verb == "reboot":
            targets, number = [m.leader], int(REBOOT)
        elif verb == "terminate":
            # SIGKILL to the pid namespace's init takes every process in it down.
            targets, number = [m.leader], int(signal.SIGKILL)
        else:
            number = sig
            group = m.get("cgroup")
            targets = [m.leader]
            if whom == "all" and group:
                targets = [m.leader] + [p for p in cgroup.procs(group) if p != m.leader]
        for pid in targets:
            signal_gone_ok(pid, number)
    return 0


def signal_gone_ok(pid: int, number: int) -> None:
    """Send signal NUMBER to PID; a process already gone is no error (it was on its way)."""
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


# ----------------------------------------------------------------------------- login


def login_main(args: list[str]) -> int:
    """``rootstrap login NAME``: attach to a machine's console."""
    if len(args) != 1 or args[0].startswith("-"):
        if args and args[0] in ("-h", "--help"):
            print(MACHINE_USAGE, end="")
            return 0
        raise UsageError("login takes one machine name", hint="rootstrap login NAME")
    from rootstrap.runner import consoleserver, registry

    machine = registry.get(args[0])
    path = machine.get("console")
    if not path:
        raise RunnerError(
            "its console is on the terminal that booted it",
            subject=machine.name,
            hint=f"'rootstrap shell {machine.name}' opens a shell; "
            "machines started with 'rootstrap start' have a console to log in to",
        )
    return consoleserver.attach(machine.name, str(path))


# ---------------------------------------------------------------------------- status


def tail(path: str, lines: int) -> list[str]:
    """The last LINES lines of the console log PATH, terminal escapes and CRs removed."""
    if lines <= 0:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            data = f.read()
    except OSError:
        return []
    import re

    text = data.decode("utf-8", errors="replace")
    text = re.sub(
        r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-Za-z]", "", text
    )
    # A CR without its LF rewrote the line on the terminal: keep what was left showing.
    out = [line.rstrip("\r").split("\r")[-1].rstrip() for line in text.split("\n")]
    out = [line for line in out if line.strip()]
    return out[-lines:]


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


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _running(m: Machine, lines: int) -> dict[str, object]:
    from rootstrap.runner import cgroup

    group = m.get("cgroup")
    tasks = len(cgroup.procs(str(group))) if group else None
    log = m.get("log")
    return {
        "name": m.name,
        "state": "running" if m.get("ready") else "starting",
        "since": m.get("started"),
        "ready": m.get("ready"),
        "leader": m.leader,
        "leader_comm": _comm(m.leader),
        "supervisor": m.get("rootstrap"),
        "root": m.get("root"),
        "os": m.get("pretty_name") or m.get("os") or None,
        "private_network": bool(m.get("private_network")),
        "addresses": _addresses(m.leader) if m.get("private_network") else [],
        "iface": m.get("ifname"),
        "tasks": tasks,
        "log": log,
        "console": m.get("console"),
        "console_lines": tail(str(log), lines) if log else [],
    }


def _stopped(name: str, store: str, lines: int) -> dict[str, object] | None:
    from rootstrap.rules import is_machine_name

    root = os.path.join(store, name)
    log = log_path(name)
    if not (is_machine_name(name) and (os.path.lexists(root) or os.path.exists(log))):
        return None
    return {
        "name": name,
        "state": "stopped",
        "root": root if os.path.lexists(root) else None,
        "log": log if os.path.exists(log) else None,
        "console_lines": tail(log, lines),
    }


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


def status_main(args: list[str], store: str) -> int:
    """``rootstrap status NAME...``: 0 when all run, 3 when one is stopped (as systemctl)."""
    if not args or any(a in ("-h", "--help") for a in args):
        print(MACHINE_USAGE, end="")
        return 0 if args else 2
    own, names = take_options(args, ("-n", "--lines"), ("--json",))
    raw_lines = own.get("--lines", own.get("-n", "10"))
    if not raw_lines.isdigit():
        raise UsageError("--lines takes a number", subject=raw_lines)
    lines = int(raw_lines)
    for name in names:
        if name.startswith("-"):
            raise UsageError(f"unknown option {name}", hint="see 'rootstrap status --help'")
    if not names:
        raise UsageError("status needs a machine name", hint="rootstrap status NAME...")
    from rootstrap.runner import registry

    found: list[dict[str, object]] = []
    for name in names:
        written = registry.entry(name)
        live = registry.lookup(name)
        if live is not None:
            found.append(_running(live, lines))
            continue
        if written is not None:
            from rootstrap.runner import consoleserver

            consoleserver.drop(name)
            print(
                f"warning: {name}: its registry entry was stale (leader PID {written.leader} "
                "is gone: its supervisor was killed); removed",
                file=sys.stderr,
            )
        info = _stopped(name, store, lines)
        if info is None:
            raise RunnerError(
                "no such machine or image",
                subject=name,
                hint="'rootstrap list' shows the running ones",
            )
        found.append(info)
    if "--json" in own:
        import json

        print(json.dumps(found, indent=2))
    else:
        for i, info in enumerate(found):
            if i:
                print()
            _print_status(info)
    return 3 if any(info["state"] == "stopped" for info in found) else 0


def main(verb: str, args: list[str], store: str) -> int:
    if verb == "list":
        return list_main(args)
    if verb == "shell":
        return shell_main(args)
    if verb == "login":
        return login_main(args)
    if verb == "status":
        return status_main(args, store)
    return machine_verb_main(verb, args)
