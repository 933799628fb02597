"""Boot an image: its init as PID 1, following systemd's container interface.

What the machine gets (systemd's docs/CONTAINER_INTERFACE.md; docs/architecture.md, "The
runner"):

- ``container=rootstrap`` and ``container_uuid`` in PID 1's environment (systemd fills an
  empty /etc/machine-id from the latter), ``container_host_*`` from the host's os-release,
  ``NOTIFY_SOCKET=/run/host/notify``;
- /run/host/container-manager and /run/host/os-release on the runner's own /run tmpfs;
- a cgroup namespace whose root is a cgroup2 directory made for it (runner/cgroup.py),
  mounted writable at /sys/fs/cgroup; /sys and /proc/sys stay read-only;
- systemd-nspawn's default capability set, CAP_SYS_ADMIN included (systemd mounts its API
  file systems and creates cgroups), no_new_privs off (setuid programs such as su and
  systemd's own sandboxing need privileges to rise), the system call filter still on;
- the console on a pty of ours: interactive on a terminal, read-only otherwise, as nspawn.

SIGTERM, SIGINT or SIGHUP to rootstrap ask the init to shut down (SIGRTMIN+3, nspawn's
``--kill-signal`` default with ``--boot``); a second one kills the machine. Ctrl-] three
times within a second on an interactive console kills it at once (nspawn's hotkey). A reboot
inside the machine (init killed by SIGHUP in its pid namespace, reboot(2)) boots it again.

While it runs the machine is in the registry (runner/registry.py), so ``list``, ``shell``,
``poweroff`` and friends find it. Standard library and rootstrap.linux only.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence

from rootstrap.errors import RunnerError
from rootstrap.runner import Hooks, RunSpec, caps, cgroup, registry, run

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

SIGRTMIN = signal.SIGRTMIN.value
HALT = SIGRTMIN + 3  # systemd: halt.target; what nspawn sends to stop a booted machine
POWEROFF = SIGRTMIN + 4  # machinectl poweroff
REBOOT = signal.SIGINT  # machinectl reboot (systemd: ctrl-alt-del.target)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
INIT = "/sbin/init"


def _parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, value = line.strip().partition("=")
        if not eq or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


def _read_in_root(root: str, path: str) -> bytes | None:
    """Read PATH inside ROOT as the machine would see it (rootstrap.linux.inroot: an absolute
    link means ROOT/target, ``..`` stops at ROOT), so a host file is never read. None when
    missing or not a regular file."""
    import stat

    from rootstrap.linux.inroot import open_in_root

    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = open_in_root(root_fd, path, os.O_RDONLY | os.O_NONBLOCK)  # never block on a fifo
    except OSError:
        return None
    finally:
        os.close(root_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def os_release(root: str) -> dict[str, str] | None:
    """The image's os-release (/etc/os-release, else /usr/lib/os-release), read in-root."""
    for path in ("etc/os-release", "usr/lib/os-release"):
        data = _read_in_root(root, path)
        if data is not None:
            return _parse_os_release(data.decode("utf-8", errors="replace"))
    return None


def _host_os_release() -> bytes:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path, "rb") as f:
                return f.read(65536)
        except OSError:
            continue
    return b""


class BootHooks(Hooks):
    """Registry entry, readiness, and nspawn's signal handling for a booted machine."""

    def __init__(
        self, machine: str, fields: dict[str, object], on_ready: Callable[[], None] | None
    ) -> None:
        self.machine = machine
        self.fields = fields
        self.on_ready = on_ready
        self.ready = False
        self.stops = 0
        self.leader = 0
        self.reader: object = None
        self.veth = False
        self.bridge: str | None = None
        self.listener: socket.socket | None = None  # --console=service

    def console(
        self, master: int, mode: str, pidfd: int, escape: Callable[[], None] | None
    ) -> None:
        if mode == "service" and self.listener is not None:
            from rootstrap.runner import consoleserver

            consoleserver.serve(master, pidfd, self.listener)
        else:
            super().console(master, mode, pidfd, escape)

    def prepare(self, pid: int) -> None:
        if self.veth:
            from rootstrap.runner import netns

            self.fields.update(netns.setup_veth(self.machine, pid, self.bridge))

    def started(self, pid: int, notify_fd: int) -> None:
        self.leader = pid
        self.fields["started"] = time.time()
        registry.register({**self.fields, "leader": pid})
        if notify_fd >= 0:
            import threading  # after pid 1 was let go: not on the path to its exec

            reader = threading.Thread(
                target=self._read_notify, args=(notify_fd,), daemon=True, name="notify"
            )
            reader.start()
            self.reader = reader

    def _read_notify(self, fd: int) -> None:
        """Read sd_notify datagrams until the socket is closed; READY=1 once."""
        try:
            while True:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                if not data:
                    return
                if b"READY=1" in data.split(b"\n") and not self.ready:
                    self.ready = True
                    _notify_parent(b"READY=1")
                    try:
                        registry.update(self.machine, self.leader, {"ready": time.time()})
                    except OSError:
                        pass  # only `status` reads it
                    if self.on_ready is not None:
                        self.on_ready()
        finally:
            os.close(fd)

    def signalled(self, sig: int, pid: int) -> None:
        if sig in STOP_SIGNALS:
            self.stops += 1
            os.kill(pid, HALT if self.stops == 1 else signal.SIGKILL)
        else:
            os.kill(pid, sig)

    def escaped(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)


