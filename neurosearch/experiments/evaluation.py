"""Aggregating ablation results into the paper's Table 3.

An ablation result is one dict per cluster (the contract ``neurosearch evaluate`` writes and other
tools read)::

    {"target": {"kind": "cluster", "id": "filter/k200/17", "neurons": ["0:12", ...]},
     "method": "filter", "k": 200, "ablation": "mean", "head": "fitted",
     "sentences": 96, "masked_tokens": 410, "loss": 3.1, "loss_ablated": 3.4,
     "change_pct": 9.6, "control_change_pct": 1.2,
     "baselines": {"random": {"mean_pct": 1.0, "std_pct": 0.5, "z": 17.2, "p": 0.0,
                              "seeds": 5, "losses": [...]},
                   "random_layer": {...}, "random_position": {...}}}

The aggregation here is pure (no model, no files read) so it can be rerun on cached results.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.config import BASELINES
from neurosearch.format import layout
from neurosearch.ids import cluster_id

if TYPE_CHECKING:  # rich is only needed when a table is rendered
    from rich.table import Table

from neurosearch.experiments.grouping import SIGNIFICANCE, beats_all_baselines, group_key, group_sort_key  # noqa: F401,E402
from neurosearch.format.atomic import atomic_file  # noqa: F401,E402
"""A cluster "beats" a baseline when its change is larger and the baseline's p is below this."""


@dataclass(frozen=True)
class Table3Row:
    """One (method, K) line of Table 3; percentages are mean loss changes over clusters."""

    method: str
    k: int | None
    clusters: int
    change_pct: float
    """Mean % loss change when the cluster is ablated."""
    random_pct: float
    """Mean over clusters of the ``random`` baseline's mean % change (NaN if never run)."""
    random_layer_pct: float
    random_position_pct: float
    beats_all_share: float
    """Share of clusters (0..1) whose change beats every baseline present with p < 0.05."""
    control_change_pct: float
    """Mean % change on control tokens (should stay near the random baselines)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_BASELINE_FIELD = {name: f"{name}_pct" for name in BASELINES}


def _mean(values: Iterable[Any]) -> float:
    """Mean of the finite numbers among ``values`` (NaN when there are none)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(xs) / len(xs) if xs else math.nan


def table3(results: Sequence[dict[str, Any]], *, alpha: float = SIGNIFICANCE) -> list[Table3Row]:
    """Aggregate per-cluster ablation results into one row per (method, K), in method order."""
    groups: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(group_key(result), []).append(result)
    rows = []
    for key in sorted(groups, key=group_sort_key):
        group = groups[key]
        baseline_means = {
            _BASELINE_FIELD[name]: _mean(
                (r.get("baselines") or {}).get(name, {}).get("mean_pct") for r in group
            )
            for name in BASELINES
        }
        rows.append(
            Table3Row(
                method=key[0],
                k=key[1],
                clusters=len(group),
                change_pct=_mean(r.get("change_pct") for r in group),
                beats_all_share=sum(beats_all_baselines(r, alpha) for r in group) / len(group),
                control_change_pct=_mean(r.get("control_change_pct") for r in group),
                **baseline_means,
            )
        )
    return rows


_HEADERS = {
    "method": "method",
    "k": "K",
    "clusters": "clusters",
    "change_pct": "cluster %",
    "random_pct": "random %",
    "random_layer_pct": "random layer %",
    "random_position_pct": "random position %",
    "beats_all_share": "beats all (p<0.05)",
    "control_change_pct": "control %",
}


