"""Fixtures of the language-model tests: a tiny random causal LM (see tiny_causal_lm.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lm.tiny_causal_lm import save_tiny_causal_lm


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Treat as read-only (copy it before changing a file)."""
    return save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from neurosearch.lm import LMSpec, load_language_model

    return load_language_model(LMSpec(path=tiny_lm_dir, cache_dir=tmp_path_factory.mktemp("lm-cache")))
