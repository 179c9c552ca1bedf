"""An ablation session over one index: model, readouts and sentences loaded once, many targets."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from neurosearch.experiments.ablation import AblationConfig, run_ablation
from neurosearch.format.results import AblationResult
from neurosearch.experiments.checks import check_session, resolve_readouts
from neurosearch.experiments.sentences import SentencePool
from neurosearch.experiments.targets import AblationTarget, TargetResolver, tokenizer_vocabulary
from neurosearch.format import layout

if TYPE_CHECKING:
    from neurosearch.index.index import Index


class AblationSession:
    """Loads the index's model, the readouts' heads/pooling and the evaluation sentences once."""

    def __init__(self, index: Index, config: AblationConfig, *, corpus: str | None = None,
                 max_docs: int | None = None, pool: SentencePool | None = None):
        from neurosearch.model.loading import index_site, load_index_model
        from neurosearch.model.pooling import SentencePooling, model_directory, read_pooling

        self.index = index
        self.config = config
        # what can be checked without the model (corpus, an MLM readout's head) fails before it loads
        corpus_config = check_session(index, config.readouts, corpus, max_docs) if pool is None else None
        self.loaded = load_index_model(index, mlm=True)
        self.site = index_site(self.loaded, index)
        configured = read_pooling(model_directory(self.loaded.where)) if self.loaded.where else None
        self.pooling = configured or SentencePooling()
        self.pooling_configured = configured is not None
        self.head_dir = index.head_dir  # the user's fitted head (state folder), else the index's; None: none
        self._scorer: Any = None
        self.with_readouts(config.readouts)
        self.means = index.npy(layout.NEURON_MEAN)
        if pool is None:
            from neurosearch.corpus import read_documents

            documents = list(read_documents(corpus_config))
            pool = SentencePool.from_documents(self.loaded.tokenizer, documents, config.max_tokens)
        self.pool = pool
        self.vocab, self.special = tokenizer_vocabulary(self.loaded.tokenizer)
        self.targets = TargetResolver(index, self.vocab, self.special, config.top_tokens)

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

    # -- targets (targets.TargetResolver: the CLI resolves them before the model loads) -------------
    def cluster_target(self, cluster_id: str) -> AblationTarget:
        return self.targets.cluster(cluster_id)

    def neurons_target(self, names: Sequence[str], tokens: Sequence[str] | None = None) -> AblationTarget:
        return self.targets.neurons(names, tokens)

    def query_target(self, query: str) -> AblationTarget:
        return self.targets.query(query)

    def run(self, target: AblationTarget, on_progress: Callable[[int, int], None] | None = None) -> AblationResult:
        return run_ablation(self.readouts, self.site, self.loaded.tokenizer, self.pool, target, self.config,
                            means=self.means, encoder=self.loaded.encoder, on_progress=on_progress)


def check_result_store(index: Index) -> None:
    """Before an ablation's work: every copy of its store can be read (never replaced when it cannot),
    and the folder the result goes to can be written."""
    from neurosearch.format.store import check_writable
    from neurosearch.index.stored import ablation_results

    ablation_results(index.state)
    check_writable(index.state.write_path(layout.ABLATIONS).parent, "ablation results")
