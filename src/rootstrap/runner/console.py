"""The host side of ``--console``: relay a container pty to the host terminal.

``interactive`` relays both ways with the host tty in raw mode, ``read-only`` relays only the
container's output, ``passive`` drains and discards it. The container never gets the host
terminal as its controlling tty (TIOCSTI, CVE-2017-5226; HAZARDS 87).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import termios
import tty
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

ESCAPE = 0x1D  # Ctrl-]: three within a second leave the console (systemd-nspawn's hotkey)


def _copy_winsize(src: int, dst: int) -> None:
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


class Hotkey:
    """Ctrl-] typed three times within a second (systemd-nspawn's and machinectl login's
    way out of a console)."""

    def __init__(self) -> None:
        self._presses: list[float] = []

    def pressed(self, data: bytes) -> bool:
        """Feed what was typed; True once the third press within a second arrives."""
        if ESCAPE not in data:
            return False
        import time

        now = time.monotonic()
        self._presses = [t for t in self._presses if now - t < 1.0]
        self._presses += [now] * data.count(ESCAPE)
        return len(self._presses) >= 3


def read_pty(master: int) -> bytes | None:
    """What the non-blocking pty MASTER holds: None for nothing yet, b"" once no slave end
    is left (EIO: the container is gone)."""
    try:
        return os.read(master, 65536)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""
        raise


def write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        data = data[n:]


def relay(master: int, mode: str, pidfd: int, escape: Callable[[], None] | None = None) -> None:
    """Relay until the process behind PIDFD exits and the pty is drained. Cost: one poll loop.

    With ESCAPE, Ctrl-] typed three times within a second on an interactive console calls it
    and stops reading the terminal (nspawn: the machine is terminated)."""
    hotkey = Hotkey()
    stdin_tty = os.isatty(0)
    saved: list[Any] | None = None
    if mode == "interactive" and stdin_tty:
        saved = termios.tcgetattr(0)
        tty.setraw(0, termios.TCSANOW)  # TCSAFLUSH would drop typed-ahead input
    old_winch = None
    if mode != "passive" and os.isatty(1):
        _copy_winsize(1, master)
        old_winch = signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(1, master))
    os.set_blocking(master, False)
    reading = [master, pidfd] + ([0] if mode == "interactive" else [])
    done = False
    try:
        while True:
            try:
                # Once the container is gone whatever it wrote is already in the pty: drain it.
                ready, _, _ = select.select(reading, [], [], 0 if done else None)
            except InterruptedError:
                continue
            if not ready and done:
                return
            if pidfd in ready:
                reading.remove(pidfd)
                done = True
            if 0 in ready:
                data = os.read(0, 65536)
                if escape is not None and hotkey.pressed(data):
                    reading.remove(0)
                    mode = "passive"
                    escape()
                    continue
                if data:
                    write_all(master, data)
                else:
                    reading.remove(0)
            if master in ready:
                output = read_pty(master)
                if output is None:
                    continue
                if not output:
                    return
                if mode != "passive":
                    write_all(1, output)
    finally:
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
