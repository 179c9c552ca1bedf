"""Queries: a concept ("weekdays") or a token list becomes a weighted vector over the kept tokens.

The query's own word pieces (weight 1), plus each word's nearest kept tokens in the index's token
embedding space (weight = ``neighbour_weight`` x cosine similarity, above a floor), plus the
concept's members from WordNet (hyponyms and parts, baked into the index by the build when WordNet
data is installed). No torch, and no numpy on the common path: the index stores the tokenizer
(BERT's WordPiece vocabulary in ``search/wordpiece.json``, read by ``wordpiece.py``; other
tokenizers from ``tokenizer.json`` with the ``tokenizers`` library) and every vocabulary token's
nearest kept tokens; the index computes neighbours from its embedding table (numpy) only for words
of several pieces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Callable, Sequence

from neurosearch.config import SearchConfig
from neurosearch.errors import NeurosearchError

if TYPE_CHECKING:
    import numpy as np

    from neurosearch.index.concepts import ConceptTable

MAX_QUERY_CHARS = 1000
"""Longest query accepted (a concept is a few words; a 100 kB query took 8.6 s to expand)."""
MAX_QUERY_TOKENS = 500
"""Most tokens accepted in an explicit token list."""


@dataclass
class ExpandedQuery:
    """What a query became: kept-token indices with weights (and what its ANN vector is made of)."""

    text: str
    token_index: list[int]
    """Kept-token indices, each once."""
    weights: list[float]
    """Weight of each token (1 for the query's own tokens, up to 1 for WordNet members by depth,
    sense share and whether they name their synset, scaled similarity for neighbours)."""
    tokens: list[str]
    word_pieces: list[list[int]] = field(default_factory=list)
    """Vocabulary ids of each query word: the ANN vector is the sum of the words' unit embeddings.
    Empty when it is the weighted sum of the tokens' embeddings instead (token lists, and concepts
    whose WordNet members were added)."""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.token_index, self.weights))

    def to_json(self) -> list[dict]:
        order = sorted(range(len(self.weights)), key=lambda i: -self.weights[i])  # stable: ties keep order
        return [{"token": self.tokens[i], "weight": round(float(self.weights[i]), 4)} for i in order]


NO_WORDNET_NOTE = (
    "this index has no WordNet concept table (rebuild its search stage with WordNet data installed, "
    "see README): expansion uses embeddings only"
)

Neighbours = Callable[[list[int]], Sequence[tuple[int, float]]]
"""A word's vocabulary ids -> its nearest kept tokens (kept index, cosine), best first."""


