"""Install order: the essential closure first, each package after what it (pre-)depends on.

A dependency cycle (Debian has many, even among Essential packages) is broken at a plain
``Depends`` edge: dpkg can unpack both sides and configure them together. A ``Pre-Depends``
edge is never broken, because the pre-dependency must be configured before the dependent is even
unpacked (Policy 7.2); a cycle made only of Pre-Depends edges has no valid order and is an error
(HAZARDS row 31; debootstrap loops on ``dpkg --predep-package`` instead).
"""

from __future__ import annotations

import heapq

from rootstrap.archive.packages import Package
from rootstrap.errors import ResolveError
from rootstrap.resolve.relations import arch_ok, matches, provided_version_ok, provides, relations

# An edge A -> B means "B before A"; the flag says whether it is a Pre-Depends edge.
Edges = dict[str, dict[str, bool]]


def dependency_edges(selected: dict[str, Package], arch: str) -> Edges:
    """For each selected package, the selected packages its Pre-Depends and Depends landed on.

    Each group points at the first alternative a selected package meets, as the solver chose."""
    providers: dict[str, list[tuple[Package, str | None]]] = {}
    for package in selected.values():
        for virtual, version in provides(package):
            providers.setdefault(virtual, []).append((package, version))
    edges: Edges = {}
    for name in sorted(selected):
        package = selected[name]
        out: dict[str, bool] = {}
        for field, pre in (("Pre-Depends", True), ("Depends", False)):
            for group in relations(package, field, arch):
                target = None
                for dep in group:
                    chosen = selected.get(dep.name)
                    if chosen is not None and matches(chosen, dep, arch):
                        target = chosen.name
                        break
                    found = sorted(
                        p.name
                        for p, v in providers.get(dep.name, ())
                        if provided_version_ok(v, dep) and arch_ok(p, dep, arch)
                    )
                    if found:
                        target = found[0]
                        break
                if target is not None and target != name:
                    out[target] = out.get(target, False) or pre
        edges[name] = out
    return edges


def closure(roots: list[str], edges: Edges) -> set[str]:
    """ROOTS and everything they reach."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges.get(name, ()))
    return seen


def _components(nodes: list[str], edges: Edges) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative), dependencies before dependents."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    member = set(nodes)
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(t for t in edges.get(root, ()) if t in member)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    grandchildren = sorted(t for t in edges.get(child, ()) if t in member)
                    work.append((child, iter(grandchildren)))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                result.append(sorted(component))
    return result


def _order_component(component: list[str], edges: Edges) -> list[str]:
    """One cycle's members: Pre-Depends edges strictly, Depends edges where they can be kept."""
    if len(component) == 1:
        return component
    members = set(component)
    pre = {n: {t for t, p in edges.get(n, {}).items() if p and t in members} for n in component}
    dep = {n: {t for t in edges.get(n, {}) if t in members} for n in component}
    placed: list[str] = []
    done: set[str] = set()
    while len(placed) < len(component):
        ready = [n for n in component if n not in done and pre[n] <= done]
        if not ready:
            left = sorted(n for n in component if n not in done)
            raise ResolveError(
                f"Pre-Depends cycle: {' → '.join(_pre_cycle(left, pre))}; no install order exists",
                subject=left[0],
                hint="dpkg cannot unpack a package before its pre-dependency is configured",
            )
        # Break the fewest Depends edges: take the package with the fewest unplaced deps.
        best = min(ready, key=lambda n: (len(dep[n] - done), n))
        placed.append(best)
        done.add(best)
    return placed


def _pre_cycle(left: list[str], pre: dict[str, set[str]]) -> list[str]:
    path = [left[0]]
    while True:
        following = sorted(pre[path[-1]] & set(left))
        if not following:
            return path
        step = following[0]
        if step in path:
            return [*path[path.index(step) :], step]
        path.append(step)


def install_order(names: list[str], edges: Edges) -> list[str]:
    """NAMES ordered so that dependencies come first; ties broken by name (deterministic).

    Raises ResolveError on a Pre-Depends-only cycle. Cost: linear in nodes + edges."""
    ordered = sorted(names)
    components = _components(ordered, edges)
    where = {n: i for i, comp in enumerate(components) for n in comp}
    # Kahn over the components, smallest first name first.
    needs: dict[int, set[int]] = {i: set() for i in range(len(components))}
    users: dict[int, set[int]] = {i: set() for i in range(len(components))}
    for name in ordered:
        for target in edges.get(name, ()):
            if target in where and where[target] != where[name]:
                needs[where[name]].add(where[target])
                users[where[target]].add(where[name])
    heap = [(components[i][0], i) for i, n in needs.items() if not n]
    heapq.heapify(heap)
    result: list[str] = []
    while heap:
        _, i = heapq.heappop(heap)
        result.extend(_order_component(components[i], edges))
        for user in sorted(users[i]):
            needs[user].discard(i)
            if not needs[user]:
                heapq.heappush(heap, (components[user][0], user))
    return result
