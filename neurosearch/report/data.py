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
from typing import TYPE_CHECKING, Any, Iterable

from neurosearch.format import layout

if TYPE_CHECKING:
    from neurosearch.format.results import AblationResult


@dataclass
class Verdict:
    """A verification's outcome in words."""

    passed: bool | None
    """True/False; None when the result says nothing either way."""
    summary: str
    """e.g. "beats 3/3 baselines, p ≤ 0.003 (rank p ≤ 0.048), embedding readout, level 0.05"."""
    basis: str
    """Where the verdict comes from: the stored verdict, or Table 3's criterion applied here."""


def as_result(record: Any) -> AblationResult | None:
    """A stored record as an :class:`AblationResult` (records of before format 2 load as legacy
    results); None for anything that is not one."""
    from neurosearch.experiments.evaluation import parse_result
    from neurosearch.format.results import AblationResult

    if isinstance(record, AblationResult):
        return record
    return parse_result(record)


def matching(result: Any, neurons: Iterable[str]) -> AblationResult | None:
    """``result`` when it is a result about exactly ``neurons`` (as a set), else None.

    A result that does not name the neurons it measured is not shown: nothing ties it to this unit.
    """
    found = as_result(result)
    if found is None or set(found.target.neurons) != set(neurons):
        return None
    return found


def verdict_of(result: Any) -> Verdict | None:
    """The result's verdict (today's rule: every baseline beaten, t and rank p below the level); for a
    legacy result (before format 2), Table 3's criterion applied here; None when neither can be read."""
    from neurosearch.experiments.table3 import SIGNIFICANCE
    from neurosearch.experiments.table3 import beats_all_baselines

    found = as_result(result)
    if found is None:
        return None
    readout = found.primary
    if not found.legacy:
        line = found.verdict.line()
        return Verdict(found.verdict.passed, line.split(": ", 1)[-1], "the verdict stored with the result")
    if not readout.baselines or readout.value != readout.value:  # no baselines, or no statistic (NaN)
        return None
    beaten = [name for name, b in readout.baselines.items() if b.p < SIGNIFICANCE and readout.value > b.mean]
    worst = max((b.p for b in readout.baselines.values() if b.p == b.p), default=float("nan"))
    summary = (f"beats {len(beaten)}/{len(readout.baselines)} baselines" + (f" ({', '.join(beaten)})" if beaten else "")
               + f", largest p = {worst:.3g}, {readout.readout} readout")
    return Verdict(beats_all_baselines(readout, SIGNIFICANCE), summary,
                   f"a legacy result (before result format 2): Table 3's criterion, above every baseline's mean "
                   f"with p < {SIGNIFICANCE}, applied here")


def neuron_records(index: Any, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``Index.neuron(name)`` for many neurons at once (same keys; each array read once, not per neuron)."""
    import math

    method = index.search_method
    top_index, top_values = index.method_top(method)
    refs, values = index.npy("neurons/top_refs.npy"), index.npy("neurons/top_values.npy")
    mean, std = index.npy(layout.NEURON_MEAN), index.npy(layout.NEURON_STD)
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


def evaluation_results(index: Any) -> dict[str, AblationResult]:
    """``evaluate``'s stored results by target id (later lines, the user's copy last, win)."""
    from neurosearch.experiments.evaluation import load_results
    from neurosearch.index.stored import EVALUATION_RESULTS

    return {r.target.id: r for r in load_results(*index.state.read_paths(EVALUATION_RESULTS))}


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
