"""Time and memory of complete-linkage clustering on synthetic neuron profiles.

Each size runs in its own spawned process so that its peak RSS (what the machine must have) is
measured alone: ``ru_maxrss`` for the whole child, and the clustering-only peak via VmHWM after
resetting it (``/proc/self/clear_refs``) once the synthetic profiles exist.

    python benchmarks/cluster.py --sizes 9984,36864 --dim 5573 [--modes exact,scalable]
    python benchmarks/cluster.py --real PROFILES.npy --k 200      # scalable vs exact on real neurons

Targets: <= 30 s and <= 4 GB at 9,984 neurons (BERT-base hidden, 13 x 768). Other sizes are
shown against the same targets for scale only.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path
from queue import Empty

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import cpu_line  # noqa: E402 (benchmarks/ is on the path when run as a script)

TARGET_SECONDS = 30.0
TARGET_GB = 4.0
GB = 1e9


def synthetic_profiles(n: int, dim: int, seed: int, topics: int = 300) -> np.ndarray:
    """Non-negative [n, dim] float32 profiles: each neuron mixes 1-3 of ``topics`` sparse token
    distributions plus noise, so there is real cluster structure without a model run."""
    rng = np.random.default_rng(seed)
    topic_tokens = rng.exponential(1.0, (topics, dim)).astype(np.float32)
    topic_tokens *= rng.random((topics, dim), dtype=np.float32) < 0.05  # each topic ~5% of tokens
    out = np.empty((n, dim), dtype=np.float32)
    for i0 in range(0, n, 4096):  # chunked, so generation does not dominate peak memory
        i1 = min(n, i0 + 4096)
        m = i1 - i0
        mix = np.zeros((m, topics), dtype=np.float32)
        for _ in range(3):
            mix[np.arange(m), rng.integers(0, topics, m)] += rng.random(m, dtype=np.float32)
        np.matmul(mix, topic_tokens, out=out[i0:i1])
        out[i0:i1] += 0.3 * rng.random((m, dim), dtype=np.float32)
    return out


def _vm_hwm_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_size(n: int, dim: int, seed: int, k: int, queue: mp.Queue, mode: str = "exact") -> None:
    """Child process: build profiles, then time unit_rows + the mode's tree + cut_tree."""
    from neurosearch.pipeline.linkage import cut_tree, linkage_tree, unit_rows
    from neurosearch.pipeline.scalable_clusters import scalable_tree

    t0 = time.perf_counter()
    profiles = synthetic_profiles(n, dim, seed)
    gen_s = time.perf_counter() - t0
    reset = _reset_hwm()

    marks: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "linkage" and done == 0:
            marks["linkage_start"] = time.perf_counter()

    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    unit = unit_rows(profiles)
    del profiles
    if mode == "scalable":
        marks["linkage_start"] = time.perf_counter()
        z, _ = scalable_tree(unit)
    else:
        z = linkage_tree(unit, progress=progress)
    t_link = time.perf_counter()
    labels = cut_tree(z, k)
    t_cut = time.perf_counter()
    queue.put(
        {
            "n": n,
            "mode": mode,
            "gen_s": gen_s,
            "dist_s": marks["linkage_start"] - t0,
            "link_s": t_link - marks["linkage_start"],
            "cut_s": t_cut - t_link,
            "total_s": t_cut - t0,
            "cpu_s": _cpu_seconds() - cpu0,
            "clusters": int(labels.max()) + 1,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB,
            "cluster_peak_gb": (_vm_hwm_bytes() or 0) / GB if reset else None,
        }
    )


def _cpu_seconds() -> float:
    """User + system CPU time of this process (its threads included): on a shared machine the wall
    time grows with the load, the CPU time much less."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def estimate_gb(n: int, dim: int, mode: str = "exact") -> float:
    """exact: condensed float64 vector + float32 profiles (and their unit copy) + one 256 MB block;
    scalable: the profiles and their unit copy, the PCA copy and one block's exact linkage (its
    condensed distances and the block's rows; at most 20,000 neurons)."""
    if mode == "scalable":
        block = min(n, 20_000)
        return (2 * n * dim * 4 + n * 128 * 4 * 3 + block * (block - 1) / 2 * 8 + 2 * block * dim * 4
                + 256 * 2**20) / GB
    return (n * (n - 1) / 2 * 8 + 2 * n * dim * 4 + 256 * 2**20) / GB