def _fmt(name: str, value: Any) -> str:
    """Human formatting for the markdown and rich tables (the CSV keeps full precision)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if name == "beats_all_share":
            return f"{100 * value:.0f}%"
        return f"{value:+.2f}"
    return str(value)


def _atomic_write(path: Path, text: str) -> None:
    with atomic_file(path) as fh:
        fh.write(text)


def table3_markdown(rows: Sequence[Table3Row]) -> str:
    """Table 3 as a GitHub markdown table."""
    names = [f.name for f in fields(Table3Row)]
    lines = [
        "| " + " | ".join(_HEADERS[n] for n in names) + " |",
        "|" + "|".join("---" if n == "method" else "---:" for n in names) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(n, getattr(row, n)) for n in names) + " |")
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
    md_path, csv_path = out / "table3.md", out / "table3.csv"
    _atomic_write(md_path, table3_markdown(rows))
    _atomic_write(csv_path, table3_csv(rows))
    return md_path, csv_path


def table3_rich(rows: Sequence[Table3Row], *, title: str = "Table 3: % MLM loss change") -> Table:
    """Table 3 for the terminal."""
    from rich.table import Table
    from rich.text import Text

    from neurosearch.text import for_terminal

    table = Table(title=title)
    for f in fields(Table3Row):
        table.add_column(_HEADERS[f.name], justify="left" if f.name == "method" else "right")
    for row in rows:
        table.add_row(*(Text(for_terminal(_fmt(f.name, getattr(row, f.name)))) for f in fields(Table3Row)))
    return table


# --------------------------------------------------------------------------------------------
# Running the experiment (neurosearch evaluate)


RESULTS_FILE = "results.jsonl"


def default_out_dir(state: Any, max_clusters: int | None) -> Path:
    """Where ``evaluate`` writes (``state``: the index's :class:`~neurosearch.format.state.IndexState`):
    ``evaluation/`` for the full run, its own folder for a sample, so that a quick sample never
    replaces the full run's Table 3 and figures."""
    from neurosearch.index.stored import EVALUATION

    return state.write_path(EVALUATION if max_clusters is None else f"{EVALUATION}-sample{max_clusters}")


def _is_result(record: Any) -> bool:
    target = record.get("target") if isinstance(record, dict) else None
    return (isinstance(target, dict) and isinstance(target.get("id"), str) and isinstance(target.get("neurons"), list)
            and isinstance(record.get("baselines", {}), dict))


def evaluation_targets(index: Any, methods: Sequence[str], ks: Sequence[int], max_clusters: int | None,
                       seed: int = 0) -> list[tuple[str, int, str]]:
    """(method, k, cluster key) of every cluster to evaluate; a seeded sample when capped."""
    import numpy as np

    targets = []
    for method in methods:
        for k in ks:
            ids = [c["id"] for c in index.clusters(method, k)]
            if max_clusters is not None and len(ids) > max_clusters:
                rng = np.random.default_rng([seed, k])
                ids = sorted(rng.choice(ids, size=max_clusters, replace=False).tolist())
            targets.extend((method, k, cluster_id(method, k, i)) for i in ids)
    return targets


def _still_valid(index: Any, result: dict[str, Any], config: Any) -> bool:
    """A stored result counts only for the same cluster (its neurons) and the same experiment."""
    from neurosearch.errors import NeurosearchError

    stored = result["target"].get("neurons")
    try:
        neurons = set(index.cluster(str(result["target"].get("id"))).neurons)
    except NeurosearchError:  # a cluster id this index no longer has
        return False
    seeds = {b.get("seeds") for b in result.get("baselines", {}).values()}
    return (isinstance(stored, list) and set(stored) == neurons and result.get("ablation") == config.ablation
            and seeds <= {config.seeds})


def _round_robin(targets: Sequence[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """Interleave the (method, K) rows, so that an interrupted run has a share of every row."""
    rows: dict[tuple[str, int], list[tuple[str, int, str]]] = {}
    for target in targets:
        rows.setdefault((target[0], target[1]), []).append(target)
    queues = list(rows.values())
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def run_evaluate(
    index: Any,
    out_dir: Path,
    *,
    methods: Sequence[str],
    ks: Sequence[int],
    config: Any,
    max_clusters: int | None = None,
    corpus: str | None = None,
    max_docs: int | None = None,
    reporter: Any = None,
) -> list[Table3Row]:
    """Ablate every (sampled) cluster of each method and K; resumable; writes table3.* and figures.

    Results already stored about the index (shipped with it, in the user's state folder, or in
    ``out_dir``) are reused when they are about the same neurons and experiment; new ones are
    appended to ``out_dir/results.jsonl``.
    """
    from neurosearch.config import check_int
    from neurosearch.experiments.ablation import AblationSession
    from neurosearch.format.store import append_jsonl, check_writable
    from neurosearch.index.stored import evaluation_results
    from neurosearch.progress import SilentReporter

    reporter = reporter or SilentReporter()
    check_int("max_clusters", max_clusters, 1, optional=True)
    check_writable(out_dir, "evaluation results")
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILE
    targets = evaluation_targets(index, methods, ks, max_clusters)
    wanted_targets = {t[2] for t in targets}
    done = {}
    for result in evaluation_results(index.state, also=results_path):  # later lines (recomputed results) win
        if not _is_result(result):
            continue
        key = result["target"]["id"]
        if key in wanted_targets and _still_valid(index, result, config):
            done[key] = result
    todo = _round_robin([t for t in targets if t[2] not in done])
    if todo:
        reporter.log(f"evaluate: {len(done)} cluster(s) already done, {len(todo)} to go")
        session = AblationSession(index, config, corpus=corpus, max_docs=max_docs)
        advance = reporter.task("ablating clusters", len(targets))
        advance(len(targets) - len(todo))
        for method, k, key in todo:
            result = session.run(session.cluster_target(key))
            result.update(method=method, k=k)
            append_jsonl(results_path, result)
            done[key] = result
            advance(1)
        reporter.finish("ablating clusters")
    wanted = {t[2] for t in targets}
    results = [r for key, r in done.items() if key in wanted]
    rows = table3(results)
    write_table3(rows, out_dir)
    write_figures(index, results, out_dir, methods=methods, ks=ks)
    return rows


def write_figures(index: Any, results: Sequence[dict[str, Any]], out_dir: Path, *, methods: Sequence[str],
                  ks: Sequence[int]) -> list[Path]:
    """Figures 2-5 of the paper for this index (PNG)."""
    from neurosearch import plots

    written = [plots.plot_distance_curve(distance_curves(index, methods), out_dir / "fig2_distance_curve.png")]
    for k in ks:
        for method in methods:
            if any(r.get("method") == method and r.get("k") == k for r in results):
                written.append(plots.plot_cluster_losses(results, out_dir / f"fig4_losses_{_slug(method)}_k{k}.png",
                                                         k=k, method=method))
    chosen = tightest_clusters(index, index.search_method, index.default_k, 5)
    written.append(plots.plot_token_pca(pca_inputs(index, chosen), out_dir / "fig3_token_pca.png"))
    best = max(results, key=lambda r: r.get("change_pct", 0.0), default=None)
    info = index.cluster(best["target"]["id"]) if best else index.cluster(chosen[0].key)
    written.append(plots.plot_cluster_neurons(info.neurons, index.manifest.n_layers, index.manifest.neurons_per_layer,
                                              out_dir / "fig5_cluster_neurons.png",
                                              title=f"cluster {info.key}: {info.label['theme']}"))
    return written


def _slug(method: str) -> str:
    return method.replace("+", "-")


def distance_curves(index: Any, methods: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    curves = {}
    for method in methods:
        data = index.json(layout.distance_curve_file(method))
        curves[method] = {"k": data["ks"], "avg_max": data["avg_max_distance"], "avg_mean": data["avg_mean_distance"]}
    return curves


def tightest_clusters(index: Any, method: str, k: int, count: int, min_size: int = 3) -> list[Any]:
    """The ``count`` clusters with the smallest average pairwise distance (at least ``min_size`` neurons)."""
    found = [c for c in index.clusters(method, k) if len(c["neurons"]) >= min_size]
    found.sort(key=lambda c: c["avg_distance"])
    return [index.cluster(cluster_id(method, k, c["id"])) for c in found[:count]]


def pca_inputs(index: Any, clusters: Sequence[Any], tokens: int = 30) -> list[tuple[str, list[str], Any]]:
    chosen = []
    for info in clusters:
        top = info.top_tokens[:tokens]
        chosen.append((f"{info.key}: {info.label['theme']}", top, index.kept_vectors(top)))
    return chosen
