"""The paper's Table 3 from ablation results, in each readout (``evaluation.py`` runs the experiment).

Results are :class:`~neurosearch.format.results.AblationResult` objects, one per cluster (the
contract ``evaluate`` appends to ``results.jsonl`` and ``ablate`` stores). A row of Table 3 is one
(readout, method, K): the mean *and median* statistic over its clusters (the means are skewed: a
few clusters carry most of the summed change), the baselines' mean statistic, the share of
clusters beating every baseline by the paper's criterion (above the baseline mean with t p below
the level) and the share whose verdict passed (t and rank p: see ``baselines.py``).

The aggregation here is pure (no model, no files read) so it can be rerun on stored results.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.config import BASELINES, METHODS
from neurosearch.format import layout
from neurosearch.format.results import AblationResult, ReadoutResult

if TYPE_CHECKING:  # rich is only needed when a table is rendered
    from rich.table import Table

SIGNIFICANCE = 0.05
"""A cluster "beats" a baseline when its statistic is larger and the baseline's p is below this."""


@dataclass(frozen=True)
class Table3Row:
    """One (readout, method, K) line of Table 3 (``mlm`` readouts: % loss change; ``embedding``: ratio)."""

    readout: str
    method: str
    k: int | None
    clusters: int
    mean: float
    """Mean statistic over the clusters when each is ablated."""
    median: float
    random: float
    """Mean over clusters of the ``random`` baseline's mean statistic (NaN if never run)."""
    random_layer: float
    random_position: float
    beats_all_share: float
    """Share of clusters (0..1) above every baseline present with t p < level (the paper's criterion)."""
    passed_share: float
    """Share of clusters whose verdict passed (t and rank p; NaN when the draws were too few to pass)."""
    control: float
    """``mlm`` readouts: mean % change on control tokens (should stay near the baselines); else NaN."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def group_key(result: AblationResult) -> tuple[str, int | None]:
    """(method, k) of a result; falls back to the target id ``method/kK/index``."""
    from neurosearch.ids import BadClusterId, ClusterId

    method, k = result.method, result.k
    if method is None or k is None:
        try:
            parsed = ClusterId.parse(result.target.id)
        except BadClusterId:
            parsed = None
        if parsed is not None and parsed.method is not None:
            method = method if method is not None else parsed.method
            k = k if k is not None else parsed.k
    return (str(method) if method is not None else "?", int(k) if k is not None else None)


def group_sort_key(key: tuple[str, int | None]) -> tuple[int, str, int]:
    method, k = key
    order = METHODS.index(method) if method in METHODS else len(METHODS)
    return (order, method, -1 if k is None else k)


def _finite(values: Any) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _mean(values: Any) -> float:
    """Mean of the finite numbers among ``values`` (NaN when there are none)."""
    xs = _finite(values)
    return sum(xs) / len(xs) if xs else math.nan


def _median(values: Any) -> float:
    xs = _finite(values)
    return statistics.median(xs) if xs else math.nan


def beats_all_baselines(readout: ReadoutResult, alpha: float = SIGNIFICANCE) -> bool:
    """The paper's criterion: the statistic exceeds every baseline run for it, each with t p < alpha.

    A result without any baseline does not count as beating them: there is nothing to show.
    """
    if not readout.baselines or not math.isfinite(readout.value):
        return False
    return all(math.isfinite(b.p) and b.p < alpha and readout.value > b.mean for b in readout.baselines.values())


def _can_pass(readout: ReadoutResult) -> bool:
    return not any("cannot pass" in note for note in readout.verdict.notes)


def table3(results: Sequence[AblationResult], *, alpha: float = SIGNIFICANCE) -> list[Table3Row]:
    """One row per (readout, method, K), readouts in first-seen order, then methods in paper order."""
    groups: dict[tuple[str, str, int | None], list[ReadoutResult]] = {}
    for result in results:
        for name, readout in result.readouts.items():
            groups.setdefault((name, *group_key(result)), []).append(readout)
    readouts = list(dict.fromkeys(key[0] for key in groups))
    rows = []
    for key in sorted(groups, key=lambda g: (readouts.index(g[0]), group_sort_key(g[1:]))):
        group = groups[key]
        baseline_means = {name: _mean(r.baselines[name].mean if name in r.baselines else None for r in group)
                          for name in BASELINES}
        passable = [r for r in group if _can_pass(r)]
        rows.append(Table3Row(
            readout=key[0], method=key[1], k=key[2], clusters=len(group),
            mean=_mean(r.value for r in group), median=_median(r.value for r in group),
            beats_all_share=sum(beats_all_baselines(r, alpha) for r in group) / len(group),
            passed_share=sum(r.verdict.passed for r in passable) / len(passable) if passable else math.nan,
            control=_mean(getattr(r.measures, "control_change_pct", None) for r in group),
            **baseline_means,
        ))
    return rows


_HEADERS = {
    "readout": "readout",
    "method": "method",
    "k": "K",
    "clusters": "clusters",
    "mean": "cluster mean",
    "median": "cluster median",
    "random": "random",
    "random_layer": "random_layer",
    "random_position": "random_position",
    "beats_all_share": "beats all (t p<0.05)",
    "passed_share": "verdict passed",
    "control": "control %",
}


def _fmt(row: Table3Row, name: str) -> str:
    """Human formatting for the markdown and rich tables (the CSV keeps full precision)."""
    value = getattr(row, name)
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if name.endswith("_share"):
            return f"{100 * value:.0f}%"
        return f"{value:.2f}" if row.readout == "embedding" and name != "control" else f"{value:+.2f}"
    return str(value)


def _atomic_write(path: Path, text: str) -> None:
    from neurosearch.format.atomic import atomic_file

    with atomic_file(path) as fh:
        fh.write(text)


def table3_markdown(rows: Sequence[Table3Row]) -> str:
    """Table 3 as a GitHub markdown table."""
    names = [f.name for f in fields(Table3Row)]
    lines = [
        "| " + " | ".join(_HEADERS[n] for n in names) + " |",
        "|" + "|".join("---" if n in ("readout", "method") else "---:" for n in names) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row, n) for n in names) + " |")
    return "\n".join(lines) + "\n"


def table3_csv(rows: Sequence[Table3Row]) -> str:
    """Table 3 as CSV with the dataclass field names as header and unrounded values."""
    names = [f.name for f in fields(Table3Row)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow(["" if getattr(row, n) is None else getattr(row, n) for n in names])
    return buf.getvalue()


def write_table3(rows: Sequence[Table3Row], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``table3.md`` and ``table3.csv`` into ``out_dir`` (created if needed), atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out / "table3.md", out / layout.EVALUATION_TABLE_NAME
    _atomic_write(md_path, table3_markdown(rows))
    _atomic_write(csv_path, table3_csv(rows))
    return md_path, csv_path


def table3_rich(rows: Sequence[Table3Row], *, title: str = "Table 3 (mlm: % loss change; embedding: displacement ratio)") -> Table:
    """Table 3 for the terminal."""
    from rich.table import Table
    from rich.text import Text

    from neurosearch.text import for_terminal

    table = Table(title=title)
    for f in fields(Table3Row):
        table.add_column(_HEADERS[f.name], justify="left" if f.name in ("readout", "method") else "right")
    for row in rows:
        table.add_row(*(Text(for_terminal(_fmt(row, f.name))) for f in fields(Table3Row)))
    return table
