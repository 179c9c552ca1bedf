"""The contexts stage's pass vs a plain forward pass, side by side on the same batches.

    python benchmarks/contexts.py [--index index/default] [--corpus ../shared/data/c4-sample.jsonl.gz] [--max-docs N]

The contexts stage (``neurosearch/build/contexts.py``) reads, per batch and layer, the activations
of every (neuron, kept token) pair it tracks -- a neuron's top tokens and its clusters' -- and folds
them into sums and maxima. For every batch (the build's batching) the plain forward pass and the
forward pass with the contexts hooks run back to back, in alternating order, so load from other
processes hits both alike. Prints tokens/s of each, their ratio, and the CPU's flags.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from neurosearch.build.contexts import ContextAccumulator, plan_slots, stage_clusters
from neurosearch.build.stats import batches_by_length, pad_batch, special_mask, vocab_size
from neurosearch.config import ContextConfig, CorpusConfig, ModelConfig, StatsConfig
from neurosearch.corpus import make_windows, read_documents
from neurosearch.model.loading import NeuronHooks, load_model, neuron_site

ROOT = Path(__file__).resolve().parents[1]


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model}; {' '.join(shown) or 'no AVX2'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "default")
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared/data/c4-sample.jsonl.gz")
    parser.add_argument("--max-docs", type=int, default=2000)
    parser.add_argument("--batch-tokens", type=int, default=StatsConfig().batch_tokens)
    args = parser.parse_args()

    manifest = json.loads((args.index / "manifest.json").read_text())
    method = manifest["configs"]["profiles"]["search_method"]
    m = ContextConfig().mean_tokens
    neuron_top = np.load(args.index / "methods" / method / "neuron_top_tokens.npy")[:, :m].astype(np.int64)
    _, clusters = stage_clusters(args.index, method, manifest["configs"]["clusters"]["ks"], m)
    kept = json.loads((args.index / "tokens.json").read_text())
    slots = plan_slots(neuron_top, clusters, len(kept["ids"]))
    torch.manual_seed(0)
    loaded = load_model(ModelConfig(model=manifest["configs"]["model"]["model"], site=manifest["site"]))
    site = neuron_site(loaded.encoder, manifest["site"])
    accumulator = ContextAccumulator(slots, kept["ids"], vocab_size(loaded), site.n_layers, site.neurons_per_layer)
    texts = list(read_documents(CorpusConfig(source=str(args.corpus), max_docs=args.max_docs)))
    windows = make_windows(loaded.tokenizer, texts, 0, 128)
    batches = batches_by_length(windows, args.batch_tokens)
    tokenizer = loaded.tokenizer

    def forward(batch: dict) -> None:
        with loaded.autocast():
            loaded.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    seconds = {"plain": 0.0, "contexts": 0.0}
    tokens = 0
    with torch.inference_mode():
        forward(pad_batch(windows, batches[0], tokenizer.pad_token_id))  # warm-up
        for number, indices in enumerate(batches):
            batch = pad_batch(windows, indices, tokenizer.pad_token_id)
            valid = special_mask(tokenizer, batch["input_ids"], batch["attention_mask"])
            tokens += int(valid.sum())
            for kind in ("plain", "contexts") if number % 2 == 0 else ("contexts", "plain"):
                start = time.perf_counter()
                if kind == "plain":
                    forward(batch)
                else:
                    accumulator.begin_batch(batch["input_ids"], valid, batch["docs"], batch["pos"])
                    with NeuronHooks(site, lambda layer, x: accumulator.observe(layer, x)):
                        forward(batch)
                seconds[kind] += time.perf_counter() - start

    table = Table(title=f"contexts pass vs plain forward: {loaded.model_id}, {len(texts)} documents, "
                        f"{len(batches)} batches, {slots.neuron.size:,} (neuron, token) pairs")
    for column in ("pass", "seconds", "tokens", "tokens/s"):
        table.add_column(column)
    for kind, value in seconds.items():
        table.add_row(kind, f"{value:.1f}", f"{tokens:,}", f"{tokens / value:,.0f}")
    console = Console()
    console.print(table)
    console.print(f"ratio contexts / plain tokens/s = {seconds['plain'] / seconds['contexts']:.3f}")
    console.print(f"CPU: {cpu_flags()}; torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
