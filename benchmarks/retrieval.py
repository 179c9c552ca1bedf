"""Retrieval quality and speed of `find` on concept files (concept -> member words), file by file.

    python benchmarks/retrieval.py [--index index/default] [--concepts FILE ...] [--methods search|all]
                                   [--llm-base-url URL [--llm-model NAME]]

Default files: ``benchmarks/concepts/general.json`` (two sets, ``general-tune`` and
``general-test``, split by sha256 of the concept name before anything was run on them; tune on the
first, report the second), ``../shared/concepts/dev.json`` and ``benchmarks/concepts/extra.json``
(both already tuned on). For every concept the concept's name is the query. ``--layer L``
restricts the neuron rows to the units of one model layer (a per-layer comparison of neurons with
the SAE features of that layer). Precision@10 of a
result = share of its first 10 top tokens that are members of the concept. Reported per file, per
concept and averaged: the top-1 neuron, the oracle neuron (the best neuron in the index for that
concept), the top-1 cluster and the oracle cluster at each K; then HNSW recall@10 against exact
search and query latency. The CPU's model and vector flags are printed beside the timings (the
precision figures do not depend on the CPU). ``--llm-base-url`` measures ``find --llm`` instead:
every concept is expanded to the members that server's model lists (one request per concept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from neurosearch.model.phrases import PhraseEmbedder  # noqa: E402
from neurosearch import Index
from neurosearch.errors import NeurosearchError
from neurosearch.format import layout

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILES = (ROOT / "benchmarks" / "concepts" / "general.json", ROOT.parent / "shared" / "concepts" / "dev.json",
                 ROOT / "benchmarks" / "concepts" / "extra.json")


def cpu_flags() -> str:
    """The CPU's model name and its vector extensions (what a timing depends on)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "sse4_2"))
    return f"{model}; {', '.join(wanted) or 'no AVX'}"


def split_of(names: list[str]) -> tuple[list[str], list[str]]:
    """general.json's rule: concepts sorted by sha256 of the name (UTF-8), first half tune, rest test."""
    order = sorted(names, key=lambda name: hashlib.sha256(name.encode("utf-8")).hexdigest())
    half = len(order) // 2
    return sorted(order[:half]), sorted(order[half:])


def load_concept_sets(path: Path) -> dict[str, dict[str, list[str]]]:
    """A concepts file as named sets: ``{"dev": {...}}``, or ``general-tune`` and ``general-test``
    for a file with ``tune`` and ``test`` sections (whose split is checked against its rule)."""
    data = json.loads(path.read_text())
    stem = path.stem
    if "tune" in data and "test" in data:
        tune, test = split_of([*data["tune"], *data["test"]])
        if tune != sorted(data["tune"]) or test != sorted(data["test"]):
            raise SystemExit(f"{path}: its tune/test split does not follow its sha256 rule")
        return {f"{stem}-tune": data["tune"], f"{stem}-test": data["test"]}
    return {stem: data}


def precision_at_10(tokens: list[str], members: set[str]) -> float:
    return sum(t in members for t in tokens[:10]) / 10


