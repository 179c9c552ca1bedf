"""Statistics pass vs plain forward pass, side by side on the same batches.

    python benchmarks/extract.py [--corpus ../shared/data/c4-sample.jsonl.gz] [--max-docs N] [--check]
    python benchmarks/extract.py --device cuda --model bert-base-random   # on a GPU machine
    python benchmarks/extract.py --device cuda --model minilm

For every batch (windows sorted by length, the build's batching) the plain forward pass and the
forward pass with statistics hooks run back to back, in alternating order, so load from other
processes hits both alike. Prints the CPU flags, tokens/s of each and their ratio (targets: >= 0.90
where the forward is fp32, >= 0.85 with a bf16 forward on an AMX CPU). ``--check`` then runs the
same batches once more through the chosen backend and the torch reference path (the pre-numba
code) together and compares: sums bit for bit, top values exactly, references up to ties.
``bert-base-random`` is a randomly initialised bert-base (BertConfig defaults, 12 x 3,072 FFN
neurons) with MiniLM's tokenizer (the same uncased BERT vocabulary): its speed is bert-base's.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import cpu_line, hooked_vs_plain, print_hooked_vs_plain  # noqa: E402 (benchmarks/ is on the path)

from neurosearch.pipeline.stats import StatsAccumulator, batches_by_length, pad_batch, special_mask, vocab_size
from neurosearch.config import ModelConfig, StatsConfig
from neurosearch.corpus import make_windows
from neurosearch.model.loading import LoadedModel, NeuronHooks, load_model, neuron_site


def read_texts(path: Path, limit: int | None) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    texts = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            texts.append(json.loads(line)["text"])
            if limit and len(texts) >= limit:
                break
    return texts


def load(args: argparse.Namespace) -> LoadedModel:
    if args.model != "bert-base-random":
        return load_model(ModelConfig(model=args.model, site=args.site, dtype=args.dtype, device=args.device))
    import transformers

    base = load_model(ModelConfig(model="minilm", dtype=args.dtype, device=args.device))
    torch.manual_seed(0)
    encoder = transformers.BertModel(transformers.BertConfig(vocab_size=vocab_size(base))).eval().to(base.device)
    return LoadedModel(model=encoder, encoder=encoder, tokenizer=base.tokenizer, model_id="bert-base-random",
                       has_mlm_head=False, device=base.device, autocast_dtype=base.autocast_dtype)


def tied_mismatches(values: np.ndarray, refs_a: np.ndarray, refs_b: np.ndarray) -> tuple[int, int]:
    """(reference slots that differ, of which not explained by a tie with a neighbouring value)."""
    differ = np.any(refs_a != refs_b, axis=-1)
    padded = np.pad(values, ((0, 0), (1, 1)), constant_values=np.nan)
    tie = (padded[:, 1:-1] == padded[:, :-2]) | (padded[:, 1:-1] == padded[:, 2:]) | (values == values[:, -1:])
    return int(differ.sum()), int((differ & ~tie).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/c4-sample.jsonl.gz")
    parser.add_argument("--model", default="minilm", help="alias, path, or bert-base-random")
    parser.add_argument("--site", default="ffn", choices=["ffn", "hidden"])
    parser.add_argument("--max-docs", type=int, default=None)
    parser.add_argument("--batch-tokens", type=int, default=StatsConfig().batch_tokens)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--backend", default="auto", choices=["auto", "numba", "torch"])
    parser.add_argument("--check", action="store_true", help="compare the statistics with the torch reference path")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    loaded = load(args)
    site = neuron_site(loaded.encoder, args.site)
    texts = read_texts(args.corpus, args.max_docs)
    windows = make_windows(loaded.tokenizer, texts, 0, 128)
    batches = batches_by_length(windows, args.batch_tokens)
    top_k = StatsConfig().top_k
    accumulator = StatsAccumulator(site, vocab_size(loaded), top_k, device=loaded.device, backend=args.backend)
    warm_up(loaded, site, windows, batches[0], accumulator)
    seconds, tokens = hooked_vs_plain(loaded, site, windows, batches, accumulator, "statistics")
    result: dict[str, Any] = {
        "cpu": cpu_line(), "device": str(loaded.device),
        "gpu": torch.cuda.get_device_name() if loaded.device.type == "cuda" else None,
        "model": loaded.model_id, "site": args.site, "neurons": site.n_neurons, "documents": len(texts),
        "batches": len(batches), "tokens": tokens, "autocast": str(loaded.autocast_dtype),
        "backend": "numba" if accumulator._kernel is not None else "torch", "torch_threads": torch.get_num_threads(),
        "plain_tokens_per_s": tokens / seconds["plain"], "stats_tokens_per_s": tokens / seconds["statistics"],
        "ratio": seconds["plain"] / seconds["statistics"],
    }
    if args.check:
        result["check"] = check(loaded, site, windows, batches, args.backend, top_k)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    title = (f"statistics pass vs plain forward: {loaded.model_id} on {loaded.device}"
             + (f" ({result['gpu']})" if result["gpu"] else "")
             + f", site {args.site} ({site.n_neurons:,} neurons), {len(texts)} documents, {len(batches)} batches, "
             f"autocast {loaded.autocast_dtype}, backend {result['backend']}")
    print_hooked_vs_plain(title, seconds, tokens, "statistics",
                          " (targets: >= 0.90 with an fp32 forward, >= 0.85 with bf16 on AMX)")
    if args.check:
        print("check against the torch reference path: " + json.dumps(result["check"]))


def warm_up(loaded: LoadedModel, site: Any, windows: Any, indices: list[int], accumulator: StatsAccumulator) -> None:
    """One hooked pass over one window with nothing counted: compiles the kernel before the timing."""
    batch = pad_batch(windows, indices[:1], loaded.tokenizer.pad_token_id)
    nothing = special_mask(loaded.tokenizer, batch["input_ids"], batch["attention_mask"]) & False
    with torch.inference_mode(), NeuronHooks(site, lambda layer, x: accumulator.observe(layer, x)), loaded.autocast():
        accumulator.begin_batch(batch["input_ids"], nothing, batch["docs"], batch["pos"])
        loaded.encoder(input_ids=batch["input_ids"].to(loaded.device),
                       attention_mask=batch["attention_mask"].to(loaded.device))


def check(loaded: LoadedModel, site: Any, windows: Any, batches: list[list[int]], backend: str,
          top_k: int) -> dict[str, Any]:
    """The chosen backend and the torch reference path fed the same activations, compared."""
    chosen = StatsAccumulator(site, vocab_size(loaded), top_k, device=loaded.device, backend=backend)
    reference = StatsAccumulator(site, vocab_size(loaded), top_k, backend="torch")

    def observe(layer: int, x: torch.Tensor) -> None:
        chosen.observe(layer, x)
        reference.observe(layer, x.cpu())

    with torch.inference_mode(), NeuronHooks(site, observe):
        for indices in batches:
            batch = pad_batch(windows, indices, loaded.tokenizer.pad_token_id)
            valid = special_mask(loaded.tokenizer, batch["input_ids"], batch["attention_mask"])
            for accumulator in (chosen, reference):
                accumulator.begin_batch(batch["input_ids"], valid, batch["docs"], batch["pos"])
            with loaded.autocast():
                loaded.encoder(input_ids=batch["input_ids"].to(loaded.device),
                               attention_mask=batch["attention_mask"].to(loaded.device))
    a, b = chosen.export(), reference.export()
    differ, unexplained = tied_mismatches(b.top_values, a.top_refs, b.top_refs)
    return {
        "sums_bit_identical": bool(np.array_equal(a.token_ids, b.token_ids) and np.array_equal(a.token_sums, b.token_sums)),
        "counts_equal": bool(np.array_equal(a.token_counts, b.token_counts)),
        "sumsq_max_rel_diff": float(np.max(np.abs(a.neuron_sumsq - b.neuron_sumsq) / np.maximum(np.abs(b.neuron_sumsq), 1e-300))),
        "top_values_identical": bool(np.array_equal(a.top_values, b.top_values)),
        "ref_slots_differing": differ, "ref_slots_differing_not_tied": unexplained,
    }


if __name__ == "__main__":
    main()
