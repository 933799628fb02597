"""Write dpkg's database for packages whose files are already extracted.

This is the state ``dpkg --unpack`` leaves (Status ``install ok unpacked``, ``info/`` filled),
made without running dpkg: the files were extracted once, in parallel, by our own extractor, so
the second unpack that debootstrap and mmdebstrap pay for (``dpkg --install`` of the essential
set: 6.7 s of mmdebstrap's 15.7 s) never happens. dpkg then only configures.

What dpkg would record and we record the same way:
- ``status``: the .deb's control fields (never the index's Filename/Size/hashes), in dpkg's field
  order, with ``Status: install ok unpacked`` and ``Conffiles:`` lines.
- ``info/PKG.list``, ``.md5sums``, ``.conffiles``, maintainer scripts and the other control
  members; ``PKG:ARCH.*`` for ``Multi-Arch: same`` packages (dpkg(1), "info directory").
- ``triggers/File`` and ``triggers/NAME``: the interests from each ``triggers`` control member,
  so later activations (e.g. libc-bin's ``ldconfig``) reach their packages (deb-triggers(5)).

Conffiles are extracted in place, not as ``.dpkg-new``; their recorded hash is the hash of the
file as shipped, exactly what dpkg records when it configures an untouched new conffile.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rootstrap.errors import UnpackError
from rootstrap.linux.inroot import Resolver

# dpkg's own order of known fields (lib/dpkg/parse.c fieldinfos); others follow as they come.
FIELD_ORDER = (
    "Package", "Essential", "Protected", "Status", "Priority", "Section", "Installed-Size",
    "Origin", "Maintainer", "Bugs", "Architecture", "Multi-Arch", "Source", "Version",
    "Config-Version", "Replaces", "Provides", "Depends", "Pre-Depends", "Recommends",
    "Suggests", "Breaks", "Conflicts", "Enhances", "Conffiles", "Description",
)  # fmt: skip
_RANK = {name.lower(): i for i, name in enumerate(FIELD_ORDER)}

# Control members dpkg copies into info/ (dpkg-deb(1), deb(5)); md5sums and conffiles included.
INFO_MEMBERS = (
    "preinst", "postinst", "prerm", "postrm", "config", "templates", "triggers", "shlibs",
    "symbols", "md5sums", "conffiles", "clilibs", "isinstallable",
)  # fmt: skip
SCRIPTS = frozenset({"preinst", "postinst", "prerm", "postrm", "config", "isinstallable"})


@dataclass(frozen=True)
class Unpacked:
    """One extracted package: its control fields and members, and the paths it shipped."""

    fields: Mapping[str, str]
    members: Mapping[str, bytes]
    paths: list[str]

    @property
    def name(self) -> str:
        return self.fields["Package"]

    @property
    def info_name(self) -> str:
        """The stem of its info/ files: ``libc6:amd64`` for Multi-Arch: same packages."""
        if self.fields.get("Multi-Arch") == "same":
            return f"{self.name}:{self.fields['Architecture']}"
        return self.name

    def conffiles(self) -> list[str]:
        text = self.members.get("conffiles", b"").decode()
        # "remove-on-upgrade /etc/x" lines (dpkg 1.20.1) name conffiles that are not shipped.
        return [line.split()[-1] for line in text.splitlines() if line.strip()]


# O_NONBLOCK: a FIFO where a file was expected must not hang the open.
_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _md5_in_root(root: Path, path: str) -> str | None:
    """The MD5 of the regular file ROOT/PATH, resolved inside ROOT (a symlink, even a planted
    absolute one, never leads out), or None if it is missing or not a regular file."""
    parts = tuple(os.fsencode(p) for p in Path(path.lstrip("/")).parts)
    if not parts:
        return None
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dir_fd = Resolver(root_fd, UnpackError).open_dir(parts[:-1], create=False)
        try:
            fd = os.open(parts[-1], _O_READ, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    except (OSError, UnpackError):
        return None
    finally:
        os.close(root_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _generated_md5sums(root: Path, paths: Iterable[str]) -> bytes:
    """What dpkg writes as info/PKG.md5sums for a package that ships none: every regular file
    it unpacked, conffiles included, in unpack order (src/main/archives.c, since dpkg 1.16.x).
    Cost: reads those files once."""
    lines = []
    for path in paths:
        digest = _md5_in_root(root, path)
        if digest is not None:
            lines.append(f"{digest}  {path.lstrip('/')}\n")
    return "".join(lines).encode()


def status_stanza(unpacked: Unpacked, root: Path, status: str = "install ok unpacked") -> str:
    fields = {k: v for k, v in unpacked.fields.items() if k.lower() != "status"}
    fields["Status"] = status
    conffiles = unpacked.conffiles()
    if conffiles:
        # dpkg's marker for a conffile not shipped (remove-on-upgrade) is "newconffile".
        fields["Conffiles"] = "".join(
            f"\n {c} {_md5_in_root(root, c) or 'newconffile'}" for c in conffiles
        )
    ordered = sorted(fields.items(), key=lambda kv: _RANK.get(kv[0].lower(), len(_RANK)))
    lines = []
    for key, value in ordered:
        lines.append(f"{key}:{value}" if value.startswith("\n") else f"{key}: {value}")
    return "\n".join(lines) + "\n"


def _trigger_interests(unpacked: Unpacked) -> Iterable[tuple[str, str]]:
    """(trigger, "pkg" or "pkg/noawait") for each ``interest*`` line of the triggers member;
    "pkg:arch" for a Multi-Arch: same package, as dpkg writes triggers/File and triggers/NAME."""
    for line in unpacked.members.get("triggers", b"").decode().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2 and words[0] in ("interest", "interest-await", "interest-noawait"):
            suffix = "/noawait" if words[0] == "interest-noawait" else ""
            # dpkg names a Multi-Arch: same package with its architecture here too.
            yield words[1], unpacked.info_name + suffix


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    # O_NOFOLLOW: the database lives in a root whose packages could have planted a symlink.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def write_database(root: Path, arch: str, packages: Iterable[Unpacked]) -> None:
    """Create ``ROOT/var/lib/dpkg`` for PACKAGES, all in state ``unpacked``. Cost: one pass."""
    db = root / "var/lib/dpkg"
    for sub in ("info", "updates", "triggers", "alternatives", "parts"):
        (db / sub).mkdir(parents=True, exist_ok=True)
    status = []
    file_interests: dict[str, list[str]] = {}
    name_interests: dict[str, list[str]] = {}
    for unpacked in packages:
        status.append(status_stanza(unpacked, root))
        stem = db / "info" / unpacked.info_name
        _write(Path(f"{stem}.list"), "".join(p + "\n" for p in unpacked.paths).encode())
        for member in INFO_MEMBERS:
            if member in unpacked.members:
                mode = 0o755 if member in SCRIPTS else 0o644
                _write(Path(f"{stem}.{member}"), unpacked.members[member], mode)
        if "md5sums" not in unpacked.members:  # else `dpkg --verify` cannot check it
            _write(Path(f"{stem}.md5sums"), _generated_md5sums(root, unpacked.paths))
        for trigger, who in _trigger_interests(unpacked):
            target = file_interests if trigger.startswith("/") else name_interests
            target.setdefault(trigger, []).append(who)
    _write(db / "status", "\n".join(status).encode())
    _write(db / "available", b"")
    _write(db / "arch", f"{arch}\n".encode())
    _write(db / "cmethopt", b"apt apt\n")
    if file_interests:
        lines = (f"{path} {who}\n" for path, whos in sorted(file_interests.items()) for who in whos)
        _write(db / "triggers/File", "".join(lines).encode())
    for trigger, whos in sorted(name_interests.items()):
        _write(db / "triggers" / trigger, "".join(f"{w}\n" for w in whos).encode())
    _write(db / "triggers/Unincorp", b"")
