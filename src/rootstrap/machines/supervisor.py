"""Booting machines: in the foreground (``boot``), and as services (``start``, ``stop``).

``start`` boots each image the way ``boot`` does, but in a supervisor detached from the
terminal (its own session, reparented to init) with ``--console=service``: the console goes
to /var/log/rootstrap/NAME.log and to ``rootstrap login NAME``. It returns once every machine
reported READY=1 (systemd's startup finished), as ``systemctl start`` does for a Type=notify
unit, or fails with the console's last lines when one dies or times out; a machine that
failed to start is stopped, so nothing is left behind.

``stop`` asks each init to power off (SIGRTMIN+4, machinectl poweroff) and waits until its
supervisor has cleaned up; past the timeout the machine is killed and the stop reported as
failed.

Standard library only at import (``boot``'s start-up is measured against systemd-nspawn).
"""

from __future__ import annotations

import os
import sys
import time

from rootstrap.errors import RootstrapError, RunnerError, UsageError
from rootstrap.machines.control import signal_gone_ok
from rootstrap.machines.status import LOG_DIR, log_path, tail

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootstrap.runner import RunSpec

START_TIMEOUT = 90.0  # systemd's DefaultTimeoutStartSec
STOP_TIMEOUT = 90.0  # and DefaultTimeoutStopSec


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


def boot(plan: BootPlan) -> int:
    """Boot PLAN in the foreground (the console on this terminal); the init's exit status."""
    from rootstrap.runner.boot import boot as run_boot

    return run_boot(
        plan.spec,
        plan.machine,
        init_args=plan.init_args,
        network_veth=plan.network_veth,
        network_bridge=plan.network_bridge,
    )


# ----------------------------------------------------------------------------- start


