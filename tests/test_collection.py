"""Every test file is collected by the README's test command.

pytest's default ``norecursedirs`` skips folders such as ``build`` and ``dist``: a test file in
one never runs, silently (16 tests under ``tests/build/`` once did not). This guard runs the
README's command in collect-only mode and fails when a ``test_*.py`` below ``tests/`` yields
neither a test nor a module-level skip."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def uncollected(root: Path) -> list[str]:
    """The ``tests/**/test_*.py`` files of ``root`` that ``python -m pytest -q`` does not collect."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-rs", "-p", "no:cacheprovider"],
                          cwd=root, capture_output=True, text=True, timeout=600)
    seen = {line.split("::", 1)[0] for line in done.stdout.splitlines() if "::" in line}
    seen |= set(re.findall(r"^SKIPPED \[\d+\] ([^:\s]+\.py)", done.stdout, flags=re.M))
    files = {path.relative_to(root).as_posix() for path in (root / "tests").rglob("test_*.py")
             if "__pycache__" not in path.parts}
    return sorted(files - seen)


def test_every_test_file_is_collected_by_the_readme_command():
    assert uncollected(ROOT) == []


def test_the_guard_names_a_file_that_pytest_skips(tmp_path):
    (tmp_path / "tests" / "build").mkdir(parents=True)
    (tmp_path / "tests" / "test_seen.py").write_text("def test_a():\n    pass\n")
    (tmp_path / "tests" / "test_extra.py").write_text(
        "import pytest\npytest.skip('extra absent', allow_module_level=True)\n")
    (tmp_path / "tests" / "build" / "test_hidden.py").write_text("def test_b():\n    pass\n")
    assert uncollected(tmp_path) == ["tests/build/test_hidden.py"]
