"""The contexts stage's pass vs a plain forward pass, side by side on the same batches.

    python benchmarks/contexts.py [--index index/default] [--corpus ../shared/data/c4-sample.jsonl.gz] [--max-docs N]

The contexts stage (``neurosearch/pipeline/contexts.py``) reads, per batch and layer, the activations
of every (neuron, kept token) pair it tracks -- a neuron's top tokens and its clusters' -- and folds
them into sums and maxima. For every batch (the build's batching) the plain forward pass and the
forward pass with the contexts hooks run back to back, in alternating order, so load from other
processes hits both alike. Prints tokens/s of each, their ratio, and the CPU's flags.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from common import ROOT, hooked_vs_plain, print_hooked_vs_plain
from neurosearch.pipeline.contexts import ContextAccumulator, plan_slots
from neurosearch.pipeline.contexts_stage import stage_clusters
from neurosearch.pipeline.stats import batches_by_length, vocab_size
from neurosearch.config import ContextConfig, CorpusConfig, ModelConfig, StatsConfig
from neurosearch.corpus import make_windows, read_documents
from neurosearch.model.loading import load_model, neuron_site


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
    seconds, tokens = hooked_vs_plain(loaded, site, windows, batches, accumulator, "contexts")

    title = (f"contexts pass vs plain forward: {loaded.model_id}, {len(texts)} documents, {len(batches)} batches, "
             f"{slots.neuron.size:,} (neuron, token) pairs")
    print_hooked_vs_plain(title, seconds, tokens, "contexts")


if __name__ == "__main__":
    main()
