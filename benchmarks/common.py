"""Shared by the benchmarks: what a figure was measured on (CPU model, SIMD flags, cores, load: a
figure from one CPU is not a property of the code), a resumable result log, the verification
benchmarks' session, and a hooked forward pass timed against a plain one on the same batches."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]

FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


def cpu_line() -> str:
    """'AMD EPYC, 2 cores, flags avx avx2 fma (no avx512/amx), load 3.1 2.0 1.5'."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    present = [f for f in FLAGS if f in flags]
    missing = "" if any(f.startswith(("avx512", "amx")) for f in present) else " (no avx512/amx)"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    import torch

    return (f"{model}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
            f"flags {' '.join(present) or '-'}{missing}, load average {load}")


class ResultLog:
    """Records appended to a JSONL file as they come; a rerun finds the keys already done."""

    def __init__(self, path: Path, key: Callable[[dict[str, Any]], Any]):
        self.path = path
        self.key = key
        self.done: dict[Any, dict[str, Any]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.done[key(record)] = record

    def add(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self.done[self.key(record)] = record


def session_arguments(parser: argparse.ArgumentParser, *, readout: str, out: str) -> None:
    """The options every verification benchmark shares: index, corpus, readouts, output folder."""
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "default")
    parser.add_argument("--corpus", default=None, help="the index's corpus file when it is not where the index says")
    parser.add_argument("--readout", default=readout, help="readouts, comma-separated (the first gives the verdict)")
    parser.add_argument("--out", type=Path, default=Path(out))


def open_session(args: argparse.Namespace) -> tuple[Any, Any]:
    """(index, AblationSession with the default settings and ``--readout``), loaded once."""
    from neurosearch import Index
    from neurosearch.experiments.ablation import AblationConfig
    from neurosearch.experiments.session import AblationSession
    from neurosearch.model.phrases import PhraseEmbedder

    index = Index.load(args.index, embedder=PhraseEmbedder())  # what the CLI opens: phrases take the slow path
    return index, AblationSession(index, AblationConfig(readouts=tuple(args.readout.split(","))), corpus=args.corpus)


def hooked_vs_plain(loaded: Any, site: Any, windows: Any, batches: list[Any], accumulator: Any,
                    label: str) -> tuple[dict[str, float], int]:
    """Seconds of the plain forward pass (``"plain"``) and of the pass with ``accumulator``'s hooks
    (``label``) over the same batches, the two back to back in alternating order so that load from
    other processes hits both alike; and the tokens counted (special tokens left out). On CUDA the
    batches move to the device and each pass is timed to its synchronisation."""
    import time

    import torch

    from neurosearch.pipeline.stats import pad_batch, special_mask
    from neurosearch.model.loading import NeuronHooks

    tokenizer = loaded.tokenizer
    sync = torch.cuda.synchronize if loaded.device.type == "cuda" else (lambda: None)

    def forward(batch: dict) -> None:
        with loaded.autocast():
            loaded.encoder(input_ids=batch["input_ids"].to(loaded.device),
                           attention_mask=batch["attention_mask"].to(loaded.device))
        sync()  # a GPU's work is timed when it is done, not when it is queued

    seconds = {"plain": 0.0, label: 0.0}
    tokens = 0
    with torch.inference_mode():
        forward(pad_batch(windows, batches[0], tokenizer.pad_token_id))  # warm-up
        for number, indices in enumerate(batches):
            batch = pad_batch(windows, indices, tokenizer.pad_token_id)
            valid = special_mask(tokenizer, batch["input_ids"], batch["attention_mask"])
            tokens += int(valid.sum())
            for kind in ("plain", label) if number % 2 == 0 else (label, "plain"):
                start = time.perf_counter()
                if kind == "plain":
                    forward(batch)
                else:
                    accumulator.begin_batch(batch["input_ids"], valid, batch["docs"], batch["pos"])
                    with NeuronHooks(site, lambda layer, x: accumulator.observe(layer, x)):
                        forward(batch)
                seconds[kind] += time.perf_counter() - start
    return seconds, tokens


def print_hooked_vs_plain(title: str, seconds: dict[str, float], tokens: int, label: str, target: str = "") -> None:
    """The table of :func:`hooked_vs_plain`'s seconds, the ratio of tokens/s and the CPU line."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("pass", "seconds", "tokens", "tokens/s"):
        table.add_column(column)
    for kind, value in seconds.items():
        table.add_row(kind, f"{value:.1f}", f"{tokens:,}", f"{tokens / value:,.0f}")
    console = Console()
    console.print(table)
    console.print(f"ratio {label} / plain tokens/s = {seconds['plain'] / seconds[label]:.3f}{target}")
    console.print(f"CPU: {cpu_line()}")
