"""What each variant starts from, named as debootstrap and mmdebstrap name the variants.

debootstrap (scripts/debian-common, ``work_out_debs``) seeds by Priority, not by dependency:
``required`` is every ``Priority: required`` package, the default variant adds every
``Priority: important`` one, minbase adds ``apt``, buildd ``apt build-essential``. mmdebstrap
starts from ``Essential: yes``. We seed the same way and then close over dependencies properly.
"""

from __future__ import annotations

from dataclasses import dataclass

from rootstrap.archive.packages import PackageIndex
from rootstrap.errors import UsageError
from rootstrap.recipes import VARIANTS, Recipe

# Used when a recipe does not say what a variant adds (debootstrap's own lists).
DEFAULT_EXTRAS: dict[str, tuple[str, ...]] = {
    "minbase": ("apt",),
    "buildd": ("apt", "build-essential"),
}

# Each variant as (the variant it extends, the priorities it adds).
_LAYERS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "extract": (None, ()),
    "custom": (None, ()),
    "essential": (None, ()),
    "required": ("essential", ("required",)),
    "minbase": ("required", ()),
    "buildd": ("required", ()),
    "important": ("required", ("important",)),
    "standard": ("important", ("standard",)),
}


@dataclass(frozen=True, slots=True)
class Seed:
    """A name (or relation text, e.g. ``libc6 (>= 2.36)``) the plan must contain, and why."""

    spec: str
    label: str


def split_names(values: tuple[str, ...] | list[str]) -> list[str]:
    """``--include a,b --include c`` as ``[a, b, c]`` (whitespace and empties dropped)."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def variant_seeds(index: PackageIndex, recipe: Recipe, variant: str) -> list[Seed]:
    """The seeds of VARIANT, essential ones first, each group sorted by name.

    Cost: one pass over the index's names per priority."""
    if variant not in _LAYERS:
        raise UsageError(
            f"unknown variant {variant!r}", subject=variant, hint=f"one of: {', '.join(VARIANTS)}"
        )
    chain: list[str] = []
    current: str | None = variant
    while current is not None:
        chain.append(current)
        current = _LAYERS[current][0]
    chain.reverse()
    seeds: list[Seed] = []
    seen: set[str] = set()

    def add(names: list[str] | tuple[str, ...], label: str) -> None:
        for name in names:
            if name not in seen:
                seen.add(name)
                seeds.append(Seed(name, label))

    for layer in chain:
        if layer == "essential":
            add(index.essential_names(), "Essential: yes")
        for priority in _LAYERS[layer][1]:
            add(index.with_priority(priority), f"Priority: {priority}")
        extras = recipe.variants.get(layer, DEFAULT_EXTRAS.get(layer, ()))
        add(extras, f"{layer} variant")
    return seeds
