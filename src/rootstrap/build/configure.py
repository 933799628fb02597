"""The second stage: maintainer scripts and dpkg --configure, run inside the new root.

Everything is already extracted and dpkg's database says ``unpacked`` (dpkgdb.py). What remains
is what dpkg would have run: each package's ``preinst install`` (normally before its unpack; the
files being there early is harmless for the scripts in a fresh root, as debootstrap's own first
stage shows), then ``postinst configure`` in dependency order, which dpkg itself works out.

Order (docs/architecture.md, "Configure"): the essential set first (its preinsts, then one
``dpkg --configure`` of it with ``--force-configure-any`` so the libraries it needs come along),
then the rest in the plan's order, configuring the pending set before any package whose
Pre-Depends are not configured yet. All of it is one shell script run by one runner invocation:
a handful of dpkg calls instead of debootstrap's dozens.

While it runs, ``policy-rc.d`` answers 101 and ``start-stop-daemon`` is a stub, so no script
starts a daemon (HAZARDS 65); both are restored afterwards.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rootstrap.build.rootfiles import in_root, replace_file
from rootstrap.errors import ConfigureError, Interrupted
from rootstrap.runner import Hooks

ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
    "DEBCONF_NOWARNINGS": "yes",
    "LC_ALL": "C.UTF-8",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
}

POLICY_RC_D = b"#!/bin/sh\n# rootstrap: no daemon starts while the image is built\nexit 101\n"
SSD_STUB = b"#!/bin/sh\necho 'Warning: Fake start-stop-daemon called, doing nothing' >&2\nexit 0\n"
# The scripts run as PID 2 of a fresh pid namespace, whose PID 1 shares their root: to
# debianutils' ischroot that is a booted system, not a chroot, and libc6's postinst then runs
# `telinit u; sleep 1` (a second of every bootstrap). Under debootstrap and mmdebstrap the
# scripts run in a chroot; a stub bound over ischroot for the run says the same.
ISCHROOT = "/usr/bin/ischroot"
ISCHROOT_STUB = b"#!/bin/sh\n# rootstrap: the image is being built, as in a chroot\nexit 0\n"

# dpkg's words for a failed script (src/main/script.c / errors.c), to name package and script.
_DPKG_FAILED = re.compile(r"dpkg: error processing package (\S+) \((--\w+)\)")
_SCRIPT_FAILED = re.compile(
    r"(?:installed|new) \S+ package ([\w-]+) script subprocess returned error exit status (\d+)"
)
_SCRIPT_NAMES = {
    "pre-installation": "preinst",
    "post-installation": "postinst",
    "pre-removal": "prerm",
    "post-removal": "postrm",
}
_SETTING_UP = re.compile(r"^Setting up ([^ :]+)(?::\S+)? \(.*$")
_OUR_FAILED = re.compile(r"^rootstrap-failed: (\S+) (\S+) (\d+)$", re.M)


@dataclass(frozen=True)
class Step:
    """One package as configure sees it: its info name, essential or not, and pre-depends."""

    name: str
    info_name: str
    arch: str
    essential: bool
    pre_depends: tuple[str, ...] = ()


def script(steps: Sequence[Step]) -> str:
    """The shell script that brings every unpacked package to ``installed``."""
    lines = [
        "set -u",
        "DPKG_RUNNING_VERSION=$(dpkg-query --showformat='${Version}' --show dpkg)",
        "export DPKG_RUNNING_VERSION DPKG_ADMINDIR=/var/lib/dpkg DPKG_ROOT=",
        # The environment dpkg gives a maintainer script (dpkg(1), ENVIRONMENT); without it
        # dpkg-maintscript-helper "couldn't identify the package".
        "preinst() {",
        '  f="/var/lib/dpkg/info/$1.preinst"',
        '  [ -e "$f" ] || return 0',
        '  echo "rootstrap-preinst: $2"',  # where its output starts, for failure()
        '  DPKG_MAINTSCRIPT_PACKAGE="$2" DPKG_MAINTSCRIPT_ARCH="$3" \\',
        '  DPKG_MAINTSCRIPT_NAME=preinst DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 "$f" install \\',
        '    || { rc=$?; echo "rootstrap-failed: $2 preinst $rc" >&2; exit 1; }',
        "}",
        "configure() {",
        '  dpkg --force-unsafe-io --force-confold "$@" || exit 1',
        "}",
    ]
    essential = [s for s in steps if s.essential]
    lines += [_preinst(s) for s in essential]
    if essential:
        names = " ".join(shlex.quote(s.name) for s in essential)
        lines.append(f"configure --force-configure-any --force-depends --configure {names}")
    # The database lists every package as unpacked from the start, so --pending would also
    # configure packages whose preinst has not run yet: the essential run and each Pre-Depends
    # barrier name what they configure (--force-configure-any: a dependency later in the
    # order, which only a Depends cycle split by the barrier can give, comes along). Only the
    # last call, after every preinst, may sweep with --pending.
    pending: list[str] = []
    rest = [s for s in steps if not s.essential]
    for step in rest:
        if pending and any(d in pending for d in step.pre_depends):
            names = " ".join(shlex.quote(n) for n in pending)
            lines.append(f"configure --force-configure-any --configure {names}")
            pending.clear()
        lines.append(_preinst(step))
        pending.append(step.name)
    if rest:
        lines.append("configure --configure --pending")
    # Triggers activated during configuration are processed by --configure; anything left
    # (an interest whose package was configured first) goes now.
    lines.append("configure --triggers-only --pending")
    return "\n".join(lines) + "\n"


def _preinst(step: Step) -> str:
    words = (step.info_name, step.name, step.arch)
    return "preinst " + " ".join(map(shlex.quote, words))


def install_guards(root: Path) -> list[tuple[Path, Path | None]]:
    """Put policy-rc.d and a start-stop-daemon stub in place; return what restore() undoes."""
    undo: list[tuple[Path, Path | None]] = []
    policy = in_root(root, "/usr/sbin/policy-rc.d")
    if policy.exists() or policy.is_symlink():
        saved = policy.with_name("policy-rc.d.rootstrap-saved")
        os.replace(policy, saved)
        undo.append((policy, saved))
    else:
        undo.append((policy, None))
    policy.parent.mkdir(parents=True, exist_ok=True)
    replace_file(policy, POLICY_RC_D, 0o755)
    ssd = in_root(root, "/usr/sbin/start-stop-daemon")
    if ssd.exists() and not ssd.is_symlink():
        real = ssd.with_name("start-stop-daemon.REAL")
        os.replace(ssd, real)
        replace_file(ssd, SSD_STUB, 0o755)
        undo.append((ssd, real))
    return undo


def restore_guards(undo: list[tuple[Path, Path | None]]) -> None:
    for target, saved in reversed(undo):
        if target.exists() or target.is_symlink():
            target.unlink()
        if saved is not None:
            os.replace(saved, target)


def failure(output: str, code: int) -> ConfigureError:
    """The clean error for a failed configure run, naming package and script (HAZARDS 64).

    dpkg goes on configuring other packages after a failed postinst, so the failing
    script's output is not at the end of the log: it is what follows ``Setting up PKG``
    (or our ``rootstrap-preinst: PKG`` marker) up to dpkg's (or our) failure line."""
    lines = output.splitlines()
    ours = _OUR_FAILED.search(output)
    if ours:
        package, which, status = ours.group(1), ours.group(2), ours.group(3)
        end = lines.index(ours.group(0))
        start = _last(lines, end, lambda line: line == f"rootstrap-preinst: {package}")
    else:
        dpkg = next(
            ((i, m) for i, line in enumerate(lines) if (m := _DPKG_FAILED.search(line))), None
        )
        if dpkg is None:
            tail = "\n".join(f"  {line}" for line in lines[-15:])
            return ConfigureError(f"dpkg failed (exit {code}); its output ends:\n{tail}")
        end, match = dpkg
        package = match.group(1)
        found = _SCRIPT_FAILED.search("\n".join(lines[end + 1 : end + 3]))
        if found is None:  # not a script: dependency problems and the like, in dpkg's words
            reason = " ".join(line.strip() for line in lines[end + 1 : end + 3])
            return ConfigureError(f"dpkg {match.group(2)} failed: {reason}", subject=package)
        which = _SCRIPT_NAMES.get(found.group(1), found.group(1))
        status = found.group(2)
        bare = package.split(":", 1)[0]
        start = _last(lines, end, lambda line: _setting_up(line) == bare)
    said = [line for line in lines[start + 1 : end] if line.strip()][-15:]
    message = f"{which} failed with exit status {status}"
    if len(said) == 1:
        message += f": {said[0].strip()}"
    elif said:
        message += "; its output:\n" + "\n".join(f"  {line}" for line in said)
    else:
        message += " (it printed nothing)"
    return ConfigureError(message, subject=package)


