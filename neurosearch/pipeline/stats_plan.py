"""How the statistics pass fits a memory budget (``StatsConfig.memory_gb``, ``build --memory``).

The pass holds a float64 table of per-token sums for every neuron: the build's running total and
the current shard's table (:mod:`~neurosearch.pipeline.stats_total`,
:class:`~neurosearch.pipeline.stats.StatsAccumulator`). With one row per vocabulary id that is
``vocabulary x neurons x 8`` bytes whatever the corpus: 9.0 GB for a bert-base-shaped FFN site
(30,522 x 36,864), 24 GB for bert-large (98,304 neurons). The plan, cheapest first:

1. **dense**: one pass, a row per vocabulary id (the build as it always was), when that fits;
2. **counted**: a counting pass (the tokenizer alone, no model) finds the tokens the corpus holds and
   the most any shard holds; the tables get rows for those only, in one pass when that fits;
3. **layer groups**: else the layers are split into the fewest equal groups whose tables fit, and
   the model runs once per group over the corpus, each forward pass ending at the group's last
   layer (so the passes cost ``sum(group ends) / layers`` of one full pass more, not ``groups``).

Every plan gives the same bits: each table cell receives the same additions in the same order
(shards in corpus order), and the groups' tables are put together column by column
(:func:`join_parts`). What the budget counts is an estimate (:func:`working_bytes` for the model
and a batch, :func:`table_bytes` for the tables); the stage records the plan and its measured
peak in the manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from neurosearch.errors import NeurosearchError

GB = 1e9
"""The unit of ``--memory`` and of the manifest's ``peak_rss_gb``."""
BASE_BYTES = int(1.0 * GB)
"""The interpreter, torch, the tokenizer and the corpus reader, before any model or table."""


def default_memory_gb() -> float:
    """The budget when none is named: 80% of the memory available now (Linux's MemAvailable), else
    half the machine's memory, at least 2 GB."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
        except (ValueError, OSError, AttributeError):
            available = int(8 * GB)
    return max(2.0, round(0.8 * available / GB, 1))


def working_bytes(model_bytes: int, batch_tokens: int, width: int, hidden: int) -> int:
    """The model and the half-size copies of its weights that bf16 autocast keeps while a batch
    runs, one batch's activations (a few [tokens, width] and [tokens, hidden] float32 tensors alive
    at once) and :data:`BASE_BYTES`."""
    return int(1.5 * model_bytes + batch_tokens * 4 * (4 * width + 8 * hidden) + BASE_BYTES)


def table_bytes(rows: int, shard_rows: int, width: int, layers: int, top_k: int) -> int:
    """The tables of ``layers`` layers: the running total (``rows``) and a shard's (``shard_rows``,
    plus its scratch row) of float64 sums, one layer's copy while a shard is added, and the top-k."""
    return int(8 * width * ((rows + shard_rows + 1) * layers + shard_rows) + 2 * layers * width * top_k * 28)


@dataclass(frozen=True)
class StatsPlan:
    """What the statistics pass holds at once and how many times it reads the corpus."""

    groups: tuple[tuple[int, int], ...]
    """(first layer, end layer) of each pass; one pass over all layers unless the budget needs more."""
    token_ids: np.ndarray | None
    """Sorted vocabulary ids the corpus holds (the counting pass), or None: a row per vocabulary id."""
    budget_bytes: int
    estimate_bytes: int
    """The planned peak: :func:`working_bytes` plus the largest group's :func:`table_bytes`."""
    shard_rows: int = 0
    """The most distinct tokens of one shard (the counting pass; 0: none)."""
    counted_seconds: float = 0.0
    """Time of the counting pass (0: none)."""

    @property
    def kind(self) -> str:
        """``dense``, ``counted`` or ``layer groups``."""
        return "dense" if self.token_ids is None else ("counted" if len(self.groups) == 1 else "layer groups")

    def facts(self) -> dict[str, object]:
        """What the manifest records of the plan."""
        return {"memory_budget_gb": round(self.budget_bytes / GB, 2), "plan": self.kind,
                "passes": len(self.groups), "layer_groups": [list(g) for g in self.groups],
                "planned_peak_gb": round(self.estimate_bytes / GB, 2),
                **({"counted_tokens": int(len(self.token_ids)), "shard_tokens": self.shard_rows,
                    "counting_seconds": round(self.counted_seconds, 2)}
                   if self.token_ids is not None else {})}


Counter = Callable[[], tuple[np.ndarray, int, float]]
"""The counting pass: (sorted token ids of the corpus, the most distinct tokens of one shard, seconds)."""


def plan_stats(*, n_layers: int, width: int, vocab_size: int, top_k: int, working: int, budget_gb: float,
               count: Counter) -> StatsPlan:
    """The cheapest plan (module docstring) whose estimate fits ``budget_gb``; ``count`` runs only
    when a row per vocabulary id does not fit. Refuses, before the model runs, a budget that one
    layer's tables cannot fit."""
    budget = int(budget_gb * GB)
    dense = working + table_bytes(vocab_size, vocab_size, width, n_layers, top_k)
    if dense <= budget:
        return StatsPlan(((0, n_layers),), None, budget, dense)
    token_ids, shard_rows, seconds = count()
    rows = len(token_ids)
    per_group = max((g for g in range(1, n_layers + 1)
                     if working + table_bytes(rows, shard_rows, width, g, top_k) <= budget), default=0)
    if per_group == 0:
        need = (working + table_bytes(rows, shard_rows, width, 1, top_k)) / GB
        raise NeurosearchError(f"a memory budget of {budget_gb:g} GB is too small for this model and corpus: "
                               f"one layer at a time needs about {need:.1f} GB (the model, a batch and the tables "
                               f"of {rows:,} tokens); raise --memory, or lower --batch-tokens or --shard-docs",
                               option="memory")
    passes = -(-n_layers // per_group)
    size = -(-n_layers // passes)  # the fewest passes, as even as they can be
    groups = tuple((start, min(start + size, n_layers)) for start in range(0, n_layers, size))
    estimate = working + table_bytes(rows, shard_rows, width, size, top_k)
    return StatsPlan(groups, token_ids, budget, estimate, shard_rows, seconds)


def join_parts(parts: list[Path], out: Path, compress: str) -> None:
    """Write into ``out`` the statistics of every layer from those of consecutive layer groups
    (``parts`` in layer order: the same tokens, documents and windows), row block by row block."""
    from neurosearch.pipeline.stats import TokenStats
    from neurosearch.pipeline.stats_store import iter_row_blocks, write_stats

    loaded = [TokenStats.load(part, mmap=True) for part in parts]
    first = loaded[0]
    for part, stats in zip(parts, loaded):
        if not np.array_equal(stats.token_ids, first.token_ids) or (stats.documents, stats.windows) != (
                first.documents, first.windows) or not np.array_equal(stats.token_counts, first.token_counts):
            raise NeurosearchError(f"{part} holds statistics of other text than {parts[0]}; rebuild with --force")

    def row_blocks():
        for blocks in zip(*(iter_row_blocks(stats.token_sums) for stats in loaded)):
            yield np.concatenate(blocks, axis=1)

    write_stats(out, token_ids=first.token_ids, token_counts=first.token_counts, row_blocks=row_blocks,
                n_neurons=sum(s.n_neurons for s in loaded),
                neuron_sumsq=np.concatenate([s.neuron_sumsq for s in loaded]),
                top_values=np.concatenate([s.top_values for s in loaded]),
                top_refs=np.concatenate([s.top_refs for s in loaded]),
                documents=first.documents, windows=first.windows, compress=compress)
