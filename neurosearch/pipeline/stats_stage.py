"""The build's statistics stage: one pass of the model over the corpus in shards, checkpointed by time.

Every shard of ``StatsConfig.shard_docs`` documents is accumulated from zero (here, or on Ray
workers: ``ray_stats.py``) and added to the running total in shard order (``stats_total.py``), so
a resumed or distributed build gives the same bits as one uninterrupted process. Checkpoints
(``checkpoint/stats-<shards>/``, its progress file written last marks it complete) are written when
due by time (``StatsConfig.checkpoint_share``; the first shard always), straight from the table; a
rerun resumes after the newest one. Progress advances per batch, in documents (per shard on Ray),
and ``position`` says how far the pass got and what is checkpointed (the build's interrupt
message). Paths come from ``format/layout.py``.
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
from neurosearch.corpus import shards, training_documents
from neurosearch.errors import NeurosearchError
from neurosearch.format import layout
from neurosearch.format.atomic import save_npy_atomic
from neurosearch.format.manifest import Manifest
from neurosearch.pipeline.stage import Stage, StageContext
from neurosearch.progress import Reporter

TASK = "statistics (documents)"


def latest_checkpoint(root: Path) -> tuple[int, Path | None]:
    """The newest complete checkpoint (its progress file is written last)."""
    best: tuple[int, Path | None] = (0, None)
    if root.is_dir():
        for path in root.glob(f"{layout.CHECKPOINT_PREFIX}*"):
            count = layout.checkpoint_shards(path.name)
            if count is not None and (path / layout.CHECKPOINT_PROGRESS).is_file() and count > best[0]:
                best = (count, path)
    return best


def run(context: StageContext) -> dict[str, Any]:
    """Eq. 1 statistics in one streaming pass of shards, checkpointed by time; the stage's facts.

    ``context.position`` is updated with the documents done and checkpointed; ``context.ray``: the
    Ray cluster address the shards run on (None: in this process)."""
    from neurosearch.pipeline.stats import TokenStats, vocab_size
    from neurosearch.pipeline.stats_store import directory_bytes
    from neurosearch.pipeline.stats_total import CheckpointClock, StatsTotal, write_checkpoint

    out, manifest, build, reporter = context.out, context.manifest, context.config, context.reporter
    corpus, position, ray = context.corpus, context.position, context.ray
    started = time.time()
    loaded, site = context.model()
    root = out / layout.CHECKPOINT_DIR
    shards_done, checkpoint = latest_checkpoint(root)
    identity = manifest.stages["stats"]["identity"]
    total = StatsTotal(vocab_size(loaded), site.n_neurons, build.stats.top_k)
    if checkpoint is not None:
        progress = json.loads((checkpoint / layout.CHECKPOINT_PROGRESS).read_text())
        if progress.get("identity") != identity:
            shutil.rmtree(root)
            shards_done, checkpoint = 0, None
        else:
            total.load(checkpoint)
            reporter.log(f"stats: resuming after {shards_done} shard(s) ({total.documents} documents)")
    advance = reporter.task(TASK, corpus.documents if corpus.documents >= 0 else None)
    advance(total.documents)
    documents = training_documents(build.corpus)  # held-out documents count, empty
    first = total.documents  # resume: skip what the checkpoint already holds
    position.update(checkpointed=first, total=corpus.documents, done=first)
    for _ in islice(documents, first):
        pass
    clock = CheckpointClock(build.stats.checkpoint_share)
    written = {"count": 0, "seconds": 0.0, "bytes": 0}
    moved = [0.0]  # documents the progress bar has advanced by within the current shard

    def on_batch(documents_done: float) -> None:
        moved[0] += documents_done
        position["done"] = first + int(moved[0])
        advance(documents_done)

    results = _shard_results(build, loaded, site, shards(documents, build.stats.shard_docs), first, reporter, ray,
                             on_batch)
    for number, (count, add) in enumerate(results, start=shards_done + 1):
        add(total)
        first += count
        advance(count - moved[0])  # what the batches did not show (all of it on Ray)
        moved[0] = 0.0
        position["done"] = first
        if clock.due():
            t0 = time.time()
            written["bytes"] = write_checkpoint(out, number, total, identity, build.stats.compress)
            clock.wrote(time.time() - t0)
            written.update(count=written["count"] + 1, seconds=written["seconds"] + time.time() - t0)
            position["checkpointed"] = first
    reporter.finish(TASK)
    if total.documents == 0:
        raise NeurosearchError(f"corpus {build.corpus.source} has no documents")
    stats_dir = out / layout.STATS_DIR
    shutil.rmtree(stats_dir, ignore_errors=True)
    _, latest = latest_checkpoint(root)
    if latest is not None and json.loads((latest / layout.CHECKPOINT_PROGRESS).read_text())["documents"] == total.documents:
        (latest / layout.CHECKPOINT_PROGRESS).unlink()
        latest.rename(stats_dir)  # the last checkpoint already holds everything
    else:
        tmp = stats_dir.with_name(f".{stats_dir.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        total.save(tmp, build.stats.compress)
        tmp.rename(stats_dir)
    shutil.rmtree(root, ignore_errors=True)
    del total
    stats = TokenStats.load(stats_dir, mmap=True)
    _write_neuron_files(out, manifest, stats)
    manifest.corpus.update(documents=stats.documents, windows=stats.windows, tokens=stats.tokens)
    return {"documents": stats.documents, "windows": stats.windows, "tokens": stats.tokens,
            "tokens_per_second": round(stats.tokens / max(time.time() - started, 1e-9), 1),
            "checkpoints": written["count"], "checkpoint_seconds": round(written["seconds"], 2),
            "checkpoint_bytes": written["bytes"], "stats_bytes": directory_bytes(stats_dir),
            "workers": "ray" if ray is not None else "local"}


def _shard_results(build: BuildConfig, loaded: Any, site: Any, documents: Iterator[list[str]], first: int,
                   reporter: Reporter, ray: str | None, on_batch: Callable[[float], None]) -> Iterator[tuple[int, Any]]:
    """(documents, add-to-total) of every shard, in corpus order: here (``on_batch`` gets the
    documents each batch stands for, in proportion to its windows), or on Ray workers."""
    if ray is not None:
        from neurosearch.pipeline.ray_stats import ray_shard_results

        yield from ray_shard_results(ray, build, documents, first, reporter, loaded.weights_hash())
        return
    from neurosearch.pipeline.stats import shard_statistics

    for shard in documents:
        def on_windows(done: int, windows: int, size: int = len(shard)) -> None:
            on_batch(size * done / max(windows, 1))  # per batch, so small corpora show progress too

        accumulator = shard_statistics(loaded, site, shard, first, build.stats, build.corpus.window,
                                       on_windows=on_windows)
        first += len(shard)
        yield len(shard), accumulator.add_to
        del accumulator


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


STAGE = Stage("stats", reads=(), run=run)
