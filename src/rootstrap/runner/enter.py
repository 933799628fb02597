"""Enter a running machine: ``rootstrap shell NAME [CMD...]`` (like ``machinectl shell``).

The host process forks a helper that joins the leader's cgroup, then its namespaces
(user first when the machine has one, then cgroup, ipc, uts, net, pid, mnt: nsenter's
order), and chroots into the leader's root. The helper allocates a pty in the machine's own
devpts (the ptmx is checked to be the real ptmx device, never a planted file: HAZARDS 93),
forks the command into the machine's pid namespace, and relays the host terminal to the pty.
The command runs with the machine's bounding set and system call filter (from the registry
entry), never with the host root's full set. The helper is non-dumpable and outside the
machine's pid namespace, so nothing inside can ptrace it (runc CVE-2019-5736; HAZARDS 91).
Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import sys

from rootstrap.errors import RunnerError
from rootstrap.linux import syscalls
from rootstrap.runner import caps, cgroup, console, seccomp, spawn
from rootstrap.runner.registry import Machine, start_time

NAMESPACES = (
    ("cgroup", syscalls.CLONE_NEWCGROUP),
    ("ipc", syscalls.CLONE_NEWIPC),
    ("uts", syscalls.CLONE_NEWUTS),
    ("net", syscalls.CLONE_NEWNET),
    ("pid", syscalls.CLONE_NEWPID),
    ("mnt", syscalls.CLONE_NEWNS),
)
PTMX_DEV = os.makedev(5, 2)
TIOCGPTPEER = 0x5441
TIOCSPTLCK = 0x40045431


def _same(pid: int, ns: str) -> bool:
    a, b = os.stat(f"/proc/{pid}/ns/{ns}"), os.stat(f"/proc/self/ns/{ns}")
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _open_pty() -> tuple[int, int]:
    """A pty in the machine's devpts (we are chrooted into its root)."""
    master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(master)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != PTMX_DEV:
        raise OSError(0, "/dev/pts/ptmx in the machine is not the ptmx device")
    fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave


def _command(
    argv: list[str], user: str
) -> tuple[str, list[str], dict[str, str], tuple[int, int, str]]:
    """(path, argv, env, (uid, gid, name)): ARGV, or USER's login shell, from the machine's
    /etc/passwd."""
    uid, gid, name, home, shell = spawn._passwd(user)
    env = {
        "PATH": spawn.DEFAULT_PATH,
        "HOME": home or "/root",
        "USER": name,
        "LOGNAME": name,
        "SHELL": shell or "/bin/sh",
        "TERM": os.environ.get("TERM") or "vt220",
        "container": "rootstrap",
    }
    if argv:
        return argv[0], argv, env, (uid, gid, name)
    shell = shell or "/bin/sh"
    return shell, ["-" + os.path.basename(shell)], env, (uid, gid, name)


def enter(machine: Machine, argv: list[str], *, pty: bool, user: str = "root") -> int:
    """Run ARGV (or USER's login shell) inside MACHINE as USER (a name or uid from the
    machine's /etc/passwd); returns its exit status.

    PTY: a terminal of the machine's own relayed to ours (else our stdio is passed through).
    Raises RunnerError when the machine vanished or cannot be entered. Cost: two forks."""
    pid = machine.leader
    keep = frozenset(machine.get("capabilities") or caps.NSPAWN_DEFAULT)
    allow, deny = seccomp.parse_filter(list(machine.get("syscall_filter") or []))
    denied = seccomp.denied_syscalls(keep, allow, deny)
    seccomp.preload()
    fds: list[tuple[int, int]] = []
    try:
        try:
            if not _same(pid, "user"):
                fds.append((os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC), 0))
            for ns, flag in NAMESPACES:
                if _same(pid, ns):
                    continue  # shared with the host (no --private-network): nothing to join,
                    # and joining from inside its user namespace would be EPERM anyway
                fds.append((os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC), flag))
            root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            group = os.path.join(
                cgroup.unified_mount() or "/sys/fs/cgroup", cgroup.own_path(pid).lstrip("/")
            )
        except OSError as exc:
            raise RunnerError(
                f"cannot enter the machine: {exc.strerror}", subject=machine.name
            ) from exc
        # The fds now pin the namespaces; were they the leader's, and not a reused pid's?
        if start_time(pid) != machine.get("start_time"):
            raise RunnerError("the machine has exited", subject=machine.name)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        helper = os.fork()
        if helper == 0:
            os.close(status_r)
            try:
                _helper(fds, root, group, argv, user, pty, keep, denied, status_w, parent)
            except BaseException as exc:
                spawn._send(status_w, f"cannot enter the machine: {exc}")
                os._exit(spawn.EXIT_SETUP)
            os._exit(spawn.EXIT_SETUP)
        os.close(status_w)
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
        try:
            message = os.read(status_r, 4096).decode(errors="replace").strip()
            status = os.waitpid(helper, 0)[1]
        finally:
            os.close(status_r)
            for s, handler in old.items():
                signal.signal(s, handler)
        code = spawn._exit_code(status)
        if message:
            failure = RunnerError(message, subject=machine.name)
            failure.exit_code = code if code in (126, 127) else 1
            raise failure
        return code
    finally:
        for fd, _ in fds:
            os.close(fd)


