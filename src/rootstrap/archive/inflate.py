"""Decompression of a verified Packages index in a forked child, capped, with strict ends.

HAZARDS 20, 25: xz, gz and zst (several frames too) are decoded in bounded pieces, trailing
data and a truncated stream are errors (:class:`Corrupt`), and the text is capped
(:class:`Capped`). Decoding runs in a forked child that pipes the normalised text to the
parser (:class:`Inflater`: a decoder thread fought the parser for the GIL and hardly
overlapped it).

Separate from the parser and from fetching because it is process plumbing (fork, pipes,
signals, descriptors) that neither needs to know. It imports only the parser's text
normaliser (:class:`rootstrap.archive.index.Text`, whose output the parser's chunks assume),
the error tree and rootstrap.linux.children (the child dies with its parent).
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import lzma
import os
import select
import signal
import zlib
from collections import deque
from collections.abc import Iterator
from typing import Any, Final, NoReturn

from rootstrap.archive.index import Text
from rootstrap.errors import ResourceError
from rootstrap.linux.children import die_with_parent

__all__ = ["PIECE", "Capped", "Corrupt", "Inflater"]

PIECE: Final = 1 << 20  # decompressor output per step: bounds memory whatever the ratio
ZSTD_FEED: Final = 1024  # zstd has no max_length: feed it small so one call stays small


class Corrupt(Exception):
    """The compressed data cannot be decoded (the hash decides whose fault that is)."""


class _Decoder:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._xz = lzma.LZMADecompressor(format=lzma.FORMAT_XZ) if kind == "xz" else None
        self._gz = zlib.decompressobj(wbits=31) if kind == "gz" else None
        self._zst: Any = None
        self._zstd_module: Any = None
        if kind == "zst":
            import zstandard

            self._zstd_module = zstandard
            self._zst = zstandard.ZstdDecompressor().decompressobj()
        self.ended = kind == ""

    def feed(self, data: bytes | memoryview) -> Iterator[bytes]:
        try:
            if self.kind == "":
                yield bytes(data)
            elif self._xz is not None:
                yield from self._feed_xz(data)
            elif self._gz is not None:
                yield from self._feed_gz(data)
            else:
                yield from self._feed_zst(data)
        except (lzma.LZMAError, zlib.error, EOFError) as exc:
            raise Corrupt(f"corrupt {self.kind} data: {exc}") from exc
        except Exception as exc:
            if self._zstd_module is not None and isinstance(exc, self._zstd_module.ZstdError):
                raise Corrupt(f"corrupt zst data: {exc}") from exc
            raise

    def _feed_xz(self, data: bytes | memoryview) -> Iterator[bytes]:
        d = self._xz
        assert d is not None
        if d.eof:
            if data:
                raise Corrupt("trailing data after the xz stream")
            return
        out = d.decompress(data, max_length=PIECE)
        yield out
        while not d.eof and not d.needs_input:
            yield d.decompress(b"", max_length=PIECE)
        if d.eof and d.unused_data:
            raise Corrupt("trailing data after the xz stream")
        self.ended = d.eof

    def _feed_gz(self, data: bytes | memoryview) -> Iterator[bytes]:
        d = self._gz
        assert d is not None
        if d.eof:
            if data:
                raise Corrupt("trailing data after the gzip stream")
            return
        yield d.decompress(data, PIECE)
        while d.unconsumed_tail and not d.eof:
            yield d.decompress(d.unconsumed_tail, PIECE)
        if d.eof and d.unused_data:
            raise Corrupt("trailing data after the gzip stream")
        self.ended = d.eof

    def _feed_zst(self, data: bytes | memoryview) -> Iterator[bytes]:
        for pos in range(0, len(data), ZSTD_FEED):
            piece = data[pos : pos + ZSTD_FEED]
            while piece:
                if self._zst.eof:  # a further frame (pzstd writes several)
                    self._zst = self._zstd_module.ZstdDecompressor().decompressobj()
                out = self._zst.decompress(piece)
                piece = self._zst.unused_data if self._zst.eof else b""
                if out:
                    yield out
        self.ended = bool(self._zst.eof)

    def close(self) -> None:
        if not self.ended:
            raise Corrupt(f"truncated {self.kind} data (the stream ends early)")


class Capped(Exception):
    """The text decodes to more than the cap (HAZARDS 25)."""


class Inflater:
    """Decodes verified compressed bytes in a forked child; the parent reads the text from a pipe.

    Why a process and not a thread: lzma and zlib release the GIL while they work, but a
    decoder thread must take it back after every call, and while the parser holds it each
    hand-over waits up to the switch interval (5 ms, sys.getswitchinterval()). Measured on
    bookworm main: the thread design spent 1.43 s wall for 1.58 s of CPU on 2 cores, i.e. it
    hardly overlapped. A child has its own interpreter and GIL. It also counts and caps the
    decoded bytes, hashes them and normalises the text (:class:`Text`), so the parent only
    parses: with both cores busy the parent was the slower side (measured ~0.9 s of parent
    CPU against ~0.8 s in the child). A plain index needs no child: the parent does all that.

    Use as a context manager: leaving it kills and reaps a child still running, so no process
    outlives an error or an interrupt. The child ignores SIGINT and SIGTERM (the parent decides
    and kills it); if the parent dies without cleaning up (SIGKILL), the child gets SIGKILL
    too (PR_SET_PDEATHSIG, rootstrap.linux.children), and its next write would fail anyway.
    It must be left on the thread that entered it, which forked the child (the signal comes
    when that thread ends).
    """

    READ: Final = 1 << 20  # one pipe's worth (the default pipe-max-size)
    STEP: Final = 512 << 10  # text handed to the parser between two drains of the pipe (~7 ms)
    BACKLOG: Final = 16 << 20  # text read ahead of the parser at most (memory bound)
    FEED: Final = 1 << 16  # compressed input per decoder call in the child

    def __init__(self, kind: str, data: bytes, subject: str, cap: int) -> None:
        self.kind = kind
        self.subject = subject
        self.cap = cap
        self._data: bytes | None = data
        self._pid = 0
        self._read_fd = -1
        self._status_fd = -1
        self._total = 0
        self._hasher = hashlib.sha256()

    def __enter__(self) -> Inflater:
        data = self._data
        assert data is not None
        if self.kind == "":
            return self
        decoder = _Decoder(self.kind)  # before the fork: the child imports nothing
        read_fd, write_fd = os.pipe()
        status_fd, status_write_fd = os.pipe()
        try:
            for fd in (read_fd, write_fd):
                fcntl.fcntl(fd, _F_SETPIPE_SZ, self.READ)
        except OSError:
            pass  # a smaller pipe only costs a few more hand-overs
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (read_fd, write_fd, status_fd, status_write_fd):
                os.close(fd)
            raise ResourceError(
                f"cannot start the decompressor: {exc.strerror}", subject=self.subject
            ) from exc
        if pid == 0:  # pragma: no cover - the child ends in os._exit, coverage never sees it
            _inflate_child(decoder, data, write_fd, status_write_fd, self.cap, parent)
        os.close(write_fd)
        os.close(status_write_fd)
        self._pid, self._read_fd, self._status_fd = pid, read_fd, status_fd
        self._data = None  # the child has its copy; the parent's may be freed
        return self

    def pieces(self) -> Iterator[bytes | memoryview]:
        """The normalised text in pieces of about STEP bytes, as the child produces them.

        Between two pieces the pipe is drained into a backlog without blocking: a pipe holds
        1 MiB (about 15 ms of xz output), and a child that finds it full stops decoding. With
        the parser taking a few ms per piece, the child never waits (measured before this:
        2 MiB parse steps left the child blocked 0.3 s of its 0.8 s, and the parent as long).
        """
        if self.kind == "":
            yield from self._plain()
            return
        read, step = os.read, self.STEP
        fd = self._read_fd
        os.set_blocking(fd, False)
        waiter = select.poll()  # not select(): that fails for descriptors past 1023
        waiter.register(fd, select.POLLIN)
        backlog: deque[bytes] = deque()
        held = 0
        ended = False
        while True:
            while not ended and held < self.BACKLOG:
                try:
                    data = read(fd, self.READ)
                except BlockingIOError:
                    if backlog:
                        break
                    waiter.poll()  # nothing to parse: wait for the child
                    continue
                if not data:
                    ended = True
                    break
                held += len(data)
                self._total += len(data)
                if self._total > self.cap + 1:  # the child caps the raw text; +1: a final "\n"
                    raise Capped()
                backlog.extend(data[pos : pos + step] for pos in range(0, len(data), step))
            if not backlog:
                return
            piece = backlog.popleft()
            held -= len(piece)
            yield piece

    def _plain(self) -> Iterator[bytes | memoryview]:
        data = self._data or b""
        if len(data) > self.cap:
            raise Capped()
        text = Text()
        for pos in range(0, len(data), self.STEP):
            piece = data[pos : pos + self.STEP]
            self._hasher.update(piece)
            yield from text.feed(piece)
        self._total = len(data)
        yield from text.feed(b"", final=True)

    def finish(self) -> tuple[int, str]:
        """After the last piece: the size and SHA256 of the text as decoded (before it was
        normalised); Corrupt with the decoder's reason, or Capped."""
        if self.kind == "":
            return self._total, self._hasher.hexdigest()
        report = b""
        while block := os.read(self._status_fd, 4096):
            report += block
        _pid, status = os.waitpid(self._pid, 0)
        self._pid = 0
        verdict, _sep, detail = report.decode("utf-8", "replace").partition(" ")
        code = os.waitstatus_to_exitcode(status)
        if code == 0 and verdict == "ok":
            size, _sep, digest = detail.partition(" ")
            return int(size), digest
        if verdict == "corrupt":
            raise Corrupt(detail)
        if verdict == "capped":
            raise Capped()
        raise ResourceError(
            f"the {self.kind} decompressor process failed "
            + (f"(killed by signal {-code})" if code < 0 else f"(exit status {code})"),
            subject=self.subject,
            hint="out of memory?" if code == -signal.SIGKILL else None,
        )

    def __exit__(self, *exc_info: object) -> None:
        if self._pid:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self._pid, 0)
            self._pid = 0
        for fd in (self._read_fd, self._status_fd):
            if fd >= 0:
                os.close(fd)
        self._read_fd = self._status_fd = -1
        self._data = None


