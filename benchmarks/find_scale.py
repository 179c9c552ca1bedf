"""``find``'s exact ranking on a synthetic index of 1M neurons, warm and cold, beside HNSW.

    python benchmarks/find_scale.py [--rows 1000000] [--hnsw-rows 100000] [--json]

Synthetic rows in the project's postings layout (``search/<method>/neurons_postings_*.npy``:
int64 offsets, int32 rows, float16 weights): each row weighs 10 kept tokens equally (as
``ProfileConfig.neuron_score_tokens`` does), drawn with the popularity tokens have in the shipped
index's postings (its 5,573 kept tokens), so lists are as long, relatively, as in a real index. The queries are the real
expansions (kept token -> weight) of the dev and extra concept names on ``index/default``.
*warm*: the postings files open, the same query scored again (fastest of ``--repeat`` runs,
wall clock and CPU time: on a shared machine the wall clock also counts time the process waited
for a core); *cold*: a fresh process opens the
files and scores one query (the OS file cache warm, as after any earlier run). Both go through
``Postings.scores`` + ``postings.ranked`` -- what ``Index.rank`` runs. HNSW (``--hnsw-rows``
rows, default 100k: a 1M-row graph takes too long to build here) is timed end to end: load the
graph, 1,000 candidates, exact rerank; its cold load grows with the graph's size.
Target: <= 15 ms warm at 1M rows. CPU flags are printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import cpu_line  # noqa: E402


def real_queries(index_dir: Path) -> list[dict[int, float]]:
    from neurosearch.index.index import Index

    index = Index.load(index_dir)
    names = [name for path in (ROOT.parent / "shared/concepts/dev.json", ROOT / "benchmarks/concepts/extra.json")
             if path.exists() for name in json.loads(path.read_text())]  # {concept name: members}
    return [index.expand(name).as_dict() for name in names] or [index.expand("weekdays").as_dict()]


def synthetic_postings(folder: Path, rows: int, popularity: np.ndarray, per_row: int, seed: int) -> None:
    """Rows of ``per_row`` distinct tokens drawn with the shipped index's token popularity."""
    from neurosearch.index.postings import build_postings

    rng = np.random.default_rng(seed)
    tokens = len(popularity)
    top = rng.choice(tokens, size=(rows, per_row), p=popularity).astype(np.int32)
    while True:  # redraw the (few) rows that drew a token twice
        ordered = np.sort(top, axis=1)
        bad = np.flatnonzero(np.any(ordered[:, 1:] == ordered[:, :-1], axis=1))
        if not len(bad):
            break
        top[bad] = rng.choice(tokens, size=(len(bad), per_row), p=popularity)
    weights = np.full(top.shape, 1 / np.sqrt(per_row), dtype=np.float32)
    for part, array in build_postings(top, weights, tokens).items():
        np.save(folder / f"neurons_postings_{part}.npy", array)
    np.save(folder / "top.npy", top)


def token_popularity(index_dir: Path) -> np.ndarray:
    """Share of the shipped index's neuron postings that each kept token holds (+1 smoothing)."""
    manifest = json.loads((index_dir / "manifest.json").read_text())
    method = manifest["stages"]["search"]["method"]
    counts = np.diff(np.load(index_dir / "search" / method / "neurons_postings_offsets.npy")).astype(np.float64) + 1
    return counts / counts.sum()


def open_postings(folder: Path, rows: int):
    from neurosearch.format.npyfile import NpyFile
    from neurosearch.index.postings import PARTS, Postings

    return Postings(*[NpyFile(folder / f"neurons_postings_{part}.npy") for part in PARTS], n_rows=rows)


def rank_once(postings, query: dict[int, float], top: int = 10):
    return postings.top(query, top)


