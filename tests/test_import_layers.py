"""The import graph of the project's packages: no module imports itself through others, and
``data_pipelines`` and ``analysis`` (below ``infinity_train``) use only its documented leaf modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("infinity_train", "data_pipelines", "analysis", "launch")
LOWER_PACKAGES = ("data_pipelines", "analysis")
# docs/architecture.md: the only infinity_train modules the lower packages may import.
PUBLIC_LEAVES = {"infinity_train.geometry", "infinity_train.sizing", "infinity_train.distributed"}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> list[str]:
    """Every module name an import statement in ``path`` can load, lazy (in-function) imports included."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            names += [f"{source}.{alias.name}" for alias in node.names]  # a name that is no module resolves to ``source``
    return names


def import_graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported_names(module, path):
            if name.split(".")[0] in PACKAGES:
                target = resolve(name)
                if target and target != module:
                    targets.add(target)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_module_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 150  # the walk found the packages
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {**import_graph(), "infinity_train.geometry": {"infinity_train.train.trainer"}}
    assert any("infinity_train.geometry" in component for component in cycles(graph))


def test_lower_packages_import_only_the_public_leaves_of_infinity_train():
    graph = import_graph()
    used = {
        (module, target)
        for module, targets in graph.items()
        if module.split(".")[0] in LOWER_PACKAGES
        for target in targets
        if target.split(".")[0] == "infinity_train"
    }
    assert {target for _, target in used} <= PUBLIC_LEAVES, sorted(p for p in used if p[1] not in PUBLIC_LEAVES)
