"""The build's clusters stage: every method's neurons clustered by complete linkage on their unit
profiles (``ClusterConfig.mode``: exact, or the scalable tree of ``scalable_clusters.py``), the tree
cut at every K (``clusters.py``), and the distance curve of paper Fig. 2.

Paths come from ``format/layout.py``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from neurosearch.config import ClusterConfig, to_dict
from neurosearch.errors import NeurosearchError
from neurosearch.format import layout
from neurosearch.format.atomic import save_npy_atomic, write_json_atomic
from neurosearch.pipeline.stage import Stage, StageContext


def run(context: StageContext) -> dict[str, Any]:
    """Write the stage's files into the index and list them; the stage's facts."""
    from neurosearch.pipeline.clusters import build_clusters, distance_curve
    from neurosearch.pipeline.linkage import unit_rows

    out, manifest, config, reporter = context.out, context.manifest, context.config.clusters, context.reporter
    too_big = [k for k in config.ks if k > manifest.n_neurons]
    if too_big:
        raise NeurosearchError(f"K={too_big[0]} is larger than the number of neurons ({manifest.n_neurons})")
    methods = manifest.configs["profiles"]["methods"]
    facts: dict[str, Any] = {}
    advance = reporter.task("clusters (methods)", len(methods))
    for method in methods:
        t0 = time.time()
        unit = unit_rows(np.load(out / layout.profiles_file(method)))
        tree, mode_facts = cluster_tree(unit, config)
        save_npy_atomic(out / layout.linkage_file(method), tree)  # the search stage's tree nodes: the same tree
        sizes = {}
        for k in config.ks:
            found = build_clusters(unit, tree, k, neurons_per_layer=manifest.neurons_per_layer, config=config)
            relative = layout.clusters_file(method, k)
            write_json_atomic(out / relative, {"method": method, "k": k, "clusters": [c.to_json() for c in found]})
            manifest.record(out, relative)
            sizes[str(k)] = sorted((c.size for c in found), reverse=True)
        curve_ks = [k for k in config.curve_ks if k <= manifest.n_neurons]
        relative = layout.distance_curve_file(method)
        write_json_atomic(out / relative, distance_curve(unit, tree, curve_ks))
        manifest.record(out, relative)
        facts[method] = {"seconds": round(time.time() - t0, 2), "cluster_sizes": sizes, **mode_facts}
        advance(1)
    reporter.finish("clusters (methods)")
    manifest.configs["clusters"] = to_dict(config)
    return {"mode": config.mode, "methods": facts}


def cluster_tree(unit: np.ndarray, config: ClusterConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """The linkage tree of ``ClusterConfig.mode`` and what the manifest records about it."""
    from neurosearch.pipeline.linkage import MAX_EXACT, linkage_tree

    if config.mode == "scalable":
        from neurosearch.pipeline.scalable_clusters import scalable_tree

        tree, facts = scalable_tree(unit)
        return tree, {"mode": "scalable", "communities": facts["communities"],
                      "largest_community": facts.get("largest_community", unit.shape[0]),
                      "blocks": facts["blocks"], "largest_block": facts["largest_block"],
                      "steps_seconds": facts["seconds"]}
    return linkage_tree(unit), {"mode": "exact" if unit.shape[0] <= MAX_EXACT else f"exact (prototype tree above {MAX_EXACT:,})"}


STAGE = Stage("clusters", reads=("profiles",), run=run)
