"""Query time stands on its own: index/ and format/ import nothing of the build, the model, the
experiments, the labelling or the CLI (not even lazily), so ``find`` can never pull them in."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "neurosearch"
ABOVE = ("neurosearch.pipeline", "neurosearch.model", "neurosearch.experiments", "neurosearch.labeling", "neurosearch.cli",
         "neurosearch.plots")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_query_time_modules_import_nothing_above_them():
    wrong = {}
    for folder in ("index", "format"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            bad = sorted(name for name in _imports(path) if name.startswith(ABOVE))
            if bad:
                wrong[f"{folder}/{path.name}"] = bad
    assert wrong == {}
