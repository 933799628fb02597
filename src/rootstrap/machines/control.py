"""Acting on running machines: ``poweroff``, ``reboot``, ``terminate``, ``kill`` (signals,
as machinectl sends them), ``shell`` (a command inside) and ``login`` (the console of a
machine ``start`` put in the background). Machines are found in the registry
(rootstrap.runner.registry); a name that is not running is a RunnerError naming it.
Standard library only: these verbs are lean.
"""

from __future__ import annotations

import os

SIGNAL_VERBS = ("poweroff", "reboot", "terminate", "kill")


def signal_gone_ok(pid: int, number: int) -> None:
    """Send signal NUMBER to PID; a process already gone is no error (it was on its way)."""
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def signal_number(value: str) -> int:
    """The number of signal VALUE: ``TERM``, ``SIGTERM``, ``15``, ``RTMIN+4``; UsageError
    for anything else."""
    import signal

    from rootstrap.errors import UsageError

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


def send(verb: str, names: list[str], sig: int | None = None, whom: str = "all") -> None:
    """VERB (one of SIGNAL_VERBS) to each machine of NAMES: poweroff sends SIGRTMIN+4 to its
    init, reboot SIGINT, terminate SIGKILL to the init (which takes its pid namespace down);
    kill sends SIG (default SIGTERM) to every process of the machine's cgroup, or to the init
    only when WHOM is ``leader``. Every name is looked up first: all found, or nothing is
    sent."""
    import signal

    from rootstrap.runner import cgroup, registry
    from rootstrap.runner.boot import POWEROFF, REBOOT

    machines = [registry.get(name) for name in names]
    for m in machines:
        if verb == "poweroff":
            targets, number = [m.leader], POWEROFF
        elif verb == "reboot":
            targets, number = [m.leader], int(REBOOT)
        elif verb == "terminate":
            # SIGKILL to the pid namespace's init takes every process in it down.
            targets, number = [m.leader], int(signal.SIGKILL)
        else:
            number = int(signal.SIGTERM) if sig is None else sig
            group = m.get("cgroup")
            targets = [m.leader]
            if whom == "all" and group:
                targets = [m.leader] + [p for p in cgroup.procs(group) if p != m.leader]
        for pid in targets:
            signal_gone_ok(pid, number)


def shell(name: str, command: list[str], *, user: str = "root", pty: bool) -> int:
    """Run COMMAND (empty: USER's login shell) as USER inside the running machine NAME, on
    a new pty when PTY; its exit status."""
    from rootstrap.runner import registry
    from rootstrap.runner.enter import enter

    return enter(registry.get(name), command, pty=pty, user=user)


def login(name: str) -> int:
    """Attach this terminal to the console of machine NAME (one ``start`` put in the
    background) until the user detaches; RunnerError when its console is a terminal."""
    from rootstrap.errors import RunnerError
    from rootstrap.runner import consoleserver, registry

    machine = registry.get(name)
    path = machine.get("console")
    if not path:
        raise RunnerError(
            "its console is on the terminal that booted it",
            subject=machine.name,
            hint=f"'rootstrap shell {machine.name}' opens a shell; "
            "machines started with 'rootstrap start' have a console to log in to",
        )
    return consoleserver.attach(machine.name, str(path))
