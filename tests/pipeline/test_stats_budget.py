"""The statistics pass within a memory budget (``pipeline/stats_plan.py``): the same bits under any plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurosearch.config import BuildConfig, CorpusConfig, ModelConfig, ProfileConfig, StatsConfig
from neurosearch.errors import NeurosearchError
from neurosearch.format import layout
from neurosearch.pipeline import build_index
from neurosearch.pipeline import stats_plan
from neurosearch.pipeline.stats import TokenStats
from neurosearch.pipeline.stats_plan import GB, plan_stats, table_bytes

ARRAYS = ("token_ids", "token_counts", "token_sums", "neuron_sums", "neuron_sumsq", "top_values", "top_refs")


def test_plan_arithmetic_on_hand_numbers():
    """Dense when it fits (no counting pass); else rows for the corpus's tokens; else the fewest even
    layer groups; a budget one layer cannot fit is refused with the size it needs."""
    counted = []

    def count():
        counted.append(1)
        return np.arange(100), 40, 0.5

    kwargs = dict(n_layers=4, width=10, vocab_size=1000, top_k=2, working=0, count=count)
    dense = table_bytes(1000, 1000, 10, 4, 2)
    plan = plan_stats(budget_gb=dense / GB, **kwargs)
    assert (plan.kind, plan.groups, counted) == ("dense", ((0, 4),), [])
    plan = plan_stats(budget_gb=(dense - 1) / GB, **kwargs)
    assert (plan.kind, plan.groups, plan.shard_rows, len(counted)) == ("counted", ((0, 4),), 40, 1)
    assert plan.estimate_bytes == table_bytes(100, 40, 10, 4, 2)
    three = table_bytes(100, 40, 10, 3, 2)
    plan = plan_stats(budget_gb=three / GB, **kwargs)  # 3 layers fit, 4 do not: 2 passes of 2, not 3 + 1
    assert (plan.kind, plan.groups) == ("layer groups", ((0, 2), (2, 4)))
    plan = plan_stats(budget_gb=table_bytes(100, 40, 10, 1, 2) / GB, **kwargs)
    assert plan.groups == ((0, 1), (1, 2), (2, 3), (3, 4))
    assert plan.facts()["passes"] == 4 and plan.facts()["counted_tokens"] == 100
    with pytest.raises(NeurosearchError, match="too small .* needs about"):
        plan_stats(budget_gb=(table_bytes(100, 40, 10, 1, 2) - 1) / GB, **kwargs)


def _config(tiny_model: Path, tiny_corpus: Path, memory_gb: float | None, compress: str = "none") -> BuildConfig:
    return BuildConfig(model=ModelConfig(model=str(tiny_model), dtype="float32"),
                       corpus=CorpusConfig(source=str(tiny_corpus), window=16),
                       stats=StatsConfig(batch_tokens=256, shard_docs=70, memory_gb=memory_gb, compress=compress),
                       profiles=ProfileConfig(min_count=2, methods=("filter",), search_method="filter"))


def _stats(out: Path) -> TokenStats:
    return TokenStats.load(out / layout.STATS_DIR)


@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_every_plan_gives_the_unbudgeted_builds_bits(tiny_model: Path, tiny_corpus: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, compress: str):
    """The tiny model (2 layers x 24 neurons) under three budgets: dense (none named), rows for the
    corpus's tokens in one pass, and one pass per layer. The model and a batch are left out of the
    budget here (``working_bytes`` = 0), so that tables of a few kB decide the plan."""
    if compress == "zstd":
        pytest.importorskip("zstandard")
    monkeypatch.setattr(stats_plan, "working_bytes", lambda *a, **k: 0)
    reference = build_index(_config(tiny_model, tiny_corpus, None, compress), tmp_path / "dense", until="profiles")
    assert reference.stages["stats"]["plan"] == "dense"
    vocab = len(np.load(tmp_path / "dense" / layout.STATS_DIR / "token_ids.npy"))
    facts: dict = {}
    for name in ("groups", "counted"):
        out = tmp_path / name
        if name == "groups":
            budget = _one_layer_budget(tiny_model, tiny_corpus, tmp_path)
        else:
            budget = table_bytes(facts["counted_tokens"], facts["shard_tokens"], 24, 2, 20) / GB
        manifest = build_index(_config(tiny_model, tiny_corpus, budget, compress), out, until="profiles")
        facts = manifest.stages["stats"]
        assert facts["plan"] == {"groups": "layer groups", "counted": "counted"}[name]
        assert facts["passes"] == (2 if name == "groups" else 1)
        assert facts["counted_tokens"] == vocab  # the counting pass finds exactly the tokens the model saw
        assert not (out / layout.STATS_PARTS_DIR).exists() and not (out / layout.CHECKPOINT_DIR).exists()
        a, b = _stats(tmp_path / "dense"), _stats(out)
        for array in ARRAYS:
            np.testing.assert_array_equal(np.asarray(getattr(a, array)), np.asarray(getattr(b, array)),
                                          err_msg=f"{name}: {array}")
        assert (a.documents, a.windows) == (b.documents, b.windows)
        np.testing.assert_array_equal(np.load(tmp_path / "dense" / layout.profiles_file("filter")),
                                      np.load(out / layout.profiles_file("filter")))
        for path in (layout.NEURON_MEAN, layout.NEURON_STD, layout.NEURON_TOP_VALUES, layout.NEURON_TOP_REFS):
            assert (tmp_path / "dense" / path).read_bytes() == (out / path).read_bytes(), path


def _one_layer_budget(tiny_model: Path, tiny_corpus: Path, tmp_path: Path) -> float:
    """A budget that fits one layer of the tiny model's counted tables but not two."""
    from neurosearch.corpus import make_windows, shards, training_documents
    from neurosearch.model.loading import load_model
    from neurosearch.pipeline.stats import window_token_ids

    config = _config(tiny_model, tiny_corpus, None)
    loaded = load_model(config.model)
    seen: set[int] = set()
    most = first = 0
    for shard in shards(training_documents(config.corpus), config.stats.shard_docs):
        ids = window_token_ids(loaded.tokenizer, make_windows(loaded.tokenizer, shard, first, config.corpus.window))
        seen.update(ids.tolist())
        most = max(most, len(ids))
        first += len(shard)
    one, two = (table_bytes(len(seen), most, 24, g, 20) for g in (1, 2))
    assert one < two
    return one / GB