class Evaluator:
    """P@10 of the top-1 and oracle neuron and cluster for concepts, one index and method; the
    index is loaded once, so variants of the query expansion can be compared in one process."""

    def __init__(self, index: Index, method: str | None = None, layer: int | None = None):
        self.index = index
        self.method = method or index.search_method
        top_index, _ = index.method_top(self.method)
        kept = np.asarray(index.kept_tokens)
        width = index.manifest.neurons_per_layer
        self.allowed = np.ones(len(top_index), bool)  # the neuron rows that count (--layer: one layer's)
        if layer is not None:
            first = index.manifest.sae_layer if index.manifest.sae_layer is not None else 0
            if not 0 <= layer - first < index.manifest.n_layers:
                raise SystemExit(f"--layer {layer}: the index's units are of layers {first}-{first + index.manifest.n_layers - 1}")
            self.allowed[:] = False
            self.allowed[(layer - first) * width : (layer - first + 1) * width] = True
        self.top10_index = top_index[:, :10]
        self.neuron_top10 = kept[self.top10_index]
        self.keys = index.cluster_keys(self.method)
        shown = index.npy(layout.cluster_tokens_file(self.method))
        self.cluster_top10 = kept[shown[:, :10]]
        self.cluster_k = np.asarray([0 if key.startswith("tree/") else int(key.split("/")[0][1:]) for key in self.keys])
        self.ks = cluster_sets(index, self.method)
        self.popularity = np.bincount(top_index[:, :10].ravel(), minlength=len(kept))
        self.words = np.asarray([i for i, t in enumerate(index.kept_tokens) if t.isalpha()])

    def chance(self, members: set[str], draws: int = 20) -> float:
        """The oracle neuron's P@10 for random word sets of the same size and popularity (how often a
        token is among neurons' first 10 top tokens): what the oracle reaches by luck alone."""
        kept = self.index.vocabulary._kept_position
        ids = sorted(kept[m] for m in members if m in kept)  # a set's order changes from run to run
        if not ids:
            return 0.0
        rng = np.random.default_rng(0)
        order = self.words[np.argsort(self.popularity[self.words], kind="stable")]
        positions = np.searchsorted(self.popularity[order], self.popularity[ids])
        best = []
        for _ in range(draws):
            picked = order[np.clip(positions + rng.integers(-50, 50, size=len(ids)), 0, len(order) - 1)]
            mask = np.zeros(len(self.index.kept_tokens), bool)
            mask[picked] = True
            best.append(mask[self.top10_index[self.allowed]].sum(axis=1).max() / 10)
        return float(np.mean(best))

    def concept(self, concept: str, members: list[str], expand=None) -> dict[str, float]:
        """One concept's row; ``expand`` (query -> ExpandedQuery) defaults to the index's."""
        member_set = {m.lower() for m in members}
        neuron_hits = np.isin(self.neuron_top10, list(member_set)).sum(axis=1) / 10
        cluster_hits = np.isin(self.cluster_top10, list(member_set)).sum(axis=1) / 10
        row: dict[str, float] = {"oracle": float(neuron_hits[self.allowed].max()), "chance": self.chance(member_set)}
        for k in self.ks:
            row[f"cluster_oracle_k{k}"] = float(cluster_hits[self.cluster_k == k].max())
        try:
            expanded = (expand or self.index.expand)(concept)
        except NeurosearchError:
            return {"neuron": 0.0, **{f"cluster_k{k}": 0.0 for k in self.ks}, **row}
        ranked = self.index.rank("neurons", expanded, method=self.method, exact=True,
                                 limit=1 if self.allowed.all() else len(self.allowed))
        best = [(r, score) for r, score in ranked if self.allowed[r]][:1]
        row["neuron"] = float(neuron_hits[best[0][0]]) if best and best[0][1] > 0 else 0.0
        for k in self.ks:
            best = self.index.rank("clusters", expanded, method=self.method, exact=True, k=k, limit=1)
            row[f"cluster_k{k}"] = float(cluster_hits[best[0][0]]) if best and best[0][1] > 0 else 0.0
        return row

    def concepts(self, concepts: dict[str, list[str]], expand=None) -> dict[str, dict[str, float]]:
        return {name: self.concept(name, members, expand) for name, members in concepts.items()}


def cluster_sets(index: Index, method: str) -> list[int]:
    """The cluster sets reported: each cut's K, and 0 for the tree's nodes when the method has them."""
    return list(index.ks) + ([0] if index.scoring.has_tree(method) else [])


def k_name(k: int) -> str:
    return "tree" if k == 0 else f"K={k}"


def concept_units(rows: dict[str, dict[str, float]]) -> int:
    """Concepts with a concept unit: the oracle's P@10 >= 0.3 and >= twice the chance oracle's."""
    return sum(row["oracle"] >= 0.3 and row["oracle"] >= 2 * row["chance"] for row in rows.values())


def mean_row(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows.values()])) for key in next(iter(rows.values()))}


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


def llm_expander(index: Index, base_url: str, model: str | None, console: Console):
    """query -> ExpandedQuery: the kept members the LLM lists (``find --llm``; a concept it lists none
    of the kept tokens for scores 0)."""
    from neurosearch.labeling.config import LabelConfig
    from neurosearch.labeling.members import llm_members, search_words

    config = LabelConfig(base_url=base_url, **({"llm_model": model} if model else {}))
    console.print(f"expansion: the members {config.llm_model} at {base_url} lists (find --llm)")

    def expand(text: str):
        try:
            listed = llm_members(text, config)
        except NeurosearchError as exc:  # the server failed: not a concept that scores 0
            raise SystemExit(f"retrieval.py: {exc}") from None
        return index.expand(tokens=search_words(listed)[0] or listed.members)  # as find --llm searches

    return expand


