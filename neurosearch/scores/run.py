"""``neurosearch score``: every unit's simulation score on held-out text, stored with what it measured.

The text is the index's held-out documents (``CorpusConfig.heldout_share``), or the documents of a
corpus the caller names (for an index that kept none, e.g. the Yelp sample for a C4 index; the
index's own corpus is refused there, since its documents built the profiles). Windows are read in
corpus order until ``ScoreConfig.max_tokens`` counted tokens.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from neurosearch.errors import NeurosearchError
from neurosearch.format.layout import SIMULATION_FORMAT
from neurosearch.scores.config import ScoreConfig
from neurosearch.scores.simulation import (SimulationAccumulator, SimulationScores, SimulationSums,
                                           group_permutation, rounded, scores_from_sums, summary)
from neurosearch.scores.units import UnitSet, index_units

if TYPE_CHECKING:
    from neurosearch.index.index import Index
    from neurosearch.progress import Reporter



@dataclass
class ScoreRun:
    """The simulation scores of every unit of one index, and what they are about."""

    about: dict[str, Any]
    units: UnitSet
    scores: SimulationScores
    seconds: float
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    sums: SimulationSums | None = None
    """The per-window sums (the detection score reads the same windows)."""
    tokenizer: Any = None
    """The index model's tokenizer (the detection score quotes windows with it)."""

    def to_json(self) -> dict[str, Any]:
        values = np.stack([self.scores.all_at_once, self.scores.top_and_random, self.scores.shuffled], axis=1)
        return {
            "format": SIMULATION_FORMAT,
            "about": self.about,
            "seconds": round(self.seconds, 1),
            "columns": ["simulation_score", "simulation_top_random", "calibration_shuffled"],
            "summary": self.summaries,
            "units": {key: [rounded(v) for v in row] for key, row in zip(self.units.keys, values.tolist())},
        }


def _documents(index: Index, corpus: str | None, text_field: str) -> tuple[Iterator[tuple[int, str]], dict[str, Any]]:
    """The held-out documents to score on, and how they were chosen."""
    from neurosearch.config import CorpusConfig
    from neurosearch.corpus import heldout_documents, read_documents, scan_corpus

    built = index.manifest.corpus
    share = float(built.get("heldout_share") or 0.0)
    if corpus is None:
        if share <= 0.0:
            raise NeurosearchError("this index holds no held-out documents (it was built before neurosearch kept "
                                   "them, or with --heldout-share 0): name a corpus it was not built from with "
                                   "`corpus`", option="corpus")
        source = str(built.get("source") or "")
        config = CorpusConfig(source=source, text_field=str(built.get("text_field") or "text"),
                              max_docs=built.get("max_docs"), heldout_share=share)
        if not source.startswith("hf:") and not Path(source).expanduser().is_file():
            raise NeurosearchError(f"the index's corpus {source} is not here (paths are as the build was given "
                                   "them): name it with --corpus", option="corpus")
        return heldout_documents(config), {"corpus": source, "documents": "held out", "heldout_share": share}
    config = CorpusConfig(source=corpus, text_field=text_field, heldout_share=share)
    summary_of = scan_corpus(config)
    if summary_of.fingerprint == built.get("fingerprint"):
        if share <= 0.0:
            raise NeurosearchError(f"{corpus}: this index was built from these documents (they made its "
                                   "profiles); name another `corpus`", option="corpus")
        return heldout_documents(config), {"corpus": corpus, "documents": "held out", "heldout_share": share}
    return enumerate(read_documents(config)), {"corpus": corpus, "documents": "all (not the index's corpus)",
                                               "fingerprint": summary_of.fingerprint}


