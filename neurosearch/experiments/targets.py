"""What an ablation is about: its neurons, its target tokens, and the sentences that contain them.

Target tokens (see docs/guide/ablate.md):

* a query: the query expansion's strongest members (weight at least ``QUERY_FLOOR`` x the top
  weight), the concept's own words rather than a cluster's generic neighbours;
* a cluster or neuron: its top tokens without special tokens, punctuation, stopwords, single
  characters and bare ``##`` pieces (a neuron's top token list often starts with ``.`` or ``the``);
* ``--tokens``: as given (tokens outside the vocabulary are reported and dropped).

A target is resolved from the index alone (its tokenizer file, clusters and top tokens), so
``ablate`` checks ids, neurons, tokens, the corpus and the readouts' head before it loads a model:
a bad id fails at once with the value in the message.

Sentences are drawn *stratified*: round-robin over the target tokens, each token's sentences in a
seeded random order, so that no frequent token (``day``) fills the sample of a rare one
(``wednesday``). Control sentences contain none of the target tokens and match the target
sentences' lengths one by one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from neurosearch.errors import NeurosearchError
from neurosearch.format.results import neuron_hash

QUERY_FLOOR = 0.5
"""A query's target tokens: expansion members weighing at least this share of the top weight."""

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each else even ever every few for
from further had has have having he her here hers herself him himself his how however i if in into
is it its itself just let like ll me might more most much must my myself no nor not now of off on
once one's only or other ought our ours ourselves out over own per quite rather re said same say
says shall she should since so some still such than that the their theirs them themselves then
there these they this those though through thus to too under until up upon us ve very via was we
were what whatever when where whether which while who whom whose why will with within without
would yet you your yours yourself yourselves s t d m don didn doesn isn wasn aren weren won
""".split())

_WORD = re.compile(r"\w", re.UNICODE)


def is_content_token(token: str, special: set[str] | frozenset[str] = frozenset()) -> bool:
    """True for a token worth testing: not special, punctuation, a stopword, a single character or ``##``."""
    if token in special or (token.startswith("[") and token.endswith("]")) or token.startswith("##"):
        return False
    if not _WORD.search(token) or len(token) < 2:
        return False
    return token.lower() not in STOPWORDS