def report(console: Console, index: Index, sets: dict[str, dict[str, list[str]]], methods: list[str],
           per_concept: bool, expand=None, layer: int | None = None) -> dict:
    ks = cluster_sets(index, index.search_method)
    units = "" if layer is None else f", neurons of layer {layer} only"
    summary = Table(title=f"mean P@10 per concept file: {index.path} (site {index.manifest.site}{units})")
    for column in ["file", "concepts", "method", "top-1 neuron", "oracle neuron", "neuron / oracle", "chance oracle",
                   "concept units",
                   *[f"top-1 cluster {k_name(k)}" for k in ks], *[f"oracle cluster {k_name(k)}" for k in ks]]:
        summary.add_column(column)
    results: dict = {}
    for method in methods:
        evaluator = Evaluator(index, method, layer)
        ks = evaluator.ks
        for name, concepts in sets.items():
            rows = evaluator.concepts(concepts, expand)
            results.setdefault(name, {})[method] = {"concepts": rows, "mean": mean_row(rows),
                                                    "concept_units": concept_units(rows)}
            mean = mean_row(rows)
            summary.add_row(name, str(len(rows)), method, f"{mean['neuron']:.3f}", f"{mean['oracle']:.3f}",
                            f"{mean['neuron'] / max(mean['oracle'], 1e-9):.2f}", f"{mean['chance']:.3f}",
                            str(concept_units(rows)),
                            *[f"{mean[f'cluster_k{k}']:.3f}" for k in ks],
                            *[f"{mean[f'cluster_oracle_k{k}']:.3f}" for k in ks])
            if per_concept and method == index.search_method:
                detail = Table(title=f"{name}: per concept ({method})")
                for column in ["concept", "top-1 neuron", "oracle", "chance", *[f"cluster {k_name(k)}" for k in ks],
                               *[f"oracle cluster {k_name(k)}" for k in ks]]:
                    detail.add_column(column)
                for concept, row in rows.items():
                    detail.add_row(concept, f"{row['neuron']:.1f}", f"{row['oracle']:.1f}", f"{row['chance']:.2f}",
                                   *[f"{row[f'cluster_k{k}']:.1f}" for k in ks],
                                   *[f"{row[f'cluster_oracle_k{k}']:.1f}" for k in ks])
                console.print(detail)
    console.print(summary)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "default")
    parser.add_argument("--concepts", type=Path, nargs="*", default=None, help="concept files (default: all three)")
    parser.add_argument("--sets", default=None, help="comma-separated set names to report (e.g. general-test,dev)")
    parser.add_argument("--methods", default="search", help="comma-separated methods, 'search' (the index's) or 'all'")
    parser.add_argument("--no-per-concept", action="store_true", help="only the summary table")
    parser.add_argument("--recall-queries", type=int, default=200, help="extra single-word queries for recall@10 (0: skip)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--llm-base-url", default=None, help="expand every concept with the members this "
                        "OpenAI-compatible server lists (find --llm) instead of the offline expansion")
    parser.add_argument("--llm-model", default=None, help="chat model for --llm-base-url")
    parser.add_argument("--layer", type=int, default=None, help="count only the neurons (units) of this model "
                        "layer for the neuron rows (oracle, chance, top-1: the best-ranked of the layer)")
    args = parser.parse_args()

    index = Index.load(args.index, embedder=PhraseEmbedder())  # what the CLI opens: phrases take the slow path
    sets: dict[str, dict[str, list[str]]] = {}
    for path in args.concepts or [p for p in DEFAULT_FILES if p.exists()]:
        sets.update(load_concept_sets(path))
    if args.sets:
        wanted = args.sets.split(",")
        sets = {name: sets[name] for name in wanted if name in sets}
    methods = {"search": [index.search_method], "all": index.methods}.get(args.methods) or args.methods.split(",")
    console = Console()
    console.print(f"CPU: {cpu_flags()}")
    expand = llm_expander(index, args.llm_base_url, args.llm_model, console) if args.llm_base_url else None
    results = report(console, index, sets, methods, not args.no_per_concept, expand, args.layer)
    recall = None
    if args.recall_queries:
        rng = np.random.default_rng(0)
        words = [t for t in index.kept_tokens if t.isalpha() and len(t) > 3]
        concepts = [c for s in sets.values() for c in s]
        queries = concepts + list(rng.choice(words, size=min(args.recall_queries, len(words)), replace=False))
        recall, approx_ms, exact_ms = hnsw_recall(index, queries)
        console.print(f"HNSW recall@10 vs exact over {len(queries)} queries x (neurons, clusters): {recall:.3f} "
                      f"(target >= 0.98); median rank time HNSW {approx_ms:.2f} ms, exact {exact_ms:.2f} ms "
                      f"(CPU: {cpu_flags()})")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_flags(), "sets": results, "recall_at_10": recall}, indent=1))


if __name__ == "__main__":
    main()
