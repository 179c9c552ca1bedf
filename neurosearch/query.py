"""Queries: a concept ("weekdays") or a token list becomes a weighted vector over the kept tokens.

The query's own word pieces (weight 1), plus each word's nearest kept tokens in the index's token
embedding space (weight = ``neighbour_weight`` x cosine similarity, above a floor), plus the
concept's members from WordNet (hyponyms and parts, baked into the index by the build when WordNet
data is installed). No torch: the index stores the tokenizer (BERT's WordPiece vocabulary in
``search/wordpiece.json``, read by ``wordpiece.py``; other tokenizers from ``tokenizer.json`` with
the ``tokenizers`` library) and the embedding table (int8 rows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .config import SearchConfig
from .errors import NeurosearchError

if TYPE_CHECKING:
    from .wordnet import ConceptTable


@dataclass
class ExpandedQuery:
    """What a query became: kept-token indices with weights, and a dense vector for ANN."""

    text: str
    token_index: np.ndarray
    """int64 [Q] kept-token indices."""
    weights: np.ndarray
    """float32 [Q] weights (1 for the query's own tokens, up to 1 for WordNet members by depth and
    sense share, scaled similarity for neighbours)."""
    tokens: list[str]
    dense: np.ndarray
    """float32 [D] unit vector in the token embedding space."""
    notes: list[str] = field(default_factory=list)

    def as_vector(self, size: int) -> np.ndarray:
        vector = np.zeros(size, dtype=np.float32)
        np.maximum.at(vector, self.token_index, self.weights)
        return vector

    def to_json(self) -> list[dict]:
        order = np.argsort(-self.weights, kind="stable")
        return [{"token": self.tokens[i], "weight": round(float(self.weights[i]), 4)} for i in order]


NO_WORDNET_NOTE = (
    "this index has no WordNet concept table (rebuild its search stage with WordNet data installed, "
    "see README): expansion uses embeddings only"
)


class QueryExpander:
    """Expands queries against one index's vocabulary and embedding space."""

    def __init__(
        self,
        pieces: Callable[[str], list[int]],
        kept_tokens: list[str],
        kept_ids: np.ndarray,
        vocab_rows: Callable[[Any], np.ndarray],
        config: SearchConfig,
        concepts: ConceptTable | None = None,
        kept_space: np.ndarray | None = None,
    ):
        self.pieces = pieces  # text -> vocabulary ids, no special tokens
        self.kept_tokens = kept_tokens
        self.kept_index = {token: index for index, token in enumerate(kept_tokens)}
        self.kept_ids = kept_ids
        self.vocab_rows = vocab_rows  # vocabulary ids -> unit float32 embedding rows
        self.kept_space = vocab_rows(kept_ids) if kept_space is None else kept_space
        self.config = config
        self.concepts = concepts

    def _word_vector(self, ids: list[int]) -> np.ndarray | None:
        """Unit mean embedding of a word's pieces."""
        if not ids:
            return None
        vector = self.vocab_rows(ids).mean(axis=0)
        norm = np.linalg.norm(vector)
        return vector / norm if norm > 0 else None

    def expand(self, text: str) -> ExpandedQuery:
        """A free-text concept, e.g. ``weekdays`` or ``colours of the rainbow``."""
        text = text.strip()
        if not text:
            raise NeurosearchError("empty query: give a concept (e.g. 'weekdays') or --tokens a,b,c")
        words = [w for w in re.findall(r"[\w'-]+", text.lower()) if w not in _STOPWORDS] or [text.lower()]
        weights: dict[int, float] = {}
        notes: list[str] = []
        dense = np.zeros(self.kept_space.shape[1], dtype=np.float32)
        for word in words:
            ids = self.pieces(word)
            for piece_id in ids:
                index = self._kept_of_id(piece_id)
                if index is not None and not self.kept_tokens[index].startswith("##"):
                    weights[index] = max(weights.get(index, 0.0), 1.0)
            vector = self._word_vector(ids)
            if vector is None:
                continue
            dense += vector
            sims = self.kept_space @ vector
            for index in np.argsort(-sims)[: self.config.neighbours]:
                if sims[index] >= self.config.min_similarity and not self.kept_tokens[index].startswith("##"):
                    weight = self.config.neighbour_weight * float(sims[index])
                    weights[int(index)] = max(weights.get(int(index), 0.0), weight)
        if self.config.wordnet and self._add_concept_members(text, words, weights, notes):
            dense[:] = 0.0  # the ANN vector then comes from all weighted tokens, members included
        if not weights:
            raise NeurosearchError(f"query '{text}' matched no token of this index's vocabulary")
        return self._finish(text, weights, dense, notes)

    def _add_concept_members(self, text: str, words: list[str], weights: dict[int, float], notes: list[str]) -> bool:
        """WordNet's members of the concept the query names (the whole phrase), if it knows it."""
        if self.concepts is None:
            notes.append(NO_WORDNET_NOTE)
            return False
        found = self.concepts.lookup(text) or self.concepts.lookup(" ".join(words))
        if not found:
            return False
        decay, power = self.config.wordnet_member_decay, self.config.wordnet_sense_share_power
        for index, depth, share in found:
            weights[index] = max(weights.get(index, 0.0), decay ** max(depth - 1, 0) * share**power)
        notes.append(f"WordNet: {len(found)} member tokens of '{text}' added")
        return True

    def from_tokens(self, tokens: list[str]) -> ExpandedQuery:
        """An explicit token list: each must be a kept token of the index (exact match)."""
        tokens = [t.strip().lower() for t in tokens if t.strip()]
        if not tokens:
            raise NeurosearchError("empty token list: give --tokens a,b,c")
        unknown = [t for t in tokens if t not in self.kept_index]
        if unknown:
            raise NeurosearchError(
                f"unknown token(s) {', '.join(unknown)}: not in this index's kept vocabulary "
                f"({len(self.kept_tokens)} tokens seen often enough in its corpus)"
            )
        weights = {self.kept_index[t]: 1.0 for t in tokens}
        dense = self.kept_space[list(weights)].sum(axis=0)
        return self._finish(",".join(tokens), weights, dense, [])

    def _kept_of_id(self, token_id: int) -> int | None:
        position = int(np.searchsorted(self.kept_ids, token_id))
        if position < len(self.kept_ids) and self.kept_ids[position] == token_id:
            return position
        return None

    def _finish(self, text: str, weights: dict[int, float], dense: np.ndarray, notes: list[str]) -> ExpandedQuery:
        index = np.fromiter(weights, dtype=np.int64)
        values = np.fromiter(weights.values(), dtype=np.float32)
        if not np.any(dense):
            dense = (self.kept_space[index] * values[:, None]).sum(axis=0)
        norm = np.linalg.norm(dense)
        return ExpandedQuery(
            text=text,
            token_index=index,
            weights=values,
            tokens=[self.kept_tokens[i] for i in index],
            dense=(dense / norm if norm > 0 else dense).astype(np.float32),
            notes=notes,
        )


_STOPWORDS = frozenset("a an the of and or in on for to with by from at as is are be".split())
