"""Recipes: one small TOML file per distribution release, and the mirror to use for it.

SUITE on the command line is a recipe name (``debian-bookworm``), a codename (``bookworm``), a
Debian alias (``stable``, ``testing``, ``unstable``, resolved later through the signed Release's
Codename, see :func:`for_codename`) or the path of a recipe file.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from rootstrap.errors import MirrorError, RecipeError

log = logging.getLogger(__name__)

# Debian's moving suite names. Ubuntu has none that a bootstrap should follow.
DEBIAN_ALIASES = ("oldstable", "stable", "testing", "unstable")

VARIANTS = (
    "extract",
    "custom",
    "essential",
    "required",
    "minbase",
    "buildd",
    "important",
    "standard",
)

_CODENAME = re.compile(r"^[a-z][a-z0-9.+-]*$")


@dataclass(frozen=True)
class Recipe:
    """A distribution release as rootstrap bootstraps it."""

    name: str
    distribution: str
    codename: str
    suite: str
    version: str = ""
    components: tuple[str, ...] = ("main",)
    pockets: tuple[str, ...] = ()
    keyrings: tuple[Path, ...] = ()
    keyring_package: str = ""
    merged_usr: bool = True
    hostname: str = "localhost"
    mirrors: dict[str, str] = field(default_factory=dict)
    prefer: dict[str, str] = field(default_factory=dict)
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # What `bootstrap --boot-ready` adds: an init for `rootstrap boot` and the bus that
    # machinectl-style `shell` and logind need (docs/architecture.md, "What a bootable tree
    # needs").
    boot_packages: tuple[str, ...] = ("systemd-sysv", "dbus")
    path: Path | None = None
    # True when SUITE was an alias: the Release's Codename picks the real recipe.
    alias: bool = False

    def extras(self, variant: str) -> tuple[str, ...]:
        """Packages the recipe adds to a variant's seed (e.g. apt for minbase)."""
        return self.variants.get(variant, ())

    def recipe_mirror(self, arch: str) -> str | None:
        return self.mirrors.get(arch) or self.mirrors.get("default")


def _recipe_dir() -> Path:
    shipped = resources.files("rootstrap").joinpath("recipes")
    if shipped.is_dir():
        return Path(str(shipped))
    # An editable install or a source checkout: recipes/ sits at the project's root.
    return Path(__file__).resolve().parents[2] / "recipes"


def available() -> list[Path]:
    """The shipped recipe files, sorted by name."""
    return sorted(_recipe_dir().glob("*.toml"))


def _parse(path: Path) -> Recipe:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise RecipeError(f"cannot read recipe: {exc.strerror}", subject=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"invalid TOML: {exc}", subject=str(path)) from exc
    try:
        codename = str(data["codename"])
        distribution = str(data["distribution"])
    except KeyError as exc:
        raise RecipeError(f"missing key {exc.args[0]!r}", subject=str(path)) from exc
    if not _CODENAME.match(codename):
        raise RecipeError(f"invalid codename {codename!r}", subject=str(path))
    known = {
        "distribution", "codename", "suite", "version", "components", "pockets", "keyrings",
        "keyring-package", "merged-usr", "hostname", "mirrors", "prefer", "variants",
        "boot-packages",
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"unknown key {unknown[0]!r}", subject=str(path))
    return Recipe(
        name=path.stem,
        distribution=distribution,
        codename=codename,
        suite=str(data.get("suite", codename)),
        version=str(data.get("version", "")),
        components=tuple(data.get("components", ["main"])),
        pockets=tuple(data.get("pockets", [])),
        keyrings=tuple(Path(k) for k in data.get("keyrings", [])),
        keyring_package=str(data.get("keyring-package", "")),
        merged_usr=bool(data.get("merged-usr", True)),
        hostname=str(data.get("hostname", distribution)),
        mirrors={str(k): str(v) for k, v in data.get("mirrors", {}).items()},
        prefer={str(k): str(v) for k, v in data.get("prefer", {}).items()},
        variants={str(k): tuple(v) for k, v in data.get("variants", {}).items()},
        boot_packages=tuple(data.get("boot-packages", ("systemd-sysv", "dbus"))),
        path=path,
    )