def cold_child(folder: str, rows: int, query_json: str) -> None:
    query = {int(k): v for k, v in json.loads(query_json).items()}
    start = time.perf_counter()
    rank_once(open_postings(Path(folder), rows), query)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def hnsw_end_to_end(folder: Path, rows: int, queries: list[dict[int, float]], index_dir: Path) -> dict:
    """Build a graph over ``rows`` synthetic rows; cold = load + query + rerank, warm = query + rerank."""
    from neurosearch.pipeline.search import build_hnsw, dense_vectors
    from neurosearch.index.scoring import load_hnsw
    from neurosearch.index.index import Index
    from neurosearch.index.postings import ranked

    index = Index.load(index_dir)
    space = np.asarray(index.vocabulary.kept_space, dtype=np.float32)
    top = np.load(folder / "top.npy")[:rows]
    vectors = dense_vectors(top, np.full(top.shape, 1 / np.sqrt(top.shape[1]), dtype=np.float32), space)
    t0 = time.perf_counter()
    build_hnsw(vectors, folder / "neurons.hnsw")
    build_s = time.perf_counter() - t0
    postings = open_postings(folder, rows)
    cold, warm = [], []
    for query in queries:
        dense = np.zeros(space.shape[1], dtype=np.float32)
        for token, weight in query.items():
            dense += weight * space[token]
        t0 = time.perf_counter()
        graph = load_hnsw(folder / "neurons.hnsw", space.shape[1], 200)
        t1 = time.perf_counter()
        labels, _ = graph.knn_query(dense[None, :], k=1000)
        ranked(postings.scores(query), [int(r) for r in labels[0]], 10)
        t2 = time.perf_counter()
        cold.append(t2 - t0)
        warm.append(t2 - t1)
        del graph
    return {"rows": rows, "build_s": build_s, "graph_mb": (folder / "neurons.hnsw").stat().st_size / 1e6,
            "cold_ms": 1000 * statistics.median(cold), "warm_ms": 1000 * statistics.median(warm)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--per-row", type=int, default=10)
    parser.add_argument("--hnsw-rows", type=int, default=100_000, help="0: skip the HNSW comparison")
    parser.add_argument("--index", type=Path, default=ROOT / "index/default")
    parser.add_argument("--repeat", type=int, default=10, help="warm runs per query (the fastest counts)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cold-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_child:
        cold_child(args.cold_child[0], int(args.cold_child[1]), args.cold_child[2])
        return
    queries = real_queries(args.index)
    popularity = token_popularity(args.index)
    tokens = len(popularity)
    with tempfile.TemporaryDirectory(prefix="find-scale-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        synthetic_postings(folder, args.rows, popularity, args.per_row, seed=0)
        build_s = time.perf_counter() - t0
        postings = open_postings(folder, args.rows)
        warm, warm_cpu = [], []
        for query in queries:
            rank_once(postings, query)
            times, cpu = [], []
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                rank_once(postings, query)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            warm.append(min(times))
            warm_cpu.append(min(cpu))
        cold = []
        for query in queries:
            out = subprocess.run([sys.executable, __file__, "--cold-child", str(folder), str(args.rows),
                                  json.dumps(query)], capture_output=True, text=True, check=True).stdout
            cold.append(json.loads(out)["seconds"])
        entries = [len(query) for query in queries]
        result = {
            "cpu": cpu_line(), "rows": args.rows, "postings_entries": int(args.rows * args.per_row),
            "kept_tokens": tokens, "queries": len(queries), "median_query_tokens": statistics.median(entries),
            "synthetic_build_s": build_s,
            "exact_warm_ms_median": 1000 * statistics.median(warm), "exact_warm_ms_max": 1000 * max(warm),
            "exact_warm_cpu_ms_median": 1000 * statistics.median(warm_cpu), "load_average": os.getloadavg()[0],
            "exact_cold_ms_median": 1000 * statistics.median(cold), "exact_cold_ms_max": 1000 * max(cold),
        }
        if args.hnsw_rows:
            result["hnsw"] = hnsw_end_to_end(folder, min(args.hnsw_rows, args.rows), queries[:8], args.index)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"CPU: {result['cpu']}")
    print(f"{args.rows:,} rows, {result['postings_entries']:,} postings over {tokens:,} kept tokens; "
          f"{len(queries)} real query expansions (median {result['median_query_tokens']} tokens)")
    print(f"exact (postings + rank scored rows): warm median {result['exact_warm_ms_median']:.1f} ms "
          f"(max {result['exact_warm_ms_max']:.1f}; target <= 15; CPU time {result['exact_warm_cpu_ms_median']:.1f} ms; "
          f"load average {result['load_average']:.1f}), cold median {result['exact_cold_ms_median']:.1f} ms "
          f"(max {result['exact_cold_ms_max']:.1f})")
    if "hnsw" in result:
        h = result["hnsw"]
        print(f"HNSW over {h['rows']:,} rows ({h['graph_mb']:.0f} MB graph, built in {h['build_s']:.0f} s): "
              f"cold {h['cold_ms']:.1f} ms (load + 1,000 candidates + exact rerank), warm {h['warm_ms']:.1f} ms")


if __name__ == "__main__":
    main()
