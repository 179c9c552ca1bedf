"""No import circles: no module of the package can reach itself through
imports, counting lazy (in-function) imports and type-checking-only (``if TYPE_CHECKING:``) imports too. The root package (everyone's parent) and a
package's lazy ``__getattr__`` accessor are left out; importing ``a.b.c`` counts as importing ``a.b``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("neurosearch",)
"""Every module: a cycle anywhere fails this test."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "neurosearch").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef) and child.name == "__getattr__" and path.name == "__init__.py":
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [child.module] + [f"{child.module}.{alias.name}" for alias in child.names]
            for name in names:
                target = resolve(name) if name.startswith("neurosearch.") else None
                if target:
                    parts = target.split(".")
                    found.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_no_import_cycles_through_query_time_and_build_modules():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name, "neurosearch"} for name, path in modules.items() if name != "neurosearch"}
    assert [c for c in _cycles(graph) if any(m.startswith(CHECKED) for m in c)] == []
