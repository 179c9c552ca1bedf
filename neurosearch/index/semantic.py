"""How likely a kept token is to be a member of a concept: the features, from the model's own
semantic space and WordNet, and the fitted weights that turn them into a probability.

A concept (a query's key: "language", "european capital") is a unit vector ``q`` in the model's
sentence space (all-MiniLM-L6-v2's mean-pooled output, which the model was trained to make close
for texts that mean the same) and, optionally, a unit vector ``v`` in the input-embedding space
(the sum of its words' unit mean word-piece vectors). Every kept token has a vector in each space.
For one concept, each candidate token (the 300 tokens closest to ``q``, the 30 closest to ``v``,
and its WordNet members) gets the features of :data:`FEATURES`; the probability that it is a
member is ``sigmoid(coefficients . features + intercept)``, a logistic regression fitted on the
tuning half of ``benchmarks/concepts/general.json`` (``benchmarks/fit_expansion.py``). A
neuron's score is then the expected number of members among its first 10 top tokens, over 10.

numpy only, imported lazily: the build runs it for every concept key at once
(``pipeline/semantic.py``) and ``find`` only for a phrase it has no stored expansion of.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from neurosearch.index.semantic_names import FEATURES, LM_FEATURES

if TYPE_CHECKING:
    from typing import Callable

    from neurosearch.index.concepts import ConceptMember, ConceptTable, FamilyIndex

__all__ = ["FEATURES", "LM_FEATURES", "Ancestors", "LMScores", "Concept", "candidate_features", "concept_of", "expandable_mask", "expansion_of",
           "probabilities", "sense_evidence", "strongest"]

CANDIDATES = 300
"""Tokens most similar to q that are scored (with the 30 closest in the input space, the members
and the concept word's family)."""
PROTOTYPE_TOKENS = 20
EVIDENCE_MEMBERS = 5


@dataclass
class LMScores:
    """A language model's membership scores (``lm/membership.py``) of every kept token, per concept."""

    scores: np.ndarray
    """Float [concepts, Vk]: log-probabilities, floored (``membership.FLOOR`` for non-words)."""
    partial: np.ndarray
    """Bool [Vk]: words of more than one model token."""
    words: np.ndarray
    """Bool [Vk]: the tokens the model was asked about (``membership.is_word``)."""
    baseline: np.ndarray
    """Float [Vk]: the same scores for a concept that says nothing (``membership.BASELINE``)."""
    tokens: Sequence[str] = ()
    """The kept tokens (for :meth:`features`' copy guard)."""

    def features(self, row: int, candidates: np.ndarray, words: Sequence[str] = ()) -> np.ndarray:
        """The ``LM_FEATURES`` of the candidates for concept ``row`` ([C, 4] float64). A candidate
        that is a part of one of the concept's own ``words`` but not the word ("q" of "qqqz", "euro"
        of "european") gets its baseline score, as if the concept had said nothing about it: a
        language model continuing a list after the concept's name copies pieces of the name, which
        is no evidence of membership."""
        scores = self.scores[row].astype(np.float64)
        asked = scores[self.words] if self.words.any() else scores
        if words and len(self.tokens):
            copied = [i for i, t in enumerate(candidates) if _piece_of(self.tokens[int(t)], words)]
            if copied:
                scores = scores.copy()
                scores[candidates[copied]] = self.baseline[candidates[copied]]
        z = (scores[candidates] - asked.mean()) / (asked.std() + 1e-6)
        pmi = scores[candidates] - self.baseline[candidates].astype(np.float64)
        return np.stack([scores[candidates], pmi, z, self.partial[candidates].astype(np.float64)], axis=1)


def _piece_of(token: str, words: Sequence[str]) -> bool:
    """``token`` occurs inside one of ``words`` without being that word."""
    return any(token != word and token in word for word in words)


@dataclass
class Ancestors:
    """What WordNet says each kept token is a kind of, in the sentence space."""

    vectors: np.ndarray
    """Float32 [A, H] unit sentence vectors of the ancestor names."""
    rows: np.ndarray
    """Int [Vk, W]: each kept token's ancestors (rows of ``vectors``), padded with -1."""

    def similarity(self, query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """The largest cos(query, ancestor) of each candidate token; 0 for a token without any."""
        if self.rows.shape[1] == 0:
            return np.zeros(len(candidates))
        values = np.append(self.vectors @ query, -np.inf)
        best = values[self.rows[candidates]].max(axis=1)  # -1 (padding) reads the -inf at the end
        return np.where(np.isfinite(best), best, 0.0).astype(np.float64)


@dataclass
class Concept:
    """One concept to expand: its vectors, its family and its WordNet members."""

    sentence: np.ndarray
    """Unit vector in the sentence space."""
    input: np.ndarray | None
    """Unit vector in the input-embedding space, or None."""
    family: Sequence[int] = ()
    """Kept-token indices of the concept word's own forms."""
    members: Sequence["ConceptMember"] = field(default_factory=list)
    """WordNet members (depth 0 entries are the concept's own lemmas and are not members)."""
    words: Sequence[str] = ()
    """The concept's own words (lower case), as written in the query or key."""


def expandable_mask(kept_tokens: Sequence[str]) -> np.ndarray:
    """1 for the kept tokens an expansion may hold (words, not function words: ``query.expandable``)."""
    from neurosearch.index.query import expandable

    return np.asarray([expandable(token) for token in kept_tokens], dtype=np.float64)


def sense_evidence(similarity: np.ndarray, members: list[int]) -> float:
    """Mean similarity to the concept of a sense's ``EVIDENCE_MEMBERS`` members closest to it."""
    if not members:
        return 0.0
    values = np.sort(similarity[np.asarray(members, dtype=np.int64)])[::-1][:EVIDENCE_MEMBERS]
    return float(values.mean())


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def candidate_features(concepts: list[Concept], sentence_space: np.ndarray, input_space: np.ndarray,
                       ancestors: Ancestors | None = None, lm: LMScores | None = None,
                       lm_pool: int = 30) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each concept: (candidate kept-token indices, their feature matrix [C, len(FEATURES)], or
    [C, len(FEATURES) + len(LM_FEATURES)] with ``lm``).

    ``sentence_space`` and ``input_space`` hold the kept tokens' unit vectors (float32);
    ``ancestors`` what WordNet says each is a kind of (None without WordNet: that feature is 0);
    ``lm`` a language model's membership scores of every kept token for each concept (its
    ``lm_pool`` best-scored tokens join the candidates).
    """
    queries = np.stack([c.sentence for c in concepts]).astype(np.float32)
    similarity = queries @ sentence_space.T
    inputs = np.stack([c.input if c.input is not None else np.zeros(input_space.shape[1], np.float32)
                       for c in concepts]).astype(np.float32)
    input_similarity = inputs @ input_space.T
    prepared = [_prepare(c, similarity[row], sentence_space) for row, c in enumerate(concepts)]
    member_protos = np.stack([p[2] for p in prepared]).astype(np.float32) @ sentence_space.T
    input_protos = np.stack([_unit(input_space[p[1]].mean(axis=0)) for p in prepared]).astype(np.float32) @ input_space.T
    out = []
    for row, concept in enumerate(concepts):
        sim, (members, _, _) = similarity[row], prepared[row]
        top = np.argpartition(-sim, min(CANDIDATES, sim.size) - 1)[:CANDIDATES]
        pool = [top]
        if concept.input is not None:
            pool.append(np.argpartition(-input_similarity[row], min(30, sim.size) - 1)[:30])
        pool.append(np.asarray(list(members), dtype=np.int64))
        pool.append(np.asarray(list(concept.family), dtype=np.int64))
        if lm is not None and lm_pool > 0:
            pool.append(np.argpartition(-lm.scores[row], min(lm_pool, sim.size) - 1)[:lm_pool])
        candidates = np.unique(np.concatenate(pool).astype(np.int64))
        head = sim[top]
        z = (sim[candidates] - head.mean()) / (head.std() + 1e-6)
        is_member = np.zeros(candidates.size)
        head_, share, evidence = np.zeros(candidates.size), np.zeros(candidates.size), np.zeros(candidates.size)
        position = {int(t): i for i, t in enumerate(candidates)}
        for index, member in members.items():
            i = position[index]
            is_member[i], head_[i] = 1.0, float(member.head)
            share[i], evidence[i] = np.log(max(member.sense_share, 1e-3)), member.evidence
        s = sim[candidates].astype(np.float64)
        features = np.stack([s, z, is_member, is_member * s, head_, share, evidence,
                             member_protos[row, candidates], input_protos[row, candidates],
                             ancestors.similarity(concept.sentence, candidates) if ancestors is not None
                             else np.zeros(candidates.size)], axis=1)
        if lm is not None:
            features = np.hstack([features, lm.features(row, candidates, concept.words)])
        out.append((candidates, features))
    return out


def _prepare(concept: Concept, similarity: np.ndarray, sentence_space: np.ndarray):
    """(members by kept index, the prototype tokens, the member prototype vector) of a concept."""
    members = {m.index: m for m in concept.members if m.depth > 0}
    outside = similarity.copy()
    if len(concept.family):
        outside[np.asarray(list(concept.family), dtype=np.int64)] = -np.inf
    count = min(PROTOTYPE_TOKENS, outside.size)
    nearest = np.argpartition(-outside, count - 1)[:count]
    nearest = nearest[np.lexsort((nearest, -outside[nearest]))]
    weights = np.zeros(similarity.size, dtype=np.float32)
    for index in members:
        weights[index] = max(float(similarity[index]), 0.0)
    if weights.any():
        prototype = _unit(weights @ sentence_space)
    else:
        prototype = _unit(sentence_space[nearest].mean(axis=0))
    return members, nearest, prototype


def probabilities(features: np.ndarray, coefficients: Sequence[float], intercept: float) -> np.ndarray:
    """Membership probability of each candidate: the fitted logistic regression."""
    z = features @ np.asarray(coefficients, dtype=np.float64) + intercept
    return 1.0 / (1.0 + np.exp(-z))


def expansion_of(concept: Concept, candidates: np.ndarray, features: np.ndarray, config: Any,
                 allowed: np.ndarray, model: "Callable[[np.ndarray], np.ndarray] | None" = None) -> list[tuple[int, float]]:
    """A concept's stored expansion: the membership probabilities (``config``: an ``ExpansionConfig``)
    of the candidates that may be added (``allowed``: a mask over the kept tokens, ``query.expandable``).
    ``model`` (features -> probabilities) stands in for the config's logistic regression: how
    ``benchmarks/expansion_limits.py`` compares other membership models under the same rules.

    The concept word's own family (colors, color, colour, colored) is relevant but is the word, not
    its members. When WordNet lists kinds of it, the family counts as one member as likely as the
    likeliest one, so that a neuron for the word does not outrank one for its members (red, blue,
    green: "colors"); a word WordNet lists no kinds of is searched as itself: its family shares a
    weight of 1 ("monday", "paris"). The family comes first, then the members by weight."""
    weights = (model(features) if model is not None else probabilities(features, *config.weights(features.shape[1])))
    weights = weights * allowed[candidates]
    own = [int(t) for t in concept.family if allowed[int(t)]]
    found = strongest(candidates, np.where(np.isin(candidates, own), 0.0, weights), config.tokens_per_key,
                      config.min_weight)
    has_kinds = any(m.depth > 0 for m in concept.members)
    share = (found[0][1] if found and has_kinds else 1.0) / max(len(own), 1)
    return [(t, share) for t in sorted(own)] + found[: max(config.tokens_per_key - len(own), 0)]


def strongest(candidates: np.ndarray, weights: np.ndarray, count: int, floor: float) -> list[tuple[int, float]]:
    """The ``count`` heaviest candidates with weight >= ``floor``, heaviest first (ties by index)."""
    order = np.lexsort((candidates, -weights))[:count]
    return [(int(candidates[i]), float(weights[i])) for i in order if weights[i] >= floor]


def concept_of(text: str, sentence: np.ndarray, word_vector: "Callable[[str], np.ndarray | None]",
               families: "FamilyIndex", table: "ConceptTable | None", head: str | None = None) -> Concept:
    """A concept to expand: ``text`` (a key or a phrase) with its sentence vector; its WordNet members
    are those of ``head`` (a key of ``table``; default ``text`` itself)."""
    from neurosearch.index.query import content_words

    words = content_words(text)
    total = None
    for word in words:
        vector = word_vector(word)
        if vector is not None:
            total = vector if total is None else total + vector
    if total is not None:
        norm = float(np.linalg.norm(total))
        total = total / norm if norm > 0 else None
    members = table.entries(head or text) if table is not None else []
    return Concept(sentence=sentence, input=total, family=families.family(words), members=members,
                   words=tuple(w.lower() for w in text.split()))
