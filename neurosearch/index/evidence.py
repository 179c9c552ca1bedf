"""What ``show`` reports of a neuron or cluster beyond its profile: the evidence behind it.

Two lists of occurrences, each a reference into the corpus with its activation and z-score
(z = (value - mu) / sd of the neuron that fired, from ``neurons/mean.npy`` and ``std.npy``):

- *on its top tokens*: for each of the unit's first top tokens, the occurrence where it (for a
  cluster: the neuron of the cluster with the highest z) fires most on that token -- what the
  profile means (the contexts stage, ``contexts/``);
- *strongest firings overall*: its largest activations anywhere in the corpus (the statistics
  pass's top-k, ``neurons/top_refs.npy``), which Eq. 1's average need not rank first.

Beside the weight of each top token: its Eq. 1 mean activation and that mean's z (for a cluster,
the mean over its neurons of both). Indexes built before the contexts stage have only the second
list; :func:`missing_contexts_note` says how to add the first.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from neurosearch.config import ProfileConfig
from neurosearch.format import layout
from neurosearch.ids import ClusterId

if TYPE_CHECKING:
    from neurosearch.index.index import Index

CONTEXT_FILES_NEEDED = (layout.context_array("neuron_token_means"), layout.CONTEXT_CLUSTERS)


@dataclass
class Evidence:
    """The evidence of one unit: token rows and the two context lists (references, no text yet)."""

    token_means: list[float | None]
    """Eq. 1 mean activation of each top token (None where the index has none)."""
    token_z: list[float | None]
    on_top_tokens: list[dict[str, Any]]
    strongest: list[dict[str, Any]]
    note: str | None = None
    """Why ``on_top_tokens`` or the means are missing, with the command that adds them."""
    clusters: list[dict[str, Any]] = field(default_factory=list)
    """The clusters that contain a neuron (for a neuron)."""
    verify: str = ""
    """The command that tests the unit causally."""


def has_contexts(index: Index, method: str) -> bool:
    stage = index.manifest.stages.get("contexts", {})
    return bool(stage.get("done")) and stage.get("method") == method and all(
        name in index.manifest.files for name in CONTEXT_FILES_NEEDED)


def build_command(index: Index, out: Any = None) -> str:
    """The ``neurosearch build`` command that finishes this index (or its copy ``out``) with its own
    settings; finished stages are skipped."""
    configs, corpus = index.manifest.configs, index.manifest.corpus
    profiles, clusters = configs.get("profiles", {}), configs.get("clusters", {})
    model = configs.get("model", {})
    defaults = ProfileConfig()
    from neurosearch.index.contexts import locate_corpus

    found = locate_corpus(index).path
    source = str(found.resolve()) if found is not None else corpus.get("source") or "CORPUS"
    words = ["neurosearch", "build", "--corpus", source, "--out", str(out or index.path)]
    if model.get("model", "minilm") != "minilm":
        words += ["--model", model["model"]]
    words += ["--site", model.get("site", "ffn")]  # explicit: --paper and the defaults differ here
    if corpus.get("text_field", "text") != "text":
        words += ["--text-field", corpus["text_field"]]
    if corpus.get("max_docs") is not None:
        words += ["--max-docs", str(corpus["max_docs"])]
    methods = profiles.get("methods") or []
    if methods and len(methods) < 4:
        words += ["--methods", ",".join(methods)]
    if profiles.get("search_method", defaults.search_method) != defaults.search_method:
        words += ["--method", profiles["search_method"]]
    if profiles.get("embeddings", "model") != "model":
        words += ["--embeddings", profiles.get("embeddings_path") or profiles["embeddings"]]
    if profiles.get("min_count", "auto") != "auto":
        words += ["--min-count", str(profiles["min_count"])]
    if [int(k) for k in clusters.get("ks", [50, 200])] != [50, 200]:
        words += ["--k", ",".join(str(k) for k in clusters["ks"])]
    words.append("--refine" if clusters.get("refine") else "--no-refine")
    return shlex.join(words)


def missing_contexts_note(index: Index, method: str) -> str:
    if index.manifest.stages.get("contexts", {}).get("done"):
        return (f"top-token contexts and means are stored for method {index.manifest.stages['contexts'].get('method')} "
                f"only, not {method}")
    if index.manifest.read_only:  # shipped product: the stage goes into a copy (or the maintainer's rebuild)
        copy = "INDEX-COPY"
        return ("this read-only index was built without the contexts stage (top-token means and contexts); "
                f"a copy gets it with one pass over the corpus: cp -r {index.path} {copy} && "
                f"{build_command(index, copy)}")
    return ("this index was built without the contexts stage (top-token means and contexts); "
            f"add it with one pass over the corpus: {build_command(index)}")


def _z(value: float, mu: float, sd: float) -> float:
    return float((value - mu) / max(sd, 1e-6))


def _floats(values: Any) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def _strongest(index: Index, flat: int) -> list[dict[str, Any]]:
    refs = index.npy(layout.NEURON_TOP_REFS)[flat]
    values = index.npy(layout.NEURON_TOP_VALUES)[flat]
    mu, sd = float(index.npy(layout.NEURON_MEAN)[flat]), float(index.npy(layout.NEURON_STD)[flat])
    name = index.neuron_name(flat)
    return [{"document": int(d), "position": int(p), "token_id": int(t), "value": float(v), "z": _z(v, mu, sd),
             "neuron": name} for (d, p, t), v in zip(refs, values) if np.isfinite(v)]


def clusters_of(index: Index, flat: int, method: str) -> list[dict[str, Any]]:
    """Every cluster of ``method`` (each K) that contains neuron ``flat``, with its theme and size."""
    offsets = index.npy(layout.cluster_neurons_offsets_file(method))
    members = index.npy(layout.cluster_neurons_file(method))
    keys = index.cluster_keys(method)
    found = []
    for position in np.flatnonzero(members == flat):
        row = int(np.searchsorted(offsets, position, side="right") - 1)
        theme, source = index.label_store.label_for("cluster", f"{method}/{keys[row]}", method, row)
        found.append({"id": f"{method}/{keys[row]}", "short_id": keys[row], "theme": theme, "label_source": source,
                      "size": int(offsets[row + 1] - offsets[row])})
    return found


def neuron_evidence(index: Index, name: str, method: str, limit: int = 5) -> Evidence:
    """A neuron's evidence: at most ``limit`` occurrences in each list."""
    flat = index.neuron_index(name)
    mu, sd = float(index.npy(layout.NEURON_MEAN)[flat]), float(index.npy(layout.NEURON_STD)[flat])
    top_index, _ = index.method_top(method)
    evidence = Evidence([], [], [], _strongest(index, flat)[:limit], clusters=clusters_of(index, flat, method),
                        verify=f"neurosearch ablate --neurons {index.neuron_name(flat)}")
    if not has_contexts(index, method):
        evidence.note = missing_contexts_note(index, method)
        evidence.token_means = evidence.token_z = [None] * len(top_index[flat])
        return evidence
    means = index.npy(layout.context_array("neuron_token_means"))[flat]
    evidence.token_means = _floats(means)
    evidence.token_z = [None if m is None else _z(m, mu, sd) for m in evidence.token_means]
    values = index.npy(layout.context_array("neuron_token_values"))[flat]
    refs = index.npy(layout.context_array("neuron_token_refs"))[flat]
    for rank, ((d, p, t), v) in enumerate(zip(refs, values)):
        if np.isfinite(v) and d >= 0:
            evidence.on_top_tokens.append({"document": int(d), "position": int(p), "token_id": int(t), "value": float(v),
                                           "z": _z(v, mu, sd), "neuron": index.neuron_name(flat), "token_rank": rank})
    evidence.on_top_tokens.sort(key=lambda r: -r["value"])
    del evidence.on_top_tokens[limit:]
    return evidence