def _helper(
    fds: list[tuple[int, int]],
    root: int,
    group: str,
    argv: list[str],
    user: str,
    pty: bool,
    keep: frozenset[str],
    denied: set[str],
    status_w: int,
    parent: int,
) -> None:
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # rootstrap died before the prctl (HAZARDS 117)
        os._exit(spawn.EXIT_SETUP)
    # Seen from the machine's pid namespace our pid is 0 (we are outside it); the command's
    # race check below compares its getppid() with that.
    helper = 0 if any(flag == syscalls.CLONE_NEWPID for _, flag in fds) else os.getpid()
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    try:
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write("0")
    except OSError:
        pass  # a cgroup of the machine's own making: entering the namespace is enough
    filt = seccomp.Filter(denied) if denied else None
    for fd, flag in fds:
        syscalls.setns(fd, flag)
        if flag == 0:  # the machine's user namespace: become its root
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            os.setgroups([])
            # The uid change cleared the parent-death signal (prctl(2)): set it again.
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(spawn.EXIT_SETUP)
    os.fchdir(root)
    os.chroot(".")
    os.chdir("/")
    master = slave = -1
    if pty:
        master, slave = _open_pty()
    path, args, env, (uid, gid, name) = _command(argv, user)
    if slave >= 0 and uid != 0:
        os.fchown(slave, uid, -1)  # the user's terminal, as login(1) would make it
    child = os.fork()  # the first process in the machine's pid namespace
    if child == 0:
        try:
            for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_DFL)
            os.setsid()
            if slave >= 0:
                fcntl.ioctl(slave, 0x540E, 0)  # TIOCSCTTY
                for target in (0, 1, 2):
                    os.dup2(slave, target)
            spawn._close_all_except({0, 1, 2, status_w})
            caps.drop_bounding(keep)
            if filt is not None:
                filt.load()
            if uid != 0:
                os.setgroups(spawn._groups(name, gid))
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)  # the kernel clears the capability sets
            else:
                caps.restrict(keep)
            try:
                os.chdir(env["HOME"])
            except OSError:
                pass
            # The command dies with this helper, and so with rootstrap (HAZARDS 117): set
            # after the uid change, which clears the setting.
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != helper:
                os._exit(spawn.EXIT_SETUP)
            os.execvpe(path, args, env)
        except OSError as exc:
            code = spawn.EXIT_NOEXEC if exc.errno == 2 else 126
            spawn._send(status_w, f"{path}: cannot execute: {exc.strerror}")
            os._exit(code)
    os.close(status_w)
    if slave >= 0:
        os.close(slave)
    if master >= 0:
        pidfd = os.pidfd_open(child)
        try:
            console.relay(master, "interactive" if os.isatty(0) else "read-only", pidfd)
        finally:
            os.close(pidfd)
    _, status = os.waitpid(child, 0)
    sys.stdout.flush()
    os._exit(spawn._exit_code(status))
