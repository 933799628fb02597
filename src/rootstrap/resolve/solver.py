"""Dependency closure with alternatives, virtual packages, versions, Conflicts and backtracking.

The search, in the manner of apt's and resolvelib's, kept small:

* A queue of relation groups to satisfy. Groups with a single real name go first; groups with
  alternatives or virtual names wait until nothing else is left, so that an alternative some
  other package needs anyway is already selected when the choice comes (``mawk`` for ``awk``).
* A group already met by a selected package (by name or by Provides) costs nothing.
* Otherwise its options, in order: a package the recipe prefers for one of the names
  (``usrmerge`` → ``usr-is-merged``); then each alternative in the order written, real packages
  (highest version first) before providers; several providers of a virtual name are ordered by
  Priority (required, important, standard, optional, extra), then name, then highest version.
  That is the documented rule for HAZARDS row 29: deterministic, and it takes the provider a
  Debian system is most likely to carry.
* Taking an option selects its package, checking Conflicts and Breaks both ways, and queues its
  Pre-Depends and Depends (and Recommends with ``recommends=True``, where "none" is a last
  option). When an option fails (a conflict, or something deeper that cannot be met), the search
  goes back to the latest choice that failure depends on and takes its next option: each
  selection remembers the choice points that led to it, so a failure knows which choices could
  undo it, and unrelated choices are not retried (conflict-directed backjumping; plain
  chronological backtracking is exponential when a failure lies behind many unrelated choices).
* When every choice is used up, the first failure met is the error: it is the one on the path
  the user would expect, e.g. ``apt: Depends on libfoo (>= 2) but only libfoo 1 exists``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from rootstrap.archive.packages import Package, PackageIndex
from rootstrap.errors import ResolveError
from rootstrap.formats.version import sort_key
from rootstrap.resolve.plan import Reason, Via
from rootstrap.resolve.relations import (
    Dep,
    Group,
    arch_ok,
    group_text,
    matches,
    parse_relations,
    provided_version_ok,
    provides,
    relations,
)
from rootstrap.resolve.seeds import Seed

PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}
# Backtracking is bounded: real archives need a handful of retries, a pathological index
# must not make a bootstrap hang.
MAX_BACKTRACKS = 5000

_NEGATIVE = ("Conflicts", "Breaks")


@dataclass(frozen=True, slots=True)
class _Task:
    group: Group
    via: Via
    parent: str | None = None  # the package that wrote the relation (None for seeds)
    text: str = ""  # the relation as written, for messages
    seed: str = ""


Levels = frozenset[int]


class _Failure(Exception):
    """A dead end, and the choice points (levels) whose choices led to it."""

    def __init__(self, error: ResolveError, levels: Levels) -> None:
        super().__init__(str(error))
        self.error = error
        self.levels = levels


class _State:
    """Everything a choice changes; copied (shallowly: values are tuples) at each choice."""

    __slots__ = ("against", "hard", "levels", "provided", "reasons", "selected", "soft")

    def __init__(self) -> None:
        self.selected: dict[str, Package] = {}
        self.reasons: dict[str, Reason] = {}
        # The choice points each selection depends on (empty: forced by the seeds alone).
        self.levels: dict[str, Levels] = {}
        self.provided: dict[str, tuple[tuple[Package, str | None], ...]] = {}
        # Conflicts/Breaks of selected packages, by the name they are against.
        self.against: dict[str, tuple[tuple[Package, Dep, str], ...]] = {}
        self.hard: deque[_Task] = deque()
        self.soft: deque[_Task] = deque()

    def copy(self) -> _State:
        new = _State.__new__(_State)
        new.selected = self.selected.copy()
        new.reasons = self.reasons.copy()
        new.levels = self.levels.copy()
        new.provided = self.provided.copy()
        new.against = self.against.copy()
        new.hard = self.hard.copy()
        new.soft = self.soft.copy()
        return new

    def next_task(self) -> _Task | None:
        if self.hard:
            return self.hard.popleft()
        if self.soft:
            return self.soft.popleft()
        return None

    def chain(self, name: str | None) -> list[str]:
        """NAME and the packages that pulled it in, seed first."""
        names: list[str] = []
        while name is not None and name not in names:
            names.append(name)
            reason = self.reasons.get(name)
            name = reason.parent if reason else None
        names.reverse()
        return names


@dataclass(slots=True)
class _Choice:
    """A task with options left, the state before it, and the levels its options depend on."""

    state: _State
    task: _Task
    options: list[Package | None]
    depends: Levels


class Solver:
    """One resolution over INDEX for ARCH; see the module docstring for the rules."""

    def __init__(
        self,
        index: PackageIndex,
        arch: str,
        *,
        prefer: dict[str, str] | None = None,
        exclude: frozenset[str] = frozenset(),
        recommends: bool = False,
    ) -> None:
        self.index = index
        self.arch = arch
        self.prefer = prefer or {}
        self.exclude = exclude
        self.recommends = recommends
        self.backtracks = 0

    # -- the search ------------------------------------------------------------------------------

    def solve(self, seeds: list[Seed]) -> tuple[dict[str, Package], dict[str, Reason]]:
        """Select a package set meeting every seed; returns (selected by name, reasons).

        Raises ResolveError naming the first dead end when no choice works."""
        state = _State()
        for seed in seeds:
            group = parse_relations(seed.spec, self.arch, seed.spec)
            if len(group) != 1:
                raise ResolveError("expected one package name or relation", subject=seed.spec)
            state.hard.append(_Task(group[0], Via.SEED, None, seed.spec, seed.label))
        stack: list[_Choice] = []
        first: _Failure | None = None
        while True:
            task = state.next_task()
            if task is None:
                return state.selected, state.reasons
            if self._met(state, task.group):
                continue
            try:
                options, base = self._options(state, task)
                if len(options) > 1:
                    stack.append(_Choice(state.copy(), task, options[1:], base))
                    self._take(state, task, options[0], base | {len(stack)})
                else:
                    self._take(state, task, options[0], base)
            except _Failure as failure:
                first = first or failure
                state = self._backtrack(stack, failure, first)

    def _backtrack(self, stack: list[_Choice], failure: _Failure, first: _Failure) -> _State:
        # Conflict-directed backjumping: a failure carries the levels (choice points, 1-based)
        # it depends on. Choices above the highest of them cannot change it, so they are
        # dropped unvisited instead of being retried one by one (which is exponential).
        while True:
            self.backtracks += 1
            if self.backtracks > MAX_BACKTRACKS:
                error = first.error
                raise ResolveError(
                    error.message,
                    subject=error.subject,
                    hint=f"the search gave up after {MAX_BACKTRACKS} retries of other choices; "
                    "--include or --exclude packages to narrow it",
                )
            del stack[max(failure.levels, default=0) :]
            if not stack:
                raise first.error
            choice = stack.pop()
            own = len(stack) + 1
            # Whatever made the earlier options fail is now part of why this one is taken.
            depends = choice.depends | (failure.levels - {own})
            state = choice.state
            try:
                if len(choice.options) > 1:
                    rest = choice.options[1:]
                    stack.append(_Choice(state.copy(), choice.task, rest, depends))
                    self._take(state, choice.task, choice.options[0], depends | {own})
                else:
                    self._take(state, choice.task, choice.options[0], depends)
                return state
            except _Failure as again:
                failure = again

    # -- one step --------------------------------------------------------------------------------

    def _met(self, state: _State, group: Group) -> bool:
        for dep in group:
            chosen = state.selected.get(dep.name)
            if chosen is not None and matches(chosen, dep, self.arch):
                return True
            for package, version in state.provided.get(dep.name, ()):
                if provided_version_ok(version, dep) and arch_ok(package, dep, self.arch):
                    return True
        return False

    def _options(self, state: _State, task: _Task) -> tuple[list[Package | None], Levels]:
        """The options for TASK in order, and the levels that shaped them (its parent's, and
        those of a selected version that ruled a candidate out). Raises _Failure when none."""
        options: list[Package | None] = []
        seen: set[tuple[str, str, str]] = set()
        base = state.levels[task.parent] if task.parent is not None else frozenset()
        for dep in task.group:
            found = [
                p
                for p in self.index.candidates(dep.name)
                if p.architecture in (self.arch, "all") and matches(p, dep, self.arch)
            ]
            providing = _order_providers(
                [
                    p
                    for p, version in self.index.providers(dep.name)
                    if p.architecture in (self.arch, "all")
                    and provided_version_ok(version, dep)
                    and arch_ok(p, dep, self.arch)
                ]
            )
            for package in found + providing:
                if package.key in seen or package.name in self.exclude:
                    continue
                seen.add(package.key)
                chosen = state.selected.get(package.name)
                if chosen is not None and chosen.key != package.key:
                    base = base | state.levels[chosen.name]
                    continue
                options.append(package)
        wanted = {self.prefer[d.name] for d in task.group if d.name in self.prefer}
        if wanted:
            options.sort(key=lambda p: p is None or p.name not in wanted)
        if task.via is Via.RECOMMENDS:
            options.append(None)
        if not options:
            raise _Failure(self._unmet(state, task), base)
        return options, base

    def _take(self, state: _State, task: _Task, package: Package | None, levels: Levels) -> None:
        if package is None:  # a Recommends left out
            return
        name = package.name
        reason = Reason(name, task.via, task.parent, task.text, task.seed)
        self._check_conflicts(state, package, reason, levels)
        state.selected[name] = package
        state.reasons[name] = reason
        state.levels[name] = levels
        for virtual, version in provides(package):
            state.provided[virtual] = (*state.provided.get(virtual, ()), (package, version))
        for field in _NEGATIVE:
            for group in relations(package, field, self.arch):
                for dep in group:
                    entry = (package, dep, field)
                    state.against[dep.name] = (*state.against.get(dep.name, ()), entry)
        fields = [("Pre-Depends", Via.PRE_DEPENDS), ("Depends", Via.DEPENDS)]
        if self.recommends:
            fields.append(("Recommends", Via.RECOMMENDS))
        for field, via in fields:
            for group in relations(package, field, self.arch):
                new = _Task(group, via, name, group_text(group))
                if len(group) == 1 and via is not Via.RECOMMENDS and group[0].name in self.index:
                    state.hard.append(new)
                else:
                    state.soft.append(new)

    def _check_conflicts(
        self, state: _State, package: Package, reason: Reason, levels: Levels
    ) -> None:
        # Debian Policy 7.4: Conflicts and Breaks hold against real names and provided names;
        # a package never conflicts with itself (``Provides: x, Conflicts: x`` is the usual
        # way to say "only one provider of x").
        for other, dep, field in state.against.get(package.name, ()):
            if other.name != package.name and matches(package, dep, self.arch, negative=True):
                self._conflict(state, other, field, dep, package, reason, levels)
        for virtual, version in provides(package):
            for other, dep, field in state.against.get(virtual, ()):
                if (
                    other.name != package.name
                    and provided_version_ok(version, dep)
                    and arch_ok(package, dep, self.arch, negative=True)
                ):
                    self._conflict(state, other, field, dep, package, reason, levels)
        for field in _NEGATIVE:
            for group in relations(package, field, self.arch):
                for dep in group:
                    chosen = state.selected.get(dep.name)
                    if (
                        chosen is not None
                        and chosen.name != package.name
                        and matches(chosen, dep, self.arch, negative=True)
                    ):
                        self._conflict(state, package, field, dep, chosen, reason, levels)
                    for other, version in state.provided.get(dep.name, ()):
                        if (
                            other.name != package.name
                            and provided_version_ok(version, dep)
                            and arch_ok(other, dep, self.arch, negative=True)
                        ):
                            self._conflict(state, package, field, dep, other, reason, levels)

    def _conflict(
        self,
        state: _State,
        who: Package,
        field: str,
        dep: Dep,
        victim: Package,
        new: Reason,
        levels: Levels,
    ) -> None:
        chains = {}
        for package in (who, victim):
            if package.name == new.package:
                chain = [*state.chain(new.parent), package.name]
            else:
                chain = state.chain(package.name)
            chains[package.name] = " → ".join(chain)
        verb = "conflicts with" if field == "Conflicts" else "breaks"
        error = ResolveError(
            f"{who.name} {who.version} {verb} {victim.name} {victim.version} ({field}: {dep}); "
            f"pulled in by {chains[who.name]} and {chains[victim.name]}",
            subject=who.name,
            hint="--exclude one side's dependent, or --include an alternative",
        )
        other = victim.name if who.name == new.package else who.name
        raise _Failure(error, levels | state.levels[other])

    # -- messages --------------------------------------------------------------------------------

    def _unmet(self, state: _State, task: _Task) -> ResolveError:
        why = "; ".join(self._why_not(state, dep) for dep in task.group)
        if task.parent is None:
            return ResolveError(
                f"cannot be installed: {why}",
                subject=task.text,
                hint="check the name (rootstrap info SUITE NAME), --components and pockets",
            )
        chain = " → ".join([*state.chain(task.parent), f"{task.text}"])
        relation = "pre-depends on" if task.via is Via.PRE_DEPENDS else "depends on"
        if task.via is Via.RECOMMENDS:
            relation = "recommends"
        hint = None
        if any(dep.name in self.exclude for dep in task.group):
            hint = f"drop it from --exclude, or --exclude {task.parent} too"
        return ResolveError(
            f"{relation} {task.text} but {why} (chain: {chain})", subject=task.parent, hint=hint
        )

    def _why_not(self, state: _State, dep: Dep) -> str:
        if dep.name in self.exclude:
            return f"{dep.name} is excluded (--exclude)"
        candidates = [
            p for p in self.index.candidates(dep.name) if p.architecture in (self.arch, "all")
        ]
        chosen = state.selected.get(dep.name)
        if chosen is not None and any(matches(p, dep, self.arch) for p in candidates):
            by = state.reasons[dep.name]
            return f"{dep.name} {chosen.version} is already selected ({by})"
        providers = self.index.providers(dep.name)
        if not candidates and not providers:
            # The index holds only this architecture's and ``all`` stanzas (HAZARDS 32).
            return f"no index has {dep.name}"
        if candidates:
            if dep.arch and not any(arch_ok(p, dep, self.arch) for p in candidates):
                if dep.arch == "any":
                    return f"{dep.name} is not Multi-Arch: allowed"
                return f"{dep.name} is not built for {dep.arch}"
            versions = ", ".join(p.version for p in candidates[:3])
            return f"only {dep.name} {versions} exists"
        offered = ", ".join(f"{p.name} (= {v})" if v else p.name for p, v in providers[:3])
        return f"{dep.name} is only provided as {offered}"


def _order_providers(packages: list[Package]) -> list[Package]:
    """Several providers, the rule of HAZARDS row 29: Priority, then name, then highest version."""
    by_version = sorted(packages, key=lambda p: sort_key(p.version), reverse=True)
    return sorted(
        by_version, key=lambda p: (PRIORITY_RANK.get(p.priority, len(PRIORITY_RANK)), p.name)
    )
