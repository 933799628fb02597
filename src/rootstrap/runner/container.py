"""Running one container: the spec, the setup in a fixed syscall order, the supervision.

rootstrap.runner re-exports the public names; see its docstring for the contract."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

from rootstrap.errors import RunnerError, UsageError
from rootstrap.linux import syscalls
from rootstrap.linux.locks import lock_image
from rootstrap.runner import caps, seccomp, spawn

TYPE_CHECKING = False  # mypy reads signal's stubs; at run time the C module serves
if TYPE_CHECKING:
    import signal
else:  # signal.py imports enum (~8 ms of `run`'s start-up); _signal has what we use
    import _signal as signal

CONSOLE_MODES = ("interactive", "read-only", "passive", "pipe", "service")

__all__ = ["CONSOLE_MODES", "Bind", "Hooks", "RunSpec", "pick_uid_range", "run"]


class Hooks:
    """Callbacks a supervisor (runner/boot.py) plugs into ``run``; these defaults are plain
    ``run``'s behaviour. Called in the host process, from the supervising thread."""

    def started(self, pid: int, notify_fd: int) -> None:
        """Pid 1 (host PID) is set up and about to exec; NOTIFY_FD is the host end of its
        /run/host/notify socket (-1 without one; the hook owns it)."""
        if notify_fd >= 0:
            os.close(notify_fd)

    def prepare(self, pid: int) -> None:
        """Pid 1 (host PID) has its namespaces and waits to exec: set up what it needs from
        the host (boot: the veth pair)."""

    def signalled(self, sig: int, pid: int) -> None:
        """The runner got SIG while pid 1 (host PID) runs: forward it."""
        os.kill(pid, sig)

    def escaped(self, pid: int) -> None:
        """Ctrl-] pressed three times within a second on an interactive console."""
        os.kill(pid, signal.SIGKILL)

    def console(
        self, master: int, mode: str, pidfd: int, escape: Callable[[], None] | None
    ) -> None:
        """Relay the console pty MASTER until the container behind PIDFD is gone (boot
        serves ``service`` mode itself; here it is ``read-only``)."""
        from rootstrap.runner.console import relay

        relay(master, "read-only" if mode == "service" else mode, pidfd, escape=escape)


class Bind:
    """A host path SOURCE mounted at TARGET (an absolute path inside the container)."""

    __slots__ = ("readonly", "recursive", "source", "target")

    def __init__(
        self,
        source: str | os.PathLike[str],
        target: str,
        readonly: bool = False,
        recursive: bool = True,
    ) -> None:
        self.source = os.fspath(source)
        self.target = target
        self.readonly = readonly
        self.recursive = recursive  # nspawn's rbind (default) or norbind

    def __repr__(self) -> str:
        return f"Bind({self.source!r}, {self.target!r}, readonly={self.readonly})"


