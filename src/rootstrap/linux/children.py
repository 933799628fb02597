"""Child processes that end when rootstrap ends, however it ends (HAZARDS 114-122).

A SIGKILLed rootstrap runs no cleanup, so every process it starts must notice on its own.
Each kind of child is tied to its parent in one of three ways:

* forked workers (the unpack pool in unpack/extract.py, the tree-cache restore pool in
  build/treecache.py, the index decoder in archive/inflate.py) call :func:`die_with_parent`
  first thing: PR_SET_PDEATHSIG(SIGKILL), then ``getppid()`` against the pid the parent
  recorded before the fork. A parent that died between the fork and the prctl has already
  handed the child to init, and the check catches that race.
* programs (tar, cp, zstd, ...) go through :func:`start` or :func:`run`, which do the
  same two steps between fork and exec, where the setting survives execve (only a
  set-uid, set-gid or file-capability exec clears it, and no tool we run is one). Not with
  ``preexec_fn``: that makes subprocess fork the whole interpreter instead of vfork, 11 ms
  a spawn at 13 MB and 21 ms at 94 MB here against 1-2 ms, and runs Python in a child of
  a threaded process. Instead the child execs ``setpriv --pdeathsig KILL`` (util-linux,
  Essential), which execs ``/bin/sh -c '[ "$PPID" = PARENT ] || exit; exec "$@"'`` (the
  race check; dash reads $PPID at start-up, after the prctl), which execs the tool:
  about 3 ms in all, whatever rootstrap's size (``preexec_fn`` only without setpriv).
* the namespace runner: its pid 1 does the same, and its death takes down the whole PID
  namespace (runner/spawn.py).

The thread trap: the kernel sends the signal when the *thread* that forked the child ends,
not when its process does. A child started on a worker thread that then finishes would be
killed mid-work. So no child outlives the thread that started it: :func:`run` waits for its
child; a :class:`Child` is a context manager that reaps (on an error: kills) it on exit and
refuses to be left on another thread; each process pool is made, used and shut down by one
call on one thread, and with the fork start method ProcessPoolExecutor forks every worker
in the first ``submit`` on that thread (never later from its manager thread, as long as
no ``max_tasks_per_child`` asks it to replace workers).

Standard library and rootstrap.errors only (the linux layer).
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO

from rootstrap.errors import ResourceError, RootstrapError
from rootstrap.linux import syscalls

log = logging.getLogger(__name__)

#: The environment every tool runs with. LC_ALL=C: their messages are matched (disk full);
#: PATH: no directory of the caller's can shadow cp or tar.
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

EXIT_ORPHANED = 125  # a child whose parent was gone before it was tied to it

# $1 is the parent's pid; dash sets $PPID from getppid() as it starts, i.e. after setpriv's
# prctl: a parent that died before it shows as another PPID (init, a subreaper).
_TIE = '[ "$PPID" = "$1" ] || exit 125; shift; exec "$@"'

DEVNULL = subprocess.DEVNULL
PIPE = subprocess.PIPE


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """In a child just forked by PARENT (its pid, recorded before the fork): be sent SIG when
    the thread that forked us ends; exit at once if PARENT is already gone."""
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:
        os._exit(EXIT_ORPHANED)


@functools.cache
def _setpriv() -> str | None:
    """setpriv, if it can set the parent-death signal (util-linux 2.33 on) and /bin/sh is
    there for the race check."""
    path = shutil.which("setpriv", path=ENV["PATH"])
    if path is None or not os.access("/bin/sh", os.X_OK):
        return None
    try:
        probe = subprocess.run(
            [path, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", _TIE, "rootstrap",
             str(os.getpid()), "true"],
            env=ENV, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return path if probe.returncode == 0 else None


def tied(argv: Sequence[str]) -> tuple[list[str], Callable[[], None] | None]:
    """ARGV (its program an absolute path) as started tied to this process: the argv to
    exec and the ``preexec_fn`` it needs (None on the fast path)."""
    setpriv = _setpriv()
    if setpriv is None:
        return list(argv), functools.partial(die_with_parent, os.getpid())
    wrapper = [setpriv, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", _TIE, "rootstrap"]
    return [*wrapper, str(os.getpid()), *argv], None


def resource_error(
    text: str,
    subject: str,
    *,
    full_hint: str = "free some space",
    quota_hint: str = "raise the quota",
) -> ResourceError | None:
    """The ResourceError a tool's stderr TEXT means, if it reports a full disk or a quota."""
    if "No space left on device" in text:
        return ResourceError("disk full", subject=subject, hint=full_hint)
    if "Disk quota exceeded" in text:
        return ResourceError("quota exceeded", subject=subject, hint=quota_hint)
    return None


Failure = Callable[[list[str], int, str, str], Exception]


