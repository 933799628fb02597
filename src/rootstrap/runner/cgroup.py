"""The cgroup a booted machine gets: a cgroup2 directory delegated to its init.

systemd inside a container wants a cgroup hierarchy it may write (CONTAINER_INTERFACE.md:
"mount the full hierarchy", "run the container in its own delegated unit"). We make one
directory in the host's cgroup2 hierarchy below our own cgroup, pid 1 moves itself in before
unsharing its cgroup namespace (so the directory is that namespace's root), and cgroup2 is
mounted writable at the container's /sys/fs/cgroup. The init then sees a pure unified
hierarchy, whatever the host uses: on a hybrid host (v1 controllers plus cgroup2 at
/sys/fs/cgroup/unified, as here) that hierarchy simply has no controllers, which systemd
handles (it logs "Controller 'cpu' supported: no"). Controllers are not delegated: a
cgroup2 parent holding processes (our own cgroup) cannot enable them for its children.

Standard library only.
"""

from __future__ import annotations

import errno
import os
import time

from rootstrap.errors import RunnerError

PREFIX = "rootstrap-"


def unified_mount() -> str | None:
    """Where the host's cgroup2 hierarchy is mounted (/sys/fs/cgroup or, on a hybrid host,
    /sys/fs/cgroup/unified), from our own mountinfo; None without one."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[sep + 1] == "cgroup2":
                    return fields[4].replace("\\040", " ")
    except (OSError, ValueError):
        return None
    return None


def own_path(pid: int | str = "self") -> str:
    """PID's cgroup2 path ("/..." relative to the hierarchy root), from /proc/PID/cgroup."""
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return "/"


def machine_dir(machine: str) -> str:
    """The host directory a machine named MACHINE gets (not created)."""
    mount = unified_mount()
    if mount is None:
        raise RunnerError(
            "the host has no cgroup2 hierarchy",
            subject="/sys/fs/cgroup",
            hint="boot needs cgroup2 (unified or hybrid layout)",
        )
    parent = os.path.join(mount, own_path().lstrip("/"))
    return os.path.join(parent, PREFIX + machine)


def populated(path: str) -> bool:
    """True while any process lives in PATH or below (cgroup.events)."""
    try:
        with open(os.path.join(path, "cgroup.events"), encoding="ascii") as f:
            for line in f:
                if line.startswith("populated "):
                    return line.split()[1] == "1"
    except FileNotFoundError:
        return False
    return False


def create(machine: str, *, owner: int | None = None) -> str:
    """Make the machine's cgroup directory and return its path. A leftover one from a machine
    that died without cleaning up (rootstrap SIGKILLed) is removed first; a populated one
    means the machine runs: RunnerError. OWNER (a host uid) gets the files the machine's root
    must write, for --private-users. Cost: a few syscalls."""
    path = machine_dir(machine)
    if os.path.isdir(path):
        if populated(path):
            raise RunnerError(
                "a machine of this name is running",
                subject=machine,
                hint="pick another name with -M NAME, or 'rootstrap poweroff NAME'",
            )
        remove(path)
    try:
        os.mkdir(path, 0o755)
    except OSError as exc:
        raise RunnerError(f"cannot create its cgroup: {exc.strerror}", subject=path) from exc
    if owner is not None:
        # cgroup v2 delegation (Documentation/admin-guide/cgroup-v2.rst, "Delegation"):
        # the directory and its procs/threads/subtree_control files.
        for name in ("", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"):
            try:
                os.chown(os.path.join(path, name), owner, owner)
            except FileNotFoundError:
                pass
    return path


def _kill_all(path: str) -> None:
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")  # Linux 5.14
    except OSError:
        for dirpath, _, _ in os.walk(path):
            try:
                with open(os.path.join(dirpath, "cgroup.procs"), encoding="ascii") as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass


def remove(path: str, timeout: float = 2.0) -> None:
    """Remove PATH and the sub-cgroups the machine's init made, deepest first. Processes
    still inside (there should be none once the pid namespace died) are killed. Raises
    RunnerError when the tree cannot be removed within TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        if populated(path) and not killed:
            if time.monotonic() > deadline - timeout / 2:
                _kill_all(path)
                killed = True
        busy = False
        for dirpath, _, _ in sorted(os.walk(path), key=lambda t: -t[0].count("/")):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise RunnerError(
                        f"cannot remove cgroup: {exc.strerror}", subject=dirpath
                    ) from exc
                busy = True
        if not busy:
            return
        if time.monotonic() > deadline:
            raise RunnerError("cgroup still busy after the machine exited", subject=path)
        time.sleep(0.01)


def procs(path: str) -> list[int]:
    """Every process in PATH and below (host PIDs)."""
    out: list[int] = []
    for dirpath, _, _ in os.walk(path):
        try:
            with open(os.path.join(dirpath, "cgroup.procs"), encoding="ascii") as f:
                out.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return out