class RunSpec:
    """What to run and how (treat it as immutable). Defaults follow ``systemd-nspawn`` for a
    plain command, except that ``run`` keeps NoNewPrivs on and CAP_SYS_ADMIN out
    (HAZARDS 82-84; see caps.py).

    root: the image directory. argv: the command, looked up in the container's PATH.
    env: added to the scrubbed environment (PATH, container=rootstrap, container_uuid, HOME,
    TERM). hostname: default the root's base name. binds, tmpfs ("PATH[:OPTS]"): extra mounts.
    capabilities: the bounding set (bare names like "CHOWN"); None = caps.RUN_DEFAULT
    (+ NET_ADMIN with private_network). drop_capabilities is removed from it.
    syscall_filter: nspawn ``--system-call-filter=`` values ("@keyring", "~@mount", ...).
    private_users: None, or (host uid base, count) for a user namespace.
    console: "pipe" (stdio passed through) or "interactive"/"read-only"/"passive" (a pty).
    stdin/stdout/stderr: fds passed as the payload's 0/1/2 (None: inherit ours).
    lock: take the image lock (LOCK_EX, or LOCK_SH when read_only or ephemeral).
    as_pid1: exec the command as PID 1 (an init); otherwise a reaper is PID 1.
    cgroup: a host cgroup2 directory pid 1 joins before unsharing its cgroup namespace (and
    cgroup2 is mounted writable at /sys/fs/cgroup). run_host: files for /run/host (a
    directory on the runner's /run tmpfs). notify: bind /run/host/notify for sd_notify.
    hooks: see Hooks (boot uses them; with them, Ctrl-]x3 on an interactive console escapes).
    idmap: with private_users, an idmapped mount of the root (image uid 0 = the machine's root;
    the file system must support it: ext4, xfs, btrfs, tmpfs).

    (A plain class rather than a dataclass: importing dataclasses costs ~5 ms of the
    ``run`` budget.)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        hostname: str | None = None,
        binds: Sequence[Bind] = (),
        tmpfs: Sequence[str] = (),
        cwd: str = "/",
        user: str | None = None,
        read_only: bool = False,
        ephemeral: bool = False,
        private_network: bool = False,
        capabilities: frozenset[str] | None = None,
        drop_capabilities: frozenset[str] = frozenset(),
        no_new_privileges: bool = True,
        syscall_filter: Sequence[str] = (),
        private_users: tuple[int, int] | None = None,
        console: str = "pipe",
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        lock: bool = True,
        as_pid1: bool = False,
        cgroup: str | None = None,
        run_host: Mapping[str, bytes] | None = None,
        notify: bool = False,
        hooks: Hooks | None = None,
        idmap: bool = False,
    ) -> None:
        self.root = os.fspath(root)
        self.argv = tuple(argv)
        self.env = dict(env or {})
        self.hostname = hostname
        self.binds = tuple(binds)
        self.tmpfs = tuple(tmpfs)
        self.cwd = cwd
        self.user = user
        self.read_only = read_only
        self.ephemeral = ephemeral
        self.private_network = private_network
        self.capabilities = capabilities
        self.drop_capabilities = drop_capabilities
        self.no_new_privileges = no_new_privileges
        self.syscall_filter = tuple(syscall_filter)
        self.private_users = private_users
        self.console = console
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.lock = lock
        self.as_pid1 = as_pid1
        self.cgroup = cgroup
        self.run_host = None if run_host is None else dict(run_host)
        self.notify = notify
        self.hooks = hooks
        self.idmap = idmap

    def __repr__(self) -> str:
        return f"RunSpec({self.root!r}, {list(self.argv)!r})"

    def copy(self) -> RunSpec:
        """A shallow copy, to change a few fields of (boot does). Without the copy module,
        which costs ``boot`` ~3 ms of start-up."""
        new = RunSpec.__new__(RunSpec)
        new.__dict__.update(self.__dict__)
        return new


def pick_uid_range(machine: str) -> tuple[int, int]:
    """nspawn's ``--private-users=pick``: a 64K range in 0x80000..0x6FFF0000 hashed from the
    machine name (systemd picks the first free one; we take the hash)."""
    import zlib

    slots = (0x6FFF0000 - 0x80000) // 0x10000
    return 0x80000 + (zlib.crc32(machine.encode()) % slots) * 0x10000, 0x10000


def _env(spec: RunSpec, pty: bool) -> dict[str, str]:
    env = {
        "PATH": spawn.DEFAULT_PATH,
        "container": "rootstrap",
        "container_uuid": "{}-{}-{}-{}-{}".format(
            *(os.urandom(16).hex()[a:b] for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32)))
        ),
        "HOME": "/root",
    }
    term = os.environ.get("TERM")
    if pty:
        env["TERM"] = term or "vt220"
    elif term:
        env["TERM"] = term
    env.update(spec.env)
    return env


def _open_source(bind: Bind) -> tuple[int, bool]:
    """A detached clone of the host path (recursive, like nspawn's default rbind)."""
    import stat

    try:
        is_dir = stat.S_ISDIR(os.stat(bind.source).st_mode)
        return syscalls.open_tree(syscalls.AT_FDCWD, bind.source, recursive=bind.recursive), is_dir
    except OSError as exc:
        raise RunnerError(
            f"cannot bind: {exc.strerror}", subject=str(bind.source), hint="--bind SRC[:DST[:OPTS]]"
        ) from exc


def _check_target(path: str, what: str) -> str:
    if not path.startswith("/") or ".." in path.split("/"):
        raise UsageError(f"{what} must be an absolute path without '..'", subject=path)
    return path


def _is_host_root(fd: int) -> bool:
    st, root = os.fstat(fd), os.stat("/")
    return (st.st_dev, st.st_ino) == (root.st_dev, root.st_ino)


def _prepare_root(root_fd: int, points: list[tuple[str, str]], spec: RunSpec, root: str) -> None:
    """Refuse a bad image and make missing mount points in it (as the host's root: a mapped
    root inside a user namespace may not write there), never following its symlinks."""
    from rootstrap.runner import mounts

    create = not (spec.read_only or spec.ephemeral)
    try:
        mounts.make_mount_points(root_fd, points if create else [], create=create)
    except mounts.PlanError as exc:
        # An ephemeral run makes what is missing in its own overlay, later.
        if not (spec.ephemeral and not spec.read_only and "missing" in str(exc)):
            raise RunnerError(str(exc), subject=root) from None


def run(spec: RunSpec) -> int:
    """Run SPEC.argv in SPEC.root in new namespaces and return its exit status.

    Blocks until the command exits. Cost: ~5-10 ms of setup over the command itself."""
    if not spec.argv:
        raise UsageError("no command given")
    if spec.console not in CONSOLE_MODES:
        raise UsageError(f"unknown console mode {spec.console!r}", hint="|".join(CONSOLE_MODES))
    for target in [*spec.tmpfs, *(b.target for b in spec.binds)]:
        _check_target(target.split(":", 1)[0], "a mount target")
    keep = spec.capabilities
    if keep is None:
        keep = caps.RUN_DEFAULT | ({"NET_ADMIN"} if spec.private_network else set())
    keep = frozenset(keep) - spec.drop_capabilities
    try:
        allow, deny = seccomp.parse_filter(list(spec.syscall_filter))
    except ValueError as exc:
        raise UsageError(str(exc), hint="groups: " + " ".join(sorted(seccomp.GROUPS))) from exc
    denied = seccomp.denied_syscalls(keep, allow, deny)

    # Everything the children need is loaded here, in the host process: inside a user
    # namespace the mapped root may not read the host's Python or libraries, and after
    # pivot_root nothing may be loaded at all (see spawn).
    if spec.private_network or spec.notify:
        import socket  # noqa: F401
    if denied:
        try:
            seccomp.preload()
        except OSError as exc:
            raise RunnerError(
                f"cannot load libseccomp: {exc}", hint="apt-get install libseccomp2"
            ) from exc

    root = str(spec.root)
    name = os.path.basename(os.path.normpath(root)) or "root"
    hostname = spec.hostname or name
    if len(hostname.encode()) > 64 or not hostname:
        raise UsageError("hostname must be 1-64 bytes", subject=hostname)

    fds: list[int] = []
    lock = None
    try:
        if spec.lock:
            # A writable run excludes every other user; read-only and ephemeral runs share
            # (HAZARDS 99, 100). The fd is the directory itself, so a rename cannot swap
            # the tree under us (105), and the lock dies with us (104).
            lock = lock_image(spec.root, exclusive=not (spec.read_only or spec.ephemeral))
            root_fd = lock.fd
        else:
            try:
                root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise RunnerError(f"cannot open image: {exc.strerror}", subject=root) from exc
            fds.append(root_fd)
        if _is_host_root(root_fd) and not spec.ephemeral:
            raise RunnerError(
                "running a container on the host's root directory is not supported",
                subject=root,
                hint="use --ephemeral for a throw-away overlay of it",
            )
        try:
            root_tree = syscalls.open_tree(root_fd, "")
        except OSError as exc:
            raise RunnerError(
                f"cannot clone the image mount: {exc.strerror}", subject=root
            ) from exc
        fds.append(root_tree)
        binds: list[tuple[int, str, bool, bool]] = []
        for bind in spec.binds:
            fd, is_dir = _open_source(bind)
            fds.append(fd)
            target = _check_target(bind.target, "a bind target")
            binds.append((fd, target, bind.readonly, is_dir))
        tmpfs = []
        for item in spec.tmpfs:
            target, _, options = item.partition(":")
            tmpfs.append((target, options or "mode=0755"))
        points = [("run", "dir"), ("tmp", "dir")]
        points += [(t, "dir") for t, _ in tmpfs]
        points += [(t, "dir" if is_dir else "file") for _, t, _, is_dir in binds]
        _prepare_root(root_fd, points, spec, root)
        pty = spec.console != "pipe"
        stdio = (
            0 if spec.stdin is None else spec.stdin,
            1 if spec.stdout is None else spec.stdout,
            2 if spec.stderr is None else spec.stderr,
        )
        plan = spawn.Plan(
            root_fd=root_fd,
            root_tree=root_tree,
            argv=list(spec.argv),
            env=_env(spec, pty),
            hostname=hostname,
            binds=binds,
            tmpfs=tmpfs,
            mount_points=points,
            cwd=spec.cwd,
            user=spec.user,
            read_only=spec.read_only,
            ephemeral=spec.ephemeral,
            private_network=spec.private_network,
            keep_caps=keep,
            denied_syscalls=denied,
            no_new_privileges=spec.no_new_privileges,
            console=spec.console,
            stdio=stdio,
            uid_map=spec.private_users,
            as_pid1=spec.as_pid1,
            cgroup=spec.cgroup,
            run_host=spec.run_host,
            notify=spec.notify,
            idmap=spec.idmap and spec.private_users is not None,
        )
        return _supervise(plan, root, spec.hooks)
    finally:
        for fd in fds:
            os.close(fd)
        if lock is not None:
            lock.release()


def _read_messages(fd: int) -> list[str]:
    data = os.read(fd, 8192)
    if not data:
        return []
    return [line for line in data.decode(errors="replace").split("\n") if line] or [""]


def _supervise(plan: spawn.Plan, root: str, hooks: Hooks | None = None) -> int:
    """Start the container, answer its requests, relay signals and the console, wait."""
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    plan.status_w, plan.go_r, plan.go_w = status_w, go_r, go_w
    pending: list[int] = []
    pid1 = 0

    def forward(sig: int, _frame: object) -> None:
        if pid1:
            try:
                (hooks or Hooks()).signalled(sig, pid1)
            except OSError:
                pass
        else:
            pending.append(sig)

    try:
        first = spawn.start(plan)
    except OSError as exc:
        os.close(status_w)
        os.close(go_r)
        os.close(status_r)
        os.close(go_w)
        raise RunnerError(f"cannot create namespaces: {exc.strerror}") from exc
    if plan.uid_map is None:
        pid1 = first
    os.close(status_w)
    os.close(go_r)
    saved = {sig: signal.signal(sig, forward) for sig in spawn.FORWARDED}
    master = -1
    pty_fd = -1  # the pty master's fd number inside pid 1, once offered
    notify_fd = -1  # the same for the /run/host/notify socket
    offered = taken = False
    peer = -1
    error: tuple[int, str] | None = None
    try:
        while True:
            try:
                messages = _read_messages(status_r)
            except InterruptedError:
                continue
            if not messages:
                break
            for msg in messages:
                kind, body = msg[:1], msg[1:]
                if kind == "U" and plan.uid_map is not None:
                    base, count = plan.uid_map
                    for what in ("uid_map", "gid_map"):
                        with open(f"/proc/{first}/{what}", "w") as f:
                            f.write(f"0 {base} {count}\n")
                    if plan.idmap:
                        _idmap(plan.root_tree, first, root)
                    os.write(go_w, b"1")
                elif kind == "P":
                    pid1 = int(body)
                    for sig in pending:
                        forward(sig, None)
                elif kind == "T":
                    first_fd, _, second_fd = body.partition(":")
                    pty_fd, notify_fd = int(first_fd), int(second_fd or -1)
                    offered = True
                elif kind == "E":
                    number, _, text = body.partition(":")
                    error = (int(number), text)
                # The middle process reports pid 1 and pid 1 offers the pty independently:
                # take the pty once both are known, whatever their order.
                if offered and pid1 and not taken:
                    taken = True
                    if pty_fd >= 0:
                        master = _take_fd(pid1, pty_fd)
                        if hooks is not None:
                            # An init closes its stdio and opens /dev/console only to write:
                            # hold a slave end of our own, or the master reads EIO (no
                            # slave) in between and the relay would stop (TIOCGPTPEER).
                            import fcntl

                            peer = fcntl.ioctl(
                                master, 0x5441, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC
                            )
                    notify = _take_fd(pid1, notify_fd) if notify_fd >= 0 else -1
                    (hooks or Hooks()).prepare(pid1)
                    os.write(go_w, b"2")  # pid 1 may exec now: registering is not its business
                    (hooks or Hooks()).started(pid1, notify)
        if master >= 0 and error is None:
            pidfd = os.pidfd_open(first)
            try:
                escape = None
                if hooks is not None:
                    escape = lambda: hooks.escaped(pid1)  # noqa: E731
                (hooks or Hooks()).console(master, plan.console, pidfd, escape)
            finally:
                os.close(pidfd)
    except BaseException:
        # Never leave a half-started container behind (its pid 1 would be orphaned).
        os.kill(first, signal.SIGKILL)
        raise
    finally:
        status = os.waitpid(first, 0)[1]
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        os.close(status_r)
        os.close(go_w)
        if master >= 0:
            os.close(master)
        if peer >= 0:
            os.close(peer)
    code = spawn._exit_code(status)
    if error is not None:
        failure = RunnerError(error[1], subject=root)
        failure.exit_code = error[0]
        raise failure
    return code


def _idmap(tree: int, pid: int, root: str) -> None:
    """Idmap the detached mount TREE through PID's user namespace (mount_setattr(2))."""
    userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.mount_setattr(tree, syscalls.MOUNT_ATTR_IDMAP, recursive=True, userns_fd=userns)
    except OSError as exc:
        raise RunnerError(
            f"cannot make an idmapped mount of the image: {exc.strerror}",
            subject=root,
            hint="its file system must support idmapped mounts (ext4, xfs, btrfs, tmpfs)",
        ) from exc
    finally:
        os.close(userns)


def _take_fd(pid: int, fd: int) -> int:
    """Copy fd FD out of process PID (pidfd_getfd(2), Linux 5.6)."""
    import ctypes

    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        new = libc.syscall(438, ctypes.c_int(pidfd), ctypes.c_int(fd), ctypes.c_uint(0))
        if new < 0:
            err = ctypes.get_errno()
            raise RunnerError(f"cannot take the console pty: {os.strerror(err)}")
        os.set_inheritable(new, False)
        return int(new)
    finally:
        os.close(pidfd)
