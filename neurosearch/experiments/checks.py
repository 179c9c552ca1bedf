"""What an ablation session needs, checked before the model loads: the readouts it can run, an
MLM head for the ``mlm`` readouts, and its corpus."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from neurosearch.errors import NeurosearchError

if TYPE_CHECKING:
    from neurosearch.index.index import Index


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


def needs_fitted_head(manifest: Any) -> bool:
    """True when the index's model has no MLM head of its own (the manifest's ``has_mlm_head``), so
    the ``mlm`` readouts of ``ablate`` and ``evaluate`` need a fitted one (``fit-head``)."""
    return not manifest.model.get("has_mlm_head")


def check_session(index: Index, readouts: Sequence[str], corpus: str | None, max_docs: int | None) -> Any:
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
