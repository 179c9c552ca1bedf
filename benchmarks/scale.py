"""Whole builds of bert-base- and bert-large-shaped models: time, peak memory and disk per stage.

    python benchmarks/scale.py --models bert-base,bert-large --max-docs 2000 --out /tmp/scale
    python benchmarks/scale.py --models bert-base --max-docs 5000 --until stats --forward --out /tmp/scale
    python benchmarks/scale.py --models bert-base --out /tmp/scale   # on a GPU machine: the build uses it

Weights do not matter for speed or memory, so the models (but ``minilm``, the real one) are stand-ins: ``BertForMaskedLM`` of
bert-base's or bert-large's config with random weights (seed 0), saved once under ``OUT/models/``
with MiniLM's tokenizer (the same uncased BERT vocabulary). Each build runs as its own process,
``neurosearch build`` as a user would type it (``--memory`` passed on), so start-up, tokenisation
and writing count. The table gives, per stage, seconds, tokens/s, the stage's peak RSS (the
manifest's ``peak_rss_gb``) and the disk its files take, each also per 1M corpus tokens, and the
projection of the statistics pass to the paper's corpus (C4 validation, 103M tokens; the other
stages depend on neurons and kept tokens, not on corpus size). ``--forward`` also times, as
whole processes on the same documents, a plain forward pass over the build's windows and batches
(no hooks), once as a user would write it and once with the statistics pass's allocator setting
(``model/memory.py``), and prints the whole build's ratio to each (target >= 0.9) and the stage's;
``--repeat N`` interleaves N runs of each process and takes medians. The CPU line (model, flags, load) heads the output: a figure from one CPU is not a
property of the code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, cpu_line  # noqa: E402 (benchmarks/ is on the path)

C4 = ROOT.parent / "shared" / "data" / "c4-sample.jsonl.gz"
PAPER_TOKENS = 103_000_000
"""C4's validation split, the paper's corpus."""
CONFIGS = {
    "bert-base": {},
    "bert-large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}
STAGE_DIRS = {"stats": ("stats", "neurons"), "profiles": ("profiles",), "clusters": ("methods",),
              "search": ("search",), "contexts": ("contexts",)}
"""Top-level folders of an index by the stage that writes them (``format/layout.py``)."""


def stand_in(name: str, root: Path) -> Path | str:
    """A saved random model of ``name``'s shape with MiniLM's tokenizer (made once); ``minilm`` is
    the real all-MiniLM-L6-v2."""
    if name == "minilm":
        return name
    directory = root / "models" / name
    if (directory / "config.json").is_file():
        return directory
    import torch
    import transformers

    from neurosearch.model.loading import resolve_model

    path, _ = resolve_model("minilm")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=len(tokenizer), **CONFIGS[name]))
    tmp = directory.with_name(directory.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(directory)
    return directory


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def build(model: Path | str, out: Path, args: argparse.Namespace) -> tuple[dict, float]:
    command = [str(Path(sys.executable).with_name("neurosearch")), "build", "--model", str(model), "--corpus", str(args.corpus),
               "--max-docs", str(args.max_docs), "--out", str(out), "--until", args.until, "--quiet",
               "--dtype", args.dtype, "--no-wordnet"]
    if args.memory is not None:
        command += ["--memory", str(args.memory)]
    command += args.build_args.split()
    started = time.time()
    subprocess.run(command, check=True)
    return json.loads((out / "manifest.json").read_text()), time.time() - started


FORWARD = r"""
import contextlib, sys, time, torch
from neurosearch.config import CorpusConfig, ModelConfig, StatsConfig
from neurosearch.corpus import make_windows, training_documents
from neurosearch.model.loading import load_model, neuron_site
from neurosearch.model.memory import buffer_threshold, reuse_freed_memory
from neurosearch.pipeline.stats import batches_by_length, pad_batch, widest_buffer
model, corpus, docs, dtype, reuse = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
loaded = load_model(ModelConfig(model=model, dtype=dtype))
documents = [text for text in training_documents(CorpusConfig(source=corpus, max_docs=docs)) if text]
windows = make_windows(loaded.tokenizer, documents, 0, CorpusConfig().window)
memory = contextlib.nullcontext()
if reuse:
    widest = widest_buffer(loaded, neuron_site(loaded.encoder, "ffn"), CorpusConfig().window)
    memory = reuse_freed_memory(buffer_threshold(StatsConfig().batch_tokens, widest))
with torch.inference_mode(), memory:
    for indices in batches_by_length(windows, StatsConfig().batch_tokens):
        batch = pad_batch(windows, indices, loaded.tokenizer.pad_token_id)
        with loaded.autocast():
            loaded.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
