"""Retrieval quality and speed of `find` on a concepts file (concept -> member words).

    python benchmarks/retrieval.py [--index index/default] [--concepts ../shared/concepts/dev.json]

For every concept, the concept's name is the query. Precision@10 of a result = share of its first
10 top tokens that are members of the concept. Reported per concept and averaged: the top-1
neuron, the top-1 cluster at each K, and the oracle (the best neuron in the index for that
concept), for every profile method in the index; then HNSW recall@10 against exact search, and
query latency.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from neurosearch import Index
from neurosearch.errors import NeurosearchError

ROOT = Path(__file__).resolve().parents[1]


def precision_at_10(tokens: list[str], members: set[str]) -> float:
    return sum(t in members for t in tokens[:10]) / 10


def evaluate_method(index: Index, concepts: dict[str, list[str]], method: str) -> dict[str, dict[str, float]]:
    """Per concept: P@10 of the top-1 neuron, top-1 cluster per K, and the oracle neuron."""
    top_index, _ = index.method_top(method)
    kept = np.asarray(index.kept_tokens)
    top10 = kept[top_index[:, :10]]
    rows: dict[str, dict[str, float]] = {}
    for concept, members in concepts.items():
        member_set = {m.lower() for m in members}
        row: dict[str, float] = {}
        hits = np.isin(top10, list(member_set)).sum(axis=1) / 10
        row["oracle"] = float(hits.max())
        try:
            expanded = index.expand(concept)
        except NeurosearchError:
            rows[concept] = {"neuron": 0.0, **{f"cluster_k{k}": 0.0 for k in index.ks}, **row}
            continue
        best_neuron = index.rank("neurons", expanded, method=method, exact=True)[0][0]
        row["neuron"] = float(hits[best_neuron])
        keys = index.cluster_keys(method)
        for k in index.ks:
            position = index.rank("clusters", expanded, method=method, exact=True, k=k)[0][0]
            info = index.cluster(f"{method}/{keys[position]}")
            row[f"cluster_k{k}"] = precision_at_10(info.top_tokens, member_set)
        rows[concept] = row
    return rows


def hnsw_recall(index: Index, queries: list[str]) -> tuple[float, float, float]:
    """Mean recall@10 of HNSW+rerank against exact search, and median ms of each path."""
    recalls, approx_ms, exact_ms = [], [], []
    for query in queries:
        try:
            expanded = index.expand(query)
        except NeurosearchError:
            continue
        for kind in ("neurons", "clusters"):
            start = time.perf_counter()
            approx = [r for r, _ in index.rank(kind, expanded, exact=False)[:10]]
            approx_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            exact = [r for r, _ in index.rank(kind, expanded, exact=True)[:10]]
            exact_ms.append((time.perf_counter() - start) * 1000)
            recalls.append(len(set(approx) & set(exact)) / max(1, len(exact)))
    return float(np.mean(recalls)), float(np.median(approx_ms)), float(np.median(exact_ms))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "default")
    parser.add_argument("--concepts", type=Path, default=ROOT.parent / "shared" / "concepts" / "dev.json")
    parser.add_argument("--methods", default="all", help="comma-separated methods, or all")
    parser.add_argument("--recall-queries", type=int, default=200, help="extra single-word queries for recall@10")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    index = Index.load(args.index)
    concepts = json.loads(args.concepts.read_text())
    methods = index.methods if args.methods == "all" else args.methods.split(",")
    console = Console()
    summary = Table(title=f"mean P@10 over {len(concepts)} concepts: {args.index} (site {index.manifest.site})")
    columns = ["method", "top-1 neuron", "oracle neuron", "neuron / oracle"] + [f"top-1 cluster K={k}" for k in index.ks]
    for column in columns:
        summary.add_column(column)
    results = {}
    for method in methods:
        rows = evaluate_method(index, concepts, method)
        results[method] = rows
        mean = {key: float(np.mean([r[key] for r in rows.values()])) for key in next(iter(rows.values()))}
        summary.add_row(method, f"{mean['neuron']:.3f}", f"{mean['oracle']:.3f}",
                        f"{mean['neuron'] / max(mean['oracle'], 1e-9):.2f}",
                        *[f"{mean[f'cluster_k{k}']:.3f}" for k in index.ks])
        if method == index.search_method:
            detail = Table(title=f"per concept ({method}, the index's search method)")
            for column in ["concept", "top-1 neuron", "oracle"] + [f"cluster K={k}" for k in index.ks]:
                detail.add_column(column)
            for concept, row in rows.items():
                detail.add_row(concept, f"{row['neuron']:.1f}", f"{row['oracle']:.1f}",
                               *[f"{row[f'cluster_k{k}']:.1f}" for k in index.ks])
            console.print(detail)
    console.print(summary)
    rng = np.random.default_rng(0)
    words = [t for t in index.kept_tokens if t.isalpha() and len(t) > 3]
    queries = list(concepts) + list(rng.choice(words, size=min(args.recall_queries, len(words)), replace=False))
    recall, approx_ms, exact_ms = hnsw_recall(index, queries)
    console.print(f"HNSW recall@10 vs exact over {len(queries)} queries x (neurons, clusters): {recall:.3f} "
                  f"(target >= 0.98); median rank time HNSW {approx_ms:.2f} ms, exact {exact_ms:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps({"methods": results, "recall_at_10": recall}, indent=1))


if __name__ == "__main__":
    main()
