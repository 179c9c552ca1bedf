"""``neurosearch evaluate``: ablate every (sampled) cluster of each method and K, Table 3, Figures 2-5.

Results are appended to ``results.jsonl`` (one :class:`AblationResult` JSON per line, torn-line
safe) in the output folder: by default ``evaluation/`` of the index's result store (``Index.state``:
the per-user state folder for the read-only shipped index, never the index itself). The run
resumes: a stored result counts when it is about the cluster's current neurons, with the same
readouts, ablation, draws, seed and sentence count; anything else is recomputed. The shipped
``index/default/evaluation/results.jsonl`` was written before result format 2 (masked-LM readout,
5 draws): it loads as legacy results (see ``results.py``) and is never reused as a current one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.format.results import AblationResult
from neurosearch.format import layout
from neurosearch.ids import cluster_id
from neurosearch.experiments.table3 import Table3Row, table3, write_table3

if TYPE_CHECKING:
    from neurosearch.index.index import Index


def load_results(*paths: Path) -> list[AblationResult]:
    """Results stored in these ``results.jsonl`` files, in order (unreadable lines and records that
    are not results are skipped)."""
    from neurosearch.format.store import read_jsonl

    results = []
    for path in paths:
        records, _skipped = read_jsonl(path)
        for record in records:
            result = parse_result(record)
            if result is not None:
                results.append(result)
    return results


def parse_result(record: Any) -> AblationResult | None:
    """A stored record as a result; None when it is not one (a foreign or damaged line)."""
    target = record.get("target") if isinstance(record, dict) else None
    if not (isinstance(target, dict) and isinstance(target.get("id"), str) and isinstance(target.get("neurons"), list)):
        return None
    try:
        return AblationResult.from_json(record)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def default_out_dir(state: Any, max_clusters: int | None) -> Path:
    """Where ``evaluate`` writes (``state``: the index's :class:`~neurosearch.format.state.IndexState`):
    ``evaluation/`` for the full run, its own folder for a sample, so that a quick sample never
    replaces the full run's Table 3 and figures."""
    return state.write_path(layout.EVALUATION_DIR if max_clusters is None else f"{layout.EVALUATION_DIR}-sample{max_clusters}")


def current_results(index: Index, results: Sequence[AblationResult]) -> list[AblationResult]:
    """The results about a cluster's current neurons (a later line for the same cluster wins)."""
    from neurosearch.errors import NeurosearchError
    from neurosearch.format.results import neuron_hash

    kept: dict[str, AblationResult] = {}
    for result in results:
        try:
            neurons = index.cluster(result.target.id).neurons
        except NeurosearchError:  # a cluster id this index no longer has
            continue
        if result.target.neurons_sha256 == neuron_hash(neurons):
            kept[f"{result.target.id}#{'+'.join(result.readouts)}"] = result
    return list(kept.values())


def evaluation_targets(index: Index, methods: Sequence[str], ks: Sequence[int], max_clusters: int | None,
                       seed: int = 0) -> list[tuple[str, int, str]]:
    """(method, k, cluster key) of every cluster to evaluate; a seeded sample when capped."""
    import numpy as np

    targets = []
    for method in methods:
        for k in ks:
            ids = [c.id for c in index.clusters(method, k)]
            if max_clusters is not None and len(ids) > max_clusters:
                rng = np.random.default_rng([seed, k])
                ids = sorted(rng.choice(ids, size=max_clusters, replace=False).tolist())
            targets.extend((method, k, cluster_id(method, k, i)) for i in ids)
    return targets


def _same_experiment(result: AblationResult, readouts: Sequence[str], config: Any) -> bool:
    return (not result.legacy and list(result.readouts) == list(readouts) and result.ablation == config.ablation
            and result.draws == config.draws and result.seed == config.seed
            and result.sentences_asked == config.sentences and result.level == config.level)


def _round_robin(targets: Sequence[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """Interleave the (method, K) rows, so that an interrupted run has a share of every row."""
    rows: dict[tuple[str, int], list[tuple[str, int, str]]] = {}
    for target in targets:
        rows.setdefault((target[0], target[1]), []).append(target)
    queues = list(rows.values())
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def run_evaluate(
    index: Index,
    out_dir: Path | None,
    *,
    methods: Sequence[str],
    ks: Sequence[int],
    config: Any,
    max_clusters: int | None = None,
    corpus: str | None = None,
    max_docs: int | None = None,
    reporter: Any = None,
    figures: bool = True,
) -> tuple[list[Table3Row], Path]:
    """Ablate every (sampled) cluster of each method and K; resumable; writes table3.* and figures."""
    from neurosearch.config import check_int
    from neurosearch.errors import NeurosearchError
    from neurosearch.experiments.session import AblationSession
    from neurosearch.format.store import append_jsonl, check_writable
    from neurosearch.progress import SilentReporter

    reporter = reporter or SilentReporter()
    check_int("max_clusters", max_clusters, 1, optional=True)
    sources = index.state.read_paths(layout.EVALUATION_RESULTS)  # shipped with the index, then the user's
    out_dir = out_dir or default_out_dir(index.state, max_clusters)
    if (out_dir / layout.EVALUATION_RESULTS_NAME).exists() and (out_dir / layout.EVALUATION_RESULTS_NAME).resolve() not in [p.resolve() for p in sources]:
        sources.append(out_dir / layout.EVALUATION_RESULTS_NAME)
    check_writable(out_dir, "evaluation results")
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / layout.EVALUATION_RESULTS_NAME
    targets = evaluation_targets(index, methods, ks, max_clusters)
    wanted = {t[2] for t in targets}
    session = None
    readouts = list(config.readouts)
    if "auto" in readouts:  # resolving auto needs the model: load it now
        session = AblationSession(index, config, corpus=corpus, max_docs=max_docs)
        readouts = session.readout_names
    done = {r.target.id: r for r in current_results(index, load_results(*[p for p in sources if p.exists()]))
            if r.target.id in wanted and _same_experiment(r, readouts, config)}
    todo = _round_robin([t for t in targets if t[2] not in done])
    if todo:
        reporter.log(f"evaluate: {len(done)} cluster(s) already done, {len(todo)} to go"
                     + ("" if session else "; loading model, readouts and evaluation sentences ..."))
        session = session or AblationSession(index, config, corpus=corpus, max_docs=max_docs)
        advance = reporter.task("ablating clusters", len(targets))
        advance(len(targets) - len(todo))
        for method, k, key in todo:
            try:
                result = session.run(session.cluster_target(key))
            except NeurosearchError as exc:  # e.g. no sentence of the corpus holds its tokens
                reporter.log(f"evaluate: cluster {key} skipped: {exc}")
                advance(1)
                continue
            result.method, result.k = method, k
            append_jsonl(results_path, result.to_json())
            done[key] = result
            advance(1)
        reporter.finish("ablating clusters")
    results = [done[t[2]] for t in targets if t[2] in done]
    rows = table3(results)
    write_table3(rows, out_dir)
    if figures:
        write_figures(index, results, out_dir, methods=methods, ks=ks)
    return rows, out_dir


def write_figures(index: Index, results: Sequence[AblationResult], out_dir: Path, *, methods: Sequence[str],
                  ks: Sequence[int]) -> list[Path]:
    """Figures 2-5 of the paper for this index (PNG); Fig. 4 once per readout, method and K."""
    from neurosearch import plots
    from neurosearch.experiments.table3 import group_key

    written = [plots.plot_distance_curve(distance_curves(index, methods), out_dir / "fig2_distance_curve.png")]
    readouts = list(dict.fromkeys(name for r in results for name in r.readouts))
    for readout in readouts:
        suffix = "" if readout == "mlm" else f"_{readout}"
        for k in ks:
            for method in methods:
                if any(group_key(r) == (method, k) and readout in r.readouts for r in results):
                    written.append(plots.plot_cluster_losses(
                        results, out_dir / f"fig4_losses{suffix}_{_slug(method)}_k{k}.png", k=k, method=method,
                        readout=readout))
    chosen = word_clusters(index, index.search_method, index.default_k, 5)
    written.append(plots.plot_token_pca(pca_inputs(index, chosen), out_dir / "fig3_token_pca.png"))
    best = max(results, key=lambda r: r.primary.value if math.isfinite(r.primary.value) else -math.inf, default=None)
    info = index.cluster(best.target.id) if best else index.cluster(chosen[0].key)
    written.append(plots.plot_cluster_neurons(info.neurons, index.manifest.n_layers, index.manifest.neurons_per_layer,
                                              out_dir / "fig5_cluster_neurons.png",
                                              title=f"cluster {info.key}: {info.label['theme']}"))
    return written


def _slug(method: str) -> str:
    return method.replace("+", "-")


def distance_curves(index: Index, methods: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    curves = {}
    for method in methods:
        data = index.json(layout.distance_curve_file(method))
        curves[method] = {"k": data["ks"], "avg_max": data["avg_max_distance"], "avg_mean": data["avg_mean_distance"]}
    return curves


def is_content_word(token: str) -> bool:
    """A whole alphabetic word of at least three letters that is not a stopword (Fig. 3 and
    ``plot pca`` pick clusters of content words)."""
    from neurosearch.experiments.targets import is_content_token

    return len(token) >= 3 and token.isalpha() and is_content_token(token)


def word_clusters(index: Index, method: str, k: int, count: int, *, min_size: int = 3, tokens: int = 10,
                  min_words: int = 8) -> list[Any]:
    """The tightest clusters whose first ``tokens`` top tokens hold at least ``min_words`` content
    words: the clusters a figure can show a concept with (the tightest overall are punctuation,
    word pieces such as ##ters, and not/no). Falls back to the tightest when too few qualify."""
    found = [c for c in index.clusters(method, k) if len(c.neurons) >= min_size]
    found.sort(key=lambda c: c.avg_distance)
    kept = index.kept_tokens
    words = [c for c in found if sum(is_content_word(kept[t]) for t in c.top_tokens[:tokens]) >= min_words]
    chosen = (words + [c for c in found if c not in words])[:count]
    return [index.cluster(cluster_id(method, k, c.id)) for c in chosen]


def pca_inputs(index: Index, clusters: Sequence[Any], tokens: int = 30) -> list[tuple[str, list[str], Any]]:
    chosen = []
    for info in clusters:
        top = info.top_tokens[:tokens]
        chosen.append((f"{info.key}: {info.label['theme']}", top, index.kept_vectors(top)))
    return chosen
