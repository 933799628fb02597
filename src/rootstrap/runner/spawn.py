"""The fixed order of syscalls from the host process to the payload's execve.

    host (rootstrap)   lock the image; make mount points; open_tree clones of the root and
                       the bind sources; unshare PID (children only); fork ──────────────┐
                       (with --private-users a middle process comes first: unshare USER, │
                       the host writes uid/gid map, unshare PID and the rest, fork)      │
    pid 1 (reaper)     PDEATHSIG; non-dumpable; setpgid; unshare NS|UTS|IPC|CGROUP[|NET];│
                       build the seccomp filter; mount plan (root, proc, sys, dev, run,  │
                       tmp, user tmpfs and binds); hostname; lo up; pivot_root + detach  │
                       the old root; close fds; fork ────────────────────────────────────┤
    payload (pid 2)    signals reset; setsid; stdio or pty (TIOCSCTTY); close fds;       │
                       chdir + getcwd check; bounding set; seccomp; user; caps; NNP;     │
                       execve ───────────────────────────────────────────────────────────┘

Fork after unshare(CLONE_NEWPID): the unsharing process is not itself moved, and the host process
restores its own pid namespace for later children at once (a host process whose pid-namespace child
reaper died cannot fork again; docs/decisions.md, "Namespaces through ctypes"). Nothing is imported
and no library is loaded after pivot_root: ``sys.path`` is emptied so the image can never supply
Python code or a shared object to a process holding the runner's capabilities. Errors below the host
process travel back as one line on a CLOEXEC pipe, which reaches EOF when the payload's execve
succeeds. Exit codes of a failed start: 125 setup, 126 not executable, 127 not found (as docker and
podman use them).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import sys

from rootstrap.linux import syscalls
from rootstrap.runner import caps, devices, mounts, seccomp

TYPE_CHECKING = False  # mypy reads the stubs; at run time signal.py (enum) and typing stay out
if TYPE_CHECKING:
    import signal
else:  # signal.py imports enum (~8 ms of `run`'s start-up); _signal has what we use
    import _signal as signal

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

FORWARDED = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCONT,
)
STAGE = "/tmp"  # a tmpfs mounted here inside the new mount namespace only
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXIT_SETUP = 125  # pid 1 failed before the payload ran
EXIT_NOEXEC = 127


class Plan:
    """Everything the children need, prepared (and validated) by the host process."""

    def __init__(
        self,
        *,
        root_fd: int,
        root_tree: int,
        argv: list[str],
        env: dict[str, str],
        hostname: str,
        binds: list[tuple[int, str, bool, bool]],
        tmpfs: list[tuple[str, str]],
        mount_points: list[tuple[str, str]],
        cwd: str,
        user: str | None,
        read_only: bool,
        ephemeral: bool,
        private_network: bool,
        keep_caps: frozenset[str],
        denied_syscalls: set[str],
        no_new_privileges: bool,
        console: str,
        stdio: tuple[int, int, int],
        uid_map: tuple[int, int] | None,
        as_pid1: bool = False,
        cgroup: str | None = None,
        run_host: dict[str, bytes] | None = None,
        notify: bool = False,
        idmap: bool = False,
    ) -> None:
        self.root_fd = root_fd  # the locked image directory, opened in the host namespace
        self.root_tree = root_tree  # open_tree(2) clone of it, attachable in the new namespace
        self.argv = argv
        self.env = env
        self.hostname = hostname
        self.binds = binds  # (open_tree fd of the host source, target, readonly, is_dir)
        self.tmpfs = tmpfs  # (target, mount options)
        self.mount_points = mount_points  # (path, "dir" or "file") that must exist in the root
        self.cwd = cwd
        self.user = user
        self.read_only = read_only
        self.ephemeral = ephemeral
        self.private_network = private_network
        self.keep_caps = keep_caps
        self.denied_syscalls = denied_syscalls
        self.no_new_privileges = no_new_privileges
        self.console = console
        self.stdio = stdio
        self.uid_map = uid_map  # (host base, count) for --private-users
        self.as_pid1 = as_pid1
        # boot (runner/boot.py): a host cgroup directory pid 1 joins before its cgroup
        # namespace is made (and cgroup2 mounted inside), files for /run/host, and a
        # NOTIFY_SOCKET at /run/host/notify (systemd's CONTAINER_INTERFACE.md).
        self.cgroup = cgroup
        self.run_host = run_host
        self.notify = notify
        # With uid_map: the host idmaps the root tree through the new user namespace, so the
        # image's root-owned files are the machine root's (boot --private-users).
        self.idmap = idmap
        self.status_w = -1
        self.go_r = -1
        self.go_w = -1  # the host's end: closed in every child, so go_r reads EOF once it dies
        self.host = 0  # the host process's pid, recorded before the first fork
        self.filter: seccomp.Filter | None = None


def _send(fd: int, message: str) -> None:
    """One line to the host (a single write below PIPE_BUF is atomic)."""
    line = message.replace("\n", " ").encode(errors="replace")[:4000]
    try:
        os.write(fd, line + b"\n")
    except OSError:
        pass


def _fail(plan: Plan, code: int, message: str) -> NoReturn:
    _send(plan.status_w, f"E{code}:{message}")
    os._exit(code)


def _close_all_except(keep: set[int]) -> None:
    """Close every fd not in KEEP (close_range under the hood; HAZARDS 90)."""
    low = 0
    for fd in sorted(fd for fd in keep if fd >= 0):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


NS_FLAGS = (
    syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC | syscalls.CLONE_NEWCGROUP
)


def start(plan: Plan) -> int:
    """Fork the container's first process; returns its host pid (the one to wait for).

    Without a user namespace the host process itself unshares only CLONE_NEWPID (which moves
    its *children*, not itself), forks pid 1 directly and at once restores its own pid
    namespace for later children with setns(2): one fork fewer than a middle process.
    With a user namespace, the pid namespace must belong to it, so a middle process enters
    the user namespace first (the host writes its uid/gid map) and forks pid 1 from there."""
    plan.host = os.getpid()
    if plan.uid_map is not None:
        pid = os.fork()
        if pid == 0:
            _child(plan, middle)
        return pid
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.unshare(syscalls.CLONE_NEWPID)
        try:
            pid = os.fork()
        except BaseException:
            syscalls.setns(own, syscalls.CLONE_NEWPID)
            raise
        if pid == 0:
            _child(plan, pid_one)
        syscalls.setns(own, syscalls.CLONE_NEWPID)
    finally:
        os.close(own)
    return pid


def _child(plan: Plan, body: Callable[[Plan], None]) -> NoReturn:
    """Run BODY in a forked child; never return into the host's Python stack."""
    try:
        if plan.go_w >= 0:
            os.close(plan.go_w)  # only the host holds it: its death is EOF on go_r
            plan.go_w = -1  # pid 1, forked from the middle process, has no copy to close
        body(plan)
    except OSError as exc:
        _fail(plan, EXIT_SETUP, f"cannot create the container: {exc.strerror}")
    except BaseException as exc:
        _fail(plan, EXIT_SETUP, f"container setup failed: {exc}")
    os._exit(EXIT_SETUP)


