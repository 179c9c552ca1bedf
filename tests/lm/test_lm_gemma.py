"""The real default model, Gemma 3 270M from the lm extra (slow: about a minute or two on 2 cores,
and 1 GB of converted weights in a temporary cache folder). Skips when the extra is not installed."""

from __future__ import annotations

import gc
import importlib.util

import pytest

from neurosearch.lm import load_language_model
from neurosearch.lm.files import GEMMA_NAME, GEMMA_PACKAGE, GEMMA_SHA256

MISSING = [m for m in (GEMMA_PACKAGE, "gguf") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"the lm extra is not installed ({', '.join(MISSING)}): "
                                             'pip install "neurosearch[lm]"'),
]
PROMPT = "Examples of fruits: apple, banana, cherry\nExamples of weekdays:"
CANDIDATES = [" monday", " carrot", " Monday", " Tuesday", " hammer", " Sunday", " piano"]


def test_gemma_converts_once_scores_membership_and_loads_again_from_its_copy(tmp_path):
    lm = load_language_model(None, cache_dir=tmp_path)
    assert (lm.identity.name, lm.identity.digest) == (GEMMA_NAME, GEMMA_SHA256)
    scores = {s.text: s.logprob for s in lm.next_token_logprobs(PROMPT, CANDIDATES)}
    assert scores[" monday"] > scores[" carrot"]
    assert min(scores[w] for w in (" Monday", " Tuesday", " Sunday")) > max(scores[w] for w in (" carrot", " hammer", " piano"))
    assert lm.generate(PROMPT, max_tokens=6, stop=["\n"]).startswith(" Monday, Tuesday")
    copies = list(tmp_path.glob(f"{GEMMA_NAME}-*"))
    assert [c.name for c in copies] == [f"{GEMMA_NAME}-{GEMMA_SHA256[:16]}"]
    assert (copies[0] / "neurosearch-lm.json").is_file() and (copies[0] / "model.safetensors").is_file()
    assert not list(tmp_path.rglob("*.gguf"))  # the assembled GGUF is not kept
    del lm
    gc.collect()
    again = load_language_model(None, cache_dir=tmp_path)  # from the converted copy: the same numbers
    assert {s.text: s.logprob for s in again.next_token_logprobs(PROMPT, CANDIDATES)} == pytest.approx(scores, abs=1e-4)
