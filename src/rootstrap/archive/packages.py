"""The package model the resolver, fetcher and `info` share.

A :class:`Package` is one stanza of a Packages index, validated: name, version and architecture
are checked, and ``Filename``, ``Size`` and ``SHA256`` are present for a usable package.
A :class:`PackageIndex` answers the few questions a resolver asks of tens of thousands of stanzas:
all candidates of a name, all providers of a virtual name, the names of a priority, the Essential
set. How it stores them (a parsed-index cache, lazily parsed stanzas) is the index module's
business; :meth:`PackageIndex.from_stanzas` builds one in memory for tests and small archives.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from rootstrap.archive.version import sort_key
from rootstrap.errors import ArchiveIndexError

# Debian Policy 5.6.1 (package names) and 5.6.12 (versions).
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
VERSION_RE = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~:-]*$")
ARCH_RE = re.compile(r"^[a-z0-9-]+$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Package:
    """One binary package as an index describes it. ``fields`` keeps the whole stanza."""

    name: str
    version: str
    architecture: str
    fields: Mapping[str, str] = field(repr=False, compare=False, hash=False)
    origin: str = field(default="", compare=False, hash=False)  # e.g. "bookworm/main"

    @classmethod
    def from_fields(cls, fields: Mapping[str, str], origin: str = "") -> Package:
        """Validate one stanza (field names as the archive spells them: ``Package``, ...)."""
        name = fields.get("Package", "")
        version = fields.get("Version", "")
        arch = fields.get("Architecture", "")
        where = f"{origin}: " if origin else ""
        if not NAME_RE.match(name):
            raise ArchiveIndexError(f"{where}invalid package name {name!r}", subject=name or origin)
        if not VERSION_RE.match(version):
            raise ArchiveIndexError(f"invalid version {version!r}", subject=f"{where}{name}")
        if not ARCH_RE.match(arch):
            raise ArchiveIndexError(f"invalid architecture {arch!r}", subject=f"{where}{name}")
        return cls(name, version, arch, fields, origin)

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.version, self.architecture)

    @property
    def filename(self) -> str:
        return self.get("Filename")

    @property
    def size(self) -> int:
        return int(self.get("Size", "0") or 0)

    @property
    def installed_size(self) -> int:
        """Installed-Size in bytes (the index gives KiB)."""
        return int(self.get("Installed-Size", "0") or 0) * 1024

    @property
    def sha256(self) -> str:
        return self.get("SHA256")

    @property
    def essential(self) -> bool:
        return self.get("Essential") == "yes"

    @property
    def priority(self) -> str:
        return self.get("Priority", "optional")

    @property
    def multi_arch(self) -> str:
        return self.get("Multi-Arch", "no")

    @property
    def deb_name(self) -> str:
        """The only name a cache may use for the file: never taken from ``Filename``."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"

    def usable(self) -> str | None:
        """Why this package cannot be downloaded safely, or None when it can."""
        filename = self.filename
        if not filename:
            return "no Filename"
        if filename.startswith("/") or ".." in filename.split("/") or "://" in filename:
            return f"unsafe Filename {filename!r}"
        if not SHA256_RE.match(self.sha256):
            return "no strong hash (SHA256 missing)"
        if not self.get("Size", "").isdigit():
            return "no Size"
        return None


class PackageIndex:
    """Every candidate of every name, from one or more indexes (components, suites)."""

    def __init__(self, arch: str) -> None:
        self.arch = arch
        self._by_name: dict[str, list[Package]] = {}
        self._provides: dict[str, list[tuple[Package, str | None]]] | None = None
        # Names by the best candidate's Priority ("essential" for Essential: yes), one pass.
        self._seeds: dict[str, list[str]] | None = None

    @classmethod
    def from_stanzas(
        cls, stanzas: Iterable[Mapping[str, str]], arch: str, origin: str = ""
    ) -> PackageIndex:
        index = cls(arch)
        for stanza in stanzas:
            index.add(Package.from_fields(stanza, origin))
        return index

    def add(self, package: Package) -> None:
        """Add a package; stanzas for another architecture (not ``all``) are ignored."""
        if package.architecture not in (self.arch, "all"):
            return
        self._by_name.setdefault(package.name, []).append(package)
        self._provides = None
        self._seeds = None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)

    def names(self) -> Iterator[str]:
        return iter(self._by_name)

    def candidates(self, name: str) -> list[Package]:
        """All versions of NAME, highest first (dpkg ordering); duplicates dropped."""
        found = self._by_name.get(name, [])
        if len(found) > 1:
            unique = {p.key: p for p in reversed(found)}
            found[:] = sorted(unique.values(), key=lambda p: sort_key(p.version), reverse=True)
        return found

    def best(self, name: str) -> Package | None:
        found = self.candidates(name)
        return found[0] if found else None

    def providers(self, name: str) -> list[tuple[Package, str | None]]:
        """Packages whose Provides names NAME, with the provided version (or None)."""
        if self._provides is None:
            self._provides = {}
            for packages in self._by_name.values():
                for package in packages:
                    for virtual, version in parse_provides(package.get("Provides")):
                        self._provides.setdefault(virtual, []).append((package, version))
        return self._provides.get(name, [])

    def _seed_lists(self) -> dict[str, list[str]]:
        if self._seeds is None:
            seeds: dict[str, list[str]] = {}
            for name in sorted(self._by_name):
                best = self.best(name)
                if best is not None:
                    seeds.setdefault(best.priority, []).append(name)
                    if best.essential:
                        seeds.setdefault("essential", []).append(name)
            self._seeds = seeds
        return self._seeds

    def with_priority(self, *priorities: str) -> list[str]:
        """Names whose best candidate has one of PRIORITIES (sorted; one cached pass)."""
        lists = self._seed_lists()
        return sorted(n for p in set(priorities) for n in lists.get(p, []))

    def essential_names(self) -> list[str]:
        return list(self._seed_lists().get("essential", []))


_PROVIDES_RE = re.compile(r"^\s*([^\s(]+)\s*(?:\(\s*=\s*([^\s)]+)\s*\))?\s*$")


def parse_provides(value: str) -> list[tuple[str, str | None]]:
    """``Provides: a, b (= 1.0)`` as ``[("a", None), ("b", "1.0")]`` (arch qualifiers dropped)."""
    found = []
    for item in value.split(","):
        if not item.strip():
            continue
        match = _PROVIDES_RE.match(item)
        if match:
            found.append((match.group(1).split(":", 1)[0], match.group(2)))
    return found
