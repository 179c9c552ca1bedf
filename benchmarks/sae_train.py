"""Train a TopK SAE on one layer of the default model over the C4 sample: collection, training, measures.

    python benchmarks/sae_train.py --layer 2 [--out DIR] [--corpus PATH] [--model minilm] [--site ffn]
                                   [--k 32] [--expansion 8] [--epochs 3] [--batch 4096] [--lr 4e-4]
                                   [--max-docs N] [--threads 1]

Collects layer L's activations (post-GELU FFN by default) of every counted token of the corpus into
``OUT/activations/`` (float16; the build's held-out documents to a separate file), then trains the
SAE (``neurosearch.sae.train``) with progress lines in ``OUT/train.log`` and the result in
``OUT/sae/`` (SAELens layout). Both phases resume when the command is run again with the same
arguments. ``OUT`` defaults to ``runs/sae/<model>-<site>-L<layer>/`` of the main checkout (``runs/``
is git-ignored). Prints a table of the run's figures at the end, with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main_checkout() -> Path:
    """The main working tree of this repository (this checkout may be a git worktree beside it)."""
    try:
        common = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                capture_output=True, text=True, check=True).stdout.strip()
        return Path(common).parent
    except (OSError, subprocess.CalledProcessError):
        return ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, required=True)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--site", default="ffn", choices=("ffn", "hidden"))
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="the model's forward passes (auto: as the build)")
    shared = Path(os.environ.get("NEUROSEARCH_SHARED") or main_checkout().parent / "shared")
    parser.add_argument("--corpus", default=str(shared / "data" / "c4-sample.jsonl.gz"))
    parser.add_argument("--max-docs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--aux-k", type=int, default=512, help="0: no AuxK loss")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from rich.console import Console
    from rich.table import Table

    from common import cpu_line
    from neurosearch.config import CorpusConfig, ModelConfig
    from neurosearch.sae.activations import collect_activations
    from neurosearch.sae.train import LOG_FILE, SAEConfig, train_sae

    name = args.model.replace("/", "-")
    out = args.out or main_checkout() / "runs" / "sae" / f"{name}-{args.site}-L{args.layer}"
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / LOG_FILE

    def log(line: str) -> None:
        stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}"
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(stamped + "\n")
        print(stamped, flush=True)

    log(f"sae_train: {' '.join(sys.argv[1:])}; {cpu_line()}")
    model = ModelConfig(model=args.model, site=args.site, dtype=args.dtype)
    corpus = CorpusConfig(source=args.corpus, max_docs=args.max_docs)
    started = time.time()
    files = collect_activations(model, corpus, args.layer, out / "activations", log=log)
    assert files is not None
    collect_seconds = files.record["seconds"]
    config = SAEConfig(k=args.k, expansion=args.expansion, lr=args.lr, batch_size=args.batch, epochs=args.epochs,
                       aux_k=args.aux_k, seed=args.seed)
    result = train_sae(files, out, config, echo=lambda line: print(line, flush=True))
    table = Table(title=f"TopK SAE, {args.model} {args.site} layer {args.layer} ({cpu_line()})")
    for column in ("training rows", "held-out rows", "d_in", "features", "k", "epochs", "collect s", "train s",
                   "held-out FVU", "dead share", "wall s (this run)"):
        table.add_column(column, justify="right")
    table.add_row(f"{files.train.shape[0]:,}", f"{files.heldout.shape[0]:,}", str(files.d_in),
                  f"{config.features(files.d_in):,}", str(config.k), str(config.epochs), f"{collect_seconds:,.0f}",
                  f"{result.train_seconds or 0:,.0f}", f"{result.fvu:.4f}" if result.fvu is not None else "-",
                  f"{result.dead_share:.4f}" if result.dead_share is not None else "-", f"{time.time() - started:,.0f}")
    Console(width=200).print(table)
    log(f"sae_train: done, SAE in {result.directory}")


if __name__ == "__main__":
    main()
