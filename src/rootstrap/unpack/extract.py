"""The safe extractor: tar members into a root filesystem, on directory fds, never path strings.

Why our own: Python's tarfile filters do not fit a rootfs (``tar``/``data`` strip setuid and
sticky bits, ``data`` drops owners and rejects libc6's absolute symlinks, ``fully_trusted``
writes through symlinks onto the host; docs/decisions.md, "Our own extractor"). The design is
systemd's ``tar_x`` (``src/shared/tar-util.c``) with the one change a bootstrap needs: symlinks
already in the root (merged-/usr ``bin -> usr/bin``, or a package's ``usr/share/foo -> /etc``)
are *followed inside the root*, like ``openat2(RESOLVE_IN_ROOT)`` or systemd's
``chase(CHASE_PREFIX_ROOT)``, so nothing can land outside it (HAZARDS 48-53, CVE-2022-1664,
CVE-2025-45582).

Each archive goes through two steps:

1. **stage** (CPU: decompress, parse, write contents): every regular file is written into a
   hidden staging directory inside the root, with its owner, mode (chown before chmod, since
   chown clears setuid), xattrs and mtime already applied; a manifest records the rest.
2. **commit** (metadata only): in archive order, directories are created or merged, staged
   files are renamed over their targets (atomic replacement, dpkg semantics), hardlinks and
   device nodes are made; symlinks come after every other member of the archive (dpkg's
   ``tarfn.c`` defers them, so no member is written through a symlink of its own archive);
   directory modes, owners and mtimes come last, deepest first, so 0000/0500 directories do not
   block their children (HAZARDS 60).

The worker pool that stages many packages on both cores is rootstrap.unpack.pool.

Differences from ``dpkg-deb -x`` (GNU tar): the root directory keeps its own attributes (the
archive's ``./`` entry is not applied to it); directory mtimes are the archive's, where GNU tar
leaves extraction time on directories that received a symlink; a directory is never replaced
by a file or a symlink (an error), while a file is replaced by a directory; no fsync (a
bootstrap syncs once at the end, as mmdebstrap does with eatmydata).

Open fds stay bounded (root, staging dir, one cached parent, a transient pair while resolving),
whatever the depth (HAZARDS 112). Memory: one chunk of file data, plus a manifest entry per
member of the packages in flight, plus a record per directory and symlink of the archive being
committed (HAZARDS 111). Requires root (owners, device nodes, trusted xattrs).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rootstrap.errors import UnpackError
from rootstrap.formats import tarstream
from rootstrap.formats.deb import open_deb
from rootstrap.formats.tarstream import Member, TarReader
from rootstrap.linux.inroot import O_DIR, Resolver, remove_tree

log = logging.getLogger(__name__)

MAX_DEPTH = 128  # systemd's DEPTH_MAX
NAME_MAX = 255
CHUNK = 1 << 20


@dataclass(frozen=True)
class Policy:
    """What an extraction allows. The defaults are those for a .deb.

    ``allow_devices``: create char/block devices and FIFOs (import-tar and the tree cache do:
    an exported image keeps its nodes); otherwise they are an error, or with ``skip_devices``
    ignored (the runner supplies /dev anyway).
    ``allow_pax``: accept PAX headers (import-tar); dpkg rejects them in a .deb.
    ``max_bytes``: cap on the decompressed tar bytes of the whole call (all archives).
    ``size_factor``/``size_slack``: a .deb's own cap, ``factor × Installed-Size KiB + slack``
    (HAZARDS 58; Installed-Size rounds each file up to a KiB, so 4× is generous).
    ``xattrs``: apply PAX ``SCHILY.xattr.*`` (security.capability and friends).
    """

    allow_devices: bool = False
    skip_devices: bool = False
    allow_pax: bool = False
    max_bytes: int | None = None
    size_factor: int = 4
    size_slack: int = 32 << 20
    xattrs: bool = True

    def deb_cap(self, installed_size_kib: int | None) -> int | None:
        """The byte cap for one .deb whose control says INSTALLED_SIZE_KIB."""
        caps = [self.max_bytes] if self.max_bytes is not None else []
        if installed_size_kib is not None:
            caps.append(self.size_factor * installed_size_kib * 1024 + self.size_slack)
        return min(caps) if caps else None


# --- members -> manifest --------------------------------------------------------------------------

# Manifest entries (plain tuples: they cross process boundaries by pickle):
#   ("d", parts, mode, uid, gid, mtime_ns, xattrs)       directory
#   ("f", parts, staged_name)                            regular file, already staged
#   ("h", parts, target_parts)                           hardlink to a file of this archive
#   ("l", parts, target, uid, gid, mtime_ns, xattrs)     symlink
#   ("n", parts, st_mode, rdev, uid, gid, mtime_ns)      device node or FIFO
Entry = tuple[object, ...]


def _split(name: bytes, fail: Callable[[str], UnpackError]) -> tuple[bytes, ...]:
    """Member name -> components. A leading '/' means root-relative (GNU tar, PEP 706);
    '..' anywhere is refused (HAZARDS 48, 49); so are NULs, depth > 128 and over-long names."""
    if b"\0" in name:
        raise fail("NUL byte in the name")
    parts = tuple(p for p in name.split(b"/") if p not in (b"", b"."))
    if b".." in parts:
        raise fail("'..' in the member name")
    if len(parts) > MAX_DEPTH:
        raise fail(f"nested deeper than {MAX_DEPTH} directories")
    if any(len(p) > NAME_MAX for p in parts):
        raise fail(f"a name component is longer than {NAME_MAX} bytes")
    return parts


def _list_path(parts: tuple[bytes, ...]) -> str:
    """The path as dpkg's info/PKG.list writes it: "/." for the root, else "/a/b"."""
    return "/" + b"/".join(parts).decode("utf-8", "surrogateescape") if parts else "/."


