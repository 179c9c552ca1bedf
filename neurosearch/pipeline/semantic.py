"""The search stage's concept expansions: for every concept key, its kept tokens weighted by the
probability that they are members (``index/semantic.py``), stored so that ``find`` reads them.

Keys are every WordNet noun lemma with two or more kept members (when WordNet data is installed)
and every whole word of the model's vocabulary, a word whose lemma is such a lemma folded into it
("languages" -> "language"). Each key is embedded once in the model's sentence space, with every
kept token; WordNet's senses of a key are weighed by how close the model puts their members to it.
The model is needed at build time only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from neurosearch.config import ExpansionConfig
from neurosearch.index.concepts import ConceptTable, FamilyIndex
from neurosearch.index.semantic import (Ancestors, LMScores, candidate_features, concept_of, expandable_mask, expansion_of,
                                        sense_evidence)

BLOCK = 1024
"""Keys expanded per batch (their similarity rows to every kept token are held at once)."""


@dataclass
class SemanticTables:
    """What the build stores: the kept tokens' sentence vectors, the concept table, the expansions."""

    kept_sentences: np.ndarray
    """Float32 [Vk, H] unit sentence vectors of the kept tokens."""
    concepts: ConceptTable | None
    keys: list[str]
    """Sorted expansion keys."""
    aliases: dict[str, str]
    """Irregular inflection -> key (feet -> foot)."""
    offsets: np.ndarray
    tokens: np.ndarray
    weights: np.ndarray
    ancestors: Ancestors | None = None
    """What WordNet says each kept token is a kind of (None without WordNet)."""


def vocabulary_words(vocabulary: list[str]) -> list[str]:
    """The whole alphabetic words of a model vocabulary (no ``##`` pieces, specials, or letters)."""
    return [t for t in vocabulary if t.isalpha() and len(t) > 1 and t.lower() == t]


def build_expansions(
    embed: Callable[[list[str]], np.ndarray],
    kept_tokens: list[str],
    input_space: np.ndarray,
    word_vector: Callable[[str], np.ndarray | None],
    vocabulary: list[str],
    wordnet: Any | None,
    config: ExpansionConfig,
    progress: Callable[[int, int], None] | None = None,
    lm: Callable[[list[str]], Callable[[int, list[str]], LMScores]] | None = None,
) -> SemanticTables:
    """Expansions of every key. ``embed``: texts -> unit sentence vectors; ``input_space``: the kept
    tokens' unit input-embedding rows; ``word_vector``: a word -> its unit mean word-piece vector;
    ``lm``: every key -> a function (first key's row, keys) -> a language model's membership
    scores of those keys, asked :data:`BLOCK` keys at a time (None: no language model)."""
    kept_sentences = embed(kept_tokens)
    concepts, aliases, table = {}, {}, None
    if wordnet is not None:
        from neurosearch.pipeline.wordnet import concept_table, kept_concepts

        concepts = kept_concepts(wordnet, kept_tokens)
    lemma_keys = sorted(concepts)
    word_keys = {}
    for word in vocabulary_words(vocabulary):
        forms = wordnet.base_forms(word) if wordnet is not None else []
        word_keys[word] = next((f for f in forms if f in concepts), word)
    keys = sorted(set(lemma_keys) | set(word_keys.values()))
    score_block = lm(keys) if lm is not None else None
    vectors = embed(keys)
    row_of = {key: row for row, key in enumerate(keys)}
    if wordnet is not None:
        lemma_rows = {lemma: i for i, lemma in enumerate(lemma_keys)}
        similarity = vectors[[row_of[lemma] for lemma in lemma_keys]] @ kept_sentences.T  # [lemmas, Vk]

        def evidence(lemma: str, members: list[int]) -> float:
            return sense_evidence(similarity[lemma_rows[lemma]], members)

        table = concept_table(wordnet, kept_tokens, evidence=evidence, concepts=concepts)
        aliases = {inflected: base for inflected, base in wordnet.exceptions.items()
                   if base in row_of and inflected not in row_of}
        del similarity
        ancestors = kept_ancestors(wordnet, kept_tokens, embed)
    else:
        ancestors = None
    families = FamilyIndex(kept_tokens)
    allowed = expandable_mask(kept_tokens)
    expansions: list[list[tuple[int, float]]] = []
    for start in range(0, len(keys), BLOCK):
        block = [concept_of(key, vectors[row], word_vector, families, table)
                 for row, key in enumerate(keys[start : start + BLOCK], start)]
        scores = score_block(start, keys[start : start + BLOCK]) if score_block is not None else None
        for concept, (candidates, features) in zip(block, candidate_features(block, kept_sentences, input_space, ancestors,
                                                                             scores, config.lm_pool)):
            expansions.append(expansion_of(concept, candidates, features, config, allowed))
        if progress:
            progress(min(start + BLOCK, len(keys)), len(keys))
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(e) for e in expansions])
    index_type = np.uint16 if len(kept_tokens) <= np.iinfo(np.uint16).max + 1 else np.int32
    tokens = np.fromiter((t for e in expansions for t, _ in e), dtype=index_type, count=int(offsets[-1]))
    weights = np.fromiter((w for e in expansions for _, w in e), dtype=np.float16, count=int(offsets[-1]))
    return SemanticTables(kept_sentences, table, keys, aliases, offsets, tokens, weights, ancestors)


def kept_ancestors(wordnet: Any, kept_tokens: list[str], embed: Callable[[list[str]], np.ndarray]) -> Ancestors:
    """Every kept token's WordNet ancestors (``WordNet.ancestors``), their names embedded once."""
    found = [wordnet.ancestors(token) for token in kept_tokens]
    names = sorted({name for names in found for name in names})
    row_of = {name: row for row, name in enumerate(names)}
    rows = np.full((len(kept_tokens), max((len(n) for n in found), default=0)), -1, dtype=np.int32)
    for token, token_names in enumerate(found):
        rows[token, : len(token_names)] = [row_of[name] for name in token_names]
    vectors = embed(names) if names else np.zeros((0, 0), dtype=np.float32)
    return Ancestors(vectors.astype(np.float32), rows)
