"""The worker pool: many .debs into one root on both cores, the result that of a serial run.

``extract_many`` stages packages on ``workers`` forked processes (both cores; each worker has
its own staging directory, since creating files takes the directory's lock) and commits them
in the main process strictly in the given order. Staging never touches the tree, so the result
is exactly that of a serial extraction in that order, conflicts included: the later package
wins a shared file, and a directory/file clash fails the same way it would serially. (The
alternative, extracting in parallel only packages whose file sets do not overlap, needs the
file lists first: a second decompression, and it still cannot see clashes made through
symlinks.) Committing is cheap (a rename per file; ~0.3 s of the ~3 s CPU of bookworm
minbase), so it keeps up with two stagers.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from rootstrap.errors import DebError, RootstrapError, UnpackError
from rootstrap.formats.deb import open_deb
from rootstrap.linux.children import die_with_parent
from rootstrap.linux.inroot import O_DIR
from rootstrap.unpack.extract import (
    Policy,
    Root,
    Stager,
    commit_staged,
    deb_reader,
    extract_deb_counted,
    extract_direct,
)

_StageResult = tuple[str, object, object, object]

#: What extract_many applies when the caller gives no policy (a frozen value).
DEFAULT_POLICY = Policy()


#: In a worker: how many packages of the current extract_many the main process has committed.
_committed: Any = None


def _worker_init(committed: Any, parent: int) -> None:
    global _committed
    # First: a worker must not outlive a killed rootstrap, blocked on its call queue and
    # holding the hidden tree, the staging directory and the locks it inherited (HAZARDS 116).
    die_with_parent(parent)
    _committed = committed
    os.umask(0)  # files are created with their final mode (see Stager._fill)


def _stage_worker(
    deb_path: str, root: str, stage_name: str, index: int, policy: Policy
) -> _StageResult:
    """In a worker process: stage the INDEXth .deb, or extract it straight into the tree when
    it is at the head of the line (every package before it committed; none after it will be
    until it reports back): no staging and no renames for that one. Returns ("ok", entries,
    paths, (bytes, staging dir)) or an error as plain data (our exceptions take keyword
    arguments, which pickle does not carry)."""
    path = Path(deb_path)
    try:
        deb = open_deb(path)
        cap = policy.deb_cap(deb.control().installed_size)
        if _committed is not None and _committed.value == index:
            root_fd = os.open(root, O_DIR)
            try:
                with deb.data() as stream:
                    reader = deb_reader(path, stream, policy, cap)
                    paths = extract_direct(reader, root_fd, policy, path.name)
                    return ("ok", [], paths, (reader.consumed, ""))
            finally:
                os.close(root_fd)
        # One staging directory per worker: creating files takes the directory's inode lock,
        # so two workers sharing one directory would serialize on it.
        own = f"w{os.getpid()}"
        top_fd = os.open(Path(root, stage_name), O_DIR)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(own, 0o700, dir_fd=top_fd)
            stage_fd = os.open(own, O_DIR, dir_fd=top_fd)
        finally:
            os.close(top_fd)
        try:
            with deb.data() as stream:
                reader = deb_reader(path, stream, policy, cap)
                stager = Stager(reader, stage_fd, policy, f"{index}-")
                entries = list(stager.entries())
                return ("ok", entries, stager.paths, (reader.consumed, own))
        finally:
            os.close(stage_fd)
    except RootstrapError as exc:
        cause = exc.__cause__
        code = cause.errno if isinstance(cause, OSError) else None
        return ("error", type(exc).__name__, (exc.message, exc.subject, code), exc.hint)
    except OSError as exc:
        return ("error", "UnpackError", (f"cannot stage: {exc}", path.name, exc.errno), None)


def _raise_from_worker(result: _StageResult) -> None:
    _, kind, args, hint = result
    assert isinstance(args, tuple) and (hint is None or isinstance(hint, str))
    message, subject, code = args
    cls = DebError if kind == "DebError" else UnpackError
    # The worker's OSError (ENOSPC, EDQUOT, ...) comes back as the cause, errno intact.
    cause = OSError(code, os.strerror(code)) if isinstance(code, int) else None
    raise cls(str(message), subject=str(subject), hint=hint) from cause


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork: ~1 ms a worker and no re-import of __main__ (forkserver and spawn re-run the main
    # module, which breaks under `python -c` and stdin). What the child runs takes no lock a
    # parent thread could hold at fork time: the modules are imported here first, and logging
    # re-initialises its locks after fork.
    return multiprocessing.get_context("fork")


def extract_many(
    debs: Iterable[Path], root: Path, policy: Policy = DEFAULT_POLICY, workers: int = 2
) -> dict[Path, list[str]]:
    """Extract every .deb of DEBS into ROOT, the result identical to extracting them one after
    another in that order (a later package's file replaces an earlier one's).

    DEBS is consumed lazily, so a generator that yields each .deb as its download completes
    overlaps downloading with unpacking. Staging runs on WORKERS processes; commits happen here,
    in order. ``policy.max_bytes`` caps the total; each .deb is also capped by its
    Installed-Size. Returns {deb: its dpkg .list paths}. Raises DebError/UnpackError naming the
    .deb and member; ROOT may then hold a partial tree (the caller removes it).
    """
    results: dict[Path, list[str]] = {}
    total = 0
    if workers <= 1:
        for deb in map(Path, debs):
            results[deb], consumed = extract_deb_counted(deb, root, policy)
            total += consumed
            _check_total(policy, total, deb)
        return results
    r = Root(root, str(root), staging=True)
    # Staged-but-uncommitted packages: bounds staging space and memory, yet wide enough that
    # one big package at the head of the line does not leave the other worker idle.
    window = 8 * workers
    inflight: deque[tuple[Path, int, Future[_StageResult]]] = deque()
    context = _mp_context()
    committed = context.Value("q", 0)  # packages committed so far, read by the workers
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_worker_init,
        initargs=(committed, os.getpid()),
    )
    stage_fds: dict[str, int] = {}
    try:
        feed = iter(debs)
        exhausted = False
        index = 0
        while True:
            while not exhausted and len(inflight) < window:
                try:
                    deb = Path(next(feed))
                except StopIteration:
                    exhausted = True
                    break
                future = pool.submit(
                    _stage_worker, str(deb), str(r.path), r.stage_name, index, policy
                )
                inflight.append((deb, index, future))
                index += 1
            if not inflight:
                break
            deb, position, future = inflight.popleft()
            if future.cancel():
                # No worker has started it and everything before it is committed: extract it
                # here, in place, instead of waiting idle (no staging, no renames).
                here, used = extract_deb_counted(deb, root, policy)
                total += used
                _check_total(policy, total, deb)
                committed.value = position + 1
                results[deb] = here
                continue
            try:
                result = future.result()
            except BrokenProcessPool as exc:  # a worker killed (OOM killer, a signal)
                raise UnpackError("an unpack worker died", subject=deb.name) from exc
            if result[0] != "ok":
                _raise_from_worker(result)
            _, entries, paths, extra = result
            assert isinstance(entries, list) and isinstance(paths, list)
            assert isinstance(extra, tuple)
            consumed, own = extra
            assert isinstance(consumed, int) and isinstance(own, str)
            total += consumed
            _check_total(policy, total, deb)
            if own:  # else the worker extracted it in place
                if own not in stage_fds:
                    stage_fds[own] = os.open(own, O_DIR, dir_fd=r.stage_fd)
                commit_staged(r.fd, stage_fds[own], entries, deb.name)
            committed.value = position + 1
            results[deb] = paths
    finally:
        for _, _, future in inflight:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        for fd in stage_fds.values():
            os.close(fd)
        r.close()
    return results


def _check_total(policy: Policy, total: int, deb: Path) -> None:
    if policy.max_bytes is not None and total > policy.max_bytes:
        raise UnpackError(
            f"the packages expand beyond the cap of {policy.max_bytes} bytes", subject=deb.name
        )


__all__ = ["extract_many"]
