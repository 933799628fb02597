"""Our plans for bookworm against what debootstrap picks (``debootstrap --print-debs``).

debootstrap seeds by Priority (scripts/debian-common ``work_out_debs``): ``required`` is every
``Priority: required`` package plus ``usr-is-merged`` on bookworm; the default variant adds every
``Priority: important`` one, minbase ``apt``, buildd ``apt build-essential``; then it closes
over Depends and Pre-Depends keeping only the first alternative and dropping virtual names.
We seed the same way and resolve properly; on bookworm main/amd64 the sets come out equal.
Any difference must be listed in EXPLAINED with the reason (the README carries the list).
--print-debs downloads only the Release and Packages files.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from rootstrap import recipes
from rootstrap.archive import Archive, open_archive
from rootstrap.archive.http import Http
from rootstrap.resolve import Plan, resolve
from rootstrap.resolve.relations import relations
from tests.support.testcache import TEST_CACHE

pytestmark = [pytest.mark.network, pytest.mark.slow]

# Our variant -> (debootstrap's --variant, --include).
INCLUDES = "bsd-mailx,openssh-server"
VARIANTS: dict[str, tuple[str | None, str]] = {
    "minbase": ("minbase", ""),
    "buildd": ("buildd", ""),
    "important": (None, ""),
    "minbase+include": ("minbase", INCLUDES),
}

# Packages one tool picks and the other does not, per case, and why. The variants themselves
# match exactly: debootstrap's shortcuts (first alternative only, no Provides) happen to land
# on the same set, because the recipe's prefer table (usr-is-merged, mawk) makes the same
# picks. Includes show the shortcuts.
_MTA = (
    "bsd-mailx Depends: default-mta | mail-transport-agent, both virtual; debootstrap drops "
    "virtual names and leaves the dependency unmet, we install the provider exim4-daemon-light"
)
EXPLAINED: dict[str, dict[str, str]] = {
    "minbase": {},
    "buildd": {},
    "important": {},
    "minbase+include": {
        **{
            name: _MTA
            for name in (
                "cron cron-daemon-common exim4-base exim4-config exim4-daemon-light libevent-2.1-7 "
                "libgnutls-dane0 libidn12 libunbound8 netbase"
            ).split()
        },
        "lsb-base": "openssh-server Depends: lsb-base, which sysvinit-utils (required) meets "
        "with Provides: lsb-base (= 11.1.0); debootstrap ignores Provides and adds the "
        "transitional package",
    },
}


def _mirror() -> str:
    mirror = recipes.host_mirror("debian")
    if mirror is None:
        pytest.skip("the host's apt sources name no Debian mirror")
    return mirror


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    cache = TEST_CACHE / "e2e-resolve"
    cache.mkdir(parents=True, exist_ok=True)
    with Http() as http:
        yield open_archive(
            recipes.load("bookworm"), mirrors=[_mirror()], arch="amd64", http=http, cache_dir=cache
        )


@pytest.fixture(scope="module")
def debootstrap_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """debootstrap's package set per variant, the three runs in parallel."""
    if shutil.which("debootstrap") is None:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "debootstrap"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    mirror = _mirror()
    runs = {}
    for variant, (option, include) in VARIANTS.items():
        target = tmp_path_factory.mktemp("debootstrap")
        argv = ["debootstrap", "--print-debs", "--arch=amd64"]
        argv += [f"--variant={option}"] if option else []
        argv += [f"--include={include}"] if include else []
        argv += ["bookworm", str(target), mirror]
        runs[variant] = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    sets = {}
    for variant, proc in runs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        sets[variant] = set(out.split())
    return sets


def _plan(archive: Archive, variant: str, include: str = "") -> Plan:
    return resolve(archive.index, archive.recipe, variant=variant, include=[include], arch="amd64")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_same_set_as_debootstrap(
    archive: Archive, debootstrap_sets: dict[str, set[str]], variant: str
) -> None:
    ours = set(_plan(archive, variant.split("+")[0], VARIANTS[variant][1]).names)
    theirs = debootstrap_sets[variant]
    assert len(theirs) > 50
    # Each side's extra packages, and the explained ones that no longer differ (stale).
    assert sorted((ours ^ theirs) - set(EXPLAINED[variant])) == []
    assert sorted(set(EXPLAINED[variant]) - (ours ^ theirs)) == []


@pytest.mark.hazard(31, 33)
@pytest.mark.parametrize("variant", ["essential", "minbase", "important", "standard"])
def test_real_plan_invariants(archive: Archive, variant: str) -> None:
    """Every Pre-Depends target is installed before its dependent; the essential closure
    comes first; every package has a chain back to a seed; a second run is identical."""
    plan = _plan(archive, variant)
    again = _plan(archive, variant)
    assert plan.to_json() == again.to_json()
    position = {name: i for i, name in enumerate(plan.names)}
    for planned in plan.packages:
        for group in relations(planned.package, "Pre-Depends", "amd64"):
            targets = [position[d.name] for d in group if d.name in position]
            if targets:
                assert min(targets) < position[planned.name], (planned.name, group)
        assert plan.why(planned.name)[0].via == "seed"
    assert plan.names[: len(plan.essential)] == list(plan.essential)
    essential = {p.name for p in plan.packages if p.package.essential}
    assert essential <= set(plan.essential)
    # base-files pre-depends on the virtual awk: mawk (the recipe's pick) must come first.
    assert position["mawk"] < position["base-files"]
    assert "usrmerge" not in position and "usr-is-merged" in position