def load(spec: str) -> Recipe:
    """Find the recipe SUITE names: a path, a recipe name, a codename or a Debian alias."""
    if "/" in spec or spec.endswith(".toml"):
        path = Path(spec)
        if not path.is_file():
            raise RecipeError("no such recipe file", subject=spec)
        return _parse(path)
    recipes = [_parse(p) for p in available()]
    for recipe in recipes:
        if spec in (recipe.name, recipe.codename, recipe.suite):
            return recipe
    if spec in DEBIAN_ALIASES:
        template = next(r for r in recipes if r.distribution == "debian")
        return replace(template, name=spec, codename=spec, suite=spec, pockets=(), alias=True)
    names = ", ".join(r.codename for r in recipes)
    raise RecipeError(
        "unknown suite",
        subject=spec,
        hint=f"known: {names}, {', '.join(DEBIAN_ALIASES)}; or give the path of a recipe file",
    )


def for_codename(recipe: Recipe, codename: str) -> Recipe:
    """The recipe an alias stands for, now that the signed Release named its Codename.

    The suite stays the alias (``dists/stable``) so later fetches hit the same Release."""
    if not recipe.alias:
        return recipe
    for path in available():
        found = _parse(path)
        if found.distribution == recipe.distribution and found.codename == codename:
            return replace(found, suite=recipe.suite, pockets=())
    # A release newer than our recipes: the Debian defaults still make a working system.
    return replace(recipe, codename=codename, name=f"{recipe.distribution}-{codename}", alias=False)


# ---------------------------------------------------------------------------------------------
# Mirrors: --mirror, then ROOTSTRAP_MIRROR_<DISTRIBUTION> or ROOTSTRAP_MIRROR, then the host's
# own apt sources, then the recipe's default.


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def _deb822_sources(text: str, path: Path) -> list[AptSource]:
    """The enabled ``deb`` sources of a ``.sources`` file (sources.list(5), deb822 style).

    A malformed file costs a warning and its sources, not the run: apt refuses such a file
    too, and the mirror can still come from elsewhere (--mirror, the recipe)."""
    # Here, not at the top: python-debian costs ~20 ms to import, and only .sources need it.
    from rootstrap.formats import deb822

    try:
        paragraphs = deb822.parse(text, comments=True)
    except deb822.Deb822Error as exc:
        log.warning("%s: line %d: not a valid deb822 file (%s); ignored", path, exc.line, exc.kind)
        return []
    sources = []
    for fields in paragraphs:
        if "deb" not in fields.get("Types", "").split() or fields.get("Enabled") == "no":
            continue
        for uri in fields.get("URIs", "").split():
            sources.append(
                AptSource(uri, tuple(fields.get("Suites", "").split()),
                          tuple(fields.get("Components", "").split()))
            )  # fmt: skip
    return sources


def _one_line_sources(text: str) -> list[AptSource]:
    sources = []
    for line in text.splitlines():
        line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()  # type: ignore[assignment]
        if len(line) >= 3 and line[0] == "deb":
            sources.append(AptSource(line[1], (line[2],), tuple(line[3:])))
    return sources


def host_sources(root: Path = Path("/")) -> list[AptSource]:
    """Every enabled ``deb`` source of the host's apt configuration."""
    apt = root / "etc/apt"
    found: list[AptSource] = []
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in files:
        if path.is_file():
            found += _one_line_sources(path.read_text(errors="replace"))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        found += _deb822_sources(path.read_text(errors="replace"), path)
    return found


def _distribution_of(suite: str) -> str | None:
    base = suite.split("-", 1)[0]
    for path in available():
        recipe = _parse(path)
        if base in (recipe.codename, recipe.suite):
            return recipe.distribution
    return "debian" if base in DEBIAN_ALIASES else None


def host_mirror(distribution: str, root: Path = Path("/")) -> str | None:
    """The mirror the host's apt sources use for DISTRIBUTION's main archive, if any.

    Security archives carry only ``-security`` suites; they are not full mirrors."""
    for source in host_sources(root):
        if not source.uri.startswith(("http://", "https://", "file:/")):
            continue
        for suite in source.suites:
            if suite.endswith("-security") or _distribution_of(suite) != distribution:
                continue
            return source.uri.rstrip("/")
    return None


def choose_mirrors(recipe: Recipe, arch: str, given: list[str] | None = None) -> list[str]:
    """The mirrors to use, best first. Raises MirrorError when there is none."""
    if given:
        return [m.rstrip("/") for m in given]
    for var in (f"ROOTSTRAP_MIRROR_{recipe.distribution.upper()}", "ROOTSTRAP_MIRROR"):
        if os.environ.get(var):
            return [m.rstrip("/") for m in os.environ[var].split()]
    mirror = host_mirror(recipe.distribution) or recipe.recipe_mirror(arch)
    if mirror:
        return [mirror]
    raise MirrorError(
        f"no {recipe.distribution} mirror is configured",
        subject=recipe.name,
        hint=f"pass --mirror URL, or set ROOTSTRAP_MIRROR_{recipe.distribution.upper()}",
    )
