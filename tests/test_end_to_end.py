"""End to end on the real MiniLM, and the shipped default index."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INDEX = ROOT / "index" / "default"


@pytest.mark.slow
def test_build_and_find_with_real_minilm(tmp_path: Path):
    """Every build stage on MiniLM over a small synthetic corpus, then find through the CLI."""
    from conftest import make_corpus

    corpus = make_corpus(tmp_path / "docs.txt", 150, seed=3)
    out = tmp_path / "index"
    build = subprocess.run(
        [sys.executable, "-m", "neurosearch.cli", "build", "--corpus", str(corpus), "--out", str(out),
         "--min-count", "3", "--k", "10,40", "--methods", "filter,filter+smooth", "--quiet"],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_neurons"] == 6 * 1536 and manifest["model"]["id"].endswith("all-MiniLM-L6-v2")
    assert all(manifest["stages"][s]["done"] for s in ("stats", "profiles", "clusters", "search"))
    found = subprocess.run([sys.executable, "-m", "neurosearch.cli", "find", "monday", "--index", str(out), "--json"],
                           capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    data = json.loads(found.stdout)
    assert data["results"] and any(t["token"] == "monday" for t in data["expanded_tokens"])


def _find_default(*args: str) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        "from neurosearch.cli.app import app\n"
        f"sys.argv = ['neurosearch', 'find', *{list(args)!r}]\n"
        "try:\n    app()\nexcept SystemExit as exit:\n    code = exit.code\nelse:\n    code = 0\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'find imported torch'\n"
        "sys.exit(code)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.skipif(not (DEFAULT_INDEX / "manifest.json").is_file(), reason="no shipped index/default in this checkout")
def test_find_weekdays_on_the_default_index_without_torch():
    result = _find_default("weekdays", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    tokens = {t["token"] for t in data["expanded_tokens"]}
    assert "weekdays" in tokens or "monday" in tokens
    assert data["results"], "no results for weekdays"
    best = data["results"][0]
    assert len(best["top_tokens"]) >= 20 and best["neurons"]
