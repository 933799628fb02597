"""The resolver's cases as data files (tests/unit/resolve_cases/*.toml), as resolvelib tests.

A case is a small index (deb822 stanzas, one or several suites), a request (variant, include,
exclude, recommends, the recipe's prefer and extras) and what must come out: the exact package
set, chosen versions, the order or some "before" pairs, the essential subset, a ``why`` chain,
or the exact text of the one error. Stanzas get defaults (Version 1, the case's architecture,
a Size) so a case spells only what it is about.
"""

from __future__ import annotations

import random
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from rootstrap import errors
from rootstrap.archive.packages import PackageIndex
from rootstrap.recipes import Recipe
from rootstrap.resolve import Plan, resolve

CASES = Path(__file__).parent / "resolve_cases"


def parse_stanzas(text: str, arch: str) -> list[dict[str, str]]:
    stanzas = []
    for block in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        fields.setdefault("Version", "1")
        fields.setdefault("Architecture", arch)
        fields.setdefault("Size", str(1000 + len(fields["Package"])))
        fields.setdefault("Installed-Size", "4")
        stanzas.append(fields)
    return stanzas


def case_index(case: dict[str, Any], shuffle: int | None = None) -> PackageIndex:
    arch = case.get("arch", "amd64")
    if "index_file" in case:
        sources = [("", (CASES / case["index_file"]).read_text())]
    elif "indexes" in case:
        sources = [(i["origin"], i["stanzas"]) for i in case["indexes"]]
    else:
        sources = [("", case["index"])]
    index = PackageIndex(arch)
    entries = [(origin, s) for origin, text in sources for s in parse_stanzas(text, arch)]
    if shuffle is not None:
        random.Random(shuffle).shuffle(entries)
    for origin, stanza in entries:
        index.add(index_package(stanza, origin))
    return index


def index_package(stanza: dict[str, str], origin: str) -> Any:
    from rootstrap.archive.packages import Package

    return Package.from_fields(stanza, origin)


def case_recipe(case: dict[str, Any]) -> Recipe:
    return Recipe(
        name="case",
        distribution="debian",
        codename="case",
        suite="case",
        prefer=dict(case.get("prefer", {})),
        variants={k: tuple(v) for k, v in case.get("extras", {}).items()},
    )


def run_case(case: dict[str, Any], shuffle: int | None = None) -> Plan:
    return resolve(
        case_index(case, shuffle),
        case_recipe(case),
        variant=case.get("variant", "custom"),
        include=case.get("include", ()),
        exclude=case.get("exclude", ()),
        recommends=case.get("recommends", False),
        arch=case.get("arch", "amd64"),
    )


def load_cases() -> list[Any]:
    params = []
    for path in sorted(CASES.glob("*.toml")):
        case = tomllib.loads(path.read_text())
        marks = [pytest.mark.hazard(*case["hazard"])] if "hazard" in case else []
        params.append(pytest.param(case, id=path.stem, marks=marks))
    return params


def check_plan(plan: Plan, expect: dict[str, Any]) -> None:
    names = plan.names
    assert len(names) == len(set(names)), "a package is planned twice"
    if "set" in expect:
        assert sorted(names) == sorted(expect["set"])
    for name, version in expect.get("versions", {}).items():
        planned = plan.get(name)
        assert planned is not None, name
        assert planned.package.version == version
    if "order" in expect:
        assert names == expect["order"]
    for first, then in expect.get("before", []):
        assert names.index(first) < names.index(then), (first, then, names)
    if "essential" in expect:
        assert list(plan.essential) == expect["essential"]
        assert names[: len(plan.essential)] == list(plan.essential)
    for name, chain in expect.get("why", {}).items():
        assert [step.package for step in plan.why(name)] == chain
    # Every plan, whatever the case: each dependency before its dependent unless in a cycle,
    # and the why chain of every package starts at a seed.
    for planned in plan.packages:
        assert plan.why(planned.name)[0].via == "seed"


@pytest.mark.parametrize("case", load_cases())
def test_case(case: dict[str, Any]) -> None:
    expect = case["expect"]
    if "error" in expect:
        error_type = getattr(errors, expect.get("error_type", "ResolveError"))
        with pytest.raises(error_type) as info:
            run_case(case)
        assert str(info.value) == expect["error"]
        assert "\n" not in str(info.value)
        if "error_hint" in expect:
            assert info.value.hint == expect["error_hint"]
        return
    check_plan(run_case(case), expect)


@pytest.mark.hazard(33)
@pytest.mark.parametrize("case", load_cases())
def test_case_is_deterministic(case: dict[str, Any]) -> None:
    """The same inputs twice give the same plan, and so does the index in another order."""
    if "error" in case["expect"]:
        with pytest.raises(errors.RootstrapError) as first:
            run_case(case)
        with pytest.raises(errors.RootstrapError) as shuffled:
            run_case(case, shuffle=7)
        assert str(first.value) == str(shuffled.value)
        return
    plans = [run_case(case), run_case(case), run_case(case, shuffle=1), run_case(case, shuffle=2)]
    described = [(p.to_json(), [str(step) for n in p.names for step in p.why(n)]) for p in plans]
    assert all(d == described[0] for d in described)


# The HAZARDS rows, each spelled out once (hazard-coverage reads literal markers) and checked
# through the data files that cover it.
ROW_CASES = {
    26: ["missing_chain", "include_unknown", "alternatives_backtrack_deep"],
    27: ["alternatives_first_missing"],
    28: ["versioned_unsatisfiable", "versioned_provides_unversioned"],
    29: ["virtual_several_providers"],
    30: [
        "conflicts_error",
        "breaks_versioned",
        "conflicts_virtual",
        "alternatives_backtrack_conflict",
    ],
    31: ["cycle_depends", "cycle_mixed", "cycle_essential", "cycle_predepends"],
    32: ["multiarch_any", "multiarch_any_unmet", "multiarch_foreign", "multiarch_wrong_arch_ok"],
}


def run_named(stem: str) -> None:
    case = tomllib.loads((CASES / f"{stem}.toml").read_text())
    test_case(case)
    test_case_is_deterministic(case)


@pytest.mark.hazard(26)
def test_row_26_missing_dependency_names_the_chain() -> None:
    for stem in ROW_CASES[26]:
        run_named(stem)


@pytest.mark.hazard(27)
def test_row_27_missing_first_alternative_picks_the_next() -> None:
    for stem in ROW_CASES[27]:
        run_named(stem)


@pytest.mark.hazard(28)
def test_row_28_unsatisfiable_version_names_the_constraint() -> None:
    for stem in ROW_CASES[28]:
        run_named(stem)


@pytest.mark.hazard(29)
def test_row_29_several_providers_deterministic_rule() -> None:
    for stem in ROW_CASES[29]:
        run_named(stem)


@pytest.mark.hazard(30)
def test_row_30_conflicts_and_breaks() -> None:
    for stem in ROW_CASES[30]:
        run_named(stem)


@pytest.mark.hazard(31)
def test_row_31_cycles() -> None:
    for stem in ROW_CASES[31]:
        run_named(stem)


@pytest.mark.hazard(32)
def test_row_32_multi_arch() -> None:
    for stem in ROW_CASES[32]:
        run_named(stem)


@pytest.mark.hazard(33)
def test_row_33_same_inputs_same_plan() -> None:
    for stem in ["several_suites", "virtual_several_providers", "cycle_essential"]:
        run_named(stem)
