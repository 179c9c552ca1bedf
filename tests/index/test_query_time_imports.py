"""The query-time package works with numpy and torch blocked: ``find`` of one-token words needs neither."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INDEX = ROOT / "index" / "default"

BLOCKED = (
    "import sys\n"
    "for name in ('numpy', 'torch', 'transformers'):\n"
    "    sys.modules[name] = None  # any import of them raises ImportError\n"
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED + code], capture_output=True, text=True, cwd=ROOT)


def test_the_query_time_package_imports_without_numpy_and_torch():
    result = _run("import neurosearch.index, neurosearch.index.index, neurosearch.format.files, neurosearch.ids\n"
                  "print('ok')\n")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.skipif(not (DEFAULT_INDEX / "manifest.json").is_file(), reason="no shipped index/default in this checkout")
def test_find_weekdays_on_the_default_index_with_numpy_and_torch_blocked():
    result = _run(
        "import json\n"
        "from neurosearch.index import Index\n"
        f"found = Index.load({str(DEFAULT_INDEX)!r}).find('weekdays')\n"
        "print(json.dumps(found.to_json()))\n"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["results"] and {"monday", "weekdays"} & {t["token"] for t in data["expanded_tokens"]}
    assert {r["kind"] for r in data["results"]} == {"cluster", "neuron"}
