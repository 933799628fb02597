"""Relationship fields (deb-control(5), Debian Policy 7.1): Depends, Pre-Depends, Conflicts, ...

A field is a comma-separated list of groups; a group is a ``|``-separated list of alternatives;
an alternative is ``name[:archqual] [(op version)] [[arch restrictions]] [<build profiles>]``.
Parsing is cached by the field's text: relation strings repeat a lot across an archive
(``libc6 (>= 2.34)`` appears thousands of times), and only packages the resolver visits are
parsed at all. python-debian's parser would do, but it is a regex over the whole field plus a dict
per alternative; this one returns small frozen tuples that the solver can hash and compare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from rootstrap.archive.packages import Package, parse_provides
from rootstrap.errors import ResolveError
from rootstrap.formats.version import satisfies

OPERATORS = ("<<", "<=", "=", ">=", ">>", "<", ">")

_ALT_RE = re.compile(
    r"""^\s*
    (?P<name>[a-z0-9][a-z0-9+.-]*)
    (?::(?P<arch>[a-z0-9-]+))?
    \s*(?:\(\s*(?P<op><<|<=|>=|>>|=|<|>)\s*(?P<version>[^\s)]+)\s*\))?
    \s*(?:\[(?P<archs>[^]]*)\])?
    \s*(?P<profiles>(?:<[^>]*>\s*)*)
    $""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Dep:
    """One alternative: ``name[:arch] (op version)``; ``op`` and ``version`` are set together."""

    name: str
    op: str | None = None
    version: str | None = None
    arch: str | None = None  # the qualifier: "any", "native" or an architecture

    def __str__(self) -> str:
        text = f"{self.name}:{self.arch}" if self.arch else self.name
        return f"{text} ({self.op} {self.version})" if self.op else text


Group = tuple[Dep, ...]


def group_text(group: Group) -> str:
    return " | ".join(str(dep) for dep in group)


def _arch_matches(pattern: str, arch: str) -> bool:
    """A Debian architecture wildcard (``any``, ``linux-any``, ``any-amd64``) or a plain name."""
    if pattern in ("any", arch):
        return True
    # Plain Debian architecture names are linux-<cpu>, except the kfreebsd-/hurd- ports.
    os_name, cpu = "linux", arch
    if arch.startswith(("kfreebsd-", "hurd-")):
        os_name, _, cpu = arch.partition("-")
    os_part, sep, cpu_part = pattern.partition("-")
    if not sep:
        return False
    return os_part in ("any", os_name) and cpu_part in ("any", cpu)


def _restrictions_hold(archs: str | None, profiles: str, arch: str) -> bool:
    if archs and archs.strip():
        items = archs.split()
        negated = [a[1:] for a in items if a.startswith("!")]
        if negated:
            if any(_arch_matches(a, arch) for a in negated):
                return False
        elif not any(_arch_matches(a, arch) for a in items):
            return False
    # Build profiles only matter when building from source; a binary bootstrap has no profile
    # active, so a term holds only when every positive profile in it is negated (``<!nocheck>``).
    for formula in re.findall(r"<([^>]*)>", profiles):
        terms = formula.split()
        if terms and not all(term.startswith("!") for term in terms):
            return False
    return True


@lru_cache(maxsize=1 << 15)
def parse_relations(value: str, arch: str, subject: str = "") -> tuple[Group, ...]:
    """The groups of a relationship field for ARCH; restricted-away alternatives are dropped.

    Raises ResolveError (subject: SUBJECT) on text that is not a relationship field. Cost:
    one regex match per alternative, cached by the field's text."""
    groups: list[Group] = []
    for raw_group in value.split(","):
        if not raw_group.strip():
            continue
        alternatives: list[Dep] = []
        for raw in raw_group.split("|"):
            match = _ALT_RE.match(raw)
            if match is None:
                raise ResolveError(f"cannot parse relation {raw.strip()!r}", subject=subject)
            if not _restrictions_hold(match["archs"], match["profiles"], arch):
                continue
            alternatives.append(Dep(match["name"], match["op"], match["version"], match["arch"]))
        if alternatives:
            groups.append(tuple(alternatives))
    return tuple(groups)


def relations(package: Package, field: str, arch: str) -> tuple[Group, ...]:
    """FIELD of PACKAGE parsed for ARCH (empty when absent)."""
    value = package.fields.get(field)
    if not value:
        return ()
    return parse_relations(value, arch, package.name)


@lru_cache(maxsize=1 << 15)
def _provides(value: str) -> tuple[tuple[str, str | None], ...]:
    return tuple(parse_provides(value))


def provides(package: Package) -> tuple[tuple[str, str | None], ...]:
    """``Provides`` of PACKAGE as (virtual name, provided version or None)."""
    value = package.fields.get("Provides")
    return _provides(value) if value else ()


def arch_ok(package: Package, dep: Dep, native: str, *, negative: bool = False) -> bool:
    """Whether PACKAGE's architecture meets DEP's qualifier (dpkg's ``archsatisfied``).

    ``Multi-Arch: foreign`` meets any qualifier; ``:any`` needs ``Multi-Arch: allowed`` in a
    positive relation (Conflicts and Breaks with ``:any`` hit every architecture); otherwise
    the qualifier (unqualified means native, ``all`` counts as native) must name the
    package's architecture. See the Multi-Arch spec (wiki.ubuntu.com/MultiarchSpec)."""
    multi_arch = package.multi_arch
    if multi_arch == "foreign":
        return True
    if dep.arch == "any":
        return negative or multi_arch == "allowed"
    wanted = native if dep.arch in (None, "native", "all") else dep.arch
    have = native if package.architecture == "all" else package.architecture
    return wanted == have


def matches(package: Package, dep: Dep, native: str, *, negative: bool = False) -> bool:
    """Whether PACKAGE itself (by name, version and architecture) meets DEP."""
    if package.name != dep.name or not arch_ok(package, dep, native, negative=negative):
        return False
    return dep.op is None or satisfies(package.version, dep.op, dep.version or "")


def provided_version_ok(provided: str | None, dep: Dep) -> bool:
    """Whether a Provides entry with version PROVIDED meets DEP's version constraint.

    Policy 7.5: an unversioned Provides never satisfies a versioned dependency."""
    if dep.op is None:
        return True
    return provided is not None and satisfies(provided, dep.op, dep.version or "")
