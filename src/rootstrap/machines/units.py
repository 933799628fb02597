"""Booting images at host start-up, as machinectl does: the enable/disable transaction.

``machinectl enable NAME`` links ``systemd-nspawn@NAME.service`` into machines.target and
enables machines.target itself (machinectl(1)); we do the same with our own template
``rootstrap@.service`` (rootstrap.machines.unitfile), which we install into /etc/systemd/system
when it is missing or stale. ``disable`` unlinks the instance and keeps the template, as machinectl
keeps systemd's.

Without systemd as PID 1 (sd_booted(3): no /run/systemd/system) nothing is written (the
command line prints the unit and :func:`not_booted`'s error). ``root`` works like
``systemctl --root``: files and links go under it, offline, with no running systemd needed.

No printing: systemctl's messages (``Created symlink ...``) and our notes are returned for
the caller to show. Standard library only.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Sequence

from rootstrap.errors import RootstrapError, UsageError
from rootstrap.machines import unitfile
from rootstrap.paths import DEFAULT_STORE

UNIT_DIR = "etc/systemd/system"
# Where systemctl --root looks for a vendor unit (systemd.unit(5), "Unit File Load Path").
_UNIT_PATHS = (
    "etc/systemd/system",
    "run/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
)
# systemctl gets a clean environment: no SYSTEMD_* or locale settings of the caller change
# what it does or how its messages read.
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}


def booted() -> bool:
    """sd_booted(3): whether systemd is the running init (/run/systemd/system is a
    directory). One lstat."""
    try:
        return stat.S_ISDIR(os.lstat("/run/systemd/system").st_mode)
    except OSError:
        return False


def _systemctl() -> str:
    import shutil

    found = shutil.which("systemctl", path=_ENV["PATH"])
    if found:
        return found
    raise RootstrapError(
        "systemctl not found", subject=_ENV["PATH"], hint="install systemd (apt install systemd)"
    )


def _run(
    argv: list[str], *, what: str, hint: str | None = None, quiet: str | None = None
) -> list[str]:
    """Run systemctl; on success its messages (``Created symlink ...``), but for lines
    containing QUIET. A failure is a clean error quoting systemctl's reason and the command."""
    try:
        done = subprocess.run(
            argv, env=_ENV, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise RootstrapError(f"cannot run systemctl: {exc.strerror}", subject=argv[0]) from exc
    if done.returncode == 0:
        return [
            line
            for line in (done.stdout + done.stderr).splitlines(keepends=True)
            if quiet is None or quiet not in line
        ]
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    # systemctl's own reason, not its closing "See 'journalctl ...'" pointer.
    failed = [line for line in lines if line.startswith(("Failed", "Job for", "Unit ", "System "))]
    reason = (failed or lines or [f"exit status {done.returncode}"])[-1]
    raise RootstrapError(reason, subject=what, hint=hint or f"the command was '{' '.join(argv)}'")


def _snapshot(unit_dir: str) -> dict[str, str | None]:
    """Every directory (None) and symlink (its target) under UNIT_DIR: what systemctl
    enable/disable change, so a failed run can be undone. Cost: a walk of a small tree."""
    seen: dict[str, str | None] = {}
    for dirpath, dirnames, filenames in os.walk(unit_dir):
        seen[dirpath] = None
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                seen[path] = os.readlink(path)
    return seen


def _restore(unit_dir: str, before: dict[str, str | None]) -> None:
    """Undo what systemctl changed under UNIT_DIR since BEFORE (a half-done enable links
    some units and not others). Best effort."""
    after = _snapshot(unit_dir)
    for path in sorted(set(after) - set(before), reverse=True):  # children before parents
        try:
            if after[path] is None:
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError:
            pass
    for path, target in before.items():
        if target is not None and path not in after:
            try:
                os.symlink(target, path)
            except OSError:
                pass


class _Files:
    """The files this command writes, with what was there before, so a failure puts every
    one back ("nothing left behind")."""

    def __init__(self) -> None:
        self.undo: list[tuple[str, bytes | None]] = []

    def _old(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RootstrapError(f"cannot read: {exc.strerror}", subject=path) from exc

    def _ours(self, path: str, old: bytes | None) -> None:
        if old is not None and not old.startswith(unitfile.MARK.encode()):
            raise RootstrapError(
                "exists and was not written by rootstrap; leaving it alone",
                subject=path,
                hint="remove it to let rootstrap write its own, or keep it and link the "
                "instance with systemctl enable",
            )

    def write(self, path: str, text: str) -> bool:
        """Atomically replace PATH with TEXT unless it already holds it; True if changed.
        Refuses to replace a file rootstrap did not write."""
        data = text.encode()
        old = self._old(path)
        if old == data:
            return False
        self._ours(path, old)
        directory = os.path.dirname(path)
        made = self._makedirs(directory)
        temp = os.path.join(directory, f".#{os.path.basename(path)}.{os.getpid()}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, data)
                os.fchmod(fd, 0o644)  # whatever the umask: systemd reads it as any user
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, path)
        except OSError as exc:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise RootstrapError(f"cannot write: {exc.strerror}", subject=path) from exc
        # Undone newest first: the file, then the directories made for it, deepest first.
        self.undo.extend((d, None) for d in reversed(made))
        self.undo.append((path, old))
        return True

    def remove(self, path: str) -> None:
        """Remove PATH if rootstrap wrote it (and its directory once empty)."""
        old = self._old(path)
        if old is None:
            return
        self._ours(path, old)
        try:
            os.unlink(path)
        except OSError as exc:
            raise RootstrapError(f"cannot remove: {exc.strerror}", subject=path) from exc
        self.undo.append((path, old))
        try:
            os.rmdir(os.path.dirname(path))
        except OSError:
            pass  # not empty (the user's own drop-ins): keep it

    @staticmethod
    def _makedirs(directory: str) -> list[str]:
        """Create DIRECTORY and missing parents (0755); the ones made, deepest first."""
        made: list[str] = []
        current = directory
        while not os.path.isdir(current):
            made.append(current)
            current = os.path.dirname(current)
        for path in reversed(made):
            try:
                os.mkdir(path, 0o755)
            except OSError as exc:
                raise RootstrapError(f"cannot create: {exc.strerror}", subject=path) from exc
        return made

    def rollback(self) -> None:
        """Put back what was there before, newest change first. Best effort."""
        for path, old in reversed(self.undo):
            try:
                if old is None:
                    if os.path.isdir(path) and not os.path.islink(path):
                        os.rmdir(path)
                    else:
                        os.unlink(path)
                else:
                    with open(path, "wb") as f:
                        f.write(old)
            except OSError:
                pass
        self.undo.clear()


def not_booted(verb: str, names: Sequence[str], store: str) -> RootstrapError:
    """The error of VERB (enable or disable) for NAMES in STORE on a host without systemd as
    PID 1 (see :func:`booted`), with the ways on. For enable, the caller shows the unit
    (:func:`rootstrap.machines.unitfile.render`) on stdout: the error says it is there."""
    listed = " ".join(names)
    me = "rootstrap" if store == DEFAULT_STORE else f"rootstrap --store {store}"
    if verb == "enable":
        return RootstrapError(
            "systemd is not running as PID 1, so nothing was enabled (the unit is on stdout)",
            subject=listed,
            hint=f"save it as /{UNIT_DIR}/{unitfile.TEMPLATE} on a host with systemd, or "
            f"link it for the next boot with systemd: '{me} enable --root / {listed}'; "
            f"'{me} start {listed}' starts it now",
        )
    return RootstrapError(
        "systemd is not running as PID 1, so nothing was disabled",
        subject=listed,
        hint=f"'{me} disable --root / {listed}' removes the links offline; "
        f"'{me} stop {listed}' stops it now",
    )


def _has_unit(root: str, unit: str) -> bool:
    """Whether ROOT ships or defines UNIT (a lookup of its unit file, as systemctl does)."""
    return any(os.path.lexists(os.path.join(root, d, unit)) for d in _UNIT_PATHS)


def enable(names: Sequence[str], store: str, *, root: str | None = None) -> list[str]:
    """Install rootstrap@.service (and a store drop-in per instance when STORE is not the
    default) under ROOT (default /) and enable rootstrap@NAME.service plus machines.target
    with systemctl. Images must be checked by the caller. On failure the files and links are
    put back as they were. Returns systemctl's messages and ours (lines, for stderr). Cost:
    one or two systemctl runs (~50 ms each offline; plus the manager's reload when systemd
    runs)."""
    base = root or "/"
    if root is not None and not os.path.isdir(root):
        raise UsageError("--root is not a directory", subject=root)
    grouped = _has_unit(base, "machines.target")
    if not grouped and not _has_unit(base, "multi-user.target"):
        raise RootstrapError(
            "no machines.target or multi-user.target here, so nothing would start the "
            "machines at boot",
            subject=base,
            hint="install systemd (and systemd-container, which ships machines.target) first",
        )
    # No daemon-reload of ours: systemctl enable reloads the manager after every enable
    # through it, even one that made no link (test_units checks a rewritten template is live).
    systemctl = _systemctl()
    command = unitfile.executable()
    unit_dir = os.path.join(base, UNIT_DIR)
    files = _Files()
    units = [unitfile.instance(name) for name in names]
    links = _snapshot(unit_dir)
    said: list[str] = []
    try:
        files.write(os.path.join(unit_dir, unitfile.TEMPLATE), unitfile.render(command))
        for unit in units:
            dropin = os.path.join(unit_dir, f"{unit}.d", unitfile.DROPIN)
            if os.path.normpath(store) == DEFAULT_STORE:
                files.remove(dropin)
            else:
                files.write(dropin, unitfile.render_dropin(store, command))
        prefix = [systemctl] if root is None else [systemctl, f"--root={root}"]
        if grouped:
            # machinectl enables machines.target along with the machine (it is what
            # multi-user.target pulls in at boot, and it is not enabled on every host).
            said += _run([*prefix, "enable", *units, "machines.target"], what="systemctl enable")
        else:
            # Debian ships machines.target in systemd-container, which a host that uses
            # rootstrap instead of nspawn may well lack: link the machines straight into
            # multi-user.target too ('systemctl disable' removes every link to the unit).
            # The machines.target.wants link made by enable takes over once it is installed.
            said += _run(
                [*prefix, "enable", *units], what="systemctl enable", quiet="non-existent unit"
            )
            said += _run(
                [*prefix, "add-wants", "multi-user.target", *units],
                what="systemctl add-wants",
            )
            said.append(
                f"note: {base}: no machines.target (Debian's systemd-container ships it); "
                "the machines are wanted by multi-user.target instead\n"
            )
    except BaseException:
        _restore(unit_dir, links)
        files.rollback()
        raise
    return said


def start(names: Sequence[str]) -> list[str]:
    """Start the enabled rootstrap@NAME.service units now (needs a running systemd);
    systemctl's messages."""
    units = [unitfile.instance(name) for name in names]
    first = units[0]
    return _run(
        [_systemctl(), "start", *units],
        what="systemctl start (the machines are enabled)",
        hint=f"see 'journalctl -u {first}' and 'systemctl status {first}'",
    )


def disable(names: Sequence[str], *, root: str | None = None, now: bool = False) -> list[str]:
    """Unlink rootstrap@NAME.service from machines.target under ROOT (default /) with
    systemctl; NOW stops the machines too. The template and drop-ins stay (as machinectl
    keeps systemd-nspawn@.service), so 'systemctl start' of the instance keeps working.
    Returns systemctl's messages. Cost: one systemctl run."""
    if root is not None and not os.path.isdir(root):
        raise UsageError("--root is not a directory", subject=root)
    systemctl = _systemctl()
    prefix = [systemctl] if root is None else [systemctl, f"--root={root}"]
    flags = ["--now"] if now else []
    unit_dir = os.path.join(root or "/", UNIT_DIR)
    links = _snapshot(unit_dir)
    try:
        return _run(
            [*prefix, "disable", *flags, *(unitfile.instance(n) for n in names)],
            what="systemctl disable",
        )
    except BaseException:
        _restore(unit_dir, links)
        raise
