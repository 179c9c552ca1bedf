"""Corpus sentences for an ablation: the sentences that contain its target tokens, and controls.

Sentences are drawn *stratified*: round-robin over the target tokens, each token's sentences in a
seeded random order, so that no frequent token (``day``) fills the sample of a rare one
(``wednesday``). Control sentences contain none of the target tokens and match the target
sentences' lengths one by one.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from neurosearch.errors import NeurosearchError

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


class SentencePool:
    """Corpus sentences as token ids: one flat int32 array and sentence offsets (no per-token Python)."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray):
        self.ids = np.asarray(ids, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.lengths = np.diff(self.offsets)
        self._with: dict[int, np.ndarray] = {}

    @classmethod
    def from_sentences(cls, sentences: Sequence[Sequence[int]]) -> "SentencePool":
        offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in sentences])
        ids = np.fromiter((t for s in sentences for t in s), dtype=np.int32, count=int(offsets[-1]))
        return cls(ids, offsets)

    @classmethod
    def from_documents(cls, tokenizer: Any, documents: Sequence[str], max_tokens: int) -> "SentencePool":
        """Sentences of at least 4 pieces, each cut to ``max_tokens - 2`` pieces (room for [CLS]/[SEP])."""
        from neurosearch.corpus import plain_backend

        backend = plain_backend(tokenizer)
        texts = [s.strip() for document in documents for s in _SENTENCE.split(document) if len(s.strip()) > 10]
        kept = [ids for ids in (e.ids[: max_tokens - 2] for e in backend.encode_batch(texts, add_special_tokens=False))
                if len(ids) >= 4]
        return cls.from_sentences(kept)

    def __len__(self) -> int:
        return len(self.lengths)

    def sentence(self, number: int) -> list[int]:
        return self.ids[self.offsets[number] : self.offsets[number + 1]].tolist()

    def with_token(self, token: int) -> np.ndarray:
        """Numbers of the sentences that contain ``token``, ascending."""
        token = int(token)
        if token not in self._with:
            positions = np.flatnonzero(self.ids == token)
            self._with[token] = np.unique(np.searchsorted(self.offsets, positions, side="right") - 1)
        return self._with[token]

    def select(self, target_ids: Sequence[int], count: int, rng: np.random.Generator) -> tuple[list[int], dict[int, int]]:
        """Up to ``count`` sentences, round-robin over the target tokens; (numbers, sentences per token).

        Each token's sentences come in a seeded random order; a sentence is taken once (for the
        first token that reaches it); a token that runs out leaves its turns to the others.
        """
        queues = []
        for token in dict.fromkeys(int(t) for t in target_ids):
            found = self.with_token(token)
            queues.append((token, found[rng.permutation(len(found))].tolist()))
        chosen: dict[int, None] = {}
        per_token = {token: 0 for token, _ in queues}
        cursors = [0] * len(queues)
        while len(chosen) < count:
            moved = False
            for q, (token, queue) in enumerate(queues):
                while cursors[q] < len(queue) and queue[cursors[q]] in chosen:
                    cursors[q] += 1
                if cursors[q] < len(queue):
                    chosen[queue[cursors[q]]] = None
                    per_token[token] += 1
                    moved = True
                    if len(chosen) == count:
                        break
            if not moved:
                break
        return sorted(chosen), per_token

    def controls(self, chosen: Sequence[int], target_ids: Sequence[int], rng: np.random.Generator) -> list[int]:
        """For each chosen sentence, a different one of about its length without any target token."""
        allowed = np.ones(len(self), dtype=bool)
        for token in target_ids:
            allowed[self.with_token(token)] = False
        candidates = np.flatnonzero(allowed)
        if candidates.size == 0:
            raise NeurosearchError("every sentence of the corpus contains a target token: no control sentences")
        by_length: dict[int, list[int]] = {}
        for number in candidates[rng.permutation(candidates.size)].tolist():
            by_length.setdefault(int(self.lengths[number]), []).append(number)
        lengths = np.array(sorted(by_length))
        picked = []
        for number in chosen:
            length = int(self.lengths[number])
            for candidate in lengths[np.argsort(np.abs(lengths - length), kind="stable")]:
                if by_length[int(candidate)]:
                    picked.append(by_length[int(candidate)].pop())
                    break
            else:
                break  # the pool ran dry: fewer controls than targets
        return picked
