"""The build's stages are objects run in order, not methods looked up by name."""

from __future__ import annotations

from pathlib import Path

from neurosearch.pipeline.builder import STAGES, Builder
from neurosearch.config import BuildConfig, CorpusConfig
from neurosearch.progress import SilentReporter


def test_the_stages_are_the_named_ones_in_order(tmp_path: Path):
    builder = Builder(BuildConfig(corpus=CorpusConfig(source=str(tmp_path / "docs.txt"))), tmp_path / "index",
                      SilentReporter())
    stages = builder.stages(corpus=None)
    assert tuple(stage.name for stage in stages) == STAGES
    assert all(callable(stage.run) for stage in stages)
