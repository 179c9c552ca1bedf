"""An ablation session over one index: model, readouts and sentences loaded once, many targets."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

from neurosearch.errors import NeurosearchError
from neurosearch.experiments.ablation import AblationConfig, run_ablation
from neurosearch.format.results import AblationResult
from neurosearch.experiments.targets import AblationTarget, SentencePool, content_tokens, query_members


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


class AblationSession:
    """Loads the index's model, the readouts' heads/pooling and the evaluation sentences once."""

    def __init__(self, index: Any, config: AblationConfig, *, corpus: str | None = None,
                 max_docs: int | None = None, pool: SentencePool | None = None):
        from neurosearch.model.loading import load_index_model, neuron_site
        from neurosearch.model.pooling import SentencePooling, model_directory, read_pooling

        self.index = index
        self.config = config
        self.loaded = load_index_model(index, mlm=True)
        self.site = neuron_site(self.loaded.encoder, index.manifest.site)
        configured = read_pooling(model_directory(self.loaded.where)) if self.loaded.where else None
        self.pooling = configured or SentencePooling()
        self.pooling_configured = configured is not None
        self.head_dir = index.head_dir  # the user's fitted head (state folder), else the index's; None: none
        self._scorer: Any = None
        self.with_readouts(config.readouts)
        self.means = index.npy("neurons/mean.npy")
        if pool is None:
            from neurosearch.corpus import read_documents
            from neurosearch.index.contexts import index_corpus

            documents = list(read_documents(index_corpus(index, corpus, max_docs)))
            pool = SentencePool.from_documents(self.loaded.tokenizer, documents, config.max_tokens)
        self.pool = pool
        self.vocab = self.loaded.tokenizer.get_vocab()
        self.special = set(self.loaded.tokenizer.all_special_tokens)

    def _readout(self, name: str) -> Any:
        from neurosearch.experiments.readouts import EmbeddingReadout, MaskedLMReadout

        if name == "embedding":
            return EmbeddingReadout(self.loaded.encoder, self.pooling, window=self.config.window)
        if self._scorer is None:
            if self.loaded.has_mlm_head:
                from neurosearch.experiments.readouts import OwnHeadMaskedLM

                self._scorer, self._head = OwnHeadMaskedLM(self.loaded.model), "model"
            else:
                from neurosearch.model.head import HeadedMaskedLM, load_head

                head, _ = load_head(self.head_dir, self.loaded.encoder)
                self._scorer, self._head = HeadedMaskedLM(self.loaded.encoder, head).eval(), "fitted"
        return MaskedLMReadout(name, self._scorer, self._head)

    def with_readouts(self, names: Sequence[str]) -> "AblationSession":
        """This session (same model and sentences) measuring with other readouts."""
        self.config = replace(self.config, readouts=tuple(names))
        self.readout_names = resolve_readouts(
            names, has_mlm_head=self.loaded.has_mlm_head, has_pooling_config=self.pooling_configured,
            has_fitted_head=self.head_dir is not None)
        self.readouts = [self._readout(name) for name in self.readout_names]
        return self

    # -- targets ------------------------------------------------------------------------------
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

    def cluster_target(self, cluster_id: str) -> AblationTarget:
        info = self.index.cluster(cluster_id)
        tokens = content_tokens(info.top_tokens, self.config.top_tokens, self.special)
        neurons = [self.index.neuron_index(n) for n in info.neurons]
        return self._target("cluster", info.key, neurons, tokens, "top tokens")

    def neurons_target(self, names: Sequence[str], tokens: Sequence[str] | None = None) -> AblationTarget:
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
        return self._target(kind, ident, neurons, content_tokens(ranked, self.config.top_tokens, self.special),
                            "top tokens")

    def query_target(self, query: str) -> AblationTarget:
        found = self.index.find(query, kind="clusters", top=1)
        if not found.results:
            raise NeurosearchError(f"no cluster matches '{query}'")
        info = self.index.cluster(found.results[0].id)
        members = query_members(found.query, self.config.top_tokens, self.special)
        neurons = [self.index.neuron_index(n) for n in info.neurons]
        if not members:
            return self.cluster_target(info.key)
        return self._target("cluster", info.key, neurons, members, f"query '{query}'")

    def run(self, target: AblationTarget, on_progress: Callable[[int, int], None] | None = None) -> AblationResult:
        return run_ablation(self.readouts, self.site, self.loaded.tokenizer, self.pool, target, self.config,
                            means=self.means, encoder=self.loaded.encoder, on_progress=on_progress)


def check_result_store(index: Any) -> None:
    """Before an ablation's work: every copy of its store can be read (never replaced when it cannot),
    and the folder the result goes to can be written."""
    from neurosearch.format.store import check_writable
    from neurosearch.index.stored import ABLATIONS, ablation_results

    ablation_results(index.state)
    check_writable(index.state.write_path(ABLATIONS).parent, "ablation results")


def store_result(index: Any, result: AblationResult | dict[str, Any]) -> Any:
    """Keep an ablation result where ``show`` finds it (``index.stored.store_ablation``); a dict is
    read as its JSON (a record without ``"format": 2`` as a legacy result). Returns the store's path."""
    from neurosearch.index.stored import store_ablation

    return store_ablation(index.state, result if isinstance(result, AblationResult) else AblationResult.from_json(result))