def _orphaned(plan: Plan) -> bool:
    """True when the host process is gone (its end of the go pipe closed): the race check
    after PR_SET_PDEATHSIG, for pid 1, whose getppid() is 0 (its parent is outside its pid
    namespace). Nothing is written to the pipe before pid 1 has checked."""
    ready, _, _ = select.select([plan.go_r], [], [], 0)
    return bool(ready) and os.read(plan.go_r, 1) == b""


def join_cgroup(plan: Plan) -> None:
    """Move the calling process into PLAN.cgroup (before unshare(CLONE_NEWCGROUP), so that
    cgroup becomes the namespace's root)."""
    if plan.cgroup is not None:
        with open(os.path.join(plan.cgroup, "cgroup.procs"), "w") as f:
            f.write("0")


def middle(plan: Plan) -> None:
    """With --private-users: enter the user namespace, then the others; start pid 1."""
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != plan.host:  # the host died before the prctl (HAZARDS 117)
        os._exit(EXIT_SETUP)
    join_cgroup(plan)
    os.setpgid(0, 0)  # terminal signals reach rootstrap alone, which forwards them
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)
    syscalls.unshare(syscalls.CLONE_NEWUSER)
    _send(plan.status_w, "U")
    if os.read(plan.go_r, 1) != b"1":
        os._exit(1)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    os.setgroups([])
    # The uid change cleared the parent-death signal (prctl(2)): without it again, a killed
    # host left this process, and with it the whole container, running.
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != plan.host:
        os._exit(EXIT_SETUP)
    syscalls.unshare(
        syscalls.CLONE_NEWPID | NS_FLAGS | (syscalls.CLONE_NEWNET if plan.private_network else 0)
    )
    pid1 = os.fork()
    if pid1 == 0:
        _child(plan, pid_one)
    _send(plan.status_w, f"P{pid1}")
    _close_all_except(set())
    while True:
        try:
            _, status = os.waitpid(pid1, 0)
        except ChildProcessError:
            os._exit(EXIT_SETUP)
        os._exit(_exit_code(status))


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _loopback_up() -> None:
    import socket  # imported by the host process already (see run): a mapped root may not
    # be able to read the host's Python library, and nothing is imported after pivot_root

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), siocgifflags, req))[1]
        fcntl.ioctl(sock.fileno(), siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def setup_root(plan: Plan) -> tuple[int, int] | None:
    """Build the container's mount tree under STAGE; returns the pty (master, slave) if any."""
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
    syscalls.mount("tmpfs", STAGE, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=0700")
    newroot = f"{STAGE}/root"
    os.mkdir(newroot, 0o755)
    if plan.ephemeral:
        # A throw-away upper layer on the staging tmpfs: it vanishes with the mount namespace.
        for name in ("lower", "upper", "work"):
            os.mkdir(f"{STAGE}/{name}", 0o755)
        syscalls.move_mount(plan.root_tree, syscalls.AT_FDCWD, f"{STAGE}/lower")
        data = f"lowerdir={STAGE}/lower,upperdir={STAGE}/upper,workdir={STAGE}/work"
        syscalls.mount("overlay", newroot, "overlay", 0, data)
    else:
        syscalls.move_mount(plan.root_tree, syscalls.AT_FDCWD, newroot)
    rootfd = os.open(newroot, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    # Mount points were made in the image by the host process (it may write where a mapped
    # root cannot); an ephemeral overlay gets them here, in its throw-away upper layer.
    writable = plan.ephemeral and not plan.read_only
    m = mounts.Mounter(rootfd, writable)
    mounts.make_mount_points(rootfd, plan.mount_points, create=writable)
    # Device nodes in the image are never usable: /dev is ours (HAZARDS 85, 93).
    syscalls.mount_setattr(
        rootfd,
        syscalls.MOUNT_ATTR_NODEV | (syscalls.MOUNT_ATTR_RDONLY if plan.read_only else 0),
        recursive=True,
    )
    mounts.mount_proc(m)
    mounts.mount_sys(m)
    if plan.cgroup is not None:
        # The whole (namespaced) cgroup2 hierarchy, writable: the machine's init manages
        # the subtree delegated to it (CONTAINER_INTERFACE.md: full hierarchies, not a
        # sub-tree bind). /sys itself stays read-only.
        m.fs(
            "sys/fs/cgroup", "cgroup2", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
        )
    m.writable = True  # from here on targets live on our own tmpfs mounts
    pty = devices.populate(m, pty=plan.console != "pipe")
    tmp_flags = syscalls.MS_NOSUID | syscalls.MS_NODEV
    for name, mode in (("run", "0755"), ("tmp", "1777")):
        if m.exists(name) == "dir":
            m.fs(name, "tmpfs", tmp_flags, f"mode={mode}")
    if plan.run_host is not None:
        if m.exists("run") != "dir":
            raise mounts.PlanError("/run: missing in the image (boot needs it)")
        _write_run_host(m, plan.run_host)
    m.writable = False
    for target, options in sorted(plan.tmpfs, key=lambda t: t[0].count("/")):
        m.fs(target, "tmpfs", tmp_flags, options)
    for tree, target, readonly, is_dir in sorted(plan.binds, key=lambda b: b[1].count("/")):
        m.attach(tree, target, readonly=readonly, kind="dir" if is_dir else "file")
    os.fchdir(rootfd)
    os.close(rootfd)
    return pty


def _write_run_host(m: mounts.Mounter, files: dict[str, bytes]) -> None:
    """/run/host/NAME files on the runner's own /run tmpfs (never image content)."""
    fd = m.target("run/host")
    try:
        dirfd = os.open(mounts.fdpath(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(fd)
    try:
        for name, data in files.items():
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            out = os.open(name, flags, 0o444, dir_fd=dirfd)
            try:
                os.write(out, data)
            finally:
                os.close(out)
    finally:
        os.close(dirfd)


def _notify_socket() -> int:
    """A datagram socket bound at the container's /run/host/notify (before pivot_root);
    the host takes it with pidfd_getfd and reads the init's READY=1 from it."""
    import socket  # already imported by the host process (see run)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.bind(f"{STAGE}/root/run/host/notify")
    return sock.detach()


def pid_one(plan: Plan) -> None:
    """PID 1 of the new pid namespace: set up the root, start the payload, reap, exit."""
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    # A session of its own: terminal signals reach rootstrap alone (which forwards them),
    # and the host terminal is nobody's controlling tty in here (HAZARDS 87).
    os.setsid()
    if _orphaned(plan):  # the host (and with it the middle process) died before the prctl
        os._exit(1)
    if plan.uid_map is None:  # forked by the host process itself (see start)
        join_cgroup(plan)
        syscalls.unshare(NS_FLAGS | (syscalls.CLONE_NEWNET if plan.private_network else 0))
    # Non-dumpable: the payload cannot open /proc/1/exe or /proc/1/mem of this host binary
    # (runc CVE-2019-5736; HAZARDS 91).
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    try:
        if plan.denied_syscalls:
            # Built before pivot_root: libseccomp must come from the host, not the image.
            plan.filter = seccomp.Filter(plan.denied_syscalls)
        pty = setup_root(plan)
        notify = _notify_socket() if plan.notify else -1
        syscalls.sethostname(plan.hostname)
        if plan.private_network:
            _loopback_up()
        sys.path[:] = []  # no import may ever read the image (see module docstring)
        sys.path_importer_cache.clear()
        syscalls.pivot_root(".", ".")
        syscalls.umount2(".", syscalls.MNT_DETACH)
        os.chdir("/")
    except mounts.PlanError as exc:
        _fail(plan, EXIT_SETUP, str(exc))
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _fail(plan, EXIT_SETUP, f"container setup failed:{where} {exc.strerror}")
    master = slave = -1
    if pty is not None:
        master, slave = pty
    if master >= 0 or notify >= 0:
        # The host copies the pty master and the notify socket out of this process with
        # pidfd_getfd(2), then says so.
        _send(plan.status_w, f"T{master}:{notify}")
        if os.read(plan.go_r, 1) != b"2":
            os._exit(EXIT_SETUP)
        for fd in (master, notify):
            if fd >= 0:
                os.close(fd)
    _close_all_except({plan.status_w, slave, *plan.stdio})
    if plan.filter is not None:
        # Pid 1 takes the filter too (the payload inherits it): a payload allowed to ptrace
        # (CAP_SYS_PTRACE) could otherwise make this process call keyctl() for it.
        try:
            plan.filter.load()
        except OSError as exc:
            _fail(plan, EXIT_SETUP, f"cannot load the system call filter: {exc}")
    if plan.as_pid1:
        payload(plan, slave)
    child = os.fork()
    if child == 0:
        payload(plan, slave)

    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(child, sig)
        except OSError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    _close_all_except(set())  # the status pipe reaches EOF when the payload execs
    try:
        caps.drop_bounding(frozenset({"KILL"}))
        caps.restrict(frozenset({"KILL"}))  # kill() across uids, for --user payloads
    except OSError:
        pass
    code = EXIT_SETUP
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == child:
            code = _exit_code(status)
            break
    os._exit(code)


def _passwd(user: str) -> tuple[int, int, str, str, str]:
    """(uid, gid, name, home, shell) from the image's /etc/passwd; never NSS (it would load
    the image's libraries into this process)."""
    with open("/etc/passwd", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if len(fields) < 7:
                continue
            if fields[0] == user or (user.isdigit() and fields[2] == user):
                return int(fields[2]), int(fields[3]), fields[0], fields[5], fields[6]
    if user.isdigit():
        return int(user), int(user), user, "/", "/bin/sh"
    raise LookupError(f"no user {user!r} in the image's /etc/passwd")


def _groups(name: str, gid: int) -> list[int]:
    out = [gid]
    try:
        with open("/etc/group", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 4 and name in fields[3].split(","):
                    out.append(int(fields[2]))
    except (OSError, ValueError):
        pass
    return out


def payload(plan: Plan, slave: int) -> None:
    """Become the payload: fresh session, stdio, hygiene, privileges, execve. Never returns."""
    try:
        # execve resets handled signals itself; ignored ones (Python ignores SIGPIPE and
        # SIGXFSZ, the middle process the forwarded ones) must be reset here.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, *FORWARDED):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if os.getsid(0) != os.getpid():  # as pid 1 (as_pid1) it already leads its session
            os.setsid()  # no controlling tty from the host: TIOCSTI cannot reach it (87)
        if slave >= 0:
            fcntl.ioctl(slave, 0x540E, 0)  # TIOCSCTTY: the container's own pty
            sources = (slave, slave, slave)
        else:
            sources = plan.stdio
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in sources]
        for target, fd in enumerate(moved):
            os.dup2(fd, target, inheritable=True)
        _close_all_except({0, 1, 2, plan.status_w})
        try:
            os.chdir(plan.cwd)
            cwd = os.getcwd()
        except OSError as exc:
            _fail(plan, EXIT_SETUP, f"working directory {plan.cwd}: {exc.strerror}")
        if not cwd.startswith("/"):  # getcwd(3) reports "(unreachable)" outside the root
            _fail(plan, EXIT_SETUP, f"working directory {plan.cwd} is outside the container")
        env = dict(plan.env)
        ident = None
        if plan.user is not None:
            try:
                ident = _passwd(plan.user)
            except (OSError, LookupError, ValueError) as exc:
                _fail(plan, EXIT_SETUP, f"user {plan.user}: {exc}")
            uid, gid, name, home, shell = ident
            env.setdefault("HOME", home or "/")
            env.setdefault("USER", name)
            env.setdefault("LOGNAME", name)
            env.setdefault("SHELL", shell or "/bin/sh")
        caps.drop_bounding(plan.keep_caps)  # (the seccomp filter is already on: pid_one)
        if ident is not None:
            uid, gid, name, _, _ = ident
            os.setgroups(_groups(name, gid))
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        if os.geteuid() == 0:
            caps.restrict(plan.keep_caps)
        if plan.no_new_privileges:
            syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        _fail(plan, EXIT_SETUP, f"cannot start the command: {exc}")
    try:
        os.execvpe(plan.argv[0], plan.argv, env)
    except OSError as exc:
        code = EXIT_NOEXEC if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
        _fail(plan, code, f"{plan.argv[0]}: cannot execute: {exc.strerror}")
