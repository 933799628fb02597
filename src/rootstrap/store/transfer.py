"""Trees in and out of the store: clone, import-fs, import-tar, export-tar.

Clone picks the cheapest faithful method: a btrfs snapshot when the source is a subvolume on
the store's btrfs (atomic, O(1)); otherwise ``cp -a -x --reflink=auto`` into the hidden temp
(FICLONE on xfs and btrfs, so data is shared; a full copy on ext4 keeping owners, modes,
setuid, hardlinks, xattrs incl. ACLs and security.capability, device nodes, holes and mtimes).
Export is GNU tar in pax format with every xattr; import goes through the same safe extractor
as the bootstrap (rootstrap.unpack.extract). As with machinectl, an import is not cryptographically
verified: a tar file is trusted to be what the user says it is, only never to escape its root.
"""

from __future__ import annotations

import contextlib
import decimal
import errno
import gzip
import io
import logging
import lzma
import os
import secrets
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from rootstrap.errors import RootstrapError, StoreError, UsageError
from rootstrap.linux import fsops
from rootstrap.linux.children import PIPE
from rootstrap.linux.locks import lock_image
from rootstrap.store._tool import resource_error, run_tool, start_tool
from rootstrap.store.pool import full_error

if TYPE_CHECKING:
    from rootstrap.store.pool import NewImage, Store

log = logging.getLogger(__name__)

# Suffix -> compressor argv (export) ; import sniffs the magic instead of trusting the suffix.
COMPRESSORS: dict[str, list[str] | None] = {
    ".tar": None,
    ".tar.zst": ["zstd", "-q", "-T0", "-c"],
    ".tzst": ["zstd", "-q", "-T0", "-c"],
    ".tar.xz": ["xz", "-T0", "-c"],
    ".txz": ["xz", "-T0", "-c"],
    ".tar.gz": ["gzip", "-c"],
    ".tgz": ["gzip", "-c"],
}