def test_a_budgeted_build_resumes_after_its_finished_passes(tiny_model: Path, tiny_corpus: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    """Killed after both passes but before they are put together: the rerun skips both passes (it
    says so) and writes the same statistics."""
    monkeypatch.setattr(stats_plan, "working_bytes", lambda *a, **k: 0)
    budget = _one_layer_budget(tiny_model, tiny_corpus, tmp_path)
    reference = tmp_path / "reference"
    build_index(_config(tiny_model, tiny_corpus, None), reference, until="stats")

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "killed"
    with monkeypatch.context() as patch:
        patch.setattr(stats_plan, "join_parts", stop)
        with pytest.raises(NeurosearchError, match=r"pass 3 of 2|kept: 2 finished pass\(es\)") as stopped:
            build_index(_config(tiny_model, tiny_corpus, budget), out, until="stats")
    assert "kept: 2 finished pass(es)" in str(stopped.value) and "resume" in str(stopped.value)
    assert len(list((out / layout.STATS_PARTS_DIR).iterdir())) == 2

    class Log:
        lines: list[str] = []

        def log(self, line: str) -> None:
            self.lines.append(line)

    from neurosearch.progress import SilentReporter

    reporter = SilentReporter()
    reporter.log = Log().log  # type: ignore[method-assign]
    build_index(_config(tiny_model, tiny_corpus, budget), out, until="stats", reporter=reporter)
    assert sum("already done" in line for line in Log.lines) == 2
    a, b = _stats(reference), _stats(out)
    for array in ARRAYS:
        np.testing.assert_array_equal(getattr(a, array), getattr(b, array), err_msg=array)


def test_a_budget_is_checked_before_the_model_runs():
    with pytest.raises(NeurosearchError, match="memory_gb"):
        StatsConfig(memory_gb=-1)
    with pytest.raises(NeurosearchError, match="memory_gb"):
        StatsConfig(memory_gb=float("nan"))


def test_a_shards_tables_are_freed_before_the_next_shards_are_made(tiny_model: Path, tiny_corpus: Path,
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Two shards' tables alive at once would double what a budget plans for one (no garbage
    collection asked: reference counting alone must free them)."""
    import weakref

    from neurosearch.pipeline import stats as stats_module

    real = stats_module.shard_statistics
    made: list[weakref.ref] = []

    def tracked(*args, **kwargs):
        assert all(ref() is None for ref in made), "an earlier shard's tables are still held"
        accumulator = real(*args, **kwargs)
        made.append(weakref.ref(accumulator))
        return accumulator

    monkeypatch.setattr(stats_module, "shard_statistics", tracked)
    build_index(_config(tiny_model, tiny_corpus, None), tmp_path / "index", until="stats")
    assert len(made) >= 3


def test_the_first_checkpoint_waits_until_its_estimated_cost_is_its_share(monkeypatch: pytest.MonkeyPatch):
    from neurosearch.pipeline import stats_total
    from neurosearch.pipeline.stats_total import CheckpointClock

    now = [100.0]
    monkeypatch.setattr(stats_total.time, "time", lambda: now[0])
    clock = CheckpointClock(0.05)
    assert clock.due(estimate=0.0)  # small tables: the first shard
    assert not clock.due(estimate=2.0)  # a 2 s write waits for 40 s of work
    now[0] += 40.0
    assert clock.due(estimate=2.0)
    clock.wrote(4.0)  # measured: the next waits 80 s
    now[0] += 79.0
    assert not clock.due(estimate=0.0)
    now[0] += 1.0
    assert clock.due(estimate=0.0)
    assert CheckpointClock(0.0).due(estimate=99.0)  # share 0: only the first shard


def test_row_blocks_of_a_mapped_table_are_read_from_its_file(tmp_path: Path):
    """Not through the map (its touched pages would count in the reader's memory): the same rows."""
    from neurosearch.pipeline.stats_store import BLOCK_ROWS, iter_row_blocks

    table = np.random.default_rng(0).random((2 * BLOCK_ROWS + 17, 13))
    np.save(tmp_path / "sums.npy", table)
    mapped = np.load(tmp_path / "sums.npy", mmap_mode="r")
    blocks = list(iter_row_blocks(mapped))
    assert [len(b) for b in blocks] == [BLOCK_ROWS, BLOCK_ROWS, 17]
    np.testing.assert_array_equal(np.concatenate(blocks), table)


def test_a_checkpoint_is_written_while_the_next_shard_runs_and_never_sees_the_total_change(
        tiny_model: Path, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The write runs on a second thread during the next shard's forward passes; the total waits for it."""
    import threading
    import time

    from neurosearch.pipeline import stats_total

    real = stats_total.write_checkpoint
    seen: list[tuple[int, int, bool]] = []

    def slow(out, number, total, identity, compress):
        before = (total.documents, float(total.sums.sum()))
        time.sleep(0.3)  # the next shard runs meanwhile
        size = real(out, number, total, identity, compress)
        seen.append((before[0], total.documents, threading.current_thread() is not threading.main_thread()))
        assert (total.documents, float(total.sums.sum())) == before, "the total changed while it was written"
        return size

    monkeypatch.setattr(stats_total, "write_checkpoint", slow)
    config = _config(tiny_model, tiny_corpus, None)
    config = BuildConfig(model=config.model, corpus=config.corpus, profiles=config.profiles,
                         stats=StatsConfig(batch_tokens=256, shard_docs=70, checkpoint_share=1.0))
    manifest = build_index(config, tmp_path / "index", until="stats")
    assert len(seen) == manifest.stages["stats"]["checkpoints"] >= 1
    assert all(on_thread for _, _, on_thread in seen)
    reference = build_index(_config(tiny_model, tiny_corpus, None), tmp_path / "reference", until="stats")
    assert reference.stages["stats"]["documents"] == manifest.stages["stats"]["documents"]
    a, b = _stats(tmp_path / "reference"), _stats(tmp_path / "index")
    for array in ARRAYS:
        np.testing.assert_array_equal(getattr(a, array), getattr(b, array), err_msg=array)


def test_a_run_about_to_end_skips_the_checkpoint_it_would_not_pay_for():
    from neurosearch.pipeline.stats_total import CheckpointClock

    clock = CheckpointClock(0.05)
    assert not clock.due(estimate=1.0, remaining=10.0)  # 10 s left x 5 % < 1 s of writing
    assert clock.due(estimate=0.0, remaining=10.0)
    assert CheckpointClock(0.0).due(estimate=1.0, remaining=1.0)  # share 0: the first shard, always
