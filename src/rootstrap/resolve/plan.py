"""The resolver's answer: which packages, in which order, and why each one is in."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rootstrap.archive.packages import Package
from rootstrap.errors import ResolveError


class Via(StrEnum):
    """How a package entered the plan."""

    SEED = "seed"
    PRE_DEPENDS = "Pre-Depends"
    DEPENDS = "Depends"
    RECOMMENDS = "Recommends"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why PACKAGE is in: a seed (``seed`` says which), or PARENT's relation RELATION."""

    package: str
    via: Via
    parent: str | None = None
    relation: str = ""  # the group as the parent wrote it, e.g. "libc6 (>= 2.34)"
    seed: str = ""  # for seeds: "Priority: required", "Essential: yes", "--include", ...

    def __str__(self) -> str:
        if self.via is Via.SEED:
            return f"seed ({self.seed})"
        return f"{self.parent} {self.via}: {self.relation}"


@dataclass(frozen=True, slots=True)
class Planned:
    package: Package
    reason: Reason

    @property
    def name(self) -> str:
        return self.package.name


@dataclass(frozen=True)
class Plan:
    """Packages in install order (the essential closure first, Pre-Depends before dependents).

    ``essential`` is the Essential: yes packages and everything they (pre-)depend on, in install
    order: the set a configure stage installs first with one ``dpkg --install``."""

    variant: str
    arch: str
    packages: tuple[Planned, ...]
    essential: tuple[str, ...]
    _by_name: dict[str, Planned] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.packages})

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.packages]

    @property
    def download_size(self) -> int:
        return sum(p.package.size for p in self.packages)

    @property
    def installed_size(self) -> int:
        return sum(p.package.installed_size for p in self.packages)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self.packages)

    def get(self, name: str) -> Planned | None:
        return self._by_name.get(name)

    def why(self, name: str) -> list[Reason]:
        """The chain from a seed down to NAME: ``[seed reason, ..., NAME's reason]``.

        Raises ResolveError (subject NAME) when NAME is not in the plan."""
        chain: list[Reason] = []
        current: str | None = name
        while current is not None and current not in {r.package for r in chain}:
            planned = self._by_name.get(current)
            if planned is None:
                raise ResolveError(
                    "is not in the plan",
                    subject=name,
                    hint=f"nothing in variant {self.variant} needs it; --include adds it",
                )
            chain.append(planned.reason)
            current = planned.reason.parent
        chain.reverse()
        return chain

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (the shape ``rootstrap resolve --json`` prints)."""
        return {
            "variant": self.variant,
            "architecture": self.arch,
            "count": len(self.packages),
            "download_size": self.download_size,
            "installed_size": self.installed_size,
            "essential": list(self.essential),
            "packages": [
                {
                    "name": p.name,
                    "version": p.package.version,
                    "architecture": p.package.architecture,
                    "size": p.package.size,
                    "installed_size": p.package.installed_size,
                    "essential": p.package.essential,
                    "why": str(p.reason),
                    "via": str(p.reason.via),
                    "parent": p.reason.parent,
                }
                for p in self.packages
            ],
        }
