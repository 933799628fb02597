"""The bootstrap, as the ordered list of phases it is (mmdebstrap's shape, our own stages).

    check      the request makes sense: name, destination, architecture, privileges
    release    the signed Release of the suite, verified (and an alias resolved)
    indexes    the Packages indexes, verified and parsed (cached by hash)
    resolve    the package set and its install order
    download   the .debs into the shared cache, verified, in parallel (extract starts at once)
    extract    every .deb's files into the new root, once, on both cores
    prepare    dpkg's database as `dpkg --unpack` would leave it; daemons blocked
    essential  the essential set's preinsts, then dpkg configures it
    install    the rest: preinsts, then dpkg configures it
    cleanup    guards removed, caches and logs dropped; the tree saved for the next same build
    customize  hostname, hosts, resolv.conf, apt sources, machine-id: this machine's own files
    commit     mtimes clamped; the tree published atomically: the store, a directory or a tarball

A build whose configured tree is in the tree cache (treecache.py: same packages, same code)
downloads nothing and restores that tree in extract; prepare, essential and install have
nothing left to do. Maintainer scripts run under the recipe's hostname, not the machine's,
so that one tree serves every name (debootstrap's scripts see the build host's).

Each phase is ``def phase(ctx) -> None`` and may be skipped by name (``--skip``). A LIFO cleanup
stack runs on every exit path, SIGINT and SIGTERM included: a failed bootstrap leaves at most a
hidden ``.#NAME.xxxx`` entry that ``rootstrap clean`` removes.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rootstrap import recipes
from rootstrap.build import rootfiles
from rootstrap.errors import (
    DebError,
    ResourceError,
    RootstrapError,
    UnpackError,
    UsageError,
)
from rootstrap.linux import interrupts
from rootstrap.linux.arch import host_arch, qemu_name
from rootstrap.rules import check_machine_name

if TYPE_CHECKING:
    from rootstrap.archive import Archive
    from rootstrap.archive.http import Http
    from rootstrap.archive.packages import Package
    from rootstrap.build.configure import Step
    from rootstrap.build.download import Background
    from rootstrap.build.dpkgdb import Unpacked
    from rootstrap.build.treecache import Entry as TreeEntry
    from rootstrap.formats.deb import Control
    from rootstrap.linux.locks import ImageLock
    from rootstrap.resolve import Plan
    from rootstrap.store import NewImage

log = logging.getLogger("rootstrap.build.bootstrap")

# Directories merged into /usr (debootstrap's list; the per-arch lib dirs only where they exist).
MERGED_DIRS = ("bin", "sbin", "lib")
MERGED_ARCH_DIRS = {"amd64": ("lib32", "lib64", "libx32"), "i386": ("libx32",), "arm64": ()}


@dataclass(frozen=True)
class Options:
    """What the user asked for."""

    suite: str
    name: str | None
    variant: str = "important"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    pockets: tuple[str, ...] = ()
    arch: str | None = None
    keyrings: tuple[Path, ...] = ()
    target: Path | None = None
    output: Path | None = None
    extract_only: bool = False
    hostname: str | None = None
    recommends: bool = False
    boot_ready: bool = False
    skip: frozenset[str] = frozenset()
    insecure: bool = False
    # Snapshot archives (snapshot.debian.org style): old keys, a passed Valid-Until.
    allow_expired_keys: bool = False
    ignore_valid_until: bool = False
    keep_failed: bool = False
    tree_cache: bool = True


@dataclass
class Context:
    """The one mutable object of a run: what each phase produced for the next."""

    options: Options
    store: Path
    cache_dir: Path
    arch: str = ""
    recipe: recipes.Recipe | None = None
    mirrors: list[str] = field(default_factory=list)
    http: Http | None = None
    archive: Archive | None = None
    plan: Plan | None = None
    downloads: Background | None = None
    debs: dict[str, Path] = field(default_factory=dict)
    unpacked: list[Unpacked] = field(default_factory=list)
    root: Path | None = None
    new_image: NewImage | None = None
    guards: list[tuple[Path, Path | None]] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    result: Path | None = None
    tree_key: str | None = None  # set when this build may use and fill the tree cache
    tree: TreeEntry | None = None  # the cached tree extract restores
    restored: bool = False

    def on_exit(self, fn: Callable[[], None]) -> None:
        """Push FN on the LIFO cleanup stack."""
        self.cleanups.append(fn)

    def need_root(self) -> Path:
        assert self.root is not None, "the extract phase creates the root"
        return self.root


# --------------------------------------------------------------------------- the phases


def check(ctx: Context) -> None:
    """Validate the request before touching the network or the disk."""
    opts = ctx.options
    if os.geteuid() != 0:
        raise UsageError("bootstrap needs root", hint="run it as root (sudo rootstrap ...)")
    ctx.arch = opts.arch or host_arch()
    if ctx.arch != host_arch() and not _binfmt_registered(ctx.arch):
        raise UsageError(
            f"cannot run {ctx.arch} programs on this {host_arch()} host",
            subject=ctx.arch,
            hint="install qemu-user-static and binfmt-support, or use --extract-only",
        )
    ctx.recipe = recipes.load(opts.suite)
    if opts.output is None and opts.target is None:
        from rootstrap.store import Store

        if not opts.name:
            raise UsageError("an image name is needed", hint="rootstrap bootstrap SUITE NAME")
        # Validates the name and fails on an existing one now, before any download; the
        # name lock it takes is dropped here and taken again by the extract phase.
        Store(ctx.store).create(opts.name, hidden=False).discard()
    elif opts.target is not None and opts.target.exists() and any(opts.target.iterdir()):
        raise UsageError(
            "target directory is not empty", subject=str(opts.target), hint="choose a new path"
        )
    elif opts.output is not None:
        from rootstrap.build.tarball import suffix_of

        suffix_of(opts.output)  # an unknown suffix fails now, not after the whole build
        if os.path.lexists(opts.output):
            raise UsageError("file already exists", subject=str(opts.output), hint="remove it")
        if not opts.output.absolute().parent.is_dir():
            raise UsageError("no such directory", subject=str(opts.output.absolute().parent))
    # /etc/hostname and /etc/hosts get it (--hostname, else NAME): a hostname, as nspawn's
    # Hostname= takes it (after the image name's own check, whose message is the clearer).
    check_machine_name(_hostname(ctx), "hostname")
    ctx.mirrors = recipes.choose_mirrors(ctx.recipe, ctx.arch, list(opts.mirrors))


def _binfmt_registered(arch: str) -> bool:
    return Path(f"/proc/sys/fs/binfmt_misc/qemu-{qemu_name(arch)}").exists()


def release(ctx: Context) -> None:
    """Fetch and verify the Release; load the indexes it vouches for (cached by SHA256)."""
    from rootstrap.archive import ReleasePolicy, open_archive
    from rootstrap.archive.http import Http

    assert ctx.recipe is not None
    ctx.http = Http()
    ctx.on_exit(ctx.http.close)
    opts = ctx.options
    ctx.archive = open_archive(
        ctx.recipe,
        mirrors=ctx.mirrors,
        arch=ctx.arch,
        http=ctx.http,
        cache_dir=ctx.cache_dir,
        components=list(opts.components) or None,
        pockets=opts.pockets,
        keyrings=list(opts.keyrings) or None,
        policy=ReleasePolicy(
            insecure=opts.insecure,
            allow_expired_keys=opts.allow_expired_keys,
            ignore_valid_until=opts.ignore_valid_until,
        ),
    )
    ctx.recipe = ctx.archive.recipe
    log.info("%s %s from %s", ctx.recipe.name, ctx.archive.release.date, ctx.archive.mirror)


def indexes(ctx: Context) -> None:
    """The indexes were loaded with the Release (open_archive); report their size."""
    assert ctx.archive is not None
    log.info("%d packages in the indexes", len(ctx.archive.index))


def resolve(ctx: Context) -> None:
    from rootstrap.resolve import resolve as solve

    assert ctx.archive is not None and ctx.recipe is not None
    opts = ctx.options
    ctx.plan = solve(
        ctx.archive.index,
        ctx.recipe,
        variant=opts.variant,
        include=opts.include + (ctx.recipe.boot_packages if opts.boot_ready else ()),
        exclude=opts.exclude,
        recommends=opts.recommends,
        arch=ctx.arch,
    )
    log.info("%d packages to install", len(ctx.plan.packages))


def _planned(ctx: Context) -> list[Package]:
    assert ctx.plan is not None
    return [entry.package for entry in ctx.plan.packages]


def download(ctx: Context) -> None:
    """Start the downloads; extract consumes each .deb as it is verified (they overlap).
    Nothing to download when the configured tree is cached."""
    ctx.tree_key = _tree_key(ctx)
    if ctx.tree_key is not None:
        from rootstrap.build.treecache import TreeCache

        ctx.tree = TreeCache(ctx.cache_dir).find(ctx.tree_key)
        if ctx.tree is not None:
            log.info("configured tree cached: %s", ctx.tree.path.name)
            return
    _start_downloads(ctx)


# The phases whose work the tree cache stands for: skipping one makes a tree nobody else wants.
CACHED_PHASES = frozenset({"extract", "prepare", "essential", "install", "cleanup"})


def _tree_key(ctx: Context) -> str | None:
    from rootstrap.build.treecache import tree_key

    opts = ctx.options
    if not opts.tree_cache or opts.extract_only or opts.skip & CACHED_PHASES:
        return None
    assert ctx.plan is not None and ctx.recipe is not None
    return tree_key(
        ((p.name, p.version, p.architecture, p.get("SHA256")) for p in _planned(ctx)),
        ctx.plan.essential,
        arch=ctx.arch,
        merged_usr=ctx.recipe.merged_usr,
        hostname=ctx.recipe.hostname,
    )


def _start_downloads(ctx: Context) -> None:
    from rootstrap.build.download import Background, DebCache

    assert ctx.http is not None and ctx.archive is not None
    mirrors = [ctx.archive.mirror, *(m for m in ctx.mirrors if m != ctx.archive.mirror)]
    ctx.downloads = Background(ctx.http, _planned(ctx), mirrors, DebCache(ctx.cache_dir))
    ctx.on_exit(ctx.downloads.stop)  # a no-op once they are all done


def _new_root(ctx: Context) -> Path:
    """The directory the tree is built in: hidden in the store, or beside --target/--output."""
    opts = ctx.options
    if opts.target is not None:
        target = opts.target
        existed = target.exists()
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        if not any(target.iterdir()):  # never empty a directory that held something before
            ctx.on_exit(lambda: _take_back(ctx, target, existed))
        return target
    if opts.output is not None:
        return _output_root(ctx, opts.output)
    from rootstrap.store import Store

    assert opts.name is not None
    new = Store(ctx.store).create(opts.name, hidden=False)
    ctx.new_image = new
    # Unpublished at exit (an error, a signal): the hidden tree goes, the name is released.
    ctx.on_exit(lambda: new.__exit__(None, None, None))
    return new.make_dir()


def _take_back(ctx: Context, target: Path, existed: bool) -> None:
    """Unless the bootstrap finished, empty --target (it was empty or missing before) and
    remove it if we made it: a failed run leaves nothing behind. The directory itself stays
    if it existed: it may be a mount point."""
    from rootstrap.linux.inroot import remove_tree

    if ctx.result is not None:
        return
    for entry in os.listdir(target):
        remove_tree(target / entry)
    if not existed:
        target.rmdir()


def _output_root(ctx: Context, output: Path) -> Path:
    """The hidden ``.#FILE.xxxx`` beside --output FILE that the tree is built in, its lock
    (keyed by the directory's inode, not a flock on the directory itself, which the runner
    takes while configuring) held for the whole build. Siblings of the same FILE whose lock
    nobody holds were left by a killed build (SIGKILL runs no cleanup, HAZARDS 114): removed
    first, so the same command run again leaves nothing behind. The store's ``clean`` cannot
    know this directory."""
    import glob

    from rootstrap.errors import ImageBusy
    from rootstrap.linux.inroot import remove_tree

    parent = output.resolve().parent
    prefix = f".#{output.name}."
    for stale in sorted(parent.glob(glob.escape(prefix) + "*")):
        if not stale.is_dir() or stale.is_symlink():
            continue
        try:
            with _build_lock(stale):
                remove_tree(stale)
            log.info("removed %s, left by a killed build of %s", stale, output)
        except ImageBusy:
            continue  # a build of the same FILE in progress
    root = Path(_mkdtemp(parent, prefix))
    held = _build_lock(root)
    ctx.on_exit(held.release)
    return root


def _build_lock(path: Path) -> ImageLock:
    from rootstrap.linux.locks import lock_name

    st = path.lstat()
    return lock_name(f"build-{st.st_dev}:{st.st_ino}")


def _mkdtemp(parent: Path, prefix: str) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=prefix, dir=parent)


def extract(ctx: Context) -> None:
    """Create the root (merged-/usr links first, so files follow them) and extract every .deb."""
    from rootstrap.build.dpkgdb import Unpacked
    from rootstrap.formats.deb import open_deb
    from rootstrap.linux.inroot import remove_tree
    from rootstrap.unpack.extract import Policy
    from rootstrap.unpack.pool import extract_many

    assert ctx.recipe is not None and ctx.plan is not None
    root = _new_root(ctx)
    ctx.root = root
    if ctx.options.output is not None:
        ctx.on_exit(lambda: remove_tree(root))
    root.chmod(0o755)
    packages = _planned(ctx)
    # A cap for decompression bombs (HAZARDS 58): what the index promises, with room to spare.
    budget = sum(p.installed_size for p in packages) * 2 + (64 << 20)
    # A cached tree has its links already (minus those dpkg's postinst removes unused).
    if ctx.tree is not None and _restore(ctx, root, budget):
        return
    if ctx.recipe.merged_usr:
        for name in (*MERGED_DIRS, *MERGED_ARCH_DIRS.get(ctx.arch, ())):
            (root / "usr" / name).mkdir(parents=True, exist_ok=True)
            os.symlink(f"usr/{name}", root / name)
    if ctx.downloads is None:
        raise UsageError("the extract phase needs the download phase", hint="do not skip it")
    from rootstrap.build.download import DebCache

    # The cache's shared lock: a concurrent `cache clean` cannot delete a .deb mid-unpack.
    controls: dict[Path, Control] = {}

    def read_controls(paths: Iterator[Path]) -> Iterator[Path]:
        # Each control member is read as its .deb is handed to the extractor, while the
        # workers decompress data.tar: off the critical path, not in a pass after it.
        for path in paths:
            controls[path] = open_deb(path).control()
            yield path

    with DebCache(ctx.cache_dir).using(), interrupts.deferred_signals():
        debs = interrupts.interruptible(read_controls(ctx.downloads.in_order(packages)))
        lists = extract_many(debs, root, Policy(max_bytes=budget))
    ctx.debs = ctx.downloads.result()
    for path in (ctx.debs[p.name] for p in packages):
        control = controls[path]
        ctx.unpacked.append(Unpacked(control.fields, control.members, lists[path]))


def _restore(ctx: Context, root: Path, budget: int) -> bool:
    """Restore the cached tree into ROOT; on a damaged entry, drop it, empty ROOT, start the
    downloads and return False (the build goes on the slow way)."""
    from rootstrap.build.treecache import DamagedTree, TreeCache, restore
    from rootstrap.linux.inroot import remove_tree

    assert ctx.tree is not None and ctx.tree_key is not None
    cache = TreeCache(ctx.cache_dir)
    try:
        with interrupts.deferred_signals():
            restore(ctx.tree, root, budget)
    except DamagedTree as exc:
        log.warning("%s; building it again", exc)
        cache.drop(ctx.tree_key)
        for entry in os.listdir(root):
            remove_tree(root / entry)
        ctx.tree = None
        _start_downloads(ctx)
        return False
    cache.touch(ctx.tree)
    ctx.restored = True
    return True


def prepare(ctx: Context) -> None:
    """dpkg's database, the files dpkg expects, and the guards that keep daemons down."""
    from rootstrap.build import configure
    from rootstrap.build.dpkgdb import write_database

    if ctx.restored:
        return
    root = ctx.need_root()
    write_database(root, ctx.arch, ctx.unpacked)
    for sub, mode in (("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700), ("run", 0o755)):
        rootfiles.make_dir(root, sub, mode)
    rootfiles.write_file(root, "etc/fstab", "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n")
    rootfiles.write_file(root, "etc/hostname", f"{_build_hostname(ctx)}\n")
    ctx.guards = configure.install_guards(root)
    ctx.on_exit(lambda: configure.restore_guards(ctx.guards))


def _hostname(ctx: Context) -> str:
    assert ctx.recipe is not None
    return ctx.options.hostname or ctx.options.name or ctx.recipe.hostname


def _build_hostname(ctx: Context) -> str:
    """The hostname maintainer scripts see: the recipe's, the same for every machine."""
    assert ctx.recipe is not None
    return ctx.recipe.hostname


def _steps(ctx: Context, essential: bool) -> list[Step]:
    from rootstrap.build.configure import Step

    assert ctx.plan is not None
    by_name = {u.name: u for u in ctx.unpacked}
    steps = []
    for entry in ctx.plan.packages:
        unpacked = by_name[entry.package.name]
        steps.append(
            Step(
                name=unpacked.name,
                info_name=unpacked.info_name,
                arch=unpacked.fields["Architecture"],
                essential=entry.package.name in ctx.plan.essential,
                pre_depends=tuple(_names(unpacked.fields.get("Pre-Depends", ""))),
            )
        )
    return [s for s in steps if s.essential == essential]


def _names(relation: str) -> Iterator[str]:
    for group in relation.split(","):
        for alternative in group.split("|"):
            name = alternative.strip().split(" ", 1)[0].split("(", 1)[0].split(":", 1)[0]
            if name:
                yield name


def essential(ctx: Context) -> None:
    from rootstrap.build.configure import run_configure

    steps = [] if ctx.restored else _steps(ctx, essential=True)
    if steps:
        run_configure(ctx.need_root(), steps, _build_hostname(ctx))


def install(ctx: Context) -> None:
    from rootstrap.build.configure import run_configure

    steps = [] if ctx.restored else _steps(ctx, essential=False)
    if steps:
        run_configure(ctx.need_root(), steps, _build_hostname(ctx))


def customize(ctx: Context) -> None:
    """The files a new machine needs, written in-root (never through planted symlinks)."""
    assert ctx.recipe is not None and ctx.archive is not None
    root = ctx.need_root()
    hostname = _hostname(ctx)
    rootfiles.write_file(root, "etc/hostname", f"{hostname}\n")
    rootfiles.write_file(
        root,
        "etc/hosts",
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n\n"
        "::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\n"
        "ff02::2\t\tip6-allrouters\n",
    )
    # An empty machine-id: systemd (or our runner's container_uuid) fills it on first boot.
    rootfiles.write_file(root, "etc/machine-id", "")
    # resolv.conf: the runner provides one at run time; the image keeps none of the host's.
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    rootfiles.write_file(root, "etc/resolv.conf", "")
    if (root / "usr/bin/apt-get").exists() or (root / "usr/bin/apt").exists():
        _write_sources(ctx, root)


def _write_sources(ctx: Context, root: Path) -> None:
    assert ctx.recipe is not None and ctx.archive is not None
    recipe = ctx.recipe
    keyring = _image_keyring(ctx, root)
    components = " ".join(ctx.options.components or recipe.components)
    suites = " ".join((recipe.suite, *ctx.options.pockets))
    text = f"Types: deb\nURIs: {ctx.archive.mirror}\nSuites: {suites}\nComponents: {components}\n"
    if keyring is not None:
        text += f"Signed-By: {keyring}\n"
    rootfiles.make_dir(root, "etc/apt/sources.list.d")
    rootfiles.write_file(root, f"etc/apt/sources.list.d/{recipe.distribution}.sources", text)
    sources_list = root / "etc/apt/sources.list"
    if sources_list.is_symlink():
        sources_list.unlink()


def _image_keyring(ctx: Context, root: Path) -> str | None:
    """The keyring path apt in the image trusts for this mirror: the recipe's own, when a
    package of the image ships it (debian-archive-keyring) and no --keyring was given, else a
    copy of the keyring the bootstrap verified with, placed in /etc/apt/keyrings (apt's
    directory for local keys)."""
    assert ctx.recipe is not None
    # A --keyring given is what the mirror is signed with (a local or derived archive, say):
    # the distribution's keyring in the image would not verify it (NO_PUBKEY in apt update).
    for keyring in () if ctx.options.keyrings else ctx.recipe.keyrings:
        if (root / str(keyring).lstrip("/")).is_file():
            return str(keyring)
    from rootstrap.archive.keyrings import find_keyring

    try:
        used = find_keyring(ctx.recipe, ctx.options.keyrings, cache_dir=ctx.cache_dir)
    except RootstrapError:
        return None
    if not used:
        return None
    target = f"/etc/apt/keyrings/{ctx.recipe.distribution}-archive-keyring.gpg"
    rootfiles.make_dir(root, "etc/apt/keyrings")
    rootfiles.write_bytes(root, target, b"".join(k.read_bytes() for k in used))
    return target


def cleanup(ctx: Context) -> None:
    """Restore the guards, drop caches and logs; save the tree for the next same build."""
    from rootstrap.build import configure

    root = ctx.need_root()
    configure.restore_guards(ctx.guards)
    ctx.guards = []
    for pattern in (
        "var/cache/apt/*.bin", "var/cache/debconf/*-old", "var/lib/dpkg/*-old",
        "var/log/dpkg.log", "var/log/alternatives.log", "var/cache/ldconfig/aux-cache",
    ):  # fmt: skip
        rootfiles.remove_in_root(root, pattern)
    if ctx.tree_key is not None and not ctx.restored:
        from rootstrap.build.treecache import TreeCache

        with interrupts.deferred_signals():
            TreeCache(ctx.cache_dir).offer(root, ctx.tree_key)


def commit(ctx: Context) -> None:
    """Clamp mtimes for reproducible output; publish the finished tree: rename into the
    store, or write the tarball."""
    root = ctx.need_root()
    opts = ctx.options
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        rootfiles.clamp_mtimes(root, int(epoch))
    if opts.output is not None:
        from rootstrap.build.tarball import write_tar

        write_tar(root, opts.output)
        ctx.result = opts.output
    elif opts.target is not None:
        ctx.result = opts.target
    else:
        assert ctx.new_image is not None and ctx.recipe is not None
        origin = {"recipe": ctx.recipe.name, "variant": opts.variant}
        if ctx.archive is not None:
            origin["mirror"] = ctx.archive.mirror
            origin["date"] = str(ctx.archive.release.date)
        ctx.result = ctx.new_image.publish(origin=origin)


# --------------------------------------------------------------------------- the story

Phase = Callable[[Context], None]

PHASES: tuple[tuple[str, Phase], ...] = (
    ("check", check),
    ("release", release),
    ("indexes", indexes),
    ("resolve", resolve),
    ("download", download),
    ("extract", extract),
    ("prepare", prepare),
    ("essential", essential),
    ("install", install),
    ("cleanup", cleanup),
    ("customize", customize),
    ("commit", commit),
)
PHASE_NAMES = tuple(name for name, _ in PHASES)
# --extract-only stops after the first stage (and still commits the tree).
FIRST_STAGE = frozenset({"check", "release", "indexes", "resolve", "download", "extract", "commit"})


def run(
    options: Options,
    *,
    store: Path,
    cache_dir: Path,
    report: Callable[[str, float], None] | None = None,
) -> Context:
    """Run every phase not skipped, in order; return the context (``ctx.result`` is the image)."""
    unknown = sorted(options.skip - set(PHASE_NAMES))
    if unknown:
        raise UsageError(f"no phase named {unknown[0]!r}", hint=f"phases: {', '.join(PHASE_NAMES)}")
    ctx = Context(options=options, store=store, cache_dir=cache_dir)
    with interrupts.signals_raise():
        try:
            for name, phase in selected_phases(options):
                started = time.monotonic()
                try:
                    phase(ctx)
                except OSError as exc:
                    raise _os_error(exc, name) from exc
                except (UnpackError, DebError) as exc:
                    # The extractor's ENOSPC, as its cause (or, from older workers, its text):
                    # name it as the disk-full it is.
                    cause = exc.__cause__
                    full = isinstance(cause, OSError) and cause.errno == errno.ENOSPC
                    if not (full or os.strerror(errno.ENOSPC) in exc.message) or ctx.root is None:
                        raise
                    hidden = ctx.root.name.startswith(".#")  # name the store, not the temp tree
                    where = ctx.root.parent if hidden else ctx.root
                    raise _full(where, f"while unpacking {exc.subject}") from exc
                ctx.timings[name] = time.monotonic() - started
                if report is not None:
                    report(name, ctx.timings[name])
        finally:
            errors = []
            for fn in reversed(ctx.cleanups):
                try:
                    fn()
                except (OSError, RootstrapError) as exc:  # keep unwinding; report the first
                    errors.append(exc)
            if errors:
                log.warning("cleanup: %s", errors[0])
    return ctx


def selected_phases(options: Options) -> Sequence[tuple[str, Phase]]:
    chosen = [(n, p) for n, p in PHASES if n not in options.skip]
    if options.extract_only:
        chosen = [(n, p) for n, p in chosen if n in FIRST_STAGE]
    return chosen


def _os_error(exc: OSError, phase: str) -> RootstrapError:
    """Map a filesystem error to a clean one; disk-full gets its own words (HAZARDS 107-110)."""
    where = exc.filename or phase
    if exc.errno == errno.ENOSPC:
        return _full(Path(where) if exc.filename else None, f"during {phase}", str(where))
    if exc.errno == errno.EDQUOT:
        return ResourceError("quota exceeded", subject=str(where))
    return RootstrapError(f"{phase}: {exc.strerror}", subject=str(where))


def _full(path: Path | None, doing: str, subject: str | None = None) -> ResourceError:
    """ENOSPC as "disk full", or "no free inodes" when inodes are the scarcer of PATH's
    filesystem's two resources (HAZARDS 110): the same errno, a different remedy. Compared as
    fractions because the extractor frees its staging files before it reports the error."""
    st = None
    while path is not None and st is None:
        try:
            st = os.statvfs(path)
        except OSError:
            path = path.parent if path != path.parent else None
    subject = subject or str(path)
    free_blocks = st.f_bavail / st.f_blocks if st is not None and st.f_blocks else 1.0
    if st is not None and st.f_files and st.f_favail / st.f_files < free_blocks:
        return ResourceError(
            f"no free inodes {doing}", subject=subject, hint="remove files, or use a filesystem "
            "with more inodes (mkfs.ext4 -N, tmpfs nr_inodes=)",
        )  # fmt: skip
    return ResourceError(f"disk full {doing}", subject=subject, hint="free some space")
