"""The store: a directory of images that systemd-nspawn and machinectl also understand.

Every image is created the same way (HAZARDS 71, 72, 102): take the name lock, build under a
hidden ``.#NAME.<random>`` entry in the store (same filesystem; a btrfs subvolume where the
store is btrfs), syncfs, fsync the store directory, ``renameat2(RENAME_NOREPLACE)`` to the final
name, fsync the store directory again. A crash leaves only the hidden entry, which listings skip
and :meth:`Store.clean` removes once no live command holds its name lock.

Documented semantics (HAZARDS 76, 80): remove and rename work on read-only images (the flag is
cleared and, for rename, restored, as machined does); an image entry that is a symlink is only
ever unlinked by remove, renamed as a link by rename, followed for reading (clone, export,
show), and refused by read-only.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from rootstrap.errors import (
    ImageBusy,
    ImageExists,
    ImageNotFound,
    ResourceError,
    StoreError,
    UsageError,
)
from rootstrap.linux import fsops
from rootstrap.linux.locks import ImageLock, lock_image, lock_name
from rootstrap.rules import TEMP_PREFIX, check_image_name, is_hidden, is_image_name
from rootstrap.store._tool import run_tool
from rootstrap.store.image import (
    UNSUPPORTED,
    Image,
    ImageType,
    clear_immutable,
    probe,
    set_dir_read_only,
)
from rootstrap.store.meta import write_origin
from rootstrap.store.usage import CACHE_NAME, UsageCache

log = logging.getLogger(__name__)


def full_error(exc: OSError, subject: str) -> ResourceError | None:
    """ResourceError for ENOSPC ("disk full") and EDQUOT ("quota exceeded"), else None."""
    if exc.errno == errno.ENOSPC:
        return ResourceError("disk full", subject=subject, hint="free space on the store")
    if exc.errno == errno.EDQUOT:
        return ResourceError("quota exceeded", subject=subject, hint="raise the quota")
    return None


def temp_owner(entry: str) -> str | None:
    """The image name a temp entry ``.#NAME.<random>`` belongs to, or None."""
    if not entry.startswith(TEMP_PREFIX) or "." not in entry[2:]:
        return None
    return entry[2:].rsplit(".", 1)[0]


def refuse_mounts(path: Path) -> None:
    """StoreError if anything is mounted below PATH (a bind mount, /proc of a stale run)."""
    mounts = fsops.mounts_under(path)
    if mounts:
        raise StoreError(
            f"a filesystem is mounted inside the image at {mounts[0]}; nothing was removed",
            subject=str(path),
            hint=f"unmount it first: umount -R {mounts[0]}",
        )