class Stager:
    """Reads members, writes regular files' contents into the staging dir, yields entries."""

    def __init__(
        self,
        reader: TarReader,
        stage_fd: int,
        policy: Policy,
        prefix: str = "",
        direct: Committer | None = None,
    ) -> None:
        """Stage regular files into STAGE_FD (names PREFIX + n), or with DIRECT, write them
        straight into the tree through that committer (no staging, no rename)."""
        self.direct = direct
        self.reader = reader
        self.stage_fd = stage_fd
        self.policy = policy
        self._prefix = prefix.encode()
        self.paths: list[str] = []
        self._files: set[tuple[bytes, ...]] = set()
        self._count = 0
        self._ids = (os.geteuid(), os.getegid())
        self._umask = _umask()

    def fail(self, member: Member, message: str) -> UnpackError:
        err = self.reader.fail(message, member.display or "(empty name)")
        assert isinstance(err, UnpackError)
        return err

    def entries(self) -> Iterator[Entry]:
        for member in self.reader:
            entry = self._entry(member)
            if entry is not None:
                yield entry

    def _entry(self, m: Member) -> Entry | None:
        kind = m.type
        if kind not in tarstream.TREE_TYPES:
            raise self.fail(m, f"{m.type_name()} is not allowed in a root filesystem archive")
        parts = _split(m.name, lambda msg: self.fail(m, msg))
        xattrs = m.xattrs if self.policy.xattrs else {}
        mode = m.mode & 0o7777
        if kind == tarstream.DIRECTORY:
            entry: Entry = ("d", parts, mode, m.uid, m.gid, m.mtime_ns, xattrs)
        elif not parts:
            raise self.fail(m, "the root of the archive must be a directory")
        elif kind in tarstream.REGULAR:
            if self.direct is not None:
                self._write_direct(self.direct, m, parts, mode, xattrs)
                entry = ("F", parts)
            else:
                entry = ("f", parts, self._stage_file(m, mode, xattrs))
            self._files.add(parts)
        elif kind == tarstream.SYMLINK:
            if not m.linkname or b"\0" in m.linkname:
                raise self.fail(m, "empty symlink target")
            entry = ("l", parts, m.linkname, m.uid, m.gid, m.mtime_ns, xattrs)
        elif kind == tarstream.HARDLINK:
            entry = ("h", parts, self._link_target(m, parts))
        else:
            if not self.policy.allow_devices:
                if self.policy.skip_devices:
                    log.info("%s: %s: device node skipped", self.reader.subject, m.display)
                    return None
                raise self.fail(m, "device nodes and FIFOs are not allowed in this archive")
            fmt = {tarstream.CHAR: stat.S_IFCHR, tarstream.BLOCKDEV: stat.S_IFBLK}
            rdev = os.makedev(m.devmajor, m.devminor) if kind in fmt else 0
            entry = ("n", parts, fmt.get(kind, stat.S_IFIFO) | mode, rdev, m.uid, m.gid, m.mtime_ns)
        self.paths.append(_list_path(parts))
        return entry

    def _link_target(self, m: Member, parts: tuple[bytes, ...]) -> tuple[bytes, ...]:
        # HAZARDS 53: only a regular file extracted earlier from this same archive.
        if m.linkname.startswith(b"/"):
            raise self.fail(m, "hardlink to an absolute path")
        target = _split(m.linkname, lambda msg: self.fail(m, f"hardlink target: {msg}"))
        if target not in self._files or target == parts:
            shown = m.linkname.decode("utf-8", "backslashreplace")
            raise self.fail(m, f"hardlink to {shown}, not a file extracted before it")
        return target

    def _stage_file(self, m: Member, mode: int, xattrs: dict[bytes, bytes]) -> bytes:
        name = b"%s%d" % (self._prefix, self._count)
        self._count += 1
        plain = (m.uid, m.gid) == self._ids and not mode & 0o7000 and not mode & self._umask
        try:
            fd = os.open(name, _CREATE, mode if plain else 0o600, dir_fd=self.stage_fd)
        except OSError as exc:
            raise self.fail(m, f"cannot write: {exc.strerror}") from exc
        self._fill(fd, m, mode, xattrs, plain)
        return name

    def _write_direct(
        self,
        c: Committer,
        m: Member,
        parts: tuple[bytes, ...],
        mode: int,
        xattrs: dict[bytes, bytes],
    ) -> None:
        """Write a regular file straight into the tree: a new name is created in place (as
        tar does), an existing one is replaced by a rename (dpkg semantics)."""
        c.set_current(parts)
        pfd = c.resolver.parent(parts)
        plain = (
            (m.uid, m.gid) == self._ids
            and not mode & 0o7000
            and not mode & self._umask
            and not c.resolver.parent_setgid  # a setgid parent hands down its group
        )
        name, tmp = parts[-1], b""
        try:
            try:
                fd = os.open(name, _CREATE, mode if plain else 0o600, dir_fd=pfd)
            except FileExistsError:
                tmp = c.tmpname()
                fd = os.open(tmp, _CREATE, mode if plain else 0o600, dir_fd=pfd)
        except OSError as exc:
            raise self.fail(m, f"cannot write: {exc.strerror}") from exc
        try:
            self._fill(fd, m, mode, xattrs, plain)
        except BaseException:
            if tmp:
                os.unlink(tmp, dir_fd=pfd)
            raise
        if tmp:
            c.replace(tmp, pfd, pfd, name)

    def _fill(self, fd: int, m: Member, mode: int, xattrs: dict[bytes, bytes], plain: bool) -> None:
        """Write M's data into FD, then owner, mode, xattrs and mtime; close FD.
        PLAIN: FD was created with the final mode and owner (root-owned, no special bits, mode
        untouched by the umask): no fchown/fchmod, two syscalls less per file."""
        try:
            for chunk in self.reader.data(m, CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            if not plain:
                # chown clears setuid/setgid, so it comes before chmod (systemd
                # open_inode_finalize); for the same reason a write must not follow them.
                os.fchown(fd, m.uid, m.gid)
                os.fchmod(fd, mode)
            # Writes clear security.capability, so xattrs come after the data.
            for key, value in xattrs.items():
                os.setxattr(fd, key, value)
            os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))
        except OSError as exc:
            raise self.fail(m, f"cannot write: {exc.strerror}") from exc
        finally:
            os.close(fd)


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _umask() -> int:
    # os.umask() can only be read by setting it; /proc has it without a race (Linux >= 4.7).
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    return 0o777


