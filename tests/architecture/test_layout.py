"""The code's shape: no import circle in the domain package, modules of a readable size, one-way layers."""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
LOCAL = ROOT / "local"
DECISIONS = ROOT / "docs" / "decisions.md"
MAX_MODULE_LINES = 600


def _modules(base: Path) -> dict[str, Path]:
    modules = {}
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(base).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every costgate module this one imports, at any depth of the file: type-only and lazy imports count."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in known}


def _graph() -> dict[str, set[str]]:
    modules = _modules(SHARED)
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
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


def test_the_cycle_finder_finds_a_planted_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_circle_in_the_domain_package() -> None:
    assert _cycles(_graph()) == []


def test_feature_packages_depend_one_way() -> None:
    """No import circle between packages either: each may use only those below it."""

    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for module, imported in _graph().items():
        packages.setdefault(package(module), set()).update(package(other) for other in imported)
    for name, used in packages.items():
        used.discard(name)
    assert _cycles(packages) == []


def test_the_domain_never_reaches_into_the_data_access_or_the_local_stack() -> None:
    graph = _graph()
    for module, imported in graph.items():
        if module.startswith("costgate.dal"):
            continue
        assert not {other for other in imported if other.startswith("costgate.dal")}, module
    for path in SHARED.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            assert not any(name.split(".")[0] == "costgate_local" for name in names), path


def _long_modules() -> dict[str, int]:
    long = {}
    for base in (SHARED, LOCAL):
        for path in base.rglob("*.py"):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_MODULE_LINES:
                long[str(path.relative_to(ROOT))] = lines
    return long


def test_a_module_longer_than_600_lines_is_explained_in_the_decision_log() -> None:
    decisions = DECISIONS.read_text(encoding="utf-8")
    unexplained = {path: lines for path, lines in _long_modules().items() if f"`{path}`" not in decisions}
    assert unexplained == {}, "split these modules, or say in docs/decisions.md why each is one piece"


def test_a_port_imports_only_its_own_package_and_the_leaves() -> None:
    # Budget holds are the one model batches share with accounting: a batch reserves budget as requests do.
    leaves = {"costgate.errors", "costgate.clock", "costgate.money"}
    shared_models = {"costgate.batch": {"costgate.accounting.budgets"}}
    modules = _modules(SHARED)
    ports = sorted((SHARED / "costgate").glob("*/ports.py"))
    assert len(ports) >= 6
    for path in ports:
        own = f"costgate.{path.parent.name}"
        foreign = {m for m in _imports(path, modules) if not m.startswith(own + ".") and m not in leaves}
        assert foreign <= shared_models.get(own, set()), (path, foreign)


def test_every_error_class_lives_in_the_errors_module() -> None:
    pattern = re.compile(r"^class \w+(Error|Exception)\b", re.M)
    for path in (SHARED / "costgate").rglob("*.py"):
        if path.name != "errors.py":
            assert not pattern.search(path.read_text(encoding="utf-8")), path
