"""What gets labelled: one LLM request per cluster (and per selective neuron), built from an index.

The quoted contexts are those ``show`` lists *on its top tokens* (where the unit fires most on the
tokens its profile ranks first) when the index has the contexts stage, else its strongest firings.
Every request's contexts come from one pass over the corpus.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurosearch.format import layout
from neurosearch.ids import cluster_id
from neurosearch.index.contexts import read_contexts
from neurosearch.labeling.llm import LabelRequest


def _refs(evidence: Any, count: int) -> list[dict]:
    return (evidence.on_top_tokens or evidence.strongest)[:count]


def label_requests(index: Any, *, ks: list[int] | None = None, neurons: int = 0, contexts: int = 3) -> list[LabelRequest]:
    """Requests for every cluster of the search method at ``ks`` (default all) and the top neurons."""
    from neurosearch.index.evidence import cluster_evidence, neuron_evidence

    method = index.search_method
    units: list[tuple[str, str, list[str], list[dict]]] = []
    for k in ks or index.ks:
        for cluster in index.clusters(method, k):
            info = index.cluster(cluster_id(method, k, cluster["id"]))
            refs = _refs(cluster_evidence(index, info, contexts), contexts) if contexts > 0 else []
            units.append(("cluster", info.key, info.top_tokens[:30], refs))
    if neurons > 0:
        focus = index.npy(layout.neuron_focus_file(method))  # each neuron's strongest peak weight
        for flat in np.argsort(-focus, kind="stable")[:neurons]:
            data = index.neuron(index.neuron_name(int(flat)))
            refs = _refs(neuron_evidence(index, data["id"], method, contexts), contexts) if contexts > 0 else []
            units.append(("neuron", data["id"], data["top_tokens"][:30], refs))
    texts = read_contexts(index, [refs for *_, refs in units], width=8)[0] if contexts > 0 else [[] for _ in units]
    return [LabelRequest(kind, ident, tokens, [f"{r['left']}[[{r['token']}]]{r['right']}" for r in records
                                                if r.get("left") is not None])
            for (kind, ident, tokens, _), records in zip(units, texts)]