# --- manifest -> tree -----------------------------------------------------------------------------


class Committer:
    """Applies entries to the root in order; symlinks and directory attributes at finish()."""

    def __init__(self, root_fd: int, subject: str) -> None:
        self.subject = subject
        self.stage_fd = -1
        self._current = ""
        self.resolver = Resolver(root_fd, self._fail)
        self._symlinks: list[Entry] = []
        self._dirs: dict[tuple[bytes, ...], Entry] = {}
        self._tmp = 0

    def _fail(self, message: str) -> UnpackError:
        return UnpackError(f"{self._current}: {message}", subject=self.subject)

    def set_current(self, parts: tuple[bytes, ...]) -> None:
        self._current = _list_path(parts)

    def tmpname(self) -> bytes:
        self._tmp += 1
        return b".rootstrap-%d-%d.tmp" % (os.getpid(), self._tmp)

    def add(self, entry: Entry) -> None:
        parts: tuple[bytes, ...] = entry[1]  # type: ignore[assignment]
        self._current = _list_path(parts)
        try:
            kind = entry[0]
            if kind == "d":
                self._dir(parts, entry)
            elif kind == "f":
                self._file(parts, entry[2])  # type: ignore[arg-type]
            elif kind == "F":
                pass  # written in place already (direct mode)
            elif kind == "l":
                self._symlinks.append(entry)
            elif kind == "h":
                self._hardlink(parts, entry[2])  # type: ignore[arg-type]
            elif kind == "n":
                self._node(parts, entry)
        except OSError as exc:
            raise self._fail(exc.strerror or str(exc)) from exc

    def finish(self) -> None:
        """Create the deferred symlinks, then directory attributes deepest first."""
        try:
            for entry in self._symlinks:
                parts: tuple[bytes, ...] = entry[1]  # type: ignore[assignment]
                self._current = _list_path(parts)
                self._symlink(parts, entry)
            self._symlinks.clear()
            for parts in sorted(self._dirs, key=len, reverse=True):
                self._current = _list_path(parts)
                self._dir_attrs(parts, self._dirs[parts])
            self._dirs.clear()
        except OSError as exc:
            raise self._fail(exc.strerror or str(exc)) from exc
        finally:
            self.resolver.close()

    def close(self) -> None:
        self.resolver.close()

    # -- per type --

    def _dir(self, parts: tuple[bytes, ...], entry: Entry) -> None:
        if not parts:
            return  # "./": the root keeps its own attributes
        pfd = self.resolver.parent(parts)
        name = parts[-1]
        try:
            os.mkdir(name, 0o755, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                # A symlink where the package has a directory (merged-/usr bin -> usr/bin):
                # keep it, as tar --keep-directory-symlink and dpkg do (HAZARDS 52); make
                # sure it leads to a directory inside the root.
                os.close(self.resolver.open_dir(parts, create=True))
                return
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=pfd)  # a file becomes a directory; never the reverse
                os.mkdir(name, 0o755, dir_fd=pfd)
        self._dirs[parts] = entry

    def replace(self, tmp: bytes, src_fd: int, pfd: int, name: bytes) -> None:
        """Rename TMP (in SRC_FD) over NAME (in PFD); a directory in the way is an error."""
        try:
            os.rename(tmp, name, src_dir_fd=src_fd, dst_dir_fd=pfd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=src_fd)
            if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise self._fail("a directory is in the way (it is never replaced)") from None
            if exc.errno == errno.EXDEV:
                raise self._fail("crosses a filesystem boundary inside the root") from None
            raise

    def _file(self, parts: tuple[bytes, ...], staged: bytes) -> None:
        pfd = self.resolver.parent(parts)
        self.replace(staged, self.stage_fd, pfd, parts[-1])

    def _hardlink(self, parts: tuple[bytes, ...], target: tuple[bytes, ...]) -> None:
        tfd = self.resolver.open_dir(target[:-1], create=False)
        try:
            st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise self._fail("hardlink target is not a regular file")
            pfd = self.resolver.parent(parts)
            tmp = self.tmpname()
            os.link(target[-1], tmp, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)
        self.replace(tmp, pfd, pfd, parts[-1])

    def _node(self, parts: tuple[bytes, ...], entry: Entry) -> None:
        _, _, mode, rdev, uid, gid, mtime = entry
        assert isinstance(mode, int) and isinstance(rdev, int) and isinstance(mtime, int)
        assert isinstance(uid, int) and isinstance(gid, int)
        pfd = self.resolver.parent(parts)
        tmp = self.tmpname()
        os.mknod(tmp, mode, rdev, dir_fd=pfd)
        os.chown(tmp, uid, gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(tmp, stat.S_IMODE(mode), dir_fd=pfd)
        os.utime(tmp, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)
        self.replace(tmp, pfd, pfd, parts[-1])

    def _symlink(self, parts: tuple[bytes, ...], entry: Entry) -> None:
        _, _, target, uid, gid, mtime, xattrs = entry
        assert isinstance(target, bytes) and isinstance(mtime, int) and isinstance(xattrs, dict)
        assert isinstance(uid, int) and isinstance(gid, int)
        pfd = self.resolver.parent(parts)
        try:  # a new name needs no temporary (one rename less per symlink on a fresh tree)
            os.symlink(target, parts[-1], dir_fd=pfd)
            tmp = parts[-1]
        except FileExistsError:
            tmp = self.tmpname()
            os.symlink(target, tmp, dir_fd=pfd)
        try:
            os.chown(tmp, uid, gid, dir_fd=pfd, follow_symlinks=False)
            for key, value in xattrs.items():
                os.setxattr(
                    f"/proc/self/fd/{pfd}/{tmp.decode()}", key, value, follow_symlinks=False
                )
            os.utime(tmp, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)
        except OSError:
            os.unlink(tmp, dir_fd=pfd)
            raise
        if tmp != parts[-1]:
            self.replace(tmp, pfd, pfd, parts[-1])

    def _dir_attrs(self, parts: tuple[bytes, ...], entry: Entry) -> None:
        _, _, mode, uid, gid, mtime, xattrs = entry
        assert isinstance(mode, int) and isinstance(mtime, int) and isinstance(xattrs, dict)
        assert isinstance(uid, int) and isinstance(gid, int)
        pfd = self.resolver.parent(parts)
        name = parts[-1]
        # By name, not by an opened fd: two syscalls instead of five per directory. Safe
        # because this process is the only writer of the tree (workers write only into
        # their staging directories) and the name was just checked to be a directory.
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            return  # a kept directory symlink; its target is not ours to change
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(name, mode, dir_fd=pfd)
        for key, value in xattrs.items():
            os.setxattr(f"/proc/self/fd/{pfd}/{os.fsdecode(name)}", key, value)
        os.utime(name, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)


# --- roots, staging -------------------------------------------------------------------------------


class Root:
    """The root's fd and, for extract_many, a hidden staging directory inside it (same
    filesystem, so staged files are renamed, not copied). Its name is random, so no package
    can aim at it."""

    def __init__(self, root: Path, subject: str, *, staging: bool) -> None:
        self.path = Path(root)
        self.stage_name = ""
        self.stage_fd = -1
        try:
            self.fd = os.open(self.path, O_DIR)
        except OSError as exc:
            raise UnpackError(f"cannot open the root: {exc.strerror}", subject=str(root)) from exc
        if not staging:
            return
        self.stage_name = f".rootstrap-unpack-{secrets.token_hex(8)}"
        try:
            os.mkdir(self.stage_name, 0o700, dir_fd=self.fd)
            self.stage_fd = os.open(self.stage_name, O_DIR, dir_fd=self.fd)
        except OSError as exc:
            os.close(self.fd)
            raise UnpackError(
                f"cannot write into the root: {exc.strerror}", subject=str(root)
            ) from exc

    def close(self) -> None:
        try:
            if self.stage_fd >= 0:
                os.close(self.stage_fd)
                remove_tree(self.path / self.stage_name)
        finally:
            os.close(self.fd)


def extract_direct(reader: TarReader, root_fd: int, policy: Policy, subject: str) -> list[str]:
    """Members straight into the tree, in order (no staging): the serial path."""
    committer = Committer(root_fd, subject)
    stager = Stager(reader, -1, policy, direct=committer)
    try:
        for entry in stager.entries():
            committer.add(entry)
        committer.finish()
    finally:
        committer.close()
    return stager.paths


def extract_tar(
    tar_stream: BinaryIO, root: Path, policy: Policy = Policy(), *, subject: str | None = None
) -> list[str]:
    """Extract the (decompressed) tar TAR_STREAM into ROOT, safely (module docstring).

    Returns the member paths as dpkg's info/PKG.list writes them ("/.", "/usr", "/usr/bin/x"),
    in archive order. Raises UnpackError naming SUBJECT and the member; ROOT may then hold a
    partial tree (the caller removes it). Cost: one pass, a rename per file.
    """
    subject = subject or str(root)
    reader = TarReader(
        tar_stream, subject=subject, max_bytes=policy.max_bytes, allow_pax=policy.allow_pax
    )
    r = Root(root, subject, staging=False)
    try:
        return extract_direct(reader, r.fd, policy, subject)
    finally:
        r.close()


def deb_reader(deb_path: Path, stream: BinaryIO, policy: Policy, cap: int | None) -> TarReader:
    return TarReader(stream, subject=deb_path.name, max_bytes=cap, allow_pax=policy.allow_pax)


def extract_deb(deb_path: Path, root: Path, policy: Policy = Policy()) -> list[str]:
    """Extract the data.tar of the .deb DEB_PATH into ROOT; return its dpkg .list paths.
    The byte cap is ``policy.deb_cap(Installed-Size)``. Raises DebError or UnpackError."""
    return extract_deb_counted(Path(deb_path), root, policy)[0]


def extract_deb_counted(deb_path: Path, root: Path, policy: Policy) -> tuple[list[str], int]:
    deb = open_deb(deb_path)
    cap = policy.deb_cap(deb.control().installed_size)
    r = Root(root, deb.subject, staging=False)
    try:
        with deb.data() as stream:
            reader = deb_reader(deb.path, stream, policy, cap)
            return extract_direct(reader, r.fd, policy, deb.subject), reader.consumed
    finally:
        r.close()


def commit_staged(root_fd: int, stage_fd: int, entries: list[Entry], subject: str) -> None:
    committer = Committer(root_fd, subject)
    committer.stage_fd = stage_fd
    try:
        for entry in entries:
            committer.add(entry)
        committer.finish()
    finally:
        committer.close()


__all__ = [
    "Committer",
    "Policy",
    "Stager",
    "commit_staged",
    "extract_deb",
    "extract_tar",
    "remove_tree",
]
