"""What ``list`` and ``status`` show of machines: rows of the running ones, and one
machine's state (running from the registry, or stopped: its image and console log).

Reads the registry of running machines (rootstrap.runner.registry), /proc and the console
logs that ``start`` writes; returns plain data (dicts keyed as the ``--json`` output), which
cli/running.py prints. Standard library only, no typing at run time: these verbs are lean.
"""

from __future__ import annotations

import os

from rootstrap.rules import is_machine_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootstrap.runner.registry import Machine

LOG_DIR = "/var/log/rootstrap"  # start's console logs, NAME.log


def log_path(machine: str) -> str:
    """Where ``start`` puts MACHINE's console."""
    return os.path.join(LOG_DIR, f"{machine}.log")


def addresses(pid: int) -> list[str]:
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


def listing() -> list[dict[str, object]]:
    """The running machines as ``list --json`` shows them (machinectl's columns and the
    leader and root), by name. Stale registry entries are dropped on the way."""
    from rootstrap.runner import registry

    rows: list[dict[str, object]] = []
    for m in registry.machines():
        rows.append(
            {
                "machine": m.name,
                "class": m.get("class", "container"),
                "service": m.get("service", "rootstrap"),
                "os": m.get("os") or None,
                "version": m.get("version") or None,
                "addresses": addresses(m.leader) if m.get("private_network") else [],
                "leader": m.leader,
                "root": m.get("root"),
            }
        )
    return rows


def names() -> list[str]:
    """The names of the running machines (shell completion)."""
    from rootstrap.runner import registry

    return [m.name for m in registry.machines()]


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


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "?"


def running(m: Machine, lines: int) -> dict[str, object]:
    """The status of the running machine M, with the last LINES lines of its console log."""
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
        "addresses": addresses(m.leader) if m.get("private_network") else [],
        "iface": m.get("ifname"),
        "tasks": tasks,
        "log": log,
        "console": m.get("console"),
        "console_lines": tail(str(log), lines) if log else [],
    }


def stopped(name: str, store: str, lines: int) -> dict[str, object] | None:
    """The status of NAME when it is not running: its image in STORE and its last console
    log; None when it has neither (or NAME is not a machine name)."""
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


def status(name: str, store: str, lines: int) -> tuple[dict[str, object] | None, str | None]:
    """(status, note) of machine NAME: running from the registry, else stopped (its image
    in STORE or its console log), else None. NOTE says that a stale registry entry (its
    supervisor was killed) was found and removed."""
    from rootstrap.runner import registry

    written = registry.entry(name)
    live = registry.lookup(name)
    if live is not None:
        return running(live, lines), None
    note = None
    if written is not None:
        from rootstrap.runner import consoleserver

        consoleserver.drop(name)
        note = (
            f"{name}: its registry entry was stale (leader PID {written.leader} "
            "is gone: its supervisor was killed); removed"
        )
    return stopped(name, store, lines), note
