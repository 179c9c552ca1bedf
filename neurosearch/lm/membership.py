"""How likely a language model finds each of an index's kept tokens as a member of a concept.

One forward pass per concept of a few-shot prompt (:data:`PROMPT`: "Examples of fruits: apple,
banana, ...\\nExamples of {concept}:"); a token's score is the log-probability of its first model
token at the list's start (``LanguageModel.first_token_table``). A word the first token does not
cover ("raphael" starts with a token many words share) is marked ``partial``, so that the fitted
expansion model (``index/semantic.py``) can weigh its score down. Tokens that are not words (word
pieces, numbers, punctuation) get :data:`FLOOR`.

The encoder an index is built from knows which words occur in similar contexts; a causal LM knows
what belongs to a category ("google" is a tech company). ``pipeline/semantic.py`` scores every
concept key at build time (so ``find`` stays torch-free for them); ``model/phrases.py`` a novel
phrase at query time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import numpy as np

    from neurosearch.index.semantic import LMScores
    from neurosearch.lm.base import LanguageModel

PROMPT = ("Examples of fruits: apple, banana, cherry, grape\n"
          "Examples of tools: hammer, saw, wrench, drill\n"
          "Examples of {concept}:")
"""The few-shot prompt; candidates follow it with a leading space. It ends with ':' whatever the
concept, so a candidate's tokens after it are the same for every concept (tokenised once)."""
BASELINE = "things"
"""The concept of the baseline scores: a list of anything (``semantic.LMScores.baseline``)."""
from neurosearch.index.semantic_names import LM_FLOOR as FLOOR  # noqa: E402  (the one owner of the value)


def is_word(token: str) -> bool:
    """A kept token the language model is asked about: alphabetic, not a word piece."""
    return token.isalpha()


@dataclass
class MembershipScorer:
    """Scores concepts against fixed candidate tokens (an index's kept tokens) with one LM."""

    lm: "LanguageModel"
    tokens: list[str]
    """The kept tokens, in the index's order."""

    def __post_init__(self) -> None:
        import numpy as np

        self._words = np.asarray([i for i, t in enumerate(self.tokens) if is_word(t)], dtype=np.int64)
        self._candidates = [" " + self.tokens[i] for i in self._words]
        self._fixed: "tuple[np.ndarray, np.ndarray] | None" = None

    def _baseline_and_partial(self) -> "tuple[np.ndarray, np.ndarray]":
        """(:attr:`baseline`, :attr:`partial`), from one forward pass on first need."""
        import numpy as np

        if self._fixed is None:
            table, counts = self.lm.first_token_table([PROMPT.format(concept=BASELINE)], self._candidates)
            baseline = np.full(len(self.tokens), FLOOR, dtype=np.float32)
            partial = np.zeros(len(self.tokens), dtype=bool)
            if len(self._candidates):
                baseline[self._words] = np.maximum(np.asarray(table, dtype=np.float32)[0], FLOOR)
                partial[self._words] = np.asarray(counts) > 1
            self._fixed = baseline, partial
        return self._fixed

    @property
    def baseline(self) -> "np.ndarray":
        """Float32 [kept]: the scores for the concept :data:`BASELINE` (a list of anything)."""
        return self._baseline_and_partial()[0]

    @property
    def partial(self) -> "np.ndarray":
        """Bool [kept]: words of more than one model token."""
        return self._baseline_and_partial()[1]

    def as_stored(self, concepts: Sequence[str]) -> "LMScores":
        """:meth:`scores` and :attr:`baseline` as ``semantic.LMScores``, rounded through float16 as
        a build keeps them (``pipeline/lm_scores.py``): a phrase scored now is scored like a key."""
        import numpy as np

        from neurosearch.index.semantic import LMScores

        words = np.zeros(len(self.tokens), dtype=bool)
        words[self._words] = True
        as_kept = lambda a: np.asarray(a).astype(np.float16).astype(np.float32)  # noqa: E731
        return LMScores(as_kept(self.scores(concepts)), self.partial, words, as_kept(self.baseline), self.tokens)

    def scores(self, concepts: Sequence[str]) -> "np.ndarray":
        """Float32 [concepts, kept]: each kept token's first-token log-probability as a member of
        each concept (:data:`FLOOR` for tokens that are not words, and at least that for words)."""
        import numpy as np

        prompts = [PROMPT.format(concept=" ".join(c.split())) for c in concepts]
        out = np.full((len(prompts), len(self.tokens)), FLOOR, dtype=np.float32)
        if prompts and len(self._candidates):
            table, _ = self.lm.first_token_table(prompts, self._candidates)
            out[:, self._words] = np.maximum(np.asarray(table, dtype=np.float32), FLOOR)
        return out
