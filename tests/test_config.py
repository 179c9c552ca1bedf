"""Configs validate themselves: choices are Literal types, numbers have ranges, NaN is refused."""

from __future__ import annotations

import math

import pytest

from neurosearch.config import (
    METHODS,
    ClusterConfig,
    CorpusConfig,
    ModelConfig,
    ProfileConfig,
    SearchConfig,
    StatsConfig,
    from_dict,
)
from neurosearch.errors import ConfigError


@pytest.mark.parametrize("make", [
    lambda: ModelConfig(site="everywhere"), lambda: ModelConfig(dtype="foo"), lambda: ModelConfig(model=""),
    lambda: CorpusConfig(max_docs=0), lambda: CorpusConfig(window=2), lambda: StatsConfig(shard_docs=-1),
    lambda: StatsConfig(batch_tokens=0), lambda: ProfileConfig(min_count=0), lambda: ProfileConfig(min_count="lots"),
    lambda: ProfileConfig(methods=("filter", "bogus")), lambda: ProfileConfig(methods=()),
    lambda: ProfileConfig(methods=("filter+tfidf",), search_method="filter"),
    lambda: ProfileConfig(smoothing_lambda=math.nan), lambda: ProfileConfig(smoothing_lambda=2.0),
    lambda: ProfileConfig(embeddings="file"), lambda: ProfileConfig(embeddings="word2vec"),
    lambda: ClusterConfig(ks=()), lambda: ClusterConfig(ks=(0,)), lambda: ClusterConfig(ks=("abc",)),
    lambda: ClusterConfig(refine_max_distance=math.inf), lambda: SearchConfig(min_score=math.nan),
    lambda: SearchConfig(weak_score=2.0), lambda: SearchConfig(hnsw_min_rows=-1),
])
def test_bad_values_are_refused(make):
    with pytest.raises(ConfigError) as raised:
        make()
    assert raised.value.option and raised.value.option in str(raised.value)


def test_defaults_and_manifest_round_trip_are_valid():
    for cls in (ModelConfig, CorpusConfig, StatsConfig, ProfileConfig, ClusterConfig, SearchConfig):
        cls()
    assert from_dict(ProfileConfig, {"methods": list(METHODS), "unknown": 1}).methods == METHODS


def test_one_default_for_shard_docs():
    import inspect

    from neurosearch.cli.build import build

    assert inspect.signature(build).parameters["shard_docs"].default == StatsConfig().shard_docs == 4000


def test_other_stages_configs_validate_too():
    from neurosearch.experiments.ablation import AblationConfig
    from neurosearch.labeling.llm import LabelConfig
    from neurosearch.model.head import HeadConfig

    for make in (lambda: AblationConfig(draws=1), lambda: AblationConfig(ablation="half"),
                 lambda: AblationConfig(top_tokens=-1), lambda: AblationConfig(readouts=("x",)),
                 lambda: AblationConfig(level=0.0), lambda: LabelConfig(timeout=math.nan),
                 lambda: LabelConfig(contexts=-1), lambda: HeadConfig(epochs=0), lambda: HeadConfig(lr=math.nan),
                 lambda: HeadConfig(schedule="linear"), lambda: HeadConfig(max_steps=0)):
        with pytest.raises(ConfigError):
            make()
