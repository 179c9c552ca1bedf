"""``build`` with no method flags builds the shipped recipe; ``--paper`` the paper's; ``info`` agrees with itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neurosearch.cli.app import app
from neurosearch.config import ADDED_LATER, PAPER, build_recipe

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "index" / "default" / "manifest.json"
runner = CliRunner()


def _build(tiny_model: Path, tiny_corpus: Path, out: Path, *flags: str):
    return runner.invoke(app, ["build", "--corpus", str(tiny_corpus), "--out", str(out), "--model", str(tiny_model),
                               "--min-count", "2", "--k", "3,6", "--dtype", "float32", "--batch-tokens", "256",
                               "--shard-docs", "100", "--quiet", *flags])


@pytest.fixture(scope="module")
def plain_build(tmp_path_factory, tiny_model: Path, tiny_corpus: Path) -> Path:
    out = tmp_path_factory.mktemp("plain") / "index"
    result = _build(tiny_model, tiny_corpus, out)  # only what a tiny corpus needs: no method flags
    assert result.exit_code == 0, result.output
    return out


def test_a_build_without_method_flags_is_the_shipped_recipe(plain_build: Path):
    configs = json.loads((plain_build / "manifest.json").read_text())["configs"]
    assert configs["profiles"]["search_method"] == "filter+smooth+tfidf"
    assert configs["profiles"]["methods"] == ["filter", "filter+tfidf", "filter+smooth", "filter+smooth+tfidf"]
    assert configs["profiles"]["embeddings"] == "model" and configs["model"]["site"] == "ffn"
    assert configs["clusters"]["refine"] is False
    if SHIPPED.is_file():  # the very settings the default index was built with (bar corpus-sized ones)
        shipped = json.loads(SHIPPED.read_text())["configs"]
        for stage, added in ADDED_LATER.items():  # fields added since it was built, at the value it was built with
            shipped[stage] = {**added, **shipped[stage]}
        for stage, sized in (("profiles", {"min_count"}), ("clusters", {"ks"}), ("model", {"model", "dtype"})):
            assert {k: v for k, v in configs[stage].items() if k not in sized} == \
                   {k: v for k, v in shipped[stage].items() if k not in sized}, stage


def test_paper_settings_are_one_flag_away(tiny_model: Path, tiny_corpus: Path, tmp_path: Path):
    assert build_recipe() == {"site": "ffn", "embeddings": "model", "refine": False}
    assert build_recipe(paper=True) == PAPER == {"site": "hidden", "embeddings": "fasttext", "refine": True}
    assert build_recipe(paper=True, site="ffn", refine=False) == {"site": "ffn", "embeddings": "fasttext", "refine": False}
    result = _build(tiny_model, tiny_corpus, tmp_path / "paper", "--paper", "--until", "stats")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "paper" / "manifest.json").read_text())
    assert manifest["site"] == "hidden" and manifest["configs"]["model"]["site"] == "hidden"


def test_info_says_the_same_in_its_table_and_its_json(plain_build: Path, tmp_path: Path):
    import shutil

    data = json.loads(runner.invoke(app, ["info", "--index", str(plain_build), "--json"]).stdout)
    table = runner.invoke(app, ["info", "--index", str(plain_build)], env={"COLUMNS": "200"}).stdout
    assert data["mlm_head"] == "model" and data["model"]["has_mlm_head"] is True  # the tiny BERT has its own
    assert "the model's own" in table and "(find uses filter+smooth+tfidf)" in table and "(unrefined clusters)" in table
    copy = tmp_path / "headless"
    shutil.copytree(plain_build, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["model"]["has_mlm_head"] = False  # as for MiniLM
    (copy / "manifest.json").write_text(json.dumps(manifest))
    data = json.loads(runner.invoke(app, ["info", "--index", str(copy), "--json"]).stdout)
    table = runner.invoke(app, ["info", "--index", str(copy)], env={"COLUMNS": "200"}).stdout
    assert data["mlm_head"] == "none" and data["head_path"] is None and "none: the model has no MLM head" in table
    (copy / "head").mkdir()
    (copy / "head" / "head.json").write_text("{}")
    (copy / "head" / "head.safetensors").write_bytes(b"")
    data = json.loads(runner.invoke(app, ["info", "--index", str(copy), "--json"]).stdout)
    table = runner.invoke(app, ["info", "--index", str(copy)], env={"COLUMNS": "200"}).stdout
    assert data["mlm_head"] == "fitted" and data["head_path"] == str(copy / "head")
    assert f"fitted ({copy / 'head'}); the model has none of its own" in table