def available_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    return None


def print_table(rows: list[dict]) -> None:
    headers = ["N", "mode", "dist s", "link s", "cut s", "total s", "CPU s", "RSS GB", "clust GB", "t/30s",
               "RSS/4GB"]
    body = []
    for r in rows:
        if "skipped" in r:
            body.append([f"{r['n']:,}", r["mode"], "skipped: " + r["skipped"]] + [""] * (len(headers) - 3))
            continue
        cp = r["cluster_peak_gb"]
        body.append([
            f"{r['n']:,}", r["mode"], f"{r['dist_s']:.1f}", f"{r['link_s']:.1f}", f"{r['cut_s']:.3f}",
            f"{r['total_s']:.1f}", f"{r['cpu_s']:.1f}", f"{r['peak_gb']:.2f}", "-" if cp is None else f"{cp:.2f}",
            f"{r['total_s'] / TARGET_SECONDS:.2f}", f"{r['peak_gb'] / TARGET_GB:.2f}",
        ])
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="complete linkage, cosine (targets at 9,984: <= 30 s, <= 4 GB); "
                            "scalable: 'dist s' is 0, 'link s' the whole tree")
        for h in headers:
            table.add_column(h, justify="right")
        for line in body:
            table.add_row(*line)
        Console(width=max(100, Console().width)).print(table)
    except ImportError:
        widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(headers)]
        print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
        for line in body:
            print("  ".join(c.rjust(w) for c, w in zip(line, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="9984,36864", help="comma-separated neuron counts")
    parser.add_argument("--dim", type=int, default=5573, help="profile columns (kept tokens)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=200, help="clusters of the timed cut")
    parser.add_argument("--max-gb", type=float, default=12.0,
                        help="skip sizes whose estimated peak RSS exceeds this")
    parser.add_argument("--modes", default="exact", help="comma-separated: exact, scalable")
    parser.add_argument("--real", type=Path, default=None,
                        help="profiles .npy of real neurons: compare scalable with exact at --k (ARI, "
                             "compactness, retrieval P@10 with --index's queries) instead of timing")
    parser.add_argument("--index", type=Path, default=Path(__file__).resolve().parents[1] / "index/default")
    parser.add_argument("--max-blocks", default="20000,4000",
                        help="with --real: the scalable mode at each block size (exact linkage inside a block)")
    args = parser.parse_args(argv)
    if args.real is not None:
        from cluster_quality import compare_modes

        compare_modes(args.real, args.index, args.k, tuple(int(m) for m in args.max_blocks.split(",")))
        return 0

    ctx = mp.get_context("spawn")
    rows = []
    jobs = [(int(s), mode) for s in args.sizes.split(",") if s.strip() for mode in args.modes.split(",")]
    for n, mode in jobs:
        need, avail = estimate_gb(n, args.dim, mode), available_gb()
        if need > args.max_gb or (avail is not None and need > 0.9 * avail):
            rows.append({"n": n, "mode": mode, "skipped": f"needs ~{need:.1f} GB (limit {args.max_gb:g}, "
                                            f"available {avail or float('nan'):.1f})"})
            continue
        print(f"N={n:,} dim={args.dim} {mode}: estimated peak {need:.1f} GB ...", flush=True)
        queue = ctx.Queue()
        proc = ctx.Process(target=run_size, args=(n, args.dim, args.seed, args.k, queue, mode))
        proc.start()
        result = None
        while result is None:
            try:
                result = queue.get(timeout=2)
            except Empty:
                if not proc.is_alive():
                    break
        proc.join()
        if result is None:
            rows.append({"n": n, "mode": mode, "skipped": f"child failed (exit code {proc.exitcode})"})
            continue
        print(f"  generated profiles in {result['gen_s']:.1f} s, {result['clusters']} clusters",
              flush=True)
        rows.append(result)
    print_table(rows)
    print(f"CPU: {cpu_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
