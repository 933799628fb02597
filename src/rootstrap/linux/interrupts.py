"""SIGINT and SIGTERM during a bootstrap: exceptions at safe points, so cleanup runs.

The bootstrap turns both signals into :class:`Interrupted` so its LIFO cleanup stack unwinds
(HAZARDS 66). One place cannot take an exception at an arbitrary instruction: the extractor's
process pool. There the signal is deferred and raised where the pool asks for its next .deb.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from rootstrap.errors import Interrupted


class _Deferral:
    """While ``active``, a SIGINT/SIGTERM is kept in ``pending`` instead of raised at once.

    An exception raised by a signal handler lands wherever the main thread is; inside
    ProcessPoolExecutor (a half-started manager thread, a condition wait) it left the
    extractor deadlocked or its shutdown failing with a traceback (HAZARDS 66). So the
    extractor runs deferred, and the signal is raised where its feed asks for the next .deb
    (see interruptible): there the extractor unwinds and shuts its pool down cleanly."""

    active = False
    pending: int | None = None

    def raise_pending(self) -> None:
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


_DEFER = _Deferral()


def interruptible(paths: Iterator[Path]) -> Iterator[Path]:
    """PATHS for rootstrap.unpack.pool.extract_many, run with signals deferred: a pending signal
    is raised before each .deb, and signals are taken at once while waiting for a download (a
    safe point)."""
    while True:
        _DEFER.raise_pending()
        _DEFER.active = False
        try:
            path = next(paths)
        except StopIteration:
            return
        finally:
            _DEFER.active = True
        yield path


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    _DEFER.active, _DEFER.pending = True, None
    try:
        yield
    finally:
        _DEFER.active = False
    _DEFER.raise_pending()  # one that came after the last .deb was handed over


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into an exception so the cleanup stack runs (HAZARDS 66)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if _DEFER.active:  # inside the extractor's process pool: raised at its next safe point
            _DEFER.pending = signum
            return
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
