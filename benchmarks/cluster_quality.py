"""Scalable clustering against exact complete linkage on real neurons (``cluster.py --real``).

Both trees are cut at K (no refinement, as shipped). Reported: time and peak memory of each tree,
the adjusted Rand index between the two cuts; compactness -- each cluster's exact mean and max
pairwise cosine distance (its diameter), averaged over clusters with two or more members and
weighted by members; and retrieval: for every concept of the dev and extra files, the concept
name's query expansion on ``--index`` (same kept tokens as the profiles) scores each cluster as
``find`` does (cosine with the cluster's z-score peaks over its top 50 tokens), and P@10 of the
top-1 cluster is the share of its 10 top tokens that are concept members. The concept files were
tuned on earlier (docs/results/retrieval.md); here they only compare two clusterings, no setting was tuned on them.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _concepts() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in (ROOT.parent / "shared/concepts/dev.json", ROOT / "benchmarks/concepts/extra.json"):
        if path.exists():
            found.update(json.loads(path.read_text()))
    return found


def _retrieval(unit: np.ndarray, labels: np.ndarray, k: int, index_dir: Path) -> dict[str, float]:
    from neurosearch.pipeline.profiles import top_tokens
    from neurosearch.pipeline.search import peak_weights
    from neurosearch.index.index import Index

    index = Index.load(index_dir)
    kept = index.kept_tokens
    sums = np.zeros((k, unit.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, unit)
    means = (sums / np.bincount(labels, minlength=k)[:, None]).astype(np.float32)
    top, _ = top_tokens(means, 50)
    weights = peak_weights(means, top)
    scores = {}
    for concept, members in _concepts().items():
        query = index.expand(concept).as_dict()
        q = np.zeros(unit.shape[1])
        for token, weight in query.items():
            q[token] = weight
        score = np.einsum("km,km->k", weights, q[top])
        best = int(np.argmax(score))
        member_set = {m.lower() for m in members}
        scores[concept] = sum(kept[t] in member_set for t in top[best, :10]) / 10
    return scores


def _compactness(unit: np.ndarray, labels: np.ndarray, k: int) -> dict[str, float]:
    from neurosearch.pipeline.clusters import _pair_stats

    means, diameters, sizes = [], [], []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue
        mean, diameter = _pair_stats(unit[members])
        means.append(mean)
        diameters.append(diameter)
        sizes.append(len(members))
    w = np.asarray(sizes, dtype=np.float64)
    return {"mean_within_distance": float(np.average(means, weights=w)),
            "mean_diameter": float(np.average(diameters, weights=w)),
            "clusters_of_2_or_more": len(sizes), "singletons": int(k - len(sizes))}


def compare_modes(profiles_path: Path, index_dir: Path, k: int, max_blocks: tuple[int, ...] = (20_000, 4_000)) -> None:
    """Exact linkage beside the scalable mode at each ``max_blocks`` (blocks of at most that many
    neurons get exact linkage; at least the neuron count: one block, the exact tree)."""
    from sklearn.metrics import adjusted_rand_score

    from neurosearch.pipeline.linkage import cut_tree, linkage_tree, unit_rows
    from neurosearch.pipeline.scalable_clusters import ScalableSettings, scalable_tree

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import cpu_line

    unit = unit_rows(np.load(profiles_path))
    results = {}
    blocks = {}
    for mode in ("exact", *(f"scalable, blocks <= {m:,}" for m in max_blocks)):
        t0 = time.perf_counter()
        if mode == "exact":
            z = linkage_tree(unit)
        else:
            size = max_blocks[len(results) - 1]
            z, facts = scalable_tree(unit, ScalableSettings(max_block=size))
            blocks[mode] = facts["blocks"]
        seconds = time.perf_counter() - t0
        labels = cut_tree(z, k)
        results[mode] = {"seconds": seconds, "labels": labels, **_compactness(unit, labels, k),
                         "p_at_10": _retrieval(unit, labels, k, index_dir)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    exact = results["exact"]
    concepts = sorted(exact["p_at_10"])
    print(f"CPU: {cpu_line()}")
    print(f"{unit.shape[0]:,} neurons x {unit.shape[1]:,} kept tokens from {profiles_path.name}, K={k}; "
          f"peak RSS of all runs {peak:.2f} GB")
    names = list(results)
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    print("| blocks | - | " + " | ".join(str(blocks[n]) for n in names[1:]) + " |")
    print("| adjusted Rand index vs exact | 1 | " + " | ".join(
        f"{adjusted_rand_score(exact['labels'], results[n]['labels']):.3f}" for n in names[1:]) + " |")
    for key in ("seconds", "mean_within_distance", "mean_diameter", "clusters_of_2_or_more", "singletons"):
        print(f"| {key} | " + " | ".join(f"{results[n][key]:.3f}" for n in names) + " |")
    print(f"| top-1 cluster P@10 ({len(concepts)} concepts) | " + " | ".join(
        f"{np.mean([results[n]['p_at_10'][c] for c in concepts]):.3f}" for n in names) + " |")
    for concept in concepts:
        print(f"| {concept} | " + " | ".join(f"{results[n]['p_at_10'][concept]:.1f}" for n in names) + " |")
