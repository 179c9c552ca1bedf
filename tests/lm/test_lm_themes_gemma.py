"""Themes by the real default model, Gemma 3 270M from the lm extra, for two clusters of the shipped
index (slow: converting the GGUF into a temporary cache takes a minute or two on 2 cores). Skips
when the extra is not installed."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import ROOT

from neurosearch.lm.files import GEMMA_NAME, GEMMA_PACKAGE, GEMMA_SHA256

MISSING = [m for m in (GEMMA_PACKAGE, "gguf") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"the lm extra is not installed ({', '.join(MISSING)}): "
                                             'pip install "neurosearch[lm]"'),
]


def test_gemma_names_the_weekday_and_number_clusters(tmp_path, monkeypatch):
    from neurosearch import Index
    from neurosearch.labeling.config import LabelConfig
    from neurosearch.labeling.llm import label_items, load_labels
    from neurosearch.labeling.requests import label_requests
    from neurosearch.lm import LMSpec
    from neurosearch.lm import spec as spec_module

    index = Index.load(ROOT / "index" / "default")
    requests = label_requests(index, ids=["k200/84", "k200/92"], contexts=0)  # weekdays; six, seven, 7, 6, 12, ...
    store, lm = tmp_path / "labels.json", LMSpec(cache_dir=tmp_path / "cache")
    run = label_items(requests, store, LabelConfig(), lm=lm)
    assert (run.labelled, run.failed) == (2, 0), run.messages
    key = f"local:{GEMMA_NAME}@{GEMMA_SHA256[:16]}"
    labels = load_labels(store)
    days, numbers = (labels[f"cluster:{index.search_method}/k200/{n}"] for n in (84, 92))
    assert "day" in days.theme.lower() and "number" in numbers.theme.lower(), (days.theme, numbers.theme)
    assert days.model == numbers.model == run.model == key and days.source == "llm"
    monkeypatch.setattr(spec_module, "load_language_model", lambda *a, **k: pytest.fail("loaded again"))
    again = label_items(requests, store, LabelConfig(), lm=lm)
    assert (again.cached, again.labelled) == (2, 0)
