"""On the development data beside the checkout (../shared): each test skips, saying why, without it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import requires_shared

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INDEX = ROOT / "index" / "default"
WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}


@pytest.fixture(scope="module")
def shipped():
    from neurosearch import Index

    if not (DEFAULT_INDEX / "manifest.json").is_file():
        pytest.skip("no shipped index/default in this checkout")
    return Index.load(DEFAULT_INDEX)


def test_the_shipped_references_point_at_the_tokens_they_name(shipped):
    from neurosearch.index.contexts import read_contexts
    from neurosearch.index.evidence import neuron_evidence

    corpus = requires_shared("data", "c4-sample.jsonl.gz")
    evidence = neuron_evidence(shipped, "2:1454", shipped.search_method, 20)
    (strongest,), lookup = read_contexts(shipped, [evidence.strongest], corpus=str(corpus))
    assert lookup.problem is None, lookup.problem
    assert len(strongest) == 20 and all(r["left"] is not None for r in strongest)


def test_the_weekday_neuron_shows_weekdays_on_its_top_tokens(shipped):
    from neurosearch.index.contexts import read_contexts
    from neurosearch.index.evidence import build_command, has_contexts, neuron_evidence

    corpus = requires_shared("data", "c4-sample.jsonl.gz")
    if not has_contexts(shipped, shipped.search_method):
        pytest.skip(f"index/default has no contexts stage yet; add it with: {build_command(shipped)}")
    evidence = neuron_evidence(shipped, "2:1454", shipped.search_method, 10)
    (on_top,), lookup = read_contexts(shipped, [evidence.on_top_tokens], corpus=str(corpus))
    assert lookup.problem is None, lookup.problem
    weekdays = [r for r in on_top if r["piece"] in WEEKDAYS]
    assert len(weekdays) >= 6 and all(r["token"].lower() == r["piece"] for r in weekdays)
    assert all(r["z"] > 3 for r in weekdays)  # where it fires most on them, far above its mean
