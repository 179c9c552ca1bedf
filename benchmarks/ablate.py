"""Ablation speed: one default `neurosearch ablate --query weekdays` (target <= 60 s on a 2-core CPU).

    python benchmarks/ablate.py [--index index/default] [--corpus PATH] [--query weekdays]
                                [--readout auto] [--compare]

Times the set-up (model, readouts, sentence pool: paid once per command) and the run itself: the
readouts the default resolves to (MiniLM: ``embedding``), clean + target + 3 baselines x 20 draws
= 62 conditions, one condition per pass, each ablated pass restarted at the first block holding an
ablated neuron (``StartAtBlock``). ``--compare`` also runs the same conditions with full passes
(every block computed) on the same sentences: the statistics must agree, the table shows the
speed-up. CPU flags and the load average are printed beside the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import cpu_line
import torch
from rich.console import Console
from rich.table import Table

from neurosearch.model.phrases import PhraseEmbedder  # noqa: E402
from neurosearch import Index
from neurosearch.experiments.ablation import AblationConfig, run_ablation
from neurosearch.experiments.session import AblationSession

ROOT = Path(__file__).resolve().parents[1]


def plain_passes(session: AblationSession, target, config: AblationConfig, repeats: int) -> float:
    """Seconds of one plain forward pass (every readout's batches, no hooks) on the target's sentences."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    chosen, _ = session.pool.select(target.token_ids, config.sentences, rng)
    sentences = [session.pool.sentence(n) for n in chosen]
    controls = [session.pool.sentence(n) for n in session.pool.controls(chosen, target.token_ids, rng)]
    batches = [(r, r.batches(session.loaded.tokenizer, sentences, controls, set(target.token_ids), rng,
                             config.batch_sentences)) for r in session.readouts]
    with torch.inference_mode():
        started = time.perf_counter()
        for _ in range(repeats):
            for readout, parts in batches:
                for batch in parts:
                    readout.forward(batch, 1)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "default")
    parser.add_argument("--corpus", default=None, help="the index's corpus file when it is not where the index says")
    parser.add_argument("--query", default="weekdays")
    parser.add_argument("--readout", default="auto")
    parser.add_argument("--compare", action="store_true", help="also time full passes (no block skipping)")
    args = parser.parse_args()
    console = Console()
    console.print(f"machine: {cpu_line()}")

    index = Index.load(args.index, embedder=PhraseEmbedder())  # what the CLI opens: phrases take the slow path
    config = AblationConfig(readouts=tuple(args.readout.split(",")))
    started, cpu = time.perf_counter(), time.process_time()
    session = AblationSession(index, config, corpus=args.corpus)
    setup, setup_cpu = time.perf_counter() - started, time.process_time() - cpu
    target = session.query_target(args.query)
    modes = [("one condition / pass, from the first ablated block (default)", True)]
    if args.compare:
        modes.append(("one condition / pass, full passes", False))
    rows = []
    for name, skip in modes:
        start, cpu = time.perf_counter(), time.process_time()
        result = run_ablation(session.readouts, session.site, session.loaded.tokenizer, session.pool, target, config,
                              means=session.means, encoder=session.loaded.encoder, skip_clean_blocks=skip)
        rows.append((name, time.perf_counter() - start, result, time.process_time() - cpu))
    conditions = 2 + len(config.baselines) * config.draws
    plain = plain_passes(session, target, config, repeats=8)
    table = Table(title=f"ablate --query {args.query}: {target.kind} {target.id} ({len(target.neurons)} neurons), "
                        f"{rows[0][2].sentences} sentences, {conditions} conditions, "
                        f"readouts {', '.join(session.readout_names)}")
    for column in ("mode", "seconds", "CPU seconds", "statistic", "verdict", "speed-up"):
        table.add_column(column)
    for name, seconds, result, cpu in rows:
        table.add_row(name, f"{seconds:.1f}", f"{cpu:.1f}", f"{result.primary.value:.4f}", result.verdict.line(),
                      f"{rows[-1][1] / seconds:.2f}x")
    console.print(f"set-up (model, readouts, sentence pool of {len(session.pool)} sentences): {setup:.1f} s "
                  f"({setup_cpu:.1f} CPU s)")
    console.print(table)
    console.print(f"one default ablate: {setup + rows[0][1]:.1f} s (set-up + run; {setup_cpu + rows[0][3]:.1f} CPU s "
                  f"over {torch.get_num_threads()} thread(s)); target <= 60 s")
    console.print(f"side by side: {conditions} plain forward passes of the same batches (no hooks, every block) "
                  f"take {conditions * plain:.1f} s at the rate measured after the run ({plain:.3f} s per pass): "
                  f"the run costs {rows[0][1] / (conditions * plain):.2f}x that")
    console.print(f"machine after: {cpu_line()}")


if __name__ == "__main__":
    main()
