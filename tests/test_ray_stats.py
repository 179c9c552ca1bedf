"""The statistics stage on a local Ray instance: merged shards == the single-process build, bit for bit."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from neurosearch.pipeline import build_index
from neurosearch.pipeline.stats import TokenStats
from neurosearch.config import BuildConfig, CorpusConfig, ModelConfig, StatsConfig

from conftest import make_corpus


def _config(model: Path, corpus: Path) -> BuildConfig:
    return BuildConfig(model=ModelConfig(model=str(model), dtype="float32"),
                       corpus=CorpusConfig(source=str(corpus), window=16),
                       stats=StatsConfig(batch_tokens=128, shard_docs=15, top_k=5))


@pytest.mark.slow
def test_ray_build_equals_single_process(tmp_path: Path, tiny_model: Path):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'neurosearch[ray]'")
    corpus = make_corpus(tmp_path / "docs.txt", 70, seed=3, words=(10, 40))
    local = build_index(_config(tiny_model, corpus), tmp_path / "local", until="stats")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        remote = build_index(_config(tiny_model, corpus), tmp_path / "ray", until="stats", ray="local")
    finally:
        ray.shutdown()
    assert remote.stages["stats"]["workers"] == "ray" and local.stages["stats"]["workers"] == "local"
    a, b = TokenStats.load(tmp_path / "local" / "stats"), TokenStats.load(tmp_path / "ray" / "stats")
    for name in ("token_ids", "token_counts", "token_sums", "neuron_sumsq", "neuron_sums", "top_values", "top_refs"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.documents, a.windows) == (b.documents, b.windows) == (70, a.windows)


@pytest.mark.parametrize("args, address", [
    ([], None), (["--ray"], "auto"), (["--ray", "-q"], "auto"), (["-q", "--ray"], "auto"),
    (["--ray-address", "local"], "local"), (["--ray-address", "ray://head:10001", "-q"], "ray://head:10001"),
])
def test_build_ray_options_name_the_address(tmp_path: Path, args: list[str], address: str | None):
    """``--ray`` alone is the running cluster (``auto``); ``--ray-address`` names one; other flags stay flags."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'neurosearch[ray]'")
    from typer.testing import CliRunner

    import neurosearch.pipeline
    from neurosearch.cli.app import app

    seen = {}

    def fake_build(config, out, **options):
        seen.update(options)
        raise SystemExit(0)

    with mock.patch.object(neurosearch.pipeline, "build_index", fake_build, create=True):
        result = CliRunner().invoke(app, ["build", "--corpus", str(tmp_path / "docs.txt"), "--out",
                                          str(tmp_path / "out"), *args])
    assert result.exit_code == 0, result.output
    assert seen["ray"] == address


def test_a_ray_address_that_is_a_flag_is_refused(tmp_path: Path):
    from typer.testing import CliRunner

    from neurosearch.cli.app import app

    result = CliRunner().invoke(app, ["build", "--corpus", str(tmp_path / "docs.txt"), "--out", str(tmp_path / "out"),
                                      "--ray-address", "--force"])
    assert result.exit_code != 0 and "--ray-address takes a Ray address" in result.output
    assert not (tmp_path / "out").exists()
