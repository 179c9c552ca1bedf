"""What gets labelled: one LLM request per cluster (and per selective neuron), built from an index.

The quoted contexts are those ``show`` lists *on its top tokens* (where the unit fires most on the
tokens its profile ranks first) when the index has the contexts stage, else its strongest firings.
Every request's contexts come from one pass over the corpus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from neurosearch.format import layout
from neurosearch.ids import cluster_id
from neurosearch.index.contexts import read_contexts
from neurosearch.labeling.prompt import LabelRequest

if TYPE_CHECKING:
    from neurosearch.index.index import Index


def _refs(evidence: Any, count: int) -> list[dict]:
    return (evidence.on_top_tokens or evidence.strongest)[:count]


def label_requests(index: Index, *, ks: list[int] | None = None, neurons: int = 0, contexts: int = 3,
                   ids: list[str] | None = None) -> list[LabelRequest]:
    """Requests for every cluster of the search method at ``ks`` (default all) and the top neurons;
    or, given ``ids``, for exactly those clusters (``k200/84``, ``tree/8855``: a node of the cluster
    tree, which ``find`` returns) and neurons (``2:1454``), in that order."""
    from neurosearch.index.evidence import cluster_evidence, neuron_evidence

    method = index.search_method
    units: list[tuple[str, str, list[str], list[dict]]] = []

    def add_cluster(info: Any) -> None:
        refs = _refs(cluster_evidence(index, info, contexts), contexts) if contexts > 0 else []
        units.append(("cluster", info.key, info.top_tokens[:30], refs))

    def add_neuron(name: str) -> None:
        data = index.neuron(name)
        refs = _refs(neuron_evidence(index, data.id, method, contexts), contexts) if contexts > 0 else []
        units.append(("neuron", data.id, data.top_tokens[:30], refs))

    if ids is not None:
        for kind, value in parse_units(index, ids):
            if kind == "neuron":
                add_neuron(value)
            else:
                add_cluster(value)
    else:
        for k in ks or index.ks:
            for cluster in index.clusters(method, k):
                add_cluster(index.cluster(cluster_id(method, k, cluster.id)))
        if neurons > 0:
            focus = index.npy(layout.neuron_focus_file(method))  # each neuron's strongest peak weight
            for flat in np.argsort(-focus, kind="stable")[:neurons]:
                add_neuron(index.neuron_name(int(flat)))
    texts = read_contexts(index, [refs for *_, refs in units], width=8)[0] if contexts > 0 else [[] for _ in units]
    return [LabelRequest(kind, ident, tokens, [f"{r['left']}[[{r['token']}]]{r['right']}" for r in records
                                                if r.get("left") is not None])
            for (kind, ident, tokens, _), records in zip(units, texts)]


def parse_units(index: Index, ids: list[str]) -> list[tuple[str, Any]]:
    """``("neuron", name)`` or ``("cluster", ClusterInfo)`` of each id, each once; a bad id raises
    ``NeurosearchError`` (before any request is prepared)."""
    from neurosearch.errors import NeurosearchError

    units: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for text in (t.strip() for t in ids):
        if not text:
            continue
        if ":" in text and "/" not in text:
            name = index.neuron(text).id  # raises for a neuron that does not exist
            if name not in seen:
                seen.add(name)
                units.append(("neuron", name))
            continue
        info = index.cluster(text)
        if info.method != index.search_method:
            raise NeurosearchError(f"cluster {text}: labels are for the search method's clusters "
                                   f"({index.search_method}), not {info.method}'s", option="ids")
        if info.key not in seen:
            seen.add(info.key)
            units.append(("cluster", info))
    if not units:
        raise NeurosearchError("--ids is empty: give cluster or neuron ids, e.g. tree/8855,2:1454", option="ids")
    return units


def hit_ids(index: Index, query: str, top: int = 10) -> list[str]:
    """The ids of the hits ``find`` lists for ``query`` (``top`` of each kind, above the relevance
    floor): what ``label --query`` labels."""
    from neurosearch.errors import NeurosearchError

    result = index.find(query, top=top)
    if not result.results:
        raise NeurosearchError(f"find '{query}' lists no hit above the relevance floor: nothing to label", option="query")
    return [hit.id for hit in result.results]
