"""The build's stages are objects run in order, not methods looked up by name."""

from __future__ import annotations

from pathlib import Path

from neurosearch.pipeline.builder import STAGES, Builder
from neurosearch.config import BuildConfig, CorpusConfig
from neurosearch.progress import SilentReporter


def test_the_stages_are_the_named_ones_in_order(tmp_path: Path):
    builder = Builder(BuildConfig(corpus=CorpusConfig(source=str(tmp_path / "docs.txt"))), tmp_path / "index",
                      SilentReporter())
    stages = builder.stages()
    assert tuple(stage.name for stage in stages) == STAGES
    assert all(callable(stage.run) for stage in stages)


def test_a_stage_reads_only_earlier_stages_and_writes_what_the_layout_says():
    from neurosearch.format import layout

    stages = Builder(BuildConfig(), Path("unused"), SilentReporter()).stages()
    for number, stage in enumerate(stages):
        assert set(stage.reads) <= {s.name for s in stages[:number]}
        assert stage.writes and set(stage.writes) <= {path for path, _ in layout.files()}
    assert layout.linkage_file("<method>") in next(s for s in stages if s.name == "clusters").writes


def test_a_stage_whose_inputs_are_not_built_is_refused(tmp_path: Path):
    import pytest

    from neurosearch.errors import NeurosearchError
    from neurosearch.format.manifest import Manifest

    builder = Builder(BuildConfig(corpus=CorpusConfig(source=str(tmp_path / "docs.txt"))), tmp_path / "index",
                      SilentReporter())
    manifest = Manifest(model={}, site="ffn", n_layers=1, neurons_per_layer=2)
    clusters = builder.stages()[2]
    with pytest.raises(NeurosearchError, match="needs profiles built first"):
        builder._run_stage(manifest, clusters, corpus=None)


def test_the_search_stage_takes_the_tree_the_clusters_stage_built(tiny_index: Path, tmp_path: Path, monkeypatch):
    import shutil

    import numpy as np

    from neurosearch.format import layout
    from neurosearch.format.manifest import Manifest
    from neurosearch.pipeline import clusters_stage, search_stage

    copy = tmp_path / "index"
    shutil.copytree(tiny_index, copy)
    manifest = Manifest.load(copy)
    method = manifest.search_method
    children = np.load(copy / layout.tree_file(method, "children"))
    assert (copy / layout.linkage_file(method)).is_file()

    def never(*args, **kwargs):
        raise AssertionError("the tree was built again")

    monkeypatch.setattr(clusters_stage, "cluster_tree", never)
    stage = search_stage.SearchStage(copy, manifest, SilentReporter(), False, lambda: None)
    stage._write_method(method, stage._token_space())
    np.testing.assert_array_equal(np.load(copy / layout.tree_file(method, "children")), children)
    monkeypatch.undo()
    (copy / layout.linkage_file(method)).unlink()  # an index built before the tree was kept: built again, the same
    stage._write_method(method, stage._token_space())
    np.testing.assert_array_equal(np.load(copy / layout.tree_file(method, "children")), children)


def test_heldout_documents_never_enter_the_statistics(tiny_model: Path, tiny_corpus: Path, tmp_path: Path):
    import json

    import numpy as np

    from neurosearch.config import ClusterConfig, ModelConfig, ProfileConfig, StatsConfig
    from neurosearch.corpus import heldout_documents, is_heldout, read_documents, training_documents
    from neurosearch.model.loading import load_model, neuron_site
    from neurosearch.pipeline import build_index
    from neurosearch.pipeline.stats import TokenStats, shard_statistics

    corpus = CorpusConfig(source=str(tiny_corpus), window=16, max_docs=80, heldout_share=0.3)
    config = BuildConfig(model=ModelConfig(model=str(tiny_model), dtype="float32"), corpus=corpus,
                         stats=StatsConfig(batch_tokens=256, shard_docs=25),
                         profiles=ProfileConfig(min_count=2, methods=("filter",), search_method="filter"),
                         clusters=ClusterConfig(ks=(3,)), concepts=False)
    out = tmp_path / "index"
    build_index(config, out, until="profiles")
    held = dict(heldout_documents(corpus))
    assert 0 < len(held) < 80 and all(is_heldout(text, 0.3) for text in held.values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["corpus"]["heldout_documents"] == len(held) and manifest["corpus"]["heldout_share"] == 0.3
    stats = TokenStats.load(out / "stats")
    loaded = load_model(config.model)
    site = neuron_site(loaded.encoder, "ffn")
    expected = shard_statistics(loaded, site, list(training_documents(corpus)), 0, config.stats, 16).export()
    everything = shard_statistics(loaded, site, list(read_documents(corpus)), 0, config.stats, 16).export()
    np.testing.assert_array_equal(stats.token_counts, expected.token_counts)
    assert stats.tokens < everything.tokens
    documents = np.asarray(stats.top_refs)[..., 0]
    assert not set(documents[np.asarray(stats.top_values) > -np.inf].ravel().tolist()) & set(held)
