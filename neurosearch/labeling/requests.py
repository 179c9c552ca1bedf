"""What gets labelled: one LLM request per cluster (and per selective neuron), built from an index."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurosearch.format import layout
from neurosearch.ids import cluster_id
from neurosearch.index.contexts import context_records
from neurosearch.labeling.llm import LabelRequest


def _context_lines(index: Any, refs: list[dict], count: int) -> list[str]:
    if count <= 0:
        return []
    records = context_records(index, refs, count, width=8)
    return [f"{r['left']}[[{r['token']}]]{r['right']}" for r in records if r.get("token")]


def label_requests(index: Any, *, ks: list[int] | None = None, neurons: int = 0, contexts: int = 3) -> list[LabelRequest]:
    """Requests for every cluster of the search method at ``ks`` (default all) and the top neurons."""
    method = index.search_method
    requests = []
    for k in ks or index.ks:
        for cluster in index.clusters(method, k):
            info = index.cluster(cluster_id(method, k, cluster["id"]))
            refs = index.cluster_refs(info, contexts) if contexts else []
            requests.append(LabelRequest("cluster", info.key, info.top_tokens[:30], _context_lines(index, refs, contexts)))
    if neurons > 0:
        focus = index.npy(layout.neuron_focus_file(method))  # each neuron's strongest peak weight
        for flat in np.argsort(-focus, kind="stable")[:neurons]:
            data = index.neuron(index.neuron_name(int(flat)))
            requests.append(LabelRequest("neuron", data["id"], data["top_tokens"][:30],
                                         _context_lines(index, data["top_activations"], contexts)))
    return requests
