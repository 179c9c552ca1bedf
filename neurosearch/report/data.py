"""What the report shows, read from an index through its public methods (no HTML here).

* contexts: the top activating occurrences re-read by reference from the corpus, every document
  read and tokenised once for the whole report (:class:`ContextReader`);
* verifications: stored results of ``ablate`` (``Index.ablation_for``) and of ``evaluate``
  (``evaluation/results.jsonl``), kept only when the neurons they measured are exactly the unit's
  (:func:`matching`), with a verdict (:func:`verdict_of`);
* Table 3 and the evaluation figures, when the index was evaluated.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable


@dataclass
class Verdict:
    """A verification's outcome in words."""

    passed: bool | None
    """True/False; None when the result says nothing either way."""
    summary: str
    """e.g. "beats 3/3 baselines (p <= 0.011), mlm readout"."""
    basis: str
    """Where the verdict comes from: the stored verdict, or Table 3's criterion applied here."""


def matching(result: Any, neurons: Iterable[str]) -> dict[str, Any] | None:
    """``result`` when it is a result about exactly ``neurons`` (as a set), else None.

    A result that does not name the neurons it measured is not shown: nothing ties it to this unit.
    """
    if not isinstance(result, dict):
        return None
    target = result.get("target")
    measured = target.get("neurons") if isinstance(target, dict) else None
    if not isinstance(measured, list) or set(map(str, measured)) != set(neurons):
        return None
    return result


def verdict_of(result: dict[str, Any]) -> Verdict | None:
    """The stored verdict when the result has one, else Table 3's criterion (the change beats every
    baseline's mean with p < 0.05); None when neither can be read."""
    from neurosearch.experiments.evaluation import SIGNIFICANCE

    stored = result.get("verdict")
    if isinstance(stored, dict):
        passed = stored.get("passed")
        beats = stored.get("beats")
        parts = []
        if isinstance(beats, list):
            total = len(result.get("baselines") or {}) if isinstance(result.get("baselines"), dict) else None
            parts.append(f"beats {len(beats)}" + (f"/{total}" if total else "") + " baselines"
                         + (f" ({', '.join(map(str, beats))})" if beats else ""))
        if isinstance(stored.get("p"), (int, float)):
            parts.append(f"p = {float(stored['p']):.3g}")
        if stored.get("readout"):
            parts.append(f"{stored['readout']} readout")
        return Verdict(passed if isinstance(passed, bool) else None, ", ".join(parts) or "stored verdict",
                       "the verdict stored with the result")
    baselines = result.get("baselines")
    change = result.get("change_pct")
    if not isinstance(baselines, dict) or not baselines or not isinstance(change, (int, float)):
        return None
    beaten, worst_p = [], 0.0
    for name, stats in baselines.items():
        if not isinstance(stats, dict):
            continue
        p, mean = stats.get("p"), stats.get("mean_pct")
        if isinstance(p, (int, float)) and isinstance(mean, (int, float)) and p < SIGNIFICANCE and change > mean:
            beaten.append(str(name))
        if isinstance(p, (int, float)):
            worst_p = max(worst_p, float(p))
    readout = result.get("readout") or "mlm"
    summary = (f"beats {len(beaten)}/{len(baselines)} baselines" + (f" ({', '.join(beaten)})" if beaten else "")
               + f", largest p = {worst_p:.3g}, {readout} readout")
    return Verdict(len(beaten) == len(baselines), summary,
                   f"Table 3's criterion: above every baseline's mean with p < {SIGNIFICANCE} (no verdict stored)")


