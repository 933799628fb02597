"""Unit tests of the resolver's parts: relation parsing, install order, Plan, the search bounds.

The behaviour cases (alternatives, virtuals, conflicts, ...) are data files, see
test_resolve_cases.py; these cover what a data file cannot say well."""

from __future__ import annotations

import time

import pytest

from rootstrap.archive.packages import Package, PackageIndex
from rootstrap.errors import ResolveError
from rootstrap.recipes import Recipe
from rootstrap.resolve import Dep, Via, parse_relations, resolve
from rootstrap.resolve.order import install_order
from rootstrap.resolve.relations import arch_ok, matches
from rootstrap.resolve.seeds import Seed
from rootstrap.resolve.solver import Solver

RECIPE = Recipe(name="t", distribution="debian", codename="t", suite="t")


def pkg(name: str, version: str = "1", arch: str = "amd64", **fields: str) -> Package:
    stanza = {"Package": name, "Version": version, "Architecture": arch, "Size": "100"}
    stanza.update({k.replace("_", "-"): v for k, v in fields.items()})
    return Package.from_fields(stanza)


def index_of(*packages: Package, arch: str = "amd64") -> PackageIndex:
    index = PackageIndex(arch)
    for package in packages:
        index.add(package)
    return index


def test_parse_relations_full_syntax() -> None:
    groups = parse_relations(
        "libc6 (>= 2.34), perl:any | perl-base (>>5.36), foo:amd64 (= 1:2.0-1~bpo1), bar [!i386]",
        "amd64",
    )
    assert groups == (
        (Dep("libc6", ">=", "2.34"),),
        (Dep("perl", arch="any"), Dep("perl-base", ">>", "5.36")),
        (Dep("foo", "=", "1:2.0-1~bpo1", "amd64"),),
        (Dep("bar"),),
    )
    assert str(groups[2][0]) == "foo:amd64 (= 1:2.0-1~bpo1)"


def test_parse_relations_restrictions_drop_alternatives() -> None:
    assert parse_relations("a [i386] | b, c [!amd64], d <!nocheck> <stage1>", "amd64") == (
        (Dep("b"),),
    )
    assert parse_relations("a [any-amd64], b [linux-any], c [kfreebsd-any]", "amd64") == (
        (Dep("a"),),
        (Dep("b"),),
    )


def test_parse_relations_rejects_garbage() -> None:
    with pytest.raises(ResolveError) as info:
        parse_relations("libc6 (>= 2.34", "amd64", "apt")
    assert str(info.value) == "apt: cannot parse relation 'libc6 (>= 2.34'"


@pytest.mark.hazard(32)
def test_arch_qualifiers_follow_dpkg() -> None:
    allowed = pkg("perl", Multi_Arch="allowed")
    plain = pkg("python3")
    foreign = pkg("make", Multi_Arch="foreign")
    indep = pkg("tzdata", arch="all")
    any_dep = Dep("perl", arch="any")
    assert arch_ok(allowed, any_dep, "amd64")
    assert not arch_ok(plain, Dep("python3", arch="any"), "amd64")
    # Conflicts/Breaks on :any hit every architecture, allowed or not.
    assert arch_ok(plain, Dep("python3", arch="any"), "amd64", negative=True)
    assert arch_ok(foreign, Dep("make", arch="i386"), "amd64")
    assert arch_ok(indep, Dep("tzdata", arch="native"), "amd64")
    assert not arch_ok(plain, Dep("python3", arch="i386"), "amd64")
    assert matches(pkg("xx", "2.0"), Dep("xx", ">>", "1.9"), "amd64")
    assert not matches(pkg("xx", "2.0"), Dep("xx", "<<", "2.0"), "amd64")


@pytest.mark.hazard(31)
def test_install_order_breaks_only_depends_edges() -> None:
    # a pre-depends on b, b depends on c, c pre-depends on a: only b -> c may be broken.
    edges = {"a": {"b": True}, "b": {"c": False}, "c": {"a": True}}
    order = install_order(["a", "b", "c"], edges)
    assert order == ["b", "a", "c"]
    for name, targets in edges.items():
        for target, pre in targets.items():
            if pre:
                assert order.index(target) < order.index(name), (target, name, order)


