"""Statistics pass vs plain forward pass, side by side on the same batches.

    python benchmarks/extract.py --corpus ../shared/data/c4-sample.jsonl.gz [--site ffn] [--max-docs N]

For every batch (windows sorted by length, the build's batching) the plain forward pass and the
forward pass with statistics hooks run back to back, in alternating order, so load from other
processes hits both alike. Prints tokens/s of each and their ratio (target >= 0.90).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import torch

from common import hooked_vs_plain, print_hooked_vs_plain
from neurosearch.build.stats import StatsAccumulator, batches_by_length, vocab_size
from neurosearch.config import ModelConfig, StatsConfig
from neurosearch.corpus import make_windows
from neurosearch.model.loading import load_model, neuron_site


def read_texts(path: Path, limit: int | None) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    texts = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            texts.append(json.loads(line)["text"])
            if limit and len(texts) >= limit:
                break
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/c4-sample.jsonl.gz")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--site", default="ffn", choices=["ffn", "hidden"])
    parser.add_argument("--max-docs", type=int, default=None)
    parser.add_argument("--batch-tokens", type=int, default=StatsConfig().batch_tokens)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    torch.manual_seed(0)
    loaded = load_model(ModelConfig(model=args.model, site=args.site, dtype=args.dtype))
    site = neuron_site(loaded.encoder, args.site)
    texts = read_texts(args.corpus, args.max_docs)
    windows = make_windows(loaded.tokenizer, texts, 0, 128)
    batches = batches_by_length(windows, args.batch_tokens)
    accumulator = StatsAccumulator(site, vocab_size(loaded), StatsConfig().top_k)
    seconds, tokens = hooked_vs_plain(loaded, site, windows, batches, accumulator, "statistics")

    title = (f"statistics pass vs plain forward: {loaded.model_id}, site {args.site}, {len(texts)} documents, "
             f"{len(batches)} batches, autocast {loaded.autocast_dtype}")
    print_hooked_vs_plain(title, seconds, tokens, "statistics", " (target >= 0.90, goal 0.95)")


if __name__ == "__main__":
    main()
