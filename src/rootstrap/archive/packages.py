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

from rootstrap.errors import ArchiveIndexError
from rootstrap.formats.version import sort_key

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


class PackageSource:
    """Where a :class:`PackageIndex` finds stanzas: one parsed index, or packages in memory.

    ARCHS is the tuple of architectures the index accepts (its own and ``all``)."""

    def names(self, archs: tuple[str, ...]) -> Iterable[str]:
        """Names with at least one stanza for one of ARCHS."""
        raise NotImplementedError

    def __contains__(self, name: object) -> bool:
        raise NotImplementedError

    def packages(self, name: str, archs: tuple[str, ...]) -> list[Package]:
        raise NotImplementedError

    def providers(self, virtual: str, archs: tuple[str, ...]) -> list[tuple[Package, str | None]]:
        raise NotImplementedError

    def priority_names(self, priorities: Iterable[str]) -> set[str]:
        """Names with at least one stanza of one of PRIORITIES (a superset of the answer)."""
        raise NotImplementedError

    def essential_candidates(self) -> set[str]:
        """Names with at least one stanza marked Essential (a superset of the answer)."""
        raise NotImplementedError


class _MemorySource(PackageSource):
    """Packages added one by one (tests, small archives)."""

    def __init__(self) -> None:
        self._by_name: dict[str, list[Package]] = {}
        self._provides: dict[str, list[tuple[Package, str | None]]] | None = None

    def add(self, package: Package) -> None:
        self._by_name.setdefault(package.name, []).append(package)
        self._provides = None

    def names(self, archs: tuple[str, ...]) -> Iterable[str]:
        return [n for n, ps in self._by_name.items() if any(p.architecture in archs for p in ps)]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def packages(self, name: str, archs: tuple[str, ...]) -> list[Package]:
        return [p for p in self._by_name.get(name, ()) if p.architecture in archs]

    def providers(self, virtual: str, archs: tuple[str, ...]) -> list[tuple[Package, str | None]]:
        if self._provides is None:
            self._provides = {}
            for packages in self._by_name.values():
                for package in packages:
                    for name, version in parse_provides(package.get("Provides")):
                        self._provides.setdefault(name, []).append((package, version))
        return [(p, v) for p, v in self._provides.get(virtual, ()) if p.architecture in archs]

    def priority_names(self, priorities: Iterable[str]) -> set[str]:
        wanted = set(priorities)
        return {n for n, ps in self._by_name.items() if any(p.priority in wanted for p in ps)}

    def essential_candidates(self) -> set[str]:
        return {n for n, ps in self._by_name.items() if any(p.essential for p in ps)}


class PackageIndex:
    """Every candidate of every name, from one or more indexes (components, suites).

    Lookups are lazy: a parsed index (``rootstrap.archive.index``) turns a stanza into a
    :class:`Package` only when a name is asked for, so a lookup costs ~20 µs per stanza
    the first time, then a dict hit. Stanzas for another architecture than ARCH or ``all``
    are ignored (HAZARDS 32); for a name in several indexes the highest version comes first
    (HAZARDS 21).
    """

    def __init__(self, arch: str) -> None:
        self.arch = arch
        self._archs = (arch, "all")
        self._sources: list[PackageSource] = []
        self._memory: _MemorySource | None = None
        self._candidates: dict[str, list[Package]] = {}
        self._names: set[str] | None = None

    @classmethod
    def from_stanzas(
        cls, stanzas: Iterable[Mapping[str, str]], arch: str, origin: str = ""
    ) -> PackageIndex:
        index = cls(arch)
        for stanza in stanzas:
            index.add(Package.from_fields(stanza, origin))
        return index

    @classmethod
    def from_sources(cls, sources: Iterable[PackageSource], arch: str) -> PackageIndex:
        """An index over parsed indexes (earlier sources win ties of name, version, arch)."""
        index = cls(arch)
        for source in sources:
            index.add_source(source)
        return index

    def add_source(self, source: PackageSource) -> None:
        self._sources.append(source)
        self._candidates.clear()
        self._names = None

    def add(self, package: Package) -> None:
        """Add a package; stanzas for another architecture (not ``all``) are ignored."""
        if package.architecture not in self._archs:
            return
        if self._memory is None:
            self._memory = _MemorySource()
            self._sources.append(self._memory)
        self._memory.add(package)
        self._candidates.pop(package.name, None)
        self._names = None

    @property
    def sources(self) -> tuple[PackageSource, ...]:
        return tuple(self._sources)

    def _all_names(self) -> set[str]:
        if self._names is None:
            names: set[str] = set()
            for source in self._sources:
                names.update(source.names(self._archs))
            self._names = names
        return self._names

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.candidates(name))

    def __len__(self) -> int:
        return len(self._all_names())

    def names(self) -> Iterator[str]:
        return iter(self._all_names())

    def candidates(self, name: str) -> list[Package]:
        """All versions of NAME, highest first (dpkg ordering); duplicates dropped."""
        found = self._candidates.get(name)
        if found is None:
            unique: dict[tuple[str, str, str], Package] = {}
            for source in self._sources:
                if name in source:
                    for package in source.packages(name, self._archs):
                        unique.setdefault(package.key, package)
            found = sorted(unique.values(), key=lambda p: sort_key(p.version), reverse=True)
            self._candidates[name] = found
        return found

    def best(self, name: str) -> Package | None:
        found = self.candidates(name)
        return found[0] if found else None

    def providers(self, name: str) -> list[tuple[Package, str | None]]:
        """Packages whose Provides names NAME, with the provided version (or None)."""
        found: list[tuple[Package, str | None]] = []
        seen: set[tuple[tuple[str, str, str], str | None]] = set()
        for source in self._sources:
            for package, version in source.providers(name, self._archs):
                if (package.key, version) not in seen:
                    seen.add((package.key, version))
                    found.append((package, version))
        return found

    def with_priority(self, *priorities: str) -> list[str]:
        names: set[str] = set()
        for source in self._sources:
            names |= source.priority_names(priorities)
        return sorted(n for n in names if (b := self.best(n)) and b.priority in priorities)

    def essential_names(self) -> list[str]:
        names: set[str] = set()
        for source in self._sources:
            names |= source.essential_candidates()
        return sorted(n for n in names if (b := self.best(n)) and b.essential)


_PROVIDES_RE = re.compile(r"^\s*([^\s(]+)\s*(?:\(\s*=\s*([^\s)]+)\s*\))?\s*$")


def parse_provides(value: str) -> list[tuple[str, str | None]]:
    """``Provides: a, b (= 1.0)`` as ``[("a", None), ("b", "1.0")]`` (arch qualifiers dropped)."""
    found: list[tuple[str, str | None]] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        if "(" not in item and " " not in item and "\t" not in item and "\n" not in item:
            found.append((item.split(":", 1)[0], None))  # the common case, without a regex
            continue
        match = _PROVIDES_RE.match(item)
        if match:
            found.append((match.group(1).split(":", 1)[0], match.group(2)))
    return found