def neuron_records(index: Any, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``Index.neuron(name)`` for many neurons at once (same keys; arrays read once, ~5x faster)."""
    import math

    method = index.search_method
    top_index, top_values = index.method_top(method)
    refs, values = index.npy("neurons/top_refs.npy"), index.npy("neurons/top_values.npy")
    mean, std = index.npy("neurons/mean.npy"), index.npy("neurons/std.npy")
    kept = index.kept_tokens
    labels = index.lookup.labels  # the facade's label lookup (Index.neuron reads the same, one at a time)
    records = {}
    for name in names:
        flat = index.neuron_index(name)
        label, source = labels.label_for("neuron", name, method, flat)
        records[name] = {
            "id": name, "method": method, "label": label, "label_source": source,
            "top_tokens": [kept[i] for i in top_index[flat].tolist()], "top_weights": top_values[flat].tolist(),
            "mean": float(mean[flat]), "std": float(std[flat]),
            "top_activations": [{"document": d, "position": p, "token_id": t, "value": v}
                                for (d, p, t), v in zip(refs[flat].tolist(), values[flat].tolist()) if math.isfinite(v)],
        }
    return records


def evaluation_results(index: Any) -> dict[str, dict[str, Any]]:
    """``evaluate``'s stored results by target id (the user's copy wins over the shipped one)."""
    from neurosearch.index.stored import evaluation_results as stored

    return {r["target"]["id"]: r for r in stored(index.state) if isinstance(r["target"].get("id"), str)}


def table3(index: Any) -> list[dict[str, str]]:
    """Rows of the stored Table 3 (``evaluation/table3.csv``), [] when the index was not evaluated."""
    for path in reversed(index.state.read_paths("evaluation/table3.csv")):  # the user's first
        try:
            return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError, csv.Error):
            return []
    return []


def evaluation_figures(index: Any) -> list[Path]:
    """Fig. 3 and Fig. 4 PNGs that ``evaluate`` drew (Fig. 2 is redrawn, Fig. 5 is per cluster)."""
    figures: dict[str, Path] = {}
    for folder in index.state.read_paths("evaluation"):  # shipped, then the user's (wins)
        for path in sorted(folder.glob("fig[34]_*.png")):
            figures[path.name] = path
    return [figures[name] for name in sorted(figures)]


class ContextReader:
    """Activating contexts for many references, reading the corpus once."""

    def __init__(self, index: Any, corpus: str | None = None, width: int = 12):
        from neurosearch.index.contexts import corpus_path

        self.index = index
        self.width = width
        self.path = Path(corpus).expanduser() if corpus else corpus_path(index)
        self.looked_for = corpus or index.manifest.corpus.get("source") or "(no corpus recorded)"
        self._texts: dict[int, str] = {}
        self._encodings: dict[int, Any] = {}
        self.error: str | None = None

    @property
    def available(self) -> bool:
        return self.path is not None and self.path.is_file() and self.error is None

    def load(self, documents: Iterable[int]) -> None:
        """Read and tokenise the wanted documents (in one pass over the corpus)."""
        from neurosearch.config import CorpusConfig
        from neurosearch.corpus import read_documents

        wanted = set(int(d) for d in documents)
        if not wanted or self.path is None or not self.path.is_file():
            return
        config = CorpusConfig(source=str(self.path), text_field=self.index.manifest.corpus.get("text_field", "text"))
        last = max(wanted)
        try:
            for number, text in enumerate(read_documents(config)):
                if number in wanted:
                    self._texts[number] = text
                if number >= last:
                    break
        except Exception as exc:  # a changed or unreadable corpus must not break the report
            self._texts, self.error = {}, f"{type(exc).__name__}: {exc}"
            return
        numbers = sorted(self._texts)
        encodings = self.index.tokenizer.encode_batch([self._texts[n] for n in numbers], add_special_tokens=False)
        self._encodings = dict(zip(numbers, encodings))

    def record(self, ref: dict[str, Any]) -> dict[str, Any]:
        """``ref`` plus ``left``/``token``/``right`` (None when the text is not available)."""
        record = {**ref, "left": None, "token": None, "right": None}
        document, position = int(ref["document"]), int(ref["position"])
        text, encoding = self._texts.get(document), self._encodings.get(document)
        if text is None or encoding is None or not 0 <= position < len(encoding.ids):
            return record
        offsets = encoding.offsets
        start, end = offsets[position]
        left_start = offsets[max(0, position - self.width)][0]
        right_end = offsets[min(len(offsets) - 1, position + self.width)][1]
        record.update(left=text[left_start:start].replace("\n", " "), token=text[start:end],
                      right=text[end:right_end].replace("\n", " "))
        return record