def _notify_parent(message: bytes) -> None:
    """Pass READY=1 on to our own supervisor's $NOTIFY_SOCKET, as nspawn does."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    import socket

    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)
    except OSError:
        pass


def boot(
    spec: RunSpec,
    machine: str,
    *,
    init_args: Sequence[str] = (),
    on_ready: Callable[[], None] | None = None,
    network_veth: bool = False,
    network_bridge: str | None = None,
    fields: Mapping[str, object] | None = None,
) -> int:
    """Boot SPEC.root's /sbin/init as machine MACHINE; blocks until it powers off.

    SPEC carries the runner options (binds, network, console, ...); its argv, as_pid1,
    no_new_privileges, notify, run_host, cgroup and hooks are set here, and capabilities
    default to nspawn's set. ON_READY is called (from a thread) when the init reports
    READY=1, i.e. startup finished. Returns 0 after a poweroff or halt, otherwise the init's
    exit status (128+N when killed by signal N). Raises RunnerError for an image without
    os-release (HAZARDS 98) or init, or a machine name already running. NETWORK_VETH: a
    private network with a veth pair to the host (runner/netns.py); NETWORK_BRIDGE: the same,
    its host end on that bridge. FIELDS: more for the registry entry (start: the log file).
    SPEC.console "service": the console goes to our stdout and to ``rootstrap login``
    through runner/consoleserver.py."""
    network_veth = network_veth or network_bridge is not None
    if network_veth:
        spec.private_network = True
    info = os_release(spec.root)
    if info is None:
        raise RunnerError(
            "the image has no os-release: it does not look bootable",
            subject=spec.root,
            hint="boot needs /etc/os-release or /usr/lib/os-release (and an init)",
        )
    if registry.lookup(machine) is not None:
        raise RunnerError(
            "a machine of this name is running",
            subject=machine,
            hint="pick another name with -M NAME, or 'rootstrap poweroff NAME'",
        )
    keep = spec.capabilities
    if keep is None:
        keep = caps.NSPAWN_DEFAULT | ({"NET_ADMIN"} if spec.private_network else set())
    keep = frozenset(keep) - spec.drop_capabilities
    host = _parse_os_release(_host_os_release().decode("utf-8", errors="replace"))
    env = {
        "NOTIFY_SOCKET": "/run/host/notify",
        **{f"container_host_{k.lower()}": v for k, v in host.items() if k in ("ID", "VERSION_ID")},
        **spec.env,
    }
    entry: dict[str, object] = {
        **(fields or {}),
        "name": machine,
        "class": "container",
        "service": "rootstrap",
        "root": os.path.realpath(spec.root),
        "os": info.get("ID", ""),
        "version": info.get("VERSION_ID", ""),
        "pretty_name": info.get("PRETTY_NAME", ""),
        "private_network": spec.private_network,
        "capabilities": sorted(keep),
        "syscall_filter": list(spec.syscall_filter),
        "private_users": list(spec.private_users) if spec.private_users else None,
        "rootstrap": os.getpid(),
    }
    listener = None
    if spec.console == "service":
        from rootstrap.runner import consoleserver

        listener = consoleserver.listen(machine)
        entry["console"] = listener.getsockname()
    try:
        return _boot_loop(
            spec,
            machine,
            entry,
            keep,
            env,
            init_args,
            on_ready,
            listener,
            network_veth,
            network_bridge,
        )
    finally:
        if listener is not None:
            try:
                os.unlink(listener.getsockname())
            except OSError:
                pass
            listener.close()


def _boot_loop(
    spec: RunSpec,
    machine: str,
    fields: dict[str, object],
    keep: frozenset[str],
    env: dict[str, str],
    init_args: Sequence[str],
    on_ready: Callable[[], None] | None,
    listener: socket.socket | None,
    network_veth: bool,
    network_bridge: str | None,
) -> int:
    """Boot until the machine powers off or halts: a reboot boots it again."""
    code = 0
    while True:
        owner = spec.private_users[0] if spec.private_users else None
        group = cgroup.create(machine, owner=owner)
        fields["cgroup"] = group
        hooks = BootHooks(machine, fields, on_ready)
        hooks.veth = network_veth
        hooks.bridge = network_bridge
        hooks.listener = listener
        # SPEC as given (root, mounts, network, users, console, stdio, lock), with what
        # makes it a boot: the init as PID 1, nspawn's capabilities, the container interface.
        boot_spec = spec.copy()
        boot_spec.argv = (INIT, *init_args)
        boot_spec.env = env
        boot_spec.hostname = spec.hostname or machine
        boot_spec.cwd = "/"
        boot_spec.user = None
        boot_spec.capabilities = keep
        boot_spec.drop_capabilities = frozenset()  # already out of KEEP
        boot_spec.no_new_privileges = False
        boot_spec.as_pid1 = True
        boot_spec.cgroup = group
        boot_spec.run_host = {
            "container-manager": b"rootstrap\n",
            "os-release": _host_os_release(),
        }
        boot_spec.notify = True
        boot_spec.hooks = hooks
        boot_spec.idmap = True
        try:
            code = run(boot_spec)
        except RunnerError as exc:
            if exc.exit_code == 127:
                exc.hint = "the image needs an init: --include systemd-sysv,dbus"
            raise
        finally:
            if hooks.leader:
                registry.unregister(machine, hooks.leader)
            import sys

            failing = sys.exc_info()[0] is not None  # the error that ended the boot, if any
            try:
                cgroup.remove(group)
            except RunnerError:
                if not failing:
                    raise  # else that error matters more than a busy cgroup
        # reboot(2) in a pid namespace kills its init with SIGHUP for a restart and SIGINT
        # for a power-off or halt (pid_namespaces(7)); systemd may also just exit.
        if code == 128 + signal.SIGHUP and hooks.stops == 0:
            continue
        if code == 128 + signal.SIGINT or (code == 128 + HALT and hooks.stops == 1):
            return 0
        return code