"""


def forward(model: Path | str, args: argparse.Namespace, reuse: bool = False) -> float:
    """Seconds of a whole process that loads the model, reads and windows the documents and runs
    the plain forward pass over the build's batches (``reuse``: with the statistics pass's
    allocator setting, ``model/memory.py``, as a reference for what that setting alone is worth)."""
    started = time.time()
    subprocess.run([sys.executable, "-c", FORWARD, str(model), str(args.corpus), str(args.max_docs), args.dtype,
                    "1" if reuse else "0"], check=True)
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bert-base,bert-large")
    parser.add_argument("--corpus", type=Path, default=C4)
    parser.add_argument("--max-docs", type=int, default=2000)
    parser.add_argument("--until", default="search", help="last stage built (contexts re-runs the model)")
    parser.add_argument("--memory", type=float, default=None, help="build --memory GB")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--build-args", default="--methods filter+smooth+tfidf --cluster-mode scalable --shard-docs 500",
                        help="more options of every build (default: the search method only, scalable clustering, "
                             "which past 40k neurons is the only mode, and shards of 500 documents)")
    parser.add_argument("--forward", action="store_true", help="also time a plain forward pass (whole process)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs of each process (medians)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not args.corpus.is_file():
        raise SystemExit(f"no corpus at {args.corpus}")
    print(cpu_line())
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in CONFIGS and name != "minilm":
            raise SystemExit(f"unknown model {name!r} (choose from minilm, {', '.join(CONFIGS)})")
        model = stand_in(name, args.out)
        index = args.out / f"index-{name}"
        walls, plains, reused, stage_seconds = [], [], [], []
        for _ in range(args.repeat):  # interleaved: build, plain forward, forward with reuse
            shutil.rmtree(index, ignore_errors=True)
            manifest, wall = build(model, index, args)
            walls.append(wall)
            stage_seconds.append(manifest["stages"]["stats"]["seconds"])
            if args.forward:
                plains.append(forward(model, args))
                reused.append(forward(model, args, reuse=True))
        wall = statistics.median(walls)
        tokens = manifest["stages"]["stats"]["tokens"]
        for stage, facts in manifest["stages"].items():
            if not facts.get("done"):
                continue
            disk = sum(tree_bytes(index / d) for d in STAGE_DIRS.get(stage, ()))
            rows.append({"model": name, "neurons": manifest["n_layers"] * manifest["neurons_per_layer"],
                         "stage": stage, "seconds": facts["seconds"], "tokens": tokens,
                         "peak_rss_gb": facts.get("peak_rss_gb"), "disk_gb": disk / 1e9,
                         "plan": facts.get("plan"), "passes": facts.get("passes")})
        rows.append({"model": name, "stage": "whole build (process)", "seconds": wall, "tokens": tokens,
                     "runs": walls})
        if args.forward:
            plain, plain_reused = statistics.median(plains), statistics.median(reused)
            stats_seconds = statistics.median(stage_seconds)
            rows.append({"model": name, "stage": "plain forward (process)", "seconds": plain, "tokens": tokens,
                         "runs": plains})
            rows.append({"model": name, "stage": "plain forward, freed buffers reused (process)",
                         "seconds": plain_reused, "tokens": tokens, "runs": reused})
            print(f"{name} (median of {args.repeat}): whole build process {tokens / wall:,.0f} tokens/s, plain forward "
                  f"process {tokens / plain:,.0f} tokens/s: ratio {plain / wall:.3f} (target >= 0.9); against the "
                  f"plain forward with the build's allocator setting {plain_reused / wall:.3f}; the statistics stage "
                  f"alone {plain / stats_seconds:.3f} / {plain_reused / stats_seconds:.3f}")
    print(f"\n| model | stage | seconds | tokens/s | s per 1M tokens | peak RSS GB | disk GB | disk GB per 1M tokens |"
          f" projected to {PAPER_TOKENS / 1e6:.0f}M tokens |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        per_m = row["seconds"] / row["tokens"] * 1e6
        projection = (f"{per_m * PAPER_TOKENS / 1e6 / 3600:,.1f} h" if row["stage"] == "stats"
                      else "same (not per token)" if row["stage"] in STAGE_DIRS else "")
        disk = row.get("disk_gb")
        disk_text = "" if disk is None else f"{disk:.2f}"
        disk_per_m = "" if disk is None else f"{disk / row['tokens'] * 1e6:.2f}"
        passes = "es" if row.get("passes") != 1 else ""
        plan = f" ({row['plan']}, {row['passes']} pass{passes})" if row.get("plan") else ""
        rss = row.get("peak_rss_gb") or ""
        print(f"| {row['model']} | {row['stage']}{plan} | {row['seconds']:,.1f} | {row['tokens'] / row['seconds']:,.0f} "
              f"| {per_m:,.0f} | {rss} | {disk_text} | {disk_per_m} | {projection} |")
    (args.out / "scale.json").write_text(json.dumps({"cpu": cpu_line(), "rows": rows}, indent=1))
    print(f"\n{os.path.relpath(args.out / 'scale.json')}")


if __name__ == "__main__":
    main()
