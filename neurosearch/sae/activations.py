"""One layer's activations over a corpus, written to disk as float16 ``.npy`` files, resumably.

The activations are the ones the build reads (:class:`~neurosearch.model.loading.NeuronHooks` on
the site's module of that layer, e.g. the FFN activation after the nonlinearity), over the same
model windows (:func:`~neurosearch.corpus.make_windows`) and batches
(:func:`~neurosearch.pipeline.stats.accumulate`), one row per counted token ([CLS], [SEP] and
padding left out, as for Eq. 1). Documents held out of the build (``CorpusConfig.heldout_share``,
:func:`~neurosearch.corpus.is_heldout`) go to a separate file, on which an SAE's FVU is measured.

A directory holds:

* ``train.npy`` / ``heldout.npy`` -- float16 [rows, d_in], written in place through
  ``np.lib.format.open_memmap`` (their row counts come from a first pass that only tokenises);
* ``train_refs.npy`` / ``heldout_refs.npy`` -- int32 [rows, 3]: (document index, position in
  the document's word pieces, token id) of every row;
* ``activations.json`` -- what was collected (model, weights hash, layer, corpus, window) and how
  far: documents done and rows written, updated after every shard of documents; a rerun with the
  same identity continues after the last shard recorded, and ``complete`` ends it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neurosearch.config import CorpusConfig, ModelConfig, StatsConfig, to_dict
from neurosearch.errors import NeurosearchError

PROGRESS_FILE = "activations.json"
PARTS = ("train", "heldout")
FLOAT16_MAX = float(np.finfo(np.float16).max)


class ActivationsError(NeurosearchError):
    """An activations directory is incomplete, of another identity, or its values do not fit float16."""


@dataclass(frozen=True)
class ActivationFiles:
    """A complete activations directory, opened read-only (memory maps)."""

    directory: Path
    train: np.ndarray
    """float16 [rows, d_in]: activations of the training documents."""
    heldout: np.ndarray
    """float16 [rows, d_in]: activations of the held-out documents."""
    train_refs: np.ndarray
    """int32 [rows, 3]: (document, position, token id) of each training row."""
    heldout_refs: np.ndarray
    record: dict[str, Any]
    """``activations.json``."""

    @property
    def d_in(self) -> int:
        return int(self.train.shape[1])

    @classmethod
    def open(cls, directory: str | Path) -> "ActivationFiles":
        root = Path(directory)
        record = _read_progress(root)
        if record is None or not record.get("complete"):
            raise ActivationsError(f"the activations in {root} are not complete: collect them first")
        arrays = {f"{part}{suffix}": np.load(root / f"{part}{suffix}.npy", mmap_mode="r", allow_pickle=False)
                  for part in PARTS for suffix in ("", "_refs")}
        return cls(directory=root, record=record, **arrays)


def _read_progress(root: Path) -> dict[str, Any] | None:
    path = root / PROGRESS_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ActivationsError(f"{path} cannot be read ({exc}); remove the folder to collect again") from None
    return record if isinstance(record, dict) else None


def hook_name(encoder: Any, module: Any) -> str:
    """The dotted name of ``module`` inside ``encoder`` (e.g. ``encoder.layer.2.intermediate``)."""
    for name, candidate in encoder.named_modules():
        if candidate is module:
            return name
    return type(module).__name__


class _RowWriter:
    """The accumulator interface of :func:`~neurosearch.pipeline.stats.accumulate` that writes the
    counted tokens' activations (and their references) to memory-mapped arrays, row after row."""

    def __init__(self, values: np.ndarray, refs: np.ndarray, row: int):
        self.values, self.refs, self.row = values, refs, row
        self.documents = 0
        self.windows = 0
        self._valid: np.ndarray = np.zeros(0, dtype=bool)
        self._refs: np.ndarray = np.zeros((0, 3), dtype=np.int32)

    def begin_batch(self, input_ids: Any, valid: Any, docs: Any, pos: Any) -> None:
        self._valid = valid.reshape(-1).cpu().numpy()
        refs = np.stack([docs.reshape(-1).cpu().numpy(), pos.reshape(-1).cpu().numpy(),
                         input_ids.reshape(-1).cpu().numpy()], axis=1)
        self._refs = refs[self._valid].astype(np.int32)

    def observe(self, layer: int, activations: Any) -> None:
        x = activations.detach().reshape(-1, activations.shape[-1])[self._valid].float().cpu().numpy()
        biggest = float(np.abs(x).max()) if x.size else 0.0
        if not np.isfinite(biggest) or biggest > FLOAT16_MAX:
            raise ActivationsError(f"an activation of magnitude {biggest:g} does not fit float16")
        end = self.row + x.shape[0]
        if end > self.values.shape[0]:
            raise ActivationsError("more activation rows than the counting pass found (the corpus changed?)")
        self.values[self.row:end] = x.astype(np.float16)
        self.refs[self.row:end] = self._refs
        self.row = end


def _count_rows(tokenizer: Any, corpus: CorpusConfig, batch: int = 1000) -> dict[str, int]:
    """Documents and counted tokens (= activation rows) of the training and held-out documents."""
    from neurosearch.corpus import is_heldout, plain_backend, read_documents, shards

    backend = plain_backend(tokenizer)
    counts = {"documents": 0, "train": 0, "heldout": 0, "heldout_documents": 0}
    for shard in shards(read_documents(corpus), batch):
        for text, encoding in zip(shard, backend.encode_batch(shard, add_special_tokens=False)):
            out = is_heldout(text, corpus.heldout_share)
            counts["heldout" if out else "train"] += len(encoding.ids)
            counts["heldout_documents"] += out
        counts["documents"] += len(shard)
    return counts


