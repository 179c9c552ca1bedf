"""The build's statistics stage: one pass of the model over the corpus in shards, checkpointed by time.

Every shard of ``StatsConfig.shard_docs`` documents is accumulated from zero (here, or on Ray
workers: ``ray_stats.py``) and added to the running total in shard order (``stats_total.py``), so
a resumed or distributed build gives the same bits as one uninterrupted process. Checkpoints
(``checkpoint/stats-<shards>/``, its progress file written last marks it complete) are written when
due by time (``StatsConfig.checkpoint_share``, ``stats_total.CheckpointClock``), straight from the table; a
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
from neurosearch.format.atomic import save_npy_atomic, write_json_atomic
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
    """Eq. 1 statistics in streaming passes of shards, checkpointed by time; the stage's facts.

    The pass is planned to fit ``StatsConfig.memory_gb`` (``stats_plan.py``): one pass with a row
    per vocabulary id, or rows for the corpus's tokens only, or one pass per group of layers whose
    finished statistics wait in ``stats-parts/`` and are put together at the end (a rerun skips the
    finished groups). ``context.position`` is updated with the documents done and checkpointed;
    ``context.ray``: the Ray cluster address the shards run on (None: in this process)."""
    from neurosearch.pipeline.stats import TokenStats
    from neurosearch.pipeline.stats_plan import join_parts
    from neurosearch.pipeline.stats_store import directory_bytes

    out, manifest, build, reporter = context.out, context.manifest, context.config, context.reporter
    started = time.time()
    loaded, site = context.model()
    identity = manifest.stages["stats"]["identity"]
    plan = _plan(context, loaded, site)
    if plan.kind != "dense":
        reporter.log(f"stats: memory budget {plan.budget_bytes / 1e9:.1f} GB: rows for the corpus's "
                     f"{len(plan.token_ids):,} tokens" + (f", {len(plan.groups)} passes of layers "
                     + ", ".join(f"{a}-{b - 1}" for a, b in plan.groups) if len(plan.groups) > 1 else ""))
    stats_dir = out / layout.STATS_DIR
    parts_root = out / layout.STATS_PARTS_DIR
    written = {"count": 0, "seconds": 0.0, "bytes": 0}
    if len(plan.groups) == 1:
        shutil.rmtree(parts_root, ignore_errors=True)
        _pass(context, plan, None, identity, stats_dir, written)
    else:
        parts = []
        for number, layers in enumerate(plan.groups, start=1):
            part = out / layout.stats_part_dir(*layers)
            parts.append(part)
            part_identity = {**identity, "layers": list(layers)}
            marker = part / layout.STATS_PART_IDENTITY
            context.position.update(passes=len(plan.groups), passes_done=number - 1)
            if marker.is_file() and json.loads(marker.read_text()) == part_identity:
                reporter.log(f"stats: layers {layers[0]}-{layers[1] - 1} already done")
                continue
            shutil.rmtree(part, ignore_errors=True)
            reporter.log(f"stats: pass {number} of {len(plan.groups)}, layers {layers[0]}-{layers[1] - 1}")
            _pass(context, plan, layers, part_identity, part, written)
            write_json_atomic(marker, part_identity)
            context.position.update(passes_done=number)
        shutil.rmtree(stats_dir, ignore_errors=True)
        tmp = stats_dir.with_name(f".{stats_dir.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        join_parts(parts, tmp, build.stats.compress)
        tmp.rename(stats_dir)
        shutil.rmtree(parts_root, ignore_errors=True)
    stats = TokenStats.load(stats_dir, mmap=True)
    _write_neuron_files(out, manifest, stats)
    manifest.corpus.update(documents=stats.documents, windows=stats.windows, tokens=stats.tokens)
    return {"documents": stats.documents, "windows": stats.windows, "tokens": stats.tokens,
            "tokens_per_second": round(stats.tokens / max(time.time() - started, 1e-9), 1),
            "checkpoints": written["count"], "checkpoint_seconds": round(written["seconds"], 2),
            "checkpoint_bytes": written["bytes"], "stats_bytes": directory_bytes(stats_dir),
            "workers": "ray" if context.ray is not None else "local", **plan.facts()}


def _plan(context: StageContext, loaded: Any, site: Any) -> Any:
    """The memory plan of the pass (``stats_plan.py``); the counting pass runs only when needed."""
    from neurosearch.corpus import make_windows
    from neurosearch.pipeline.stats import vocab_size, window_token_ids
    from neurosearch.pipeline.stats_plan import default_memory_gb, plan_stats, working_bytes

    build = context.config
    hidden = int(getattr(loaded.encoder.config, "hidden_size", 0) or getattr(loaded.encoder.config, "dim", 0))
    model_bytes = sum(p.numel() * p.element_size() for p in loaded.encoder.parameters())

    def count() -> tuple[np.ndarray, int, float]:
        t0 = time.time()
        advance = context.reporter.task("counting tokens (documents)",
                                        context.corpus.documents if context.corpus.documents >= 0 else None)
        seen = np.zeros(vocab_size(loaded), dtype=bool)
        most = 0
        first = 0
        for shard in shards(training_documents(build.corpus), build.stats.shard_docs):
            ids = window_token_ids(loaded.tokenizer, make_windows(loaded.tokenizer, shard, first, build.corpus.window))
            seen[ids] = True
            most = max(most, len(ids))
            first += len(shard)
            advance(len(shard))
        context.reporter.finish("counting tokens (documents)")
        return np.flatnonzero(seen), most, time.time() - t0

    budget = build.stats.memory_gb if build.stats.memory_gb is not None else default_memory_gb()
    return plan_stats(n_layers=site.n_layers, width=site.neurons_per_layer, vocab_size=vocab_size(loaded),
                      top_k=build.stats.top_k, budget_gb=budget, count=count,
                      working=working_bytes(model_bytes, build.stats.batch_tokens, site.neurons_per_layer, hidden))


def _pass(context: StageContext, plan: Any, layers: tuple[int, int] | None, identity: dict[str, Any], target: Path,
          written: dict[str, Any]) -> None:
    """One pass over the training documents (every layer, or ``layers``), checkpointed by time and
    resumed from the newest checkpoint of the same ``identity``; its statistics end in ``target``."""
    from neurosearch.pipeline.stats import vocab_size
    from neurosearch.pipeline.stats_total import WRITE_BYTES_PER_SECOND, CheckpointClock, StatsTotal

    out, build, reporter = context.out, context.config, context.reporter
    corpus, position, ray = context.corpus, context.position, context.ray
    loaded, site = context.model()
    root = out / layout.CHECKPOINT_DIR
    shards_done, checkpoint = latest_checkpoint(root)
    n_layers = site.n_layers if layers is None else layers[1] - layers[0]
    total = StatsTotal(vocab_size(loaded), n_layers * site.neurons_per_layer, build.stats.top_k, plan.token_ids)
    if checkpoint is not None:
        progress = json.loads((checkpoint / layout.CHECKPOINT_PROGRESS).read_text())
        if progress.get("identity") != identity:
            shutil.rmtree(root)
            shards_done, checkpoint = 0, None
        else:
            total.load(checkpoint)
            reporter.log(f"stats: resuming after {shards_done} shard(s) ({total.documents} documents)")
    task = TASK if layers is None else f"statistics, layers {layers[0]}-{layers[1] - 1} (documents)"
    advance = reporter.task(task, corpus.documents if corpus.documents >= 0 else None)
    advance(total.documents)
    documents = training_documents(build.corpus)  # held-out documents count, empty
    first = total.documents  # resume: skip what the checkpoint already holds
    position.update(checkpointed=first, total=corpus.documents, done=first)
    for _ in islice(documents, first):
        pass
    clock = CheckpointClock(build.stats.checkpoint_share)
    moved = [0.0]  # documents the progress bar has advanced by within the current shard

    def on_batch(documents_done: float) -> None:
        moved[0] += documents_done
        position["done"] = first + int(moved[0])
        advance(documents_done)

    results = _shard_results(build, loaded, site, shards(documents, build.stats.shard_docs), first, reporter, ray,
                             on_batch, layers, total)
    writer = _CheckpointWriter(out, identity, build.stats.compress, clock, written, position)
    started_at, pass_started = first, time.time()
    number = shards_done
    try:
        for count, add in results:  # not enumerate(): it keeps its last tuple, and so the shard, alive
            number += 1
            writer.wait()  # the total must not change while a checkpoint of it is written
            add(total)
            del add  # the shard's tables: freed before the next shard's are made
            first += count
            advance(count - moved[0])  # what the batches did not show (all of it on Ray)
            moved[0] = 0.0
            position["done"] = first
            done_here = first - started_at
            left = corpus.documents - first if corpus.documents >= 0 else None
            remaining = None if left is None or done_here <= 0 else left * (time.time() - pass_started) / done_here
            if clock.due(estimate=total.seen().size * total.n_neurons * 8 / WRITE_BYTES_PER_SECOND,
                         remaining=remaining):
                writer.start(number, total, first)  # written while the next shard runs
        writer.wait()
    finally:
        writer.wait(raise_error=False)
    reporter.finish(task)
    if total.documents == 0:
        raise NeurosearchError(f"corpus {build.corpus.source} has no documents")
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    _, latest = latest_checkpoint(root)
    if latest is not None and json.loads((latest / layout.CHECKPOINT_PROGRESS).read_text())["documents"] == total.documents:
        (latest / layout.CHECKPOINT_PROGRESS).unlink()
        latest.rename(target)  # the last checkpoint already holds everything
    else:
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        total.save(tmp, build.stats.compress)
        tmp.rename(target)
    shutil.rmtree(root, ignore_errors=True)


class _CheckpointWriter:
    """Writes a checkpoint of the running total on a second thread, so that the next shard's
    forward passes run meanwhile (the write is I/O and numpy, which release the interpreter lock);
    :meth:`wait` returns when it is done, and the caller waits before the total changes again."""

    def __init__(self, out: Path, identity: dict[str, Any], compress: str, clock: Any, written: dict[str, Any],
                 position: dict[str, int]) -> None:
        self.out, self.identity, self.compress = out, identity, compress
        self.clock, self.written, self.position = clock, written, position
        self.thread: Any = None
        self.error: BaseException | None = None
        self.done: dict[str, Any] = {}

    def start(self, number: int, total: Any, documents: int) -> None:
        import threading

        from neurosearch.pipeline.stats_total import write_checkpoint

        def run() -> None:
            started = time.time()
            try:
                size = write_checkpoint(self.out, number, total, self.identity, self.compress)
                self.done = {"bytes": size, "seconds": time.time() - started, "documents": documents}
            except BaseException as exc:  # re-raised by wait() on the stage's thread
                self.error = exc

        self.thread = threading.Thread(target=run, name="neurosearch-checkpoint", daemon=True)
        self.thread.start()

    def wait(self, raise_error: bool = True) -> None:
        if self.thread is None:
            return
        self.thread.join()
        self.thread = None
        error, self.error = self.error, None
        if error is not None:
            if raise_error:
                raise error
            return
        done = self.done
        self.clock.wrote(done["seconds"])
        self.written.update(bytes=done["bytes"], count=self.written["count"] + 1,
                            seconds=self.written["seconds"] + done["seconds"])
        self.position["checkpointed"] = done["documents"]


def _shard_results(build: BuildConfig, loaded: Any, site: Any, documents: Iterator[list[str]], first: int,
                   reporter: Reporter, ray: str | None, on_batch: Callable[[float], None],
                   layers: tuple[int, int] | None = None, total: Any = None) -> Iterator[tuple[int, Any]]:
    """(documents, add-to-total) of every shard, in corpus order, for every layer or ``layers``:
    here (``on_batch`` gets the documents each batch stands for, in proportion to its windows), or
    on Ray workers. Here, the first shard of a run that starts from nothing accumulates straight
    into ``total``'s table (the same bits, one table and one add fewer)."""
    if ray is not None:
        from neurosearch.pipeline.ray_stats import ray_shard_results

        yield from ray_shard_results(ray, build, documents, first, reporter, loaded.weights_hash(), layers)
        return
    from neurosearch.pipeline.stats import shard_statistics

    for shard in documents:
        def on_windows(done: int, windows: int, size: int = len(shard)) -> None:
            on_batch(size * done / max(windows, 1))  # per batch, so small corpora show progress too

        into = total if total is not None and total.takes_in_place(loaded.device.type) else None
        accumulator = shard_statistics(loaded, site, shard, first, build.stats, build.corpus.window,
                                       on_windows=on_windows, layers=layers, into=into)
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