def content_tokens(tokens: Sequence[str], limit: int, special: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The first ``limit`` content tokens of ``tokens``, each once, in order."""
    chosen: list[str] = []
    for token in tokens:
        if is_content_token(token, special) and token not in chosen:
            chosen.append(token)
            if len(chosen) == limit:
                break
    return chosen


def query_members(expanded: Any, limit: int, special: set[str] | frozenset[str] = frozenset(),
                  floor: float = QUERY_FLOOR) -> list[str]:
    """A query expansion's strongest content members, strongest first (ties keep their order)."""
    pairs = [(item["token"], float(item["weight"])) for item in expanded.to_json()]
    pairs = [(t, w) for t, w in pairs if is_content_token(t, special)]
    if not pairs:
        return []
    top = pairs[0][1]
    return [t for t, w in pairs if w >= floor * top][:limit]


@dataclass
class AblationTarget:
    """The neurons to ablate and the tokens whose sentences show the effect."""

    kind: str
    """``cluster``, ``neuron`` (one) or ``neurons`` (a list)."""
    id: str
    neurons: list[int]
    """Flat neuron indices, sorted, each once."""
    token_ids: list[int]
    tokens: list[str] = field(default_factory=list)
    token_source: str = "given"
    """How the tokens were chosen: ``query``, ``top tokens`` or ``given``."""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.neurons = sorted(set(int(n) for n in self.neurons))

    def names(self, width: int) -> list[str]:
        return [f"{n // width}:{n % width}" for n in self.neurons]

    def identity(self, width: int) -> str:
        return neuron_hash(self.names(width))


# -------------------------------------------------------------------------------------------
# Resolving a target and the readouts (no model needed)


def resolve_readouts(asked: Sequence[str], *, has_mlm_head: bool, has_pooling_config: bool,
                     has_fitted_head: bool) -> list[str]:
    """``auto`` -> ``mlm`` for a model with its own MLM head, ``embedding`` for a sentence encoder
    (a sentence-transformers pooling config) without one; otherwise ``mlm`` on a fitted head, and
    ``embedding`` (mean pooling) when there is none."""
    if has_mlm_head:
        auto = "mlm"
    elif has_pooling_config or not has_fitted_head:
        auto = "embedding"
    else:
        auto = "mlm"
    names = list(dict.fromkeys(auto if name == "auto" else name for name in asked))
    if not has_mlm_head and not has_fitted_head and any(n.startswith("mlm") for n in names):
        raise NeurosearchError("this model has no MLM head and the index has no fitted one: run "
                               "`neurosearch fit-head` first, or use --readout embedding")
    return names


def tokenizer_vocabulary(tokenizer: Any) -> tuple[dict[str, int], set[str]]:
    """(token -> id, special tokens) of a ``transformers`` fast tokenizer or a ``tokenizers.Tokenizer``
    (the index's ``tokenizer.json``): the same vocabulary either way."""
    if hasattr(tokenizer, "all_special_tokens"):
        return tokenizer.get_vocab(), set(tokenizer.all_special_tokens)
    added = tokenizer.get_added_tokens_decoder().values()
    return tokenizer.get_vocab(), {t.content for t in added if t.special}


@dataclass
class TargetResolver:
    """Builds :class:`AblationTarget` s over one index and vocabulary."""

    index: Any
    vocab: dict[str, int]
    special: set[str]
    top_tokens: int

    @classmethod
    def of_index(cls, index: Any, top_tokens: int) -> "TargetResolver":
        vocab, special = tokenizer_vocabulary(index.tokenizer)
        return cls(index, vocab, special, top_tokens)

    def _ids(self, tokens: Sequence[str], notes: list[str]) -> tuple[list[str], list[int]]:
        kept, ids, unknown = [], [], []
        for token in tokens:
            found = token if token in self.vocab else token.lower() if token.lower() in self.vocab else None
            if found is None or found in kept:
                if found is None:
                    unknown.append(token)
                continue
            kept.append(found)
            ids.append(self.vocab[found])
        if unknown:
            notes.append(f"not single tokens of the vocabulary, left out: {', '.join(unknown)}")
        return kept, ids

    def _target(self, kind: str, ident: str, neurons: list[int], tokens: Sequence[str], source: str) -> AblationTarget:
        notes: list[str] = []
        kept, ids = self._ids(tokens, notes)
        if not ids:
            raise NeurosearchError(f"{kind} {ident} has no target token to test (give --tokens a,b,c)")
        return AblationTarget(kind, ident, neurons, ids, kept, source, notes)

    def cluster(self, cluster_id: str) -> AblationTarget:
        info = self.index.cluster(cluster_id)
        tokens = content_tokens(info.top_tokens, self.top_tokens, self.special)
        neurons = [self.index.neuron_index(n) for n in info.neurons]
        return self._target("cluster", info.key, neurons, tokens, "top tokens")

    def neurons(self, names: Sequence[str], tokens: Sequence[str] | None = None) -> AblationTarget:
        neurons = sorted({self.index.neuron_index(n.strip()) for n in names if n.strip()})
        if not neurons:
            raise NeurosearchError("no neurons given: --neurons L:I,L:I")
        kind = "neuron" if len(neurons) == 1 else "neurons"
        ident = ",".join(self.index.neuron_name(n) for n in neurons)
        if tokens:
            return self._target(kind, ident, neurons, [t.strip() for t in tokens if t.strip()], "given")
        top_index, _ = self.index.method_top(self.index.search_method)
        counts: dict[int, int] = {}
        depth = 30
        for n in neurons:
            for rank, t in enumerate(top_index[n][:depth]):
                counts[int(t)] = counts.get(int(t), 0) + (depth - rank)
        ranked = [self.index.kept_tokens[t] for t in sorted(counts, key=lambda t: -counts[t])]
        return self._target(kind, ident, neurons, content_tokens(ranked, self.top_tokens, self.special), "top tokens")

    def query(self, query: str) -> AblationTarget:
        found = self.index.find(query, kind="clusters", top=1)
        if not found.results:
            raise NeurosearchError(f"no cluster matches '{query}'")
        info = self.index.cluster(found.results[0].id)
        members = query_members(found.query, self.top_tokens, self.special)
        neurons = [self.index.neuron_index(n) for n in info.neurons]
        if not members:
            return self.cluster(info.key)
        return self._target("cluster", info.key, neurons, members, f"query '{query}'")

    def resolve(self, *, cluster: str | None = None, neurons: str | None = None, query: str | None = None,
                tokens: str | None = None) -> AblationTarget:
        """Exactly one of a cluster id, a neuron list ``L:I,L:I`` or a query."""
        if sum(x is not None for x in (cluster, neurons, query)) != 1:
            raise NeurosearchError("give exactly one of: a cluster id, --neurons L:I,..., --query TEXT")
        if tokens is not None and neurons is None:
            raise NeurosearchError("--tokens goes with --neurons")
        if cluster is not None:
            return self.cluster(cluster)
        if query is not None:
            return self.query(query)
        assert neurons is not None
        return self.neurons(neurons.split(","), tokens.split(",") if tokens else None)


def needs_fitted_head(manifest: Any) -> bool:
    """True when the index's model has no MLM head of its own (the manifest's ``has_mlm_head``), so
    the ``mlm`` readouts of ``ablate`` and ``evaluate`` need a fitted one (``fit-head``)."""
    return not manifest.model.get("has_mlm_head")


def check_session(index: Any, readouts: Sequence[str], corpus: str | None, max_docs: int | None) -> Any:
    """What an ablation session needs that can be checked without the model: the corpus file
    (returned as a CorpusConfig) and, for an ``mlm`` readout, an MLM head (the model's own, per the
    manifest, or a fitted one). Raises a one-line error naming what is missing."""
    from neurosearch.index.contexts import index_corpus

    config = index_corpus(index, corpus, max_docs)
    if "has_mlm_head" in index.manifest.model:  # older manifests do not say: the session checks it
        # the pooling config only decides what ``auto`` means, never whether a readout can run
        resolve_readouts(readouts, has_mlm_head=bool(index.manifest.model["has_mlm_head"]), has_pooling_config=True,
                         has_fitted_head=index.head_dir is not None)
    return config


# -------------------------------------------------------------------------------------------
# Sentences


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