def collect_activations(
    model: ModelConfig,
    corpus: CorpusConfig,
    layer: int,
    out: str | Path,
    *,
    batch_tokens: int = 8192,
    shard_docs: int = 200,
    log: Callable[[str], None] | None = None,
    stop_after_shards: int | None = None,
) -> ActivationFiles | None:
    """Collect layer ``layer`` of ``model.site`` over ``corpus`` into ``out`` (see the module's doc).

    Resumes after the last shard of ``shard_docs`` documents recorded in ``activations.json`` when
    the identity (model weights, site, layer, corpus, window, held-out share, dtype) matches;
    refuses to touch a directory of another identity. ``stop_after_shards``: return None after
    that many shards of this call (an interruption, for tests). Returns the opened files when done.
    """
    from neurosearch.corpus import is_heldout, make_windows, read_documents, shards
    from neurosearch.model.loading import load_model, neuron_site
    from neurosearch.pipeline.stats import accumulate

    root = Path(out)
    say = log or (lambda _line: None)
    record = _read_progress(root)
    if record is not None and record.get("complete"):
        return ActivationFiles.open(root)
    if corpus.heldout_share <= 0:
        raise ActivationsError("collecting activations for an SAE needs held-out documents (heldout_share > 0)")
    loaded = load_model(model)
    site = neuron_site(loaded.encoder, model.site)
    if not 0 <= layer < site.n_layers:
        raise ActivationsError(f"layer {layer} outside the site's {site.n_layers} layers")
    identity = {"model": loaded.model_id, "weights_sha256": loaded.weights_hash(), "site": model.site, "layer": layer,
                "dtype": model.dtype, "corpus": to_dict(corpus)}
    if record is not None and record.get("identity") != identity:
        raise ActivationsError(f"{root} holds activations of another model, layer or corpus; remove it or choose another folder")
    from numpy.lib.format import open_memmap

    width = site.neurons_per_layer
    if record is None:
        started = time.time()
        counts = _count_rows(loaded.tokenizer, corpus)
        if counts["train"] == 0 or counts["heldout"] == 0:
            raise ActivationsError(f"corpus {corpus.source} gives {counts['train']} training and {counts['heldout']} "
                                   "held-out tokens; both must be > 0")
        root.mkdir(parents=True, exist_ok=True)
        for part in PARTS:
            open_memmap(root / f"{part}.npy", mode="w+", dtype=np.float16, shape=(counts[part], width)).flush()
            open_memmap(root / f"{part}_refs.npy", mode="w+", dtype=np.int32, shape=(counts[part], 3)).flush()
        record = {"identity": identity, "model_name": loaded.model_id,
                  "hook_name": hook_name(loaded.encoder, site.modules[layer]), "d_in": width,
                  "documents": counts["documents"], "heldout_documents": counts["heldout_documents"],
                  "rows": {part: counts[part] for part in PARTS}, "documents_done": 0,
                  "rows_written": {part: 0 for part in PARTS}, "seconds": 0.0, "complete": False}
        _write_progress(root, record)
        say(f"collect: {counts['documents']:,} documents ({counts['heldout_documents']:,} held out), "
            f"{counts['train']:,} training + {counts['heldout']:,} held-out rows of {width} ({time.time() - started:.1f} s "
            "counting)")
    arrays = {name: open_memmap(root / f"{name}.npy", mode="r+") for part in PARTS for name in (part, f"{part}_refs")}
    writers = {part: _RowWriter(arrays[part], arrays[f"{part}_refs"], record["rows_written"][part]) for part in PARTS}
    part_site = site.layers(layer, layer + 1)
    stats = StatsConfig(batch_tokens=batch_tokens)
    done = record["documents_done"]
    documents = read_documents(corpus)
    for _ in range(done):
        next(documents, None)
    if done:
        say(f"collect: resuming after {done:,} documents")
    run_started, rows_at_start, shards_here = time.time(), sum(record["rows_written"].values()), 0
    for shard in shards(documents, shard_docs):
        shard_started = time.time()
        for part in PARTS:
            chosen = [(number, text) for number, text in enumerate(shard, start=done)
                      if is_heldout(text, corpus.heldout_share) == (part == "heldout")]
            if not chosen:
                continue
            windows = make_windows(loaded.tokenizer, [text for _, text in chosen], 0, corpus.window)
            windows.document = [chosen[i][0] for i in windows.document]  # corpus indices
            accumulate(loaded, part_site, writers[part], [text for _, text in chosen], 0, stats, corpus.window,
                       windows=windows)
        for array in arrays.values():
            array.flush()
        done += len(shard)
        record.update(documents_done=done, rows_written={part: writers[part].row for part in PARTS},
                      seconds=round(record["seconds"] + time.time() - shard_started, 2))
        _write_progress(root, record)
        rows = sum(record["rows_written"].values())
        rate = (rows - rows_at_start) / max(time.time() - run_started, 1e-9)
        total = sum(record["rows"].values())
        say(f"collect: {done:,}/{record['documents']:,} documents, {rows:,}/{total:,} rows, {rate:,.0f} rows/s, "
            f"about {(total - rows) / max(rate, 1e-9) / 60:.1f} min left")
        shards_here += 1
        if stop_after_shards is not None and shards_here >= stop_after_shards:
            return None
    if record["rows_written"] != record["rows"] or done != record["documents"]:
        raise ActivationsError(f"the collection of {root} ended at {record['rows_written']} rows of {record['rows']} "
                               f"and {done} documents of {record['documents']} (the corpus changed?)")
    record["complete"] = True
    _write_progress(root, record)
    del arrays
    return ActivationFiles.open(root)


def _write_progress(root: Path, record: dict[str, Any]) -> None:
    from neurosearch.format.atomic import write_json_atomic

    write_json_atomic(root / PROGRESS_FILE, record)