def _setting_up(line: str) -> str | None:
    """The package of dpkg's ``Setting up PKG[:ARCH] (VERSION) ...`` line, else None."""
    found = _SETTING_UP.match(line)
    return found.group(1) if found else None


def _last(lines: Sequence[str], end: int, match: Callable[[str], bool]) -> int:
    """The index of the last line before END that MATCHes, or END - 1 if none does."""
    for i in range(end - 1, -1, -1):
        if match(lines[i]):
            return i
    return end - 1


class _StopOnInterrupt(Hooks):
    """Runner hooks: SIGINT/SIGTERM to rootstrap kill the whole configure run (HAZARDS 66).

    The runner's default forwards a signal to the payload alone; a shell that gets SIGINT
    waits for its foreground child (dpkg, then a script that may sleep for an hour), so the
    bootstrap would hang. SIGKILL to the container's pid 1 ends its PID namespace, and with
    it every script; the caller then raises Interrupted and the cleanup stack runs."""

    interrupted = 0

    def signalled(self, sig: int, pid: int) -> None:
        if sig in (signal.SIGINT, signal.SIGTERM):
            self.interrupted = sig
            os.kill(pid, signal.SIGKILL)
        else:
            super().signalled(sig, pid)


def run_configure(root: Path, steps: Sequence[Step], hostname: str) -> str:
    """Run the configure script in ROOT through the runner; return its output."""
    from rootstrap.runner import Bind, RunSpec, run

    hooks = _StopOnInterrupt()
    with (
        tempfile.TemporaryFile() as log,
        open(os.devnull, "rb") as null,
        tempfile.TemporaryDirectory(prefix="rootstrap-stubs.") as stubs,
    ):
        binds = []
        if in_root(root, ISCHROOT).is_file():
            stub = Path(stubs, "ischroot")
            stub.write_bytes(ISCHROOT_STUB)
            stub.chmod(0o755)
            binds.append(Bind(stub, ISCHROOT, readonly=True))
        # The script goes in as `sh -c`: nothing to write into the root, nothing to remove.
        code = run(
            RunSpec(
                root=root,
                argv=("/bin/sh", "-c", script(steps), "rootstrap-configure"),
                env=ENV,
                hostname=hostname,
                binds=binds,
                stdin=null.fileno(),
                stdout=log.fileno(),
                stderr=log.fileno(),
                lock=False,
                hooks=hooks,
            )
        )
        log.seek(0)
        output = log.read().decode(errors="replace")
    if hooks.interrupted:
        raise Interrupted(f"interrupted by {signal.Signals(hooks.interrupted).name}")
    if code != 0:
        raise failure(output, code)
    return output