def score_index(index: Index, config: ScoreConfig | None = None, *, corpus: str | None = None,
                text_field: str = "text", reporter: Reporter | None = None) -> ScoreRun:
    """Simulation scores of every neuron, K-cut cluster and tree node of ``index`` (its search method)."""
    from neurosearch.config import StatsConfig
    from neurosearch.corpus import make_windows
    from neurosearch.model.loading import index_site, load_index_model
    from neurosearch.pipeline.stats import accumulate
    from neurosearch.progress import SilentReporter

    config = config or ScoreConfig()
    reporter = reporter or SilentReporter()
    documents, chosen = _documents(index, corpus, text_field)  # checked before the model loads
    started = time.time()
    units = index_units(index, config.top_tokens)
    loaded = load_index_model(index)
    site = index_site(loaded, index)
    vocab = loaded.tokenizer.get_vocab()
    kept_ids = index.vocabulary.kept.get("ids") or [vocab[token] for token in index.kept_tokens]
    kept_of_id = np.full(max(max(vocab.values()) + 1, max(kept_ids) + 1), len(kept_ids), dtype=np.int64)
    kept_of_id[np.asarray(kept_ids)] = np.arange(len(kept_ids))
    accumulator = SimulationAccumulator(units, site.n_layers, site.neurons_per_layer, kept_of_id,
                                        group_permutation(units.groups, config.seed))
    window = int(index.manifest.configs.get("corpus", {}).get("window") or 128)
    stats = StatsConfig(batch_tokens=config.batch_tokens)
    advance = reporter.task("score (held-out tokens)", config.max_tokens)
    read = 0
    while read < config.max_tokens:
        chunk = [pair for _, pair in zip(range(32), documents)]
        if not chunk:
            break
        windows = make_windows(loaded.tokenizer, [text for _, text in chunk], 0, window)
        keep = []
        for number, ids in enumerate(windows.input_ids):
            if read >= config.max_tokens:
                break
            keep.append(number)
            read += len(ids) - 2
        windows.input_ids = [windows.input_ids[i] for i in keep]
        windows.document = [chunk[windows.document[i]][0] for i in keep]
        windows.start = [windows.start[i] for i in keep]
        if windows.input_ids:
            accumulate(loaded, site, accumulator, [text for _, text in chunk], 0, stats, window, windows=windows,
                       on_tokens=advance)
    reporter.finish("score (held-out tokens)")
    if accumulator.tokens == 0:
        raise NeurosearchError("no held-out text to score on (no document, or only empty ones)")
    scores = scores_from_sums(accumulator.sums, config.top_windows, config.random_windows, config.seed)
    about = {
        "model": index.manifest.model.get("id"),
        "weights_sha256": index.manifest.model.get("weights_sha256"),
        "method": units.method,
        **chosen,
        "tokens": accumulator.tokens,
        "windows": len(accumulator.sums.counts),
        "config": asdict(config),
        "explanation": f"first {config.top_tokens} top tokens with their profile weights (token lookup)",
        "cluster_activation": "mean of the members' z-scored activations",
        "calibration": "each unit scored with the explanation of another unit of its group",
    }
    run = ScoreRun(about, units, scores, time.time() - started, sums=accumulator.sums, tokenizer=loaded.tokenizer)
    run.summaries = summaries(units, scores)
    return run


def detect(index: Index, run: ScoreRun, lm: Any, config: Any = None, *, reporter: Reporter | None = None,
           state: Any = None) -> dict[str, Any]:
    """The detection score (``detection.py``) of a sample of the run's units with language model
    ``lm``; kept in ``layout.DETECTION_SCORES`` unit by unit (a stopped run resumes: units whose
    result is stored for the same run, model and prompt are not asked again). The stored data."""
    from neurosearch.format import layout
    from neurosearch.format.store import exclusive, read_json, write_json
    from neurosearch.scores.detection import DetectionConfig, about, detection_scores, detection_summary

    config = config or DetectionConfig()
    assert run.sums is not None
    started = time.time()
    method = run.units.method
    n = run.units.n_neurons

    def theme(unit: int) -> str:
        hit = (index.lookup.neuron_hit(method, unit, 0.0) if unit < n
               else index.lookup.cluster_hit(method, unit - n, 0.0))
        return hit.label or " ".join(hit.top_tokens[:5])

    described = about(config, lm, started)
    measured = {key: run.about.get(key) for key in ("model", "method", "corpus", "documents", "tokens", "windows")}
    identity = {"lm": described["lm"], "prompt": described["prompt"], "config": described["config"],
                "simulation": {**measured, "seed": run.about["config"]["seed"]}}
    path = (state or index.state).write_path(layout.DETECTION_SCORES)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = read_json(path, default=None)
    stored = old if isinstance(old, dict) and old.get("identity") == identity else None
    units: dict[str, list[float | None]] = dict(stored["units"]) if stored else {}
    themes: dict[str, str] = dict(stored.get("themes", {})) if stored else {}

    def save() -> dict[str, Any]:
        data = {"format": layout.SIMULATION_FORMAT, "identity": identity,
                "about": {**described, "seconds": round(time.time() - started, 1), "simulation": measured},
                "columns": ["detection_auc", "calibration_other_theme"],
                "summary": detection_summary(run.units, units), "units": units, "themes": themes}
        with exclusive(path):
            write_json(path, data)
        return data

    def keep(key: str, result: list[float | None], asked: str) -> None:
        units[key] = result
        themes[key] = asked
        if len(units) % 10 == 0:
            save()

    detection_scores(run.units, run.sums, theme, lm, lambda ids: run.tokenizer.decode(ids.tolist()), config,
                     done=units, on_unit=keep, reporter=reporter)
    return save()


def summaries(units: UnitSet, scores: SimulationScores) -> dict[str, dict[str, Any]]:
    """Per group (``neurons``, ``k50``, ``k200``, ``tree``): the distribution of each score."""
    out = {}
    for group in dict.fromkeys(units.groups):
        rows = units.group_indices(group)
        out[group] = {"simulation_score": summary(scores.all_at_once[rows]),
                      "simulation_top_random": summary(scores.top_and_random[rows]),
                      "calibration_shuffled": summary(scores.shuffled[rows])}
    return out
