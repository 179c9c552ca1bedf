"""The documentation site builds in strict mode, offline.

``mkdocs build --strict`` fails on any warning: a broken link or anchor, a page in ``docs/`` that
the navigation leaves out, or a docstring that mkdocstrings cannot render in the API reference.
The ``docs`` extra (``pip install -e ".[docs]"``) is optional, so without it this test skips.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def missing() -> list[str]:
    found = []
    for name in NEEDED:
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            found.append(name)
    return found


def test_the_docs_build_in_strict_mode(tmp_path: Path):
    if missing():
        pytest.skip(f"the docs extra is not installed ({', '.join(missing())} missing): pip install -e \".[docs]\"")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                           "--site-dir", str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert warnings == []
    for page in ("index.html", "guide/find/index.html", "results/retrieval/index.html", "api/index-class/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "index-class" / "index.html").read_text(encoding="utf-8")
    assert "Index.load" in api or 'id="neurosearch.index.index.Index.load"' in api  # rendered from the docstrings


def test_every_page_in_docs_is_in_the_navigation():
    """Checked without mkdocs too: a page left out of ``nav`` is not reachable on the site."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*([\w./-]+\.md)\s*$", config, flags=re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages - listed == set(), "pages missing from mkdocs.yml's nav"
    assert listed - pages == set(), "nav entries without a page"


def test_the_build_output_is_ignored_by_git():
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    site_dir = re.search(r"^site_dir:\s*(\S+)", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), flags=re.M)
    assert site_dir and f"/{site_dir.group(1)}/" in ignored