def start(plans: list[BootPlan], timeout: float, *, block: bool = True) -> list[RootstrapError]:
    """Boot each of PLANS in a detached supervisor, side by side, and wait up to TIMEOUT
    seconds (one deadline for all) until each is up (READY=1), or only until each is
    registered when not BLOCKing. Raises before anything starts for a name given twice, a
    machine of that name running or an unwritable log directory; returns the machines that
    failed to start (each stopped again), as errors naming them, in PLANS' order."""
    from rootstrap.runner import registry

    seen: set[str] = set()
    for plan in plans:
        if plan.machine in seen:
            raise UsageError("the same machine twice", subject=plan.machine)
        seen.add(plan.machine)
        if registry.lookup(plan.machine) is not None:
            raise RunnerError(
                "a machine of this name is running",
                subject=plan.machine,
                hint=f"'rootstrap status {plan.machine}'",
            )
        plan.spec.console = "service"
    try:
        os.makedirs(LOG_DIR, mode=0o750, exist_ok=True)
        if not os.access(LOG_DIR, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        raise RunnerError(
            f"cannot write the console logs: {exc.strerror}",
            subject=LOG_DIR,
            hint="start runs as root and keeps each machine's console there",
        ) from None
    started = [_Starting(plan) for plan in plans]
    deadline = time.monotonic() + timeout  # one for all: the machines start side by side
    failed: list[RootstrapError] = []
    for job in started:
        try:
            job.wait(deadline, timeout, block=block)
        except RootstrapError as exc:
            failed.append(exc)
    return failed


class _Starting:
    """One machine being started: a detached supervisor and the pipe it reports on."""

    def __init__(self, plan: BootPlan) -> None:
        self.plan = plan
        self.machine = plan.machine
        self.log = log_path(plan.machine)
        self.supervisor = 0
        read, write = os.pipe2(os.O_CLOEXEC)
        middle = os.fork()
        if middle == 0:  # pragma: no cover - runs in the child, its exit status is checked
            os.close(read)
            try:
                os.setsid()
                if os.fork() == 0:
                    _supervise(plan, write, self.log)
                os._exit(0)
            except BaseException:
                os._exit(1)
        os.close(write)
        os.waitpid(middle, 0)
        self.read = read

    def wait(self, deadline: float, timeout: float, block: bool) -> None:
        """Until READY=1 (not BLOCKing: until it is registered); RunnerError otherwise."""
        import select

        from rootstrap.runner import registry

        buf = b""
        try:
            while True:
                left = deadline - time.monotonic()
                # Not blocking, poll the registry for the entry the boot makes.
                wait = max(left, 0) if block else min(max(left, 0), 0.02)
                ready, _, _ = select.select([self.read], [], [], wait)
                if not ready:
                    if not block and registry.lookup(self.machine) is not None:
                        return
                    if left <= 0:
                        self._timed_out(timeout)
                    continue
                chunk = os.read(self.read, 4096)
                buf += chunk
                if buf.startswith(b"P") and b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    self.supervisor = int(line[1:])
                if b"R" in buf:
                    return
                if not chunk or b"E" in buf or b"X" in buf:
                    self._failed(buf)
        finally:
            os.close(self.read)

    def _failed(self, report: bytes) -> None:
        text = report.decode(errors="replace")
        message, hint = "it exited before it was up", None
        if "E" in text:
            body = text[text.index("E") + 1 :]
            message, _, hint = body.partition("\n")
        elif "X" in text:
            code = text[text.index("X") + 1 :].strip()
            message = f"its init exited (status {code}) before it was up"
        raise RunnerError(
            message,
            subject=self.machine,
            hint=hint or f"its console: {self.log}" + _tail_hint(self.log),
        )

    def _timed_out(self, timeout: float) -> None:
        kill_and_wait(self.machine, self.supervisor)
        raise RunnerError(
            f"not up within {timeout:g} s (no READY=1 from its init): stopped",
            subject=self.machine,
            hint=f"its console: {self.log}; --timeout SECS waits longer, --no-block not at all",
        )


def _tail_hint(path: str) -> str:
    lines = tail(path, 3)
    return "".join(f"\n  | {line}" for line in lines)


def _supervise(plan: BootPlan, report: int, log: str) -> None:  # pragma: no cover - child
    """The detached supervisor: stdio to the log, boot, say how it went on REPORT, exit.
    What it prints goes to the machine's console log, not to a user's terminal."""
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDWR)
        if os.path.exists(log):
            os.replace(log, log + ".1")  # the previous run's console stays one start longer
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(null)
        os.close(out)
        # Nothing of the caller's stays open for the machine's lifetime (a pipe somebody
        # waits on for its end, a lock): only stdio and the report pipe, as daemon(3) does.
        os.closerange(3, report)
        os.closerange(report + 1, 1 << 20)
        os.write(report, b"P%d\n" % os.getpid())
        os.write(1, f"-- rootstrap start {plan.machine}: {time.ctime()} --\n".encode())
        from rootstrap.runner.boot import boot as run_boot

        code = run_boot(
            plan.spec,
            plan.machine,
            init_args=plan.init_args,
            network_veth=plan.network_veth,
            network_bridge=plan.network_bridge,
            on_ready=lambda: _say(report, b"R"),
            fields={"log": log, "background": True},
        )
        _say(report, b"X%d" % code)
    except RootstrapError as exc:
        code = exc.exit_code
        print(f"error: {exc}", file=sys.stderr)
        _say(report, f"E{exc}\n{exc.hint or ''}".encode())
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        _say(report, f"E{type(exc).__name__}: {exc}\n".encode())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _say(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    except OSError:
        pass  # the starter is gone (timed out or interrupted): nobody to tell


def _pidfd(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except (OSError, ValueError):
        return -1


def _wait_gone(pidfds: list[int], deadline: float) -> bool:
    """Until every process behind PIDFDS has exited (True) or DEADLINE passes (False)."""
    import select

    waiting = [fd for fd in pidfds if fd >= 0]
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select(waiting, [], [], left)
        waiting = [fd for fd in waiting if fd not in ready]
    return True


def kill_and_wait(machine: str, supervisor: int, grace: float = 10.0) -> None:
    """Kill MACHINE now and wait for its SUPERVISOR to clean up: SIGKILL to its init once
    it is registered; before that, SIGTERM to the supervisor every 0.1 s (boot's second stop
    signal kills; two sent at once may arrive as one, so keep sending). A supervisor still
    there after GRACE is killed too (PDEATHSIG takes the machine down); then what it could
    not clean up (its registry entry, console socket) is removed here."""
    import signal

    from rootstrap.runner import consoleserver, registry

    watch = _pidfd(supervisor) if supervisor else -1
    deadline = time.monotonic() + grace
    try:
        while True:
            entry = registry.lookup(machine)
            if entry is not None:
                signal_gone_ok(entry.leader, signal.SIGKILL)
            elif supervisor:
                signal_gone_ok(supervisor, signal.SIGTERM)
            if watch < 0 or _wait_gone([watch], time.monotonic() + 0.1):
                break
            if time.monotonic() > deadline:
                signal_gone_ok(supervisor, signal.SIGKILL)
                _wait_gone([watch], time.monotonic() + grace)
                break
    finally:
        if watch >= 0:
            os.close(watch)
    if registry.lookup(machine) is None:  # drops a stale entry
        consoleserver.drop(machine)


# ------------------------------------------------------------------------------ stop


def stop(names: list[str], timeout: float, *, block: bool = True) -> None:
    """Power the machines NAMES off and (BLOCKing) wait up to TIMEOUT seconds until their
    supervisors have cleaned up; the late ones are killed and reported as one RunnerError.
    Every name is looked up first: all found, or nothing is sent."""
    from rootstrap.runner import registry
    from rootstrap.runner.boot import POWEROFF

    machines = [registry.get(name) for name in names]
    watches = [(m, _pidfd(int(m.get("rootstrap") or 0)), _pidfd(m.leader)) for m in machines]
    late = []
    try:
        for m, _, _ in watches:
            signal_gone_ok(m.leader, POWEROFF)
        if not block:
            return
        deadline = time.monotonic() + timeout
        for m, sup, lead in watches:
            # Again every second: an init that has not installed its handlers yet (a machine
            # stopped while it starts) ignores signals from outside its pid namespace, and
            # systemd takes a repeated request for the same target as one.
            while not _wait_gone([sup, lead], min(deadline, time.monotonic() + 1.0)):
                if time.monotonic() >= deadline:
                    late.append(m)
                    break
                signal_gone_ok(m.leader, POWEROFF)
    finally:
        for _, sup, lead in watches:
            for fd in (sup, lead):
                if fd >= 0:
                    os.close(fd)
    for m in late:
        kill_and_wait(m.name, int(m.get("rootstrap") or 0))
    if late:
        names_late = ", ".join(m.name for m in late)
        raise RunnerError(
            f"did not power off within {timeout:g} s: killed",
            subject=names_late,
            hint="--timeout SECS waits longer; its console log may say why",
        )