def describe_failure(
    argv: list[str],
    returncode: int,
    stderr: str,
    subject: str,
    *,
    error: type[RootstrapError] = RootstrapError,
    full: Callable[[str, str], ResourceError | None] = resource_error,
) -> Exception:
    """The default error for a tool that failed: what FULL makes of a full disk or a quota
    (ResourceError), else ERROR with its last line of stderr and the command to rerun as the
    hint."""
    resource = full(stderr, subject)
    if resource is not None:
        return resource
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if lines:
        last = lines[-1]
    elif returncode < 0:
        last = f"killed by signal {-returncode}"
    else:
        last = f"exit status {returncode}"
    return error(
        f"{os.path.basename(argv[0])} failed: {last}",
        subject=subject,
        hint=f"command: {shlex.join(argv)}",
    )


class Child:
    """A started tool; use it as a context manager (see :func:`start`)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        subject: str,
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
        error: type[RootstrapError] = RootstrapError,
        failure: Failure = describe_failure,
        missing_hint: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.subject = subject
        self._failure = failure
        name = self.argv[0]
        program = name if "/" in name else shutil.which(name, path=ENV["PATH"])
        if program is None or not os.access(program, os.X_OK):
            raise error(f"{name} is not installed", subject=subject, hint=missing_hint)
        log.debug("+ %s", shlex.join(self.argv))
        real, preexec = tied([program, *self.argv[1:]])
        self._thread = threading.get_ident()
        # stderr to an unnamed file, not a pipe: nobody has to drain it while the child runs
        # (two tools in a pipeline cannot block each other on a full stderr pipe).
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                real,
                env=ENV,
                stdin=DEVNULL if stdin is None else stdin,
                stdout=DEVNULL if stdout is None else stdout,
                stderr=self._err,
                preexec_fn=preexec,
            )
        except OSError as exc:
            self._err.close()
            raise error(f"cannot run {name}: {exc.strerror}", subject=subject) from exc

    @property
    def stdout(self) -> IO[bytes]:
        """The read end of the child's stdout (started with ``stdout=PIPE``)."""
        assert self.proc.stdout is not None, "started without stdout=PIPE"
        return self.proc.stdout

    def stderr(self) -> str:
        """What the child wrote to stderr so far (its last 64 KiB)."""
        self._err.seek(0, os.SEEK_END)
        size = self._err.tell()
        self._err.seek(max(0, size - (64 << 10)))
        return self._err.read().decode(errors="replace")

    def kill(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        """Wait for the child; if the wait is interrupted (a signal's exception), kill it and
        reap it before letting the exception go: no child outlives its call."""
        try:
            return self.proc.wait()
        except BaseException:
            self.kill()
            self.proc.wait()
            raise

    def check(self) -> None:
        """Wait; raise the mapped error if the child failed."""
        code = self.wait()
        if code != 0:
            raise self._failure(self.argv, code, self.stderr(), self.subject)

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if kind is not None:
                self.kill()  # an error or an interrupt: the tool must not run on
            if threading.get_ident() != self._thread:
                self.kill()
                raise RuntimeError(f"{self.argv[0]}: reaped on another thread than its own")
            if kind is None:
                self.check()
            else:
                self.wait()
        finally:
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self._err.close()


def start(
    argv: Sequence[str],
    *,
    subject: str,
    stdin: IO[bytes] | int | None = None,
    stdout: IO[bytes] | int | None = None,
    error: type[RootstrapError] = RootstrapError,
    failure: Failure = describe_failure,
    missing_hint: str | None = None,
) -> Child:
    """Start ARGV tied to this process (it dies when we do), with the scrubbed ENV, stdin and
    stdout /dev/null unless given (``PIPE`` for a pipe), and stderr kept for the error.

        with start(["tar", ...], subject=..., stdout=PIPE) as tar:
            with start(["zstd", ...], subject=..., stdin=tar.stdout, stdout=out):
                tar.stdout.close()  # zstd holds the pipe now: tar sees EPIPE if it dies

    Leaving the block waits for the child and raises FAILURE's error if it failed; leaving
    it by an exception kills the child first. ERROR (with MISSING_HINT) is raised when the
    program is not installed or cannot be started."""
    return Child(
        argv,
        subject=subject,
        stdin=stdin,
        stdout=stdout,
        error=error,
        failure=failure,
        missing_hint=missing_hint,
    )


def run(
    argv: Sequence[str],
    *,
    subject: str,
    stdout: IO[bytes] | int | None = None,
    error: type[RootstrapError] = RootstrapError,
    failure: Failure = describe_failure,
    missing_hint: str | None = None,
) -> None:
    """Run ARGV to completion as :func:`start` starts it; raise its error if it fails."""
    with start(
        argv,
        subject=subject,
        stdout=stdout,
        error=error,
        failure=failure,
        missing_hint=missing_hint,
    ):
        pass


__all__ = [
    "DEVNULL",
    "ENV",
    "PIPE",
    "Child",
    "describe_failure",
    "die_with_parent",
    "resource_error",
    "run",
    "start",
    "tied",
]
