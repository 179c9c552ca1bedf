"""A model directory whose config asks for its own Python (``auto_map``) never gets it run, nor asks to."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from battery.battery_kit import cli, sub

EVIL = "open({marker!r}, 'w').write('ran')\nfrom transformers import BertConfig as EvilConfig, BertModel as EvilModel\n" \
       "from transformers import PreTrainedTokenizerFast as EvilTokenizer\n"


def _evil_model(tiny_model: Path, folder: Path, model_type: str | None = None) -> tuple[Path, Path]:
    """A copy of the tiny model with auto_map entries pointing at Python that leaves a marker when run."""
    model = folder / "model"
    shutil.copytree(tiny_model, model)
    marker = folder / "RAN"
    for name in ("configuration_evil.py", "modeling_evil.py", "tokenization_evil.py"):
        (model / name).write_text(EVIL.format(marker=str(marker)))
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel",
                          "AutoModelForMaskedLM": "modeling_evil.EvilModel"}
    if model_type:
        config["model_type"] = model_type
    (model / "config.json").write_text(json.dumps(config))
    tokenizer = json.loads((model / "tokenizer_config.json").read_text())
    tokenizer["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (model / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    return model, marker


def test_auto_map_of_a_builtin_architecture_loads_the_builtin_class(tiny_model: Path, tmp_path: Path):
    from neurosearch.config import ModelConfig
    from neurosearch.model.loading import load_model

    model, marker = _evil_model(tiny_model, tmp_path)
    loaded = load_model(ModelConfig(model=str(model), dtype="float32"), mlm=True)
    assert type(loaded.encoder).__module__.startswith("transformers.") and not marker.exists()


def test_build_with_a_custom_code_model_is_refused_without_running_or_asking(tiny_model: Path, tiny_corpus: Path,
                                                                           tmp_path: Path):
    model, marker = _evil_model(tiny_model, tmp_path, model_type="evil")
    out = tmp_path / "out"
    line = sub("build", "--corpus", tiny_corpus, "--out", out, "--model", model, "-q", input="y\ny\n").error_line()
    assert "own Python code" in line and not marker.exists() and not out.exists()


@pytest.mark.parametrize("model_type", [None, "evil"])
def test_in_process_build_never_runs_the_code(tiny_model: Path, tiny_corpus: Path, tmp_path: Path,
                                              model_type: str | None):
    model, marker = _evil_model(tiny_model, tmp_path, model_type)
    out = tmp_path / "out"
    outcome = cli("build", "--corpus", tiny_corpus, "--out", out, "--model", model, "-q", "--min-count", "2",
                  "--k", "3", "--until", "stats")
    if model_type is None:
        outcome.ok()
    else:
        outcome.error_line()
    assert not marker.exists()
