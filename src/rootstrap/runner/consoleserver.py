"""``--console=service``: a booted machine's console without a terminal.

A machine started in the background (``rootstrap start``) or by a service manager has no
terminal to relay its console to. Its supervisor then keeps the pty master and:

- copies everything the machine writes to its own standard output: the log file ``start``
  opened, or the journal under systemd;
- listens on a unix socket (/run/rootstrap/console/NAME, root only) where one ``rootstrap
  login`` at a time attaches: the client gets the last few KiB written (so a login prompt
  shows at once), then the live output, and what it types goes to the machine.

The wire protocol is a byte stream after a one-byte answer: ``+`` (attached; the pty master
travels along with SCM_RIGHTS so the client can set the window size itself) or ``-`` (another
login is attached). Detaching is closing the connection; the machine keeps running.

Standard library only (runner/ rule); imported by boot only when the mode is used.
"""

from __future__ import annotations

import os
import select
import socket

from rootstrap.errors import RunnerError
from rootstrap.runner.console import Hotkey, read_pty, write_all

ROOT = "/run/rootstrap/console"
BACKLOG = 4096  # bytes of recent output a new login sees first


def socket_path(machine: str, root: str = ROOT) -> str:
    return os.path.join(root, machine)


def drop(machine: str, root: str = ROOT) -> None:
    """Remove MACHINE's socket, left by a supervisor that was killed (the caller has checked
    that no machine of that name runs)."""
    try:
        os.unlink(socket_path(machine, root))
    except FileNotFoundError:
        pass


def listen(machine: str, root: str = ROOT) -> socket.socket:
    """The listening socket for MACHINE (a leftover of a dead supervisor is replaced: the
    caller has checked that no machine of that name runs). Cost: a few syscalls."""
    os.makedirs(root, mode=0o700, exist_ok=True)
    drop(machine, root)
    path = socket_path(machine, root)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o077)  # root only from the first moment: the console is a root shell away
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(4)
    return sock


class _Client:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        conn.settimeout(2.0)  # a login that stops reading is dropped, never stalls the machine

    def send(self, data: bytes) -> bool:
        try:
            self.conn.sendall(data)
            return True
        except OSError:
            return False


def serve(master: int, pidfd: int, listener: socket.socket, output: int = 1) -> None:
    """Serve the console until the machine behind PIDFD exits and the pty is drained.

    Output goes to OUTPUT (errors there are ignored: a full disk must not stop the machine)
    and to the attached login, if any; the login's input goes to MASTER."""
    os.set_blocking(master, False)
    recent = bytearray()
    client: _Client | None = None
    done = False
    while True:
        watch = [master, listener.fileno()]
        if client is not None:
            watch.append(client.conn.fileno())
        if not done:
            watch.append(pidfd)
        try:
            ready, _, _ = select.select(watch, [], [], 0 if done else None)
        except InterruptedError:
            continue
        if not ready and done:
            break
        if pidfd in ready:
            done = True
        if listener.fileno() in ready:
            conn, _ = listener.accept()
            if client is not None:
                _refuse(conn)
            else:
                client = _attach(conn, master, bytes(recent))
        if client is not None and client.conn.fileno() in ready:
            try:
                data = client.conn.recv(65536)
            except OSError:
                data = b""
            if data:
                write_all(master, data)
            else:
                client.conn.close()
                client = None
        if master in ready:
            chunk = read_pty(master)
            if chunk is None:
                continue
            if not chunk:
                break
            try:
                write_all(output, chunk)
            except OSError:
                pass
            recent += chunk
            del recent[:-BACKLOG]
            if client is not None and not client.send(chunk):
                client.conn.close()
                client = None
    if client is not None:
        client.conn.close()


def _refuse(conn: socket.socket) -> None:
    try:
        conn.sendall(b"-")
    except OSError:
        pass
    conn.close()


def _attach(conn: socket.socket, master: int, recent: bytes) -> _Client | None:
    # Start the replay at a line boundary: a cut escape sequence would garble the terminal.
    cut = recent.find(b"\n")
    replay = recent[cut + 1 :] if cut >= 0 and len(recent) >= BACKLOG else recent
    try:
        socket.send_fds(conn, [b"+"], [master])
        client = _Client(conn)
        if replay and not client.send(replay):
            raise OSError
        return client
    except OSError:
        conn.close()
        return None


def attach(machine: str, path: str, banner: bool = True) -> int:
    """``rootstrap login``: relay this terminal to MACHINE's console at PATH until Ctrl-]
    three times within a second (detach), end of input, or the machine's exit. Returns 0."""
    import signal

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        conn.connect(path)
        answer, fds, _, _ = socket.recv_fds(conn, 1, 1)
    except OSError as exc:
        conn.close()
        raise RunnerError(
            f"cannot reach its console: {exc.strerror or exc}",
            subject=machine,
            hint=f"'rootstrap status {machine}' shows whether it still runs",
        ) from None
    if answer != b"+" or not fds:
        conn.close()
        for fd in fds:
            os.close(fd)
        raise RunnerError(
            "another login is attached to its console",
            subject=machine,
            hint=f"detach it (Ctrl-] three times), or use 'rootstrap shell {machine}'",
        )
    master = fds[0]
    import sys

    if banner:
        sys.stderr.write(
            f"Connected to machine {machine}. Press ^] three times within 1s to exit session.\n"
        )
        sys.stderr.flush()
    interactive = os.isatty(0)
    saved = None
    old_winch = None
    if interactive:
        import termios
        import tty

        from rootstrap.runner.console import _copy_winsize

        saved = termios.tcgetattr(0)
        tty.setraw(0, termios.TCSANOW)
        _copy_winsize(0, master)
        old_winch = signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(0, master))
    hotkey = Hotkey()
    detached = False
    watch = [0, conn.fileno()]
    try:
        while True:
            try:
                # After the end of input, what the machine still answers is shown until it
                # has been quiet for a second (as ``nc -q``): scripts pipe a few lines in.
                ready, _, _ = select.select(watch, [], [], None if 0 in watch else 1.0)
            except InterruptedError:
                continue
            if not ready:
                detached = True
                break
            if conn.fileno() in ready:
                data = conn.recv(65536)
                if not data:
                    break
                write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    watch.remove(0)
                    continue
                if hotkey.pressed(data):
                    detached = True
                    break
                conn.sendall(data)
    finally:
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
        conn.close()
    if banner:
        what = "detached from" if detached else "connection closed by"
        sys.stderr.write(f"\n{what[0].upper()}{what[1:]} machine {machine}.\n")
    return 0
