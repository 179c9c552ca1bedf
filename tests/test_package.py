"""The wheel: built from the checkout, installed into a fresh venv, run from another folder.

Offline and quick: the wheel is built without build isolation (the running environment's
setuptools), installed with ``--no-deps`` into a venv that sees the running environment's
site-packages through a ``.pth`` file (the dependencies), never the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import ROOT, file_tree, git_status, make_corpus

SHIPPED = ROOT / "index" / "default"


def source_copy(target: Path) -> Path:
    """What a release is built from: the package, the default index and the packaging files."""
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / "neurosearch", target / "neurosearch", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SHIPPED, target / "index" / "default")
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the venv's python, the installed package) of a wheel built from this checkout."""
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip("no index/default in this checkout")
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    source.mkdir()
    source_copy(source)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                            "-w", str(base / "dist"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel = next((base / "dist").glob("neurosearch-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           "--no-index", str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "_neurosearch_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")  # after the install
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB")
    return python, purelib / "neurosearch"


def neurosearch(python: Path, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(python.parent / "neurosearch"), *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


@pytest.mark.slow
def test_the_installed_wheel_finds_without_a_source_tree_and_writes_nothing_into_itself(
        installed: tuple[Path, Path], tmp_path: Path, llm):  # noqa: F811
    python, package = installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "NEUROSEARCH_INDEX", "OPENAI_API_KEY", "OPENAI_BASE_URL")
           and not k.lower().endswith("_proxy")}
    env["NEUROSEARCH_STATE"] = str(tmp_path / "state")
    where = subprocess.run([str(python), "-c", "import neurosearch; print(neurosearch.__file__)"], capture_output=True,
                           text=True, cwd=elsewhere, env=env, check=True).stdout
    assert Path(where.strip()).parent == package and not where.startswith(str(ROOT))
    before, status = file_tree(package), git_status()

    found = neurosearch(python, "find", "weekdays", "--json", cwd=elsewhere, env=env)
    assert found.returncode == 0, found.stderr
    data = json.loads(found.stdout)
    assert data["results"] and data["results"][0]["top_tokens"]
    info = json.loads(neurosearch(python, "info", "--json", cwd=elsewhere, env=env).stdout)
    assert info["path"] == str(package / "_shipped" / "default") and info["mlm_head"] == "fitted"
    assert not info["results"]["writes_into_index"] and info["results"]["results"].startswith(env["NEUROSEARCH_STATE"])
    checked = json.loads(neurosearch(python, "verify", "--json", cwd=elsewhere, env=env).stdout)
    shipped_files = set(json.loads((package / "_shipped" / "default" / "manifest.json").read_text())["files"])
    assert checked["checked"]["files"] == len(shipped_files)
    assert not [p for p in checked["problems"] if p["file"] in shipped_files | {"manifest.json"}], checked["problems"]

    # the commands that store results, on the installed index
    corpus = make_corpus(tmp_path / "docs.txt", 60)
    ablated = neurosearch(python, "ablate", "--neurons", "0:1", "--tokens", "monday,friday", "--sentences", "8",
                          "--seeds", "2", "--corpus", str(corpus), cwd=elsewhere, env=env)
    assert ablated.returncode == 0, ablated.stderr
    labelled = neurosearch(python, "label", "--base-url", llm.base_url, "--contexts", "0", "--k", "50",
                           cwd=elsewhere, env=env)
    assert labelled.returncode == 0, labelled.stderr
    assert len(llm.seen) == 50
    evaluated = neurosearch(python, "evaluate", "--max-clusters", "1", "--methods", "filter", "--k", "50",
                            "--corpus", str(corpus), cwd=elsewhere, env=env)
    # the shipped results predate result format 2 and are not reused: one cluster is ablated, or
    # skipped with a note when the small corpus lacks its tokens
    assert evaluated.returncode == 0, evaluated.stderr
    shown = neurosearch(python, "show", "neuron", "0:1", "--json", cwd=elsewhere, env=env)
    assert json.loads(shown.stdout)["ablation"]["target"]["neurons"] == ["0:1"]
    shown = neurosearch(python, "show", "cluster", "k50/0", "--json", cwd=elsewhere, env=env)
    assert json.loads(shown.stdout)["label"]["source"] == "llm"

    assert file_tree(package) == before, "a command wrote into the installed package"
    assert git_status() == status, "a command changed the checkout"
    assert list(elsewhere.iterdir()) == []
    results = Path(info["results"]["results"])
    assert {p.name for p in results.iterdir()} >= {"ablations.json", "labels.json", "evaluation-sample1"}