def tar_suffix(file: Path) -> str:
    """The tar suffix of FILE (``.tar.zst`` ...), or UsageError naming the ones we know."""
    name = file.name
    for suffix in sorted(COMPRESSORS, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    raise UsageError(
        "cannot tell the format from the file name",
        subject=str(file),
        hint="use one of " + ", ".join(COMPRESSORS),
    )


def name_from_file(file: Path) -> str:
    """The default image name for an import of FILE: its name without the tar suffix."""
    name = file.name
    for suffix in sorted(COMPRESSORS, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def copy_tree(src: Path, dst: Path, *, subject: str | None = None) -> None:
    """Copy the contents and attributes of directory SRC into the empty directory DST.

    One filesystem only (-x): a mount inside SRC is not copied. Cost: GNU cp's own."""
    run_tool(
        ["cp", "-a", "-x", "--reflink=auto", "--no-target-directory", "--", str(src), str(dst)],
        subject=subject or str(dst),
    )


def clone(
    store: Store, src: str, dst: str, *, read_only: bool = False, force: bool = False
) -> Path:
    """Clone image SRC to a new image DST (see the module docstring); return DST's path.

    SRC is held with a shared lock (a writable running image is busy: its tree would be
    copied mid-change); DST with the name lock, so of two clones to one name exactly one
    wins and the other gets busy or exists (HAZARDS 102)."""
    src_entry = store.path(src)
    src_path = src_entry.resolve() if src_entry.is_symlink() else src_entry
    if not src_path.is_dir():
        raise StoreError("only directory and subvolume images can be cloned", subject=src)
    with lock_image(src_path, exclusive=False), store.create(dst, force=force) as new:
        if not _snapshot(store, src_path, new, read_only):
            new.make_dir()
            _filling(new, lambda: copy_tree(src_path, new.path, subject=new.name))
            return new.publish(read_only=read_only)
        return new.publish(synced=True)  # the snapshot ioctl committed its transaction


def _snapshot(store: Store, src: Path, new: NewImage, read_only: bool) -> bool:
    if not store.is_btrfs():
        return False
    src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not fsops.is_btrfs_subvolume(src_fd):
            return False
        parent = os.open(store.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fsops.btrfs_snapshot(src_fd, parent, new.path.name, readonly=read_only)
        except OSError as exc:
            if exc.errno == errno.EXDEV:  # the source lives on another btrfs
                return False
            full = full_error(exc, new.name)
            raise full or StoreError(f"snapshot failed: {exc.strerror}", subject=new.name) from exc
        finally:
            os.close(parent)
    finally:
        os.close(src_fd)
    return True


def _filling(new: NewImage, fill: Callable[[], None]) -> None:
    """Run FILL into NEW's temp tree, mapping OSErrors to clean errors."""
    try:
        fill()
    except OSError as exc:
        full = full_error(exc, new.name)
        if full is not None:
            raise full from exc
        raise StoreError(f"cannot write the image: {exc.strerror}", subject=new.name) from exc


def import_fs(
    store: Store, directory: Path, name: str, *, read_only: bool = False, force: bool = False
) -> Path:
    """Copy the directory tree DIRECTORY into the store as NAME (same copy as clone)."""
    if not directory.is_dir():
        raise UsageError("not a directory", subject=str(directory))
    with store.create(name, force=force, hidden=False) as new:
        new.make_dir()
        _filling(new, lambda: copy_tree(directory, new.path, subject=new.name))
        return new.publish(read_only=read_only)


def export_tar(store: Store, name: str, file: Path, *, force: bool = False) -> Path:
    """Write image NAME as a tar archive FILE (compression by suffix), atomically.

    pax format with every xattr (ACLs and security.capability are xattrs), numeric owners,
    sorted names, one filesystem. Holes are written as zeros (no GNU sparse headers: they are
    not portable, and the safe extractor refuses them); compression makes them cheap. The
    image is held with a shared lock: a writable running image is busy (HAZARDS 101)."""
    suffix = tar_suffix(file)
    entry = store.path(name)
    path = entry.resolve() if entry.is_symlink() else entry
    if not path.is_dir():
        raise StoreError("only directory and subvolume images can be exported as tar", subject=name)
    if os.path.lexists(file) and not force:
        raise StoreError("file already exists", subject=str(file), hint="use --force to replace it")
    file = file.absolute()
    tar = [
        "tar", "--create", "--file=-", f"--directory={path}", "--format=posix",
        "--numeric-owner", "--sort=name", "--xattrs", "--xattrs-include=*",
        "--one-file-system", "--pax-option=delete=atime,delete=ctime", ".",
    ]  # fmt: skip
    # Written unnamed and linked into place whole: a killed export leaves no partial file
    # (HAZARDS 118); the no-replace link decides a race with another writer of FILE.
    with lock_image(path, exclusive=False), fsops.new_file(file, replace=force) as out:
        _pipeline(tar, COMPRESSORS[suffix], out, str(file))
    return file


def _pipeline(tar: list[str], compressor: list[str] | None, out: IO[bytes], subject: str) -> None:
    """TAR into OUT, through COMPRESSOR if any; both tied to us (HAZARDS 118)."""
    if compressor is None:
        run_tool(tar, subject=subject, stdout=out)
        return
    with start_tool(tar, subject=subject, stdout=PIPE) as producer:
        with start_tool(compressor, subject=subject, stdin=producer.stdout, stdout=out):
            # The compressor holds the pipe now; with our end closed, a compressor that dies
            # (a full disk) ends tar with EPIPE instead of leaving it blocked on the pipe.
            producer.stdout.close()


def open_tar(file: Path) -> BinaryIO:
    """Open FILE as an uncompressed tar stream; the compression is taken from its magic."""
    raw = open(file, "rb")  # returned to the caller, who closes it
    head = raw.peek(6)[:6] if isinstance(raw, io.BufferedReader) else b""
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)  # type: ignore[no-any-return,unused-ignore]
    if head.startswith(b"\xfd7zXZ\x00"):
        return cast(BinaryIO, lzma.open(raw))
    if head.startswith(b"\x1f\x8b"):
        return cast(BinaryIO, gzip.open(raw))
    return raw


def is_os_tree(path: Path) -> bool:
    """systemd's test: an OS tree has /etc/os-release or /usr/lib/os-release."""
    return os.path.lexists(path / "etc/os-release") or os.path.lexists(path / "usr/lib/os-release")


def lift_wrapper(root: Path) -> bool:
    """If ROOT holds nothing but one directory that is an OS tree (and ROOT is not), move
    that directory's contents and attributes up into ROOT (HAZARDS 69; systemd's
    ``import_mangle_os_tree``). Returns True if it lifted."""
    entries = os.listdir(root)
    if len(entries) != 1 or is_os_tree(root):
        return False
    inner = root / entries[0]
    if inner.is_symlink() or not inner.is_dir() or not is_os_tree(inner):
        return False
    parked = root / f".#lift.{secrets.token_hex(4)}"  # cannot collide with a child's name
    os.rename(inner, parked)
    for child in os.listdir(parked):
        fsops.rename_noreplace(parked / child, root / child)
    st = os.lstat(parked)
    for attr in os.listxattr(parked, follow_symlinks=False):
        with contextlib.suppress(OSError):
            os.setxattr(root, attr, os.getxattr(parked, attr, follow_symlinks=False))
    os.chown(root, st.st_uid, st.st_gid)
    os.chmod(root, st.st_mode & 0o7777)
    os.rmdir(parked)
    os.utime(root, ns=(st.st_atime_ns, st.st_mtime_ns))
    return True


def _top_mtime(file: Path, root: Path) -> None:
    """Give ROOT the mtime of the archive's own ``./`` member, if it starts with one (as our
    exports do): the extractor's staging work inside the root leaves it at "now"."""
    with contextlib.suppress(
        OSError, tarfile.TarError, EOFError, lzma.LZMAError, decimal.InvalidOperation
    ):
        with open_tar(file) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            first = tar.next()
            if first is not None and first.isdir() and first.name in (".", "./", ""):
                mtime = first.pax_headers.get("mtime") or str(first.mtime)
                ns = int(decimal.Decimal(mtime) * 1_000_000_000)  # pax keeps nanoseconds
                os.utime(root, ns=(ns, ns))


def import_tar(
    store: Store, file: Path, name: str, *, read_only: bool = False, force: bool = False
) -> Path:
    """Import the tar archive FILE (plain, gz, xz or zst) as image NAME.

    Extracted by rootstrap.unpack.extract (dirfd-based: no member escapes the root, HAZARDS 70) into
    the hidden temp, a single wrapping directory lifted, then published. Nothing is left in
    the store on any error."""
    from rootstrap.unpack.extract import Policy, extract_tar

    try:
        stream = open_tar(file)
    except OSError as exc:
        raise UsageError(f"cannot open: {exc.strerror}", subject=str(file)) from exc
    with stream, store.create(name, force=force, hidden=False) as new:
        new.make_dir()
        try:
            extract_tar(stream, new.path, Policy(allow_devices=True, allow_pax=True), subject=name)
            if not lift_wrapper(new.path):
                _top_mtime(file, new.path)
        except OSError as exc:
            full = full_error(exc, name)
            raise full or StoreError(f"import failed: {exc.strerror}", subject=name) from exc
        except RootstrapError as exc:
            cause = exc.__cause__
            full = (
                full_error(cause, name)
                if isinstance(cause, OSError)
                else resource_error(str(exc), name)
            )
            if full is not None:
                raise full from exc
            raise
        except (EOFError, lzma.LZMAError, gzip.BadGzipFile) as exc:
            raise StoreError(f"not a valid archive: {exc}", subject=str(file)) from exc
        return new.publish(read_only=read_only)
