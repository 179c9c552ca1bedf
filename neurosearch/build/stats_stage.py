"""The build's statistics stage: one pass of the model over the corpus (``stats.py``), checkpointed.

The running totals are saved after every shard of ``StatsConfig.shard_docs`` documents as
``checkpoint/stats-<shards>/`` (its progress file, written last, marks it complete); a rerun resumes
after the newest one. Progress advances per batch, in documents, and ``position`` says how far the
pass got and what is checkpointed (the build's interrupt message). Paths come from ``format/layout.py``.
"""

from __future__ import annotations

import json
import shutil
import time
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from neurosearch.config import BuildConfig
from neurosearch.corpus import CorpusSummary, read_documents
from neurosearch.errors import NeurosearchError
from neurosearch.format import layout
from neurosearch.format.atomic import save_npy_atomic, write_json_atomic
from neurosearch.format.manifest import Manifest
from neurosearch.progress import Reporter

TASK = "statistics (documents)"


def shards(documents: Iterator[str], size: int) -> Iterator[list[str]]:
    while True:
        shard = list(islice(documents, size))
        if not shard:
            return
        yield shard


def latest_checkpoint(root: Path) -> tuple[int, Path | None]:
    """The newest complete checkpoint (its progress file is written last)."""
    best: tuple[int, Path | None] = (0, None)
    if root.is_dir():
        for path in root.glob(f"{layout.CHECKPOINT_PREFIX}*"):
            count = layout.checkpoint_shards(path.name)
            if count is not None and (path / layout.CHECKPOINT_PROGRESS).is_file() and count > best[0]:
                best = (count, path)
    return best


def run(out: Path, manifest: Manifest, build: BuildConfig, model: Callable[[], tuple[Any, Any]],
        corpus: CorpusSummary, reporter: Reporter, position: dict[str, int]) -> dict[str, Any]:
    """Eq. 1 statistics in one streaming pass, checkpointed after every shard; the stage's facts."""
    from neurosearch.build.stats import StatsAccumulator, TokenStats, accumulate, vocab_size

    started = time.time()
    loaded, site = model()
    root = out / layout.CHECKPOINT_DIR
    shards_done, checkpoint = latest_checkpoint(root)
    accumulator = StatsAccumulator(site, vocab_size(loaded), build.stats.top_k)
    if checkpoint is not None:
        progress = json.loads((checkpoint / layout.CHECKPOINT_PROGRESS).read_text())
        if progress.get("identity") != manifest.stages["stats"]["identity"]:
            shutil.rmtree(root)
            shards_done, checkpoint = 0, None
        else:
            accumulator.load(TokenStats.load(checkpoint))
            reporter.log(f"stats: resuming after {shards_done} shard(s) ({accumulator.documents} documents)")
    total_docs = corpus.documents if corpus.documents >= 0 else None
    advance = reporter.task(TASK, total_docs)
    advance(accumulator.documents)
    documents = read_documents(build.corpus)
    first = accumulator.documents  # resume: skip what the checkpoint already holds
    position.update(checkpointed=first, total=corpus.documents, done=first)
    for _ in islice(documents, first):
        pass
    for number, shard in enumerate(shards(documents, build.stats.shard_docs), start=shards_done):
        seen = [0]

        def on_batch(done: int, windows: int, size: int = len(shard), start: int = first) -> None:
            seen[0] += done  # windows of this shard so far: documents done, in proportion
            position["done"] = start + int(size * seen[0] / max(windows, 1))
            advance(size * done / max(windows, 1))  # per batch, so small corpora show progress too

        accumulate(loaded, site, accumulator, shard, first, build.stats, build.corpus.window, on_windows=on_batch)
        first += len(shard)
        position["done"] = first
        target = out / layout.checkpoint_dir(number + 1)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        accumulator.export().save(tmp)
        write_json_atomic(
            tmp / layout.CHECKPOINT_PROGRESS,
            {"shards": number + 1, "documents": first, "identity": manifest.stages["stats"]["identity"]},
        )
        tmp.rename(target)
        position["checkpointed"] = first
        for old in root.glob(f"{layout.CHECKPOINT_PREFIX}*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    reporter.finish(TASK)
    _, final = latest_checkpoint(root)
    if final is None:
        raise NeurosearchError(f"corpus {build.corpus.source} has no documents")
    stats_dir = out / layout.STATS_DIR
    shutil.rmtree(stats_dir, ignore_errors=True)
    (final / layout.CHECKPOINT_PROGRESS).unlink()
    final.rename(stats_dir)
    shutil.rmtree(root, ignore_errors=True)
    stats = TokenStats.load(stats_dir)
    _write_neuron_files(out, manifest, stats)
    manifest.corpus.update(documents=stats.documents, windows=stats.windows, tokens=stats.tokens)
    return {"documents": stats.documents, "windows": stats.windows, "tokens": stats.tokens,
            "tokens_per_second": round(stats.tokens / max(time.time() - started, 1e-9), 1)}


def _write_neuron_files(out: Path, manifest: Manifest, stats: Any) -> None:
    mean = stats.neuron_mean().astype(np.float32)
    std = np.sqrt(stats.neuron_var()).astype(np.float32)
    for name, array in (
        (layout.NEURON_MEAN, mean),
        (layout.NEURON_STD, std),
        (layout.NEURON_TOP_VALUES, stats.top_values.astype(np.float32)),
        (layout.NEURON_TOP_REFS, stats.top_refs.astype(np.int32)),
    ):
        save_npy_atomic(out / name, array)
        manifest.record(out, name)
