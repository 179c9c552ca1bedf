"""Statistics shards on a Ray cluster (``neurosearch build --ray``, ``--ray-address ADDRESS``).

Ray is the engine (an optional extra: ``pip install 'neurosearch[ray]'``); this module only hands
it work. Each worker is a Ray actor that loads the model once (one GPU per actor where the cluster
has GPUs, else one CPU per actor) and turns a shard of documents into that shard's statistics
with the same code as a local build (:func:`~neurosearch.pipeline.stats.shard_statistics`). The
driver keeps a bounded number of shards in flight, and adds the results to the build's total in
shard order, so the merged statistics are the same bits as a single-process build's (shards are
always accumulated from zero and added in order, see :mod:`~neurosearch.pipeline.stats_total`), and
checkpoints and resume work as they do locally.

Every node needs neurosearch, the model and the same library versions as the driver; each worker
checks that its model's weights hash is the driver's. Results travel through Ray's object store
(Ray serialises them its own way); nothing Ray writes reaches the index.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from neurosearch.errors import NeurosearchError


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise NeurosearchError("--ray needs Ray: pip install 'neurosearch[ray]'") from None
    return ray


class ShardWorker:
    """One model on one Ray worker; :meth:`run` computes a shard's statistics."""

    def __init__(self, config: Any, threads: int):
        import torch

        from neurosearch.model.loading import load_model, unit_site

        if threads > 0:
            torch.set_num_threads(threads)
        self.config = config
        self.loaded = load_model(config.model)
        self.site = unit_site(self.loaded, config.model)

    def weights_hash(self) -> str:
        return self.loaded.weights_hash()

    def run(self, documents: list[str], first_document: int, layers: tuple[int, int] | None = None) -> dict[str, Any]:
        from neurosearch.pipeline.stats import shard_statistics

        accumulator = shard_statistics(self.loaded, self.site, documents, first_document, self.config.stats,
                                       self.config.corpus.window, layers=layers)
        stats = accumulator.export()
        return {name: getattr(stats, name) for name in ("token_ids", "token_counts", "token_sums", "neuron_sumsq",
                                                         "top_values", "top_refs", "documents", "windows")}


def _connect(ray: Any, address: str) -> bool:
    """Join (or, for ``local``, start) a cluster unless this process already has one; True if we started it."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise NeurosearchError(f"cannot reach a Ray cluster at '{address}': {exc}") from None
    return True


def _workers(ray: Any, config: Any, expected_hash: str) -> list[Any]:
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
    count = gpus if gpus else max(1, cpus)
    # with a GPU assigned, Ray sets CUDA_VISIBLE_DEVICES and the workers' ModelConfig (device auto) picks it
    actor = ray.remote(**options)(ShardWorker)
    workers = [actor.remote(config, 1) for _ in range(count)]
    for have in ray.get([worker.weights_hash.remote() for worker in workers]):
        if have != expected_hash:
            raise NeurosearchError("a Ray worker loaded different model weights than this build's; install the "
                                   "same model on every node")
    return workers


def ray_shard_results(address: str, config: Any, shards: Iterator[list[str]], first: int,
                      reporter: Any, expected_hash: str, layers: tuple[int, int] | None = None) -> Iterator[tuple[int, Any]]:
    """(documents, add-to-total) of every shard in corpus order, computed by Ray workers (for
    every layer, or ``layers``: one pass of a build within a memory budget)."""
    from neurosearch.pipeline.stats import TokenStats

    ray = _ray()
    started = _connect(ray, address)
    try:
        workers = _workers(ray, config, expected_hash)
        reporter.log(f"stats: {len(workers)} Ray worker(s)")
        free = list(workers)
        in_flight: dict[Any, tuple[int, int, Any]] = {}
        done: dict[int, tuple[int, Any]] = {}
        submitted = yielded = 0
        remaining = iter(shards)
        exhausted = False
        while True:
            while free and not exhausted and len(done) <= 2 * len(workers):
                shard = next(remaining, None)
                if shard is None:
                    exhausted = True
                    break
                worker = free.pop()
                in_flight[worker.run.remote(shard, first, layers)] = (submitted, len(shard), worker)
                first += len(shard)
                submitted += 1
            if not in_flight and not done:
                return
            if in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                number, count, worker = in_flight.pop(ready[0])
                done[number] = (count, ready[0])
                free.append(worker)
            while yielded in done:
                count, ref = done.pop(yielded)
                arrays = ray.get(ref)
                stats = TokenStats(**{k: (np.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in arrays.items()})
                yield count, (lambda total, stats=stats: total.add_stats(stats))
                del arrays, stats  # freed before the next shard arrives
                yielded += 1
    finally:
        if started:
            ray.shutdown()
