"""The build's contexts stage: one more forward pass over the corpus for ``show`` (``contexts.py``).

Runs after the clusters (it needs the search method's top tokens and the clusters of every K);
it is redone when the profiles or clusters change (every later stage is), when the search method
changes, or when ``ContextConfig`` does. Paths come from ``format/layout.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neurosearch.pipeline.contexts import ContextAccumulator, plan_slots, summarise
from neurosearch.config import ContextConfig, to_dict
from neurosearch.format import layout
from neurosearch.format.atomic import save_npy_atomic, write_json_atomic
from neurosearch.format.manifest import Manifest
from neurosearch.pipeline.stage import Stage, StageContext

TASK = "contexts (documents)"


def stage_clusters(out: Path, method: str, ks: Sequence[int], tokens: int) -> tuple[list[str], list[tuple[list[int], list[int]]]]:
    """``kK/ID`` keys and (members, first ``tokens`` top tokens) of every cluster of ``method``."""
    keys, clusters = [], []
    for k in ks:
        found = json.loads((out / layout.clusters_file(method, k)).read_text())["clusters"]
        for cluster in found:
            keys.append(f"k{k}/{cluster['id']}")
            clusters.append((list(cluster["neurons"]), list(cluster["top_tokens"][:tokens])))
    return keys, clusters


def outdated(manifest: Manifest, config: ContextConfig) -> str | None:
    """Why a finished contexts stage no longer matches the index (None when it does)."""
    stage = manifest.stages.get("contexts", {})
    if not stage.get("done"):
        return None
    if stage.get("method") != manifest.configs.get("profiles", {}).get("search_method"):
        return "the search method changed"
    if manifest.configs.get("contexts") != json.loads(json.dumps(to_dict(config))):
        return "its configuration changed"
    return None


def run(context: StageContext) -> dict[str, Any]:
    """The forward pass and the stage's files (listed in the manifest); the stage's facts."""
    from neurosearch.corpus import shards, training_documents
    from neurosearch.pipeline.stats import accumulate, vocab_size

    out, manifest, build, reporter = context.out, context.manifest, context.config, context.reporter
    loaded, site = context.model()
    method = manifest.configs["profiles"]["search_method"]
    m = build.contexts.mean_tokens
    neuron_top = np.load(out / layout.neuron_top_tokens(method))[:, :m].astype(np.int64)
    keys, clusters = stage_clusters(out, method, manifest.configs["clusters"]["ks"], m)
    kept = json.loads((out / layout.TOKENS).read_text())
    slots = plan_slots(neuron_top, clusters, len(kept["ids"]))
    acc = ContextAccumulator(slots, kept["ids"], vocab_size(loaded), site.n_layers, site.neurons_per_layer)
    total = manifest.corpus.get("documents")
    advance = reporter.task(TASK, total if isinstance(total, int) and total >= 0 else None)
    first = 0
    for shard in shards(training_documents(build.corpus), build.stats.shard_docs):
        def on_batch(done: int, windows: int, size: int = len(shard)) -> None:
            advance(size * done / max(windows, 1))  # per batch: documents, in proportion to their windows

        accumulate(loaded, site, acc, shard, first, build.stats, build.corpus.window, on_windows=on_batch)
        first += len(shard)
    reporter.finish(TASK)
    arrays = summarise(acc, slots, neuron_top, clusters, np.load(out / layout.NEURON_MEAN).astype(np.float64),
                       np.load(out / layout.NEURON_STD), build.contexts.context_tokens)
    for name in layout.CONTEXT_ARRAYS:
        save_npy_atomic(out / layout.context_array(name), arrays[name])
        manifest.record(out, layout.context_array(name))
    write_json_atomic(out / layout.CONTEXT_CLUSTERS, {"method": method, "keys": keys})
    manifest.record(out, layout.CONTEXT_CLUSTERS)
    manifest.configs["contexts"] = to_dict(build.contexts)
    return {"method": method, "documents": acc.documents, "pairs": int(slots.neuron.size)}


STAGE = Stage("contexts", reads=("profiles", "clusters"), run=run)