@pytest.mark.hazard(31)
def test_install_order_keeps_acyclic_depends() -> None:
    edges = {"app": {"lib": False, "data": False}, "lib": {"libc": True}, "libc": {}, "data": {}}
    assert install_order(["app", "lib", "libc", "data"], edges) == ["data", "libc", "lib", "app"]


def test_why_chain_and_json() -> None:
    index = index_of(
        pkg("apt", Depends="libapt-pkg6.0 (>= 2.6)"),
        pkg("libapt-pkg6.0", "2.6.1", Depends="zlib1g"),
        pkg("zlib1g"),
    )
    plan = resolve(index, RECIPE, variant="custom", include=["apt"], arch="amd64")
    chain = plan.why("zlib1g")
    assert [step.package for step in chain] == ["apt", "libapt-pkg6.0", "zlib1g"]
    assert chain[0].via is Via.SEED and str(chain[0]) == "seed (--include)"
    assert str(chain[1]) == "apt Depends: libapt-pkg6.0 (>= 2.6)"
    assert plan.names == ["zlib1g", "libapt-pkg6.0", "apt"]
    assert plan.download_size == 300
    data = plan.to_json()
    assert (
        data["count"] == 3 and data["packages"][1]["why"] == "apt Depends: libapt-pkg6.0 (>= 2.6)"
    )
    with pytest.raises(ResolveError) as info:
        plan.why("nosuch")
    assert str(info.value) == "nosuch: is not in the plan"


def test_backjumping_keeps_unsatisfiable_requests_fast() -> None:
    """40 independent two-way choices, then a dead end: an error at once, not 2**40 retries."""
    packages = [pkg("root", Depends=", ".join(f"s{i}" for i in range(40)) + ", zz")]
    for i in range(40):
        packages += [pkg(f"s{i}", Depends=f"a{i} | b{i}"), pkg(f"a{i}"), pkg(f"b{i}")]
    packages += [
        pkg("zz", Depends="m1 | m2"),
        pkg("m1", Depends="gone1"),
        pkg("m2", Depends="gone2"),
    ]
    solver = Solver(index_of(*packages), "amd64")
    started = time.perf_counter()
    with pytest.raises(ResolveError) as info:
        solver.solve([Seed("root", "--include")])
    assert time.perf_counter() - started < 1.0
    # zz's two options are tried; none of the 40 unrelated choices is revisited.
    assert solver.backtracks <= 3
    assert (
        str(info.value)
        == "m1: depends on gone1 but no index has gone1 (chain: root → zz → m1 → gone1)"
    )


def test_backjumping_still_finds_the_one_working_choice() -> None:
    """A conflict that only the first of many choices can avoid is still found."""
    packages = [pkg("root", Depends="c0, " + ", ".join(f"s{i}" for i in range(30)) + ", last")]
    packages += [pkg("c0", Depends="xx | yy"), pkg("xx"), pkg("yy")]
    for i in range(30):
        packages += [pkg(f"s{i}", Depends=f"a{i} | b{i}"), pkg(f"a{i}"), pkg(f"b{i}")]
    packages += [pkg("last", Conflicts="xx")]
    plan = resolve(index_of(*packages), RECIPE, variant="custom", include=["root"], arch="amd64")
    assert "yy" in plan and "xx" not in plan
    assert all(f"a{i}" in plan for i in range(30))


def test_search_is_bounded_on_a_pigeonhole() -> None:
    """8 pigeons, 7 holes: no backjumping helps; the search stops with a clean error."""
    packages = []
    for i in range(8):
        holes = " | ".join(f"p{i}-h{j}" for j in range(7))
        packages.append(pkg(f"pigeon{i}", Depends=holes))
        packages += [pkg(f"p{i}-h{j}", Provides=f"hole{j}", Conflicts=f"hole{j}") for j in range(7)]
    seeds = [Seed(f"pigeon{i}", "--include") for i in range(8)]
    solver = Solver(index_of(*packages), "amd64")
    started = time.perf_counter()
    with pytest.raises(ResolveError) as info:
        solver.solve(seeds)
    assert time.perf_counter() - started < 10
    assert info.value.hint is not None and "gave up after 5000 retries" in info.value.hint
    assert "conflicts with" in str(info.value)