_F_SETPIPE_SZ: Final = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # fcntl(2); Python 3.10+ names it


def _inflate_child(
    decoder: _Decoder, data: bytes, out_fd: int, status_fd: int, cap: int, parent: int
) -> NoReturn:
    """The forked decoder: DATA through DECODER, normalised, into OUT_FD; then on STATUS_FD
    "ok <size> <sha256>" of the decoded text, "capped" past CAP bytes or "corrupt <reason>".
    Dies with PARENT (HAZARDS 115). Never returns."""
    code = 70
    try:
        # A SIGKILLed parent's child would only learn of it at its next write (EPIPE), and
        # a large index decodes for a second or more before the first one.
        die_with_parent(parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        gc.disable()  # a collection would touch (and copy) every object shared with the parent
        # Only the two write ends stay open: another pipe's reader (the unpack workers', say)
        # must not wait on this child for its EOF, nor our own read end keep a pipe alive.
        low, high = sorted((out_fd, status_fd))
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, 1 << 16)
        hasher = hashlib.sha256()
        text = Text()
        total = 0
        view = memoryview(data)
        step = Inflater.FEED
        for pos in range(0, len(view), step):
            for out in decoder.feed(view[pos : pos + step]):
                total += len(out)
                if total > cap:
                    raise Capped()
                hasher.update(out)
                for piece in text.feed(out):
                    _write_all(out_fd, piece)
        decoder.close()
        for piece in text.feed(b"", final=True):
            _write_all(out_fd, piece)
        _write_all(status_fd, f"ok {total} {hasher.hexdigest()}".encode())
        code = 0
    except Capped:
        try:
            _write_all(status_fd, b"capped")
            code = 4
        except BaseException:
            pass
    except Corrupt as exc:
        try:
            _write_all(status_fd, f"corrupt {exc}".encode("utf-8", "replace")[:4096])
            code = 3
        except BaseException:
            pass
    except BaseException:
        pass  # BrokenPipeError: the parent stopped reading (an error, a cap): just go
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
