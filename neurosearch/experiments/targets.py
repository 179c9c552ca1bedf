"""What an ablation is about: its neurons and its target tokens (their sentences: ``sentences.py``).

Target tokens (see docs/guide/ablate.md):

* a query: the query expansion's strongest members (weight at least ``QUERY_FLOOR`` x the top
  weight), the concept's own words rather than a cluster's generic neighbours;
* a cluster or neuron: its top tokens without special tokens, punctuation, stopwords, single
  characters and bare ``##`` pieces (a neuron's top token list often starts with ``.`` or ``the``);
* ``--tokens``: as given (tokens outside the vocabulary are reported and dropped).

A target is resolved from the index alone (its tokenizer file, clusters and top tokens), so
``ablate`` checks ids, neurons, tokens, the corpus and the readouts' head before it loads a model:
a bad id fails at once with the value in the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from neurosearch.errors import NeurosearchError
from neurosearch.format.results import neuron_hash
from neurosearch.ids import UnitNames
from neurosearch.words import is_content

if TYPE_CHECKING:
    from neurosearch.index.index import Index

QUERY_FLOOR = 0.5
"""A query's target tokens: expansion members weighing at least this share of the top weight."""


def is_content_token(token: str, special: set[str] | frozenset[str] = frozenset()) -> bool:
    """True for a token worth testing: not special, punctuation, a stopword, a single character or ``##``."""
    if token in special or (token.startswith("[") and token.endswith("]")) or len(token) < 2:
        return False
    return is_content(token.lower())


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

    def names(self, units: UnitNames | int) -> list[str]:
        """The units' names (``units``: how the index names them, or the width of a neuron site)."""
        names = units if isinstance(units, UnitNames) else UnitNames(0, units)
        return [names.name(n) for n in self.neurons]

    def identity(self, units: UnitNames | int) -> str:
        return neuron_hash(self.names(units))


# -------------------------------------------------------------------------------------------
# Resolving a target (no model needed)


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

    index: Index
    vocab: dict[str, int]
    special: set[str]
    top_tokens: int

    @classmethod
    def of_index(cls, index: Index, top_tokens: int) -> "TargetResolver":
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
