"""Ablation speed: stacked conditions, one full pass per condition, and passes restarted at the first ablated block.

    python benchmarks/ablate.py [--index index/default] [--cluster 17] [--sentences 96] [--seeds 5]

All runs ablate the same cluster on the same sentences (17 conditions: clean, target, 3 baselines
x 5 seeds); the numbers they report must agree, and the table gives the wall time of each. The
default (last row) runs one condition per pass and starts each ablated pass at the first block
holding an ablated neuron, from the block inputs the clean pass recorded.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from neurosearch import Index
from neurosearch.experiments.ablation import AblationConfig, AblationSession

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "default")
    parser.add_argument("--cluster", default=None, help="cluster id (default: the top cluster for 'weekdays')")
    parser.add_argument("--sentences", type=int, default=96)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()

    index = Index.load(args.index)
    config = AblationConfig(sentences=args.sentences, seeds=args.seeds)
    started = time.perf_counter()
    session = AblationSession(index, config)
    setup = time.perf_counter() - started
    target = session.cluster_target(args.cluster) if args.cluster else session.query_target("weekdays")
    rows = []
    results = {}
    from neurosearch.experiments.ablation import run_ablation

    modes = (("stacked (8 conditions / pass), full passes", 8, False), ("one condition / pass, full passes", 1, False),
             ("one condition / pass, from the first ablated block (default)", 1, True))
    for name, per_pass, skip in modes:
        session.config = replace(config, conditions_per_pass=per_pass)
        start = time.perf_counter()
        results[name] = run_ablation(session.scorer, session.site, session.loaded.tokenizer, session.pool, target,
                                     session.config, means=session.means, head=session.head,
                                     encoder=session.loaded.encoder if skip else None)
        rows.append((name, time.perf_counter() - start))
    table = Table(title=f"ablation of {target.kind} {target.id} ({len(target.neurons)} neurons), "
                        f"{results[rows[0][0]]['sentences']} sentences, {args.seeds} seeds x 3 baselines")
    for column in ("mode", "seconds", "target % change", "speed-up"):
        table.add_column(column)
    for name, seconds in rows:
        table.add_row(name, f"{seconds:.1f}", f"{results[name]['change_pct']:+.3f}", f"{rows[1][1] / seconds:.2f}x")
    console = Console()
    console.print(f"set-up (model, head, sentence pool): {setup:.1f} s")
    console.print(table)


if __name__ == "__main__":
    main()