class QueryExpander:
    """Expands queries against one index's vocabulary and embedding neighbours."""

    def __init__(
        self,
        pieces: Callable[[str], list[int]],
        kept_tokens: list[str],
        kept_ids: Sequence[int],
        neighbours: Neighbours,
        config: SearchConfig,
        concepts: ConceptTable | None = None,
    ):
        self.pieces = pieces  # text -> vocabulary ids, no special tokens
        self.kept_tokens = kept_tokens
        self.kept_of_id = dict(zip(kept_ids, range(len(kept_tokens))))
        self.neighbours = neighbours
        self.config = config
        self.concepts = concepts

    @cached_property
    def kept_index(self) -> dict[str, int]:
        return {token: index for index, token in enumerate(self.kept_tokens)}

    def expand(self, text: str) -> ExpandedQuery:
        """A free-text concept, e.g. ``weekdays`` or ``colours of the rainbow``."""
        text = text.strip()
        if not text:
            raise NeurosearchError("empty query: give a concept (e.g. 'weekdays') or `tokens` a,b,c", option="tokens")
        if len(text) > MAX_QUERY_CHARS:
            raise NeurosearchError(f"the query is {len(text):,} characters long; the limit is {MAX_QUERY_CHARS:,} "
                                   "(a concept is a few words)")
        words = [w for w in re.findall(r"[\w'-]+", text.lower()) if w not in _STOPWORDS] or [text.lower()]
        weights: dict[int, float] = {}
        notes: list[str] = []
        word_pieces: list[list[int]] = []
        for word in words:
            ids = self.pieces(word)
            for piece_id in ids:
                index = self.kept_of_id.get(piece_id)
                if index is not None and not self.kept_tokens[index].startswith("##"):
                    weights[index] = max(weights.get(index, 0.0), 1.0)
            if not ids:
                continue
            found = self.neighbours(ids)
            if found:
                word_pieces.append(ids)
            for index, similarity in found[: self.config.neighbours]:
                if similarity >= self.config.min_similarity and not self.kept_tokens[index].startswith("##"):
                    weights[index] = max(weights.get(index, 0.0), self.config.neighbour_weight * similarity)
        lemmas = self._add_concept_members(text, words, weights, notes) if self.config.wordnet else None
        if lemmas is not None:
            word_pieces = []  # the ANN vector then comes from all weighted tokens, members included
            if self.config.collapse_label_family:
                self._collapse_label_family(words + lemmas, weights)
        if not weights:
            raise NeurosearchError(f"query '{text}' matched no token of this index's vocabulary")
        return self._finish(text, weights, word_pieces, notes)

    def _add_concept_members(self, text: str, words: list[str], weights: dict[int, float],
                             notes: list[str]) -> list[str] | None:
        """WordNet's members of the concept the query names (the whole phrase), if it knows it.

        Returns the concept's own lemmas among the kept tokens (depth 0: "colors" -> color, colour),
        or None when WordNet added nothing."""
        if self.concepts is None:
            notes.append(NO_WORDNET_NOTE)
            return None
        found = self.concepts.lookup(text) or self.concepts.lookup(" ".join(words))
        if not found:
            return None
        decay, power = self.config.wordnet_member_decay, self.config.wordnet_sense_share_power
        synonym = self.config.wordnet_synonym_weight
        for index, depth, share, head in found:
            weight = decay ** max(depth - 1, 0) * share**power * (1.0 if head else synonym)
            weights[index] = max(weights.get(index, 0.0), weight)
        notes.append(f"WordNet: {len(found)} member tokens of '{text}' added")
        return [self.kept_tokens[index] for index, depth, _, _ in found if depth == 0]

    def _collapse_label_family(self, lemmas: list[str], weights: dict[int, float]) -> None:
        """Give the concept word's family one token's worth of weight, once WordNet supplied members.

        The query word, the concept's synonyms and their inflections and spellings (colors, color,
        colour, colours, colored, coloring, ...) are a dozen tokens at high weight; a neuron for the
        *word* "colour" fires for all of them and outscored one for the members (red, blue, green).
        The family's weights are scaled to sum to their maximum.
        """
        family = [i for i in weights if _same_family(self.kept_tokens[i], lemmas)]
        total = sum(weights[i] for i in family)
        if len(family) > 1 and total > 0:
            scale = max(weights[i] for i in family) / total
            for i in family:
                weights[i] *= scale

    def from_tokens(self, tokens: list[str]) -> ExpandedQuery:
        """An explicit token list: each must be a kept token of the index (exact match)."""
        tokens = [t.strip().lower() for t in tokens if t.strip()]
        if not tokens:
            raise NeurosearchError("empty token list: give `tokens` a,b,c", option="tokens")
        if len(tokens) > MAX_QUERY_TOKENS:
            raise NeurosearchError(f"{len(tokens):,} tokens given; the limit is {MAX_QUERY_TOKENS:,}")
        unknown = [t for t in tokens if t not in self.kept_index]
        if unknown:
            raise NeurosearchError(
                f"unknown token(s) {', '.join(unknown)}: not in this index's kept vocabulary "
                f"({len(self.kept_tokens)} tokens seen often enough in its corpus)"
            )
        weights = {self.kept_index[t]: 1.0 for t in tokens}
        return self._finish(",".join(tokens), weights, [], [])

    def _finish(self, text: str, weights: dict[int, float], word_pieces: list[list[int]], notes: list[str]) -> ExpandedQuery:
        index = list(weights)
        return ExpandedQuery(
            text=text,
            token_index=index,
            weights=[float(weights[i]) for i in index],
            tokens=[self.kept_tokens[i] for i in index],
            word_pieces=word_pieces,
            notes=notes,
        )


def nearest_kept(vector: "np.ndarray", kept_space: "np.ndarray", count: int) -> list[tuple[int, float]]:
    """The ``count`` kept tokens most similar to a unit ``vector`` (rows of ``kept_space`` are unit)."""
    order, similarity = nearest_kept_rows(vector[None, :], kept_space, count)
    return list(zip(order[0].tolist(), similarity[0].tolist()))


def nearest_kept_rows(vectors: "np.ndarray", kept_space: "np.ndarray", count: int,
                      block: int = 2048) -> tuple["np.ndarray", "np.ndarray"]:
    """For each unit row of ``vectors``, its ``count`` most similar kept tokens (kept index, cosine),
    best first, ties in index order; ``block`` rows at a time (the build runs it over the whole
    vocabulary to store every token's neighbours, ``find`` over one word)."""
    import numpy as np

    count = min(count, kept_space.shape[0])
    order = np.zeros((vectors.shape[0], count), dtype=np.int64)
    similarity = np.zeros((vectors.shape[0], count), dtype=np.float32)
    for start in range(0, vectors.shape[0], block):
        scores = vectors[start : start + block] @ kept_space.T
        best = np.argsort(-scores, axis=1, kind="stable")[:, :count]
        order[start : start + block] = best
        similarity[start : start + block] = np.take_along_axis(scores, best, axis=1)
    return order, similarity


def _same_family(token: str, lemmas: list[str]) -> bool:
    """Whether ``token`` looks like an inflection or spelling of one of ``lemmas``: a shared prefix
    of at least 4 characters and at most 2 fewer than the shorter word (colour/colored: "colo";
    weekday/weekend: no)."""
    for lemma in lemmas:
        shared = 0
        for a, b in zip(token, lemma):
            if a != b:
                break
            shared += 1
        if shared >= max(4, min(len(token), len(lemma)) - 2):
            return True
    return False


_STOPWORDS = frozenset("a an the of and or in on for to with by from at as is are be".split())
