"""Running machines, one JSON file each under /run/rootstrap/machines/NAME.

A tmpfs path (gone at reboot, like systemd-machined's state), written by the ``boot`` that
started the machine and removed by it when the machine exits. An entry whose leader died
without removing it (rootstrap SIGKILLed) is stale: the leader PID is gone, or reused by
another process, which the process start time (/proc/PID/stat field 22) tells apart. Stale
entries are dropped wherever they are read. Standard library, rootstrap.errors and rootstrap.rules
(the machine-name rule) only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from rootstrap.errors import RunnerError
from rootstrap.rules import check_machine_name, is_machine_name

TYPE_CHECKING = False  # typing and json cost ~5 ms on boot's path before the init starts
if TYPE_CHECKING:
    from typing import Any

ROOT = "/run/rootstrap/machines"


def start_time(pid: int) -> int | None:
    """PID's start time in clock ticks since boot (None when PID does not exist)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    return int(data[data.rindex(b")") + 2 :].split()[19])


class Machine:
    """One registry entry (attributes as in the JSON file)."""

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = dict(fields)

    @property
    def name(self) -> str:
        return str(self.fields["name"])

    @property
    def leader(self) -> int:
        return int(self.fields["leader"])

    def alive(self) -> bool:
        """The leader still runs and is the same process (not a reused PID)."""
        now = start_time(self.leader)
        return now is not None and now == self.fields.get("start_time")

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def _path(name: str, root: str) -> str:
    """The entry of machine NAME; UsageError for a name that is not one (rootstrap.rules)."""
    return os.path.join(root, check_machine_name(name))


def register(fields: Mapping[str, Any], root: str = ROOT) -> Machine:
    """Add the entry for FIELDS["name"] (with its leader's start time filled in).

    Raises RunnerError when a live machine already has that name; a stale one is replaced.
    The file appears atomically (written aside, then link(2), which never replaces)."""
    import json

    machine = Machine({**fields, "start_time": start_time(int(fields["leader"]))})
    os.makedirs(root, mode=0o755, exist_ok=True)
    final = _path(machine.name, root)
    tmp = os.path.join(root, f".#{machine.name}.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(machine.fields, f, sort_keys=True)
    try:
        for _ in range(3):
            try:
                os.link(tmp, final)
                return machine
            except FileExistsError:
                if lookup(machine.name, root) is not None:
                    raise RunnerError(
                        "a machine of this name is running",
                        subject=machine.name,
                        hint="pick another name with -M NAME",
                    ) from None
        raise RunnerError("cannot register the machine", subject=final)
    finally:
        os.unlink(tmp)


def update(name: str, leader: int, changes: Mapping[str, Any], root: str = ROOT) -> None:
    """Add CHANGES to NAME's entry if it is still the one LEADER registered (atomically:
    written aside, then renamed over it)."""
    import json

    path = _path(name, root)
    entry = _read(path)
    if entry is None or entry.leader != leader:
        return
    tmp = os.path.join(root, f".#{name}.{os.getpid()}.update")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({**entry.fields, **changes}, f, sort_keys=True)
    os.rename(tmp, path)


def unregister(name: str, leader: int, root: str = ROOT) -> None:
    """Remove NAME's entry if it is still the one LEADER registered."""
    path = _path(name, root)
    entry = _read(path)
    if entry is not None and entry.leader == leader:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _read(path: str) -> Machine | None:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            return Machine(json.load(f))
    except (OSError, ValueError):
        return None


def entry(name: str, root: str = ROOT) -> Machine | None:
    """NAME's entry as written, live or stale (``status`` tells a stale one apart)."""
    return _read(_path(name, root))


def lookup(name: str, root: str = ROOT) -> Machine | None:
    """The live machine NAME, or None (a stale or unreadable entry is dropped)."""
    path = _path(name, root)
    entry = _read(path)
    if entry is not None and entry.alive():
        return entry
    if os.path.lexists(path):
        # Unlink only what we judged stale: a new boot may have replaced it meanwhile.
        again = _read(path)
        if again is None or not again.alive():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return None


def machines(root: str = ROOT) -> Iterator[Machine]:
    """The live machines, by name; stale entries are dropped on the way."""
    try:
        names = sorted(n for n in os.listdir(root) if is_machine_name(n))  # no .#NAME.PID
    except FileNotFoundError:
        return
    for name in names:
        entry = lookup(name, root)
        if entry is not None:
            yield entry


def get(name: str, root: str = ROOT) -> Machine:
    """The live machine NAME; RunnerError (exit 1) naming it otherwise."""
    entry = lookup(name, root)
    if entry is None:
        raise RunnerError(
            "no such machine", subject=name, hint="'rootstrap list' shows the running ones"
        )
    return entry