def cluster_evidence(index: Index, info: Any, limit: int = 5) -> Evidence:
    """A cluster's evidence: at most ``limit`` occurrences in each list, each with its neuron."""
    strongest = [occurrence.to_json() for occurrence in index.cluster_refs(info, limit)]
    verify = f"neurosearch ablate {info.key}"
    if not has_contexts(index, info.method):
        return Evidence([None] * len(info.top_tokens), [None] * len(info.top_tokens), [], strongest,
                        note=missing_contexts_note(index, info.method), verify=verify)
    keys = index.json(layout.CONTEXT_CLUSTERS)["keys"]
    row_key = ClusterId(info.method, info.k, info.id).row_key
    if row_key not in keys and info.k == 0:  # a tree node: contexts are stored for the clusters of the cuts
        row_key = index.lookup.same_cut_cluster(info) or row_key
    if row_key not in keys:
        return Evidence([None] * len(info.top_tokens), [None] * len(info.top_tokens), [], strongest,
                        note=f"contexts on the top tokens are stored for the clusters of the K cuts "
                             f"({', '.join(f'k{k}' for k in index.ks)}), not for the tree's nodes", verify=verify)
    row = keys.index(row_key)
    values = index.npy(layout.context_array("cluster_token_values"))[row]
    neurons = index.npy(layout.context_array("cluster_token_neurons"))[row]
    refs = index.npy(layout.context_array("cluster_token_refs"))[row]
    mean, std = index.npy(layout.NEURON_MEAN), index.npy(layout.NEURON_STD)
    on_top = []
    for rank, ((d, p, t), v, n) in enumerate(zip(refs, values, neurons)):
        if np.isfinite(v) and n >= 0:
            on_top.append({"document": int(d), "position": int(p), "token_id": int(t), "value": float(v),
                           "z": _z(v, float(mean[n]), float(std[n])), "neuron": index.neuron_name(int(n)),
                           "token_rank": rank})
    on_top.sort(key=lambda r: -r["z"])
    return Evidence(_floats(index.npy(layout.context_array("cluster_token_means"))[row]),
                    _floats(index.npy(layout.context_array("cluster_token_z"))[row]), on_top[:limit], strongest, verify=verify)