def remove_tree(path: Path) -> None:
    """Remove the tree at PATH without ever crossing into another mount (HAZARDS 74).

    A btrfs subvolume goes with one ioctl; a directory with ``rm -rf --one-file-system``
    after a mountinfo check, so a bind mount or /proc inside aborts before anything is gone."""
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(lst.st_mode):
        path.unlink()  # a symlink entry: never its target (HAZARDS 80)
        return
    refuse_mounts(path)
    clear_immutable(path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        subvolume = fsops.is_btrfs_subvolume(fd)
        if subvolume:
            with contextlib.suppress(OSError):
                fsops.btrfs_set_readonly(fd, False)
    finally:
        os.close(fd)
    if subvolume:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fsops.btrfs_subvol_destroy(parent, path.name)
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:  # nested subvolumes: fall back to rm
                raise
        finally:
            os.close(parent)
    run_tool(["rm", "-rf", "--one-file-system", "--", str(path)], subject=str(path))


class NewImage:
    """An image being built under a hidden temp entry; publish it or it is discarded.

    Holds the name lock from creation to publish/discard, so ``clean`` never deletes a temp
    entry that a live command is filling, and two creators of one name never interleave."""

    def __init__(self, store: Store, name: str, lock: ImageLock, *, force: bool) -> None:
        self.store = store
        self.name = name
        self.force = force
        self._lock: ImageLock | None = lock
        self.path = store.root / f"{TEMP_PREFIX}{name}.{secrets.token_hex(4)}"

    def make_dir(self, *, subvolume: bool = True) -> Path:
        """Create the empty temp tree: a subvolume where the store is btrfs and SUBVOLUME."""
        if subvolume and self.store.is_btrfs():
            fd = os.open(self.store.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fsops.btrfs_subvol_create(fd, self.path.name)
            finally:
                os.close(fd)
            os.chmod(self.path, 0o755)
        else:
            os.mkdir(self.path, 0o755)
        return self.path

    def publish(
        self,
        *,
        origin: dict[str, Any] | None = None,
        read_only: bool = False,
        synced: bool = False,
    ) -> Path:
        """Make the temp tree the image NAME, durably and atomically; return its path.

        syncfs + fsync of the store before and after a no-replace rename (HAZARDS 72); SYNCED
        skips the syncfs when the tree is already on disk (a btrfs snapshot commits its
        transaction). Raises ImageExists (temp discarded) if NAME appeared meanwhile and force
        was not given."""
        final = self.store.root / self.name
        try:
            if origin is not None:
                write_origin(self.path, origin)
            if not synced or origin is not None:
                fsops.syncfs(self.path)
            fsops.fsync_dir(self.store.root)
            try:
                fsops.rename_noreplace(self.path, final)
            except FileExistsError:
                if not self.force:
                    raise ImageExists("image already exists", subject=self.name) from None
                self._replace(final)
            fsops.fsync_dir(self.store.root)
        except BaseException:
            self.discard()
            raise
        self._release()
        if read_only:  # after the rename: an immutable directory cannot be renamed
            self.store.set_read_only(self.name, True)
        return final

    def _replace(self, final: Path) -> None:
        # --force: swap the new tree in atomically, then remove the old one under the temp
        # name. The old image must not be in use (a run holds its lock).
        if final.is_dir() and not final.is_symlink():
            with lock_image(final, exclusive=True):
                fsops.rename_exchange(self.path, final)
        else:
            fsops.rename_exchange(self.path, final)
        remove_tree(self.path)

    def discard(self) -> None:
        """Remove the temp tree (if any) and release the name."""
        try:
            remove_tree(self.path)
        except (OSError, StoreError) as exc:
            log.warning("could not remove %s (rootstrap clean will): %s", self.path, exc)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> NewImage:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._lock is not None:  # not published: an error, or the caller gave up
            self.discard()


class Store:
    """The image store at ROOT. Constructing it checks nothing; every operation does."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._btrfs: bool | None = None
        self._pending: dict[Path, NewImage] = {}

    # --- the store root (HAZARDS 79) ---

    def check(self, *, create: bool) -> bool:
        """Check the store root; create it (mode 0700) if CREATE. False if it is missing.

        Refuses a symlink, a non-directory, a root not owned by us, or one writable by others;
        tightens 0755 to 0700 when writing (systemd's tmpfiles ``Q /var/lib/machines 0700``:
        host users must not reach setuid binaries inside images)."""
        subject = str(self.root)
        try:
            st = os.lstat(self.root)
        except FileNotFoundError:
            if not create:
                return False
            self.root.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.root, 0o700)
            os.chmod(self.root, 0o700)
            return self.check(create=False)
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(
                "the store is a symlink; refusing to follow it",
                subject=subject,
                hint=f"pass the real directory: --store {os.path.realpath(self.root)}",
            )
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError("the store is not a directory", subject=subject)
        if st.st_uid != os.geteuid():
            raise StoreError(
                f"the store is owned by uid {st.st_uid}, not by uid {os.geteuid()}",
                subject=subject,
                hint="chown it to root, or choose another store with --store",
            )
        if st.st_mode & 0o022:
            raise StoreError(
                f"the store is writable by others (mode {stat.S_IMODE(st.st_mode):04o})",
                subject=subject,
                hint=f"chmod 0700 {self.root}",
            )
        if create and st.st_mode & 0o077:
            log.info("%s: tightening the store to mode 0700", subject)
            os.chmod(self.root, 0o700)
        return True

    def lock_name(self, name: str) -> ImageLock:
        """The creator's lock on NAME in this store (HAZARDS 102). Keyed by the store's
        device and inode too: two stores may each hold an image "web", and the test suites
        of several checkouts run side by side on one machine."""
        st = os.stat(self.root)
        try:
            return lock_name(f"{st.st_dev}:{st.st_ino}:{name}")
        except ImageBusy as exc:
            raise ImageBusy(
                "another command is creating or renaming an image of this name",
                subject=name,
                hint="wait for it to finish",
            ) from exc

    def is_btrfs(self) -> bool:
        if self._btrfs is None:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                self._btrfs = fsops.fs_type(fd) == fsops.BTRFS_SUPER_MAGIC
            finally:
                os.close(fd)
        return self._btrfs

    # --- finding images ---

    def _entry(self, name: str) -> Path:
        """The entry of the (valid) name NAME: a directory, a symlink or NAME.raw."""
        path = self.root / name
        if not os.path.lexists(path) and os.path.lexists(self.root / f"{name}.raw"):
            return self.root / f"{name}.raw"
        return path

    def path(self, name: str) -> Path:
        """The path of the existing image NAME; UsageError for a bad name, else ImageNotFound."""
        check_image_name(name)
        if not self.check(create=False):
            raise ImageNotFound("no such image (the store does not exist)", subject=name)
        path = self._entry(name)
        if not os.path.lexists(path):
            raise ImageNotFound(
                f"no such image in {self.root}", subject=name, hint="see 'rootstrap list-images'"
            )
        return path

    def image(self, name: str, *, usage: bool = False, fresh: bool = False) -> Image:
        """Describe image NAME; with USAGE, its disk usage (measured now if FRESH)."""
        path = self.path(name)
        found = probe(name, path)
        if found is None:
            raise ImageNotFound("the store entry is not an image", subject=name)
        if usage and found.type is not ImageType.RAW:
            cache = UsageCache(self.root)
            size, latest = cache.usage(path, fresh=fresh)
            cache.save()
            found = _with(found, size, latest)
        return found

    def images(self, *, all: bool = False, usage: bool = True) -> list[Image]:
        """Every image, sorted by name; hidden ones only with ALL; ``.#`` temps never.

        Cost: a few syscalls per image plus first-level stats; a tree walk only for images
        whose usage is not cached."""
        if not self.check(create=False):
            return []
        cache = UsageCache(self.root) if usage else None
        found: list[Image] = []
        live: set[str] = set()
        with os.scandir(self.root) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            name = entry.name
            if name.startswith(TEMP_PREFIX) or name == CACHE_NAME:
                continue
            if entry.is_file() and name.endswith(".raw"):
                name = name[: -len(".raw")]
            elif not entry.is_dir():
                continue
            if (is_hidden(name) and not all) or not is_image_name(name):
                continue
            image = probe(name, Path(entry.path))
            if image is None:
                continue
            if cache is not None and image.type is not ImageType.RAW:
                with contextlib.suppress(OSError):
                    size, latest = cache.usage(image.path)
                    st = os.stat(image.path)
                    live.add(f"{st.st_dev}:{st.st_ino}")
                    image = _with(image, size, latest)
            found.append(image)
        if cache is not None:
            cache.save(live if all else None)
        return found

    def running(self, name: str) -> bool:
        """True if some command (a run, boot, export) holds image NAME's lock right now."""
        path = self.path(name).resolve()
        if not path.is_dir():
            return False
        try:
            with lock_image(path, exclusive=True):
                return False
        except ImageBusy:
            return True

    # --- creating ---

    def create(self, name: str, *, force: bool = False, hidden: bool = True) -> NewImage:
        """Reserve NAME for a new image: validate, take the name lock, check it is free.
        HIDDEN False refuses a hidden NAME: imports and the bootstrap, as systemd-importd
        (rootstrap.rules); clone may make a hidden image.

        Use as a context manager; call ``make_dir()`` (or snapshot into ``.path``), fill the
        tree, then ``publish()``. Raises UsageError, ImageBusy (another creator) or
        ImageExists (unless FORCE)."""
        check_image_name(name, hidden=hidden)
        self.check(create=True)
        lock = self.lock_name(name)
        try:
            if not force and (
                os.path.lexists(self.root / name) or os.path.lexists(self.root / f"{name}.raw")
            ):
                raise ImageExists(
                    "image already exists",
                    subject=name,
                    hint="pick another name, or remove it first (or --force)",
                )
        except BaseException:
            lock.release()
            raise
        return NewImage(self, name, lock, force=force)

    def temp_path(self, name: str) -> Path:
        """For the bootstrap: an empty hidden tree to fill for image NAME (held until
        :meth:`publish` or :meth:`discard` in this process)."""
        new = self.create(name, hidden=False)
        new.make_dir()
        self._pending[new.path] = new
        return new.path

    def publish(
        self,
        temp: Path,
        name: str,
        *,
        origin: dict[str, Any] | None = None,
        read_only: bool = False,
    ) -> Path:
        """Publish a tree from :meth:`temp_path` as NAME (sync, no-replace rename, origin)."""
        new = self._pending.get(Path(temp))
        if new is None or new.name != name:
            raise StoreError(f"not a temp tree reserved for image {name}", subject=str(temp))
        del self._pending[Path(temp)]
        return new.publish(origin=origin, read_only=read_only)

    def discard(self, temp: Path) -> None:
        """Drop a tree from :meth:`temp_path` (after a failed bootstrap)."""
        new = self._pending.pop(Path(temp), None)
        if new is not None:
            new.discard()

    # --- trees in and out (rootstrap.store.transfer) ---

    def clone(self, src: str, dst: str, *, read_only: bool = False, force: bool = False) -> Path:
        """Clone image SRC as DST: btrfs snapshot, else reflink or faithful copy."""
        from rootstrap.store import transfer

        return transfer.clone(self, src, dst, read_only=read_only, force=force)

    def import_fs(
        self, directory: Path, name: str, *, read_only: bool = False, force: bool = False
    ) -> Path:
        """Copy DIRECTORY into the store as image NAME."""
        from rootstrap.store import transfer

        return transfer.import_fs(self, directory, name, read_only=read_only, force=force)

    def import_tar(
        self, file: Path, name: str, *, read_only: bool = False, force: bool = False
    ) -> Path:
        """Extract the tar archive FILE (any compression) safely as image NAME."""
        from rootstrap.store import transfer

        return transfer.import_tar(self, file, name, read_only=read_only, force=force)

    def export_tar(self, name: str, file: Path, *, force: bool = False) -> Path:
        """Write image NAME to FILE (.tar, .tar.gz, .tar.xz, .tar.zst)."""
        from rootstrap.store import transfer

        return transfer.export_tar(self, name, file, force=force)

    # --- changing ---

    def _writable_entry(self, name: str, verb: str) -> Path:
        path = self.path(name)
        self.check(create=True)
        if path.is_symlink() and verb not in ("remove", "rename"):
            raise StoreError(
                f"the image is a symlink to {os.readlink(path)}; {verb} does not follow it",
                subject=name,
                hint="only remove (unlinks the symlink) and rename act on symlink entries",
            )
        return path

    @contextlib.contextmanager
    def _locked(self, path: Path, *, exclusive: bool) -> Iterator[None]:
        if path.is_dir() and not path.is_symlink():
            with lock_image(path, exclusive=exclusive):
                yield
        else:
            yield

    def remove(self, name: str) -> None:
        """Remove image NAME (busy if in use; a symlink entry is only unlinked; read-only
        images too, as machined does). A directory image is first renamed to a hidden temp
        name, so a crash mid-removal leaves only a leftover for ``clean``."""
        path = self._writable_entry(name, "remove")
        with self._locked(path, exclusive=True):
            if not path.is_dir() or path.is_symlink():
                path.unlink()
                fsops.fsync_dir(self.root)
                return
            refuse_mounts(path)
            hidden = self.root / f"{TEMP_PREFIX}{name}.{secrets.token_hex(4)}"
            restore = clear_immutable(path)
            try:
                fsops.rename_noreplace(path, hidden)
            except OSError:
                if restore:
                    set_dir_read_only(path, True)
                raise
            fsops.fsync_dir(self.root)
        remove_tree(hidden)

    def rename(self, old: str, new: str) -> Path:
        """Rename image OLD to NEW (no-replace; busy if OLD is in use; +i kept)."""
        check_image_name(new)
        path = self._writable_entry(old, "rename")
        target = self.root / (f"{new}.raw" if path.name.endswith(".raw") else new)
        with self.lock_name(new), self._locked(path, exclusive=True):
            if os.path.lexists(self.root / new) or os.path.lexists(self.root / f"{new}.raw"):
                raise ImageExists("image already exists", subject=new)
            restore = path.is_dir() and not path.is_symlink() and clear_immutable(path)
            try:
                fsops.rename_noreplace(path, target)
            except FileExistsError:
                raise ImageExists("image already exists", subject=new) from None
            finally:
                if restore:
                    set_dir_read_only(target if os.path.lexists(target) else path, True)
            fsops.fsync_dir(self.root)
        return target

    def set_read_only(self, name: str, read_only: bool = True) -> None:
        """Mark image NAME read-only (btrfs subvolume flag, else chattr +i on the top
        directory, as machined does) or writable. Refused for hidden images and while in use."""
        if is_hidden(name):
            check_image_name(name)
            raise UsageError(
                "hidden images cannot be made read-only (as machinectl)",
                subject=name,
                hint="rename it to a name without the leading '.' first",
            )
        path = self._writable_entry(name, "read-only")
        with self._locked(path, exclusive=True):
            if not path.is_dir():
                mode = os.stat(path).st_mode
                os.chmod(path, mode & ~0o222 if read_only else mode | 0o200)
                return
            try:
                set_dir_read_only(path, read_only)
            except OSError as exc:
                if exc.errno in UNSUPPORTED:
                    raise StoreError(
                        "the read-only flag is not supported on this filesystem",
                        subject=name,
                        hint="chattr +i needs ext4, xfs, btrfs or tmpfs",
                    ) from exc
                raise StoreError(
                    f"cannot change the read-only flag: {exc.strerror}", subject=name
                ) from exc

    def clean(self, *, hidden: bool = False) -> list[str]:
        """Remove the ``.#`` leftovers of crashed operations whose name nobody holds (and,
        with HIDDEN, every hidden image not in use). Returns the entries removed."""
        if not self.check(create=False):
            return []
        removed: list[str] = []
        for entry in sorted(os.listdir(self.root)):
            owner = temp_owner(entry)
            path = self.root / entry
            if owner is not None:
                try:
                    with self.lock_name(owner):
                        remove_tree(path)
                except ImageBusy:
                    continue
                removed.append(entry)
            elif hidden and is_hidden(entry) and entry != CACHE_NAME and is_image_name(entry):
                if path.is_dir() or path.is_symlink():
                    try:
                        self.remove(entry)
                    except ImageBusy:
                        continue
                    removed.append(entry)
        if removed:
            fsops.fsync_dir(self.root)
        return removed


def _with(image: Image, usage: int, latest: float) -> Image:
    from dataclasses import replace

    return replace(image, usage=usage, modified=latest)
