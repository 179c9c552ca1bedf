"""``ablate``, ``evaluate`` and ``plot``: causal verification and the paper's figures."""

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from neurosearch.cli.common import IndexOption, JsonOption, RichReporter, fail, open_index, parse_ints, print_json

from neurosearch.errors import NeurosearchError

ReadoutOption = Annotated[str, typer.Option(
    "--readout", help="auto (mlm for a model with its own MLM head, embedding for a sentence encoder), mlm, "
                      "mlm-context or embedding; a comma list runs several (the first gives the verdict).")]
DrawsOption = Annotated[int, typer.Option("--draws", "--seeds", help="Draws of each random baseline (>= 20 for a verdict at level 0.05).")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seeds sentence sampling and, with the target, the baseline draws.")]
LevelOption = Annotated[float, typer.Option("--level", help="Significance level of the verdict (t and rank p both below it).")]


def _config(readouts: str, **kwargs: Any) -> Any:
    from neurosearch.experiments.ablation import AblationConfig

    names = tuple(r.strip() for r in readouts.split(",") if r.strip())
    return AblationConfig(readouts=names, **kwargs)  # validates every choice before slow work


def ablate(
    target: Annotated[Optional[str], typer.Argument(help="Cluster id (17, k50/17, filter+tfidf/k200/17, tree/412).")] = None,
    neurons: Annotated[Optional[str], typer.Option("--neurons", help="Ablate these neurons instead: L:I,L:I.")] = None,
    query: Annotated[Optional[str], typer.Option("--query", "-q", help="Ablate the top cluster for this query; targets: the query's member tokens.")] = None,
    tokens: Annotated[Optional[str], typer.Option("--tokens", help="Target tokens for --neurons (default: their top content tokens).")] = None,
    readouts: ReadoutOption = "auto",
    ablation: Annotated[str, typer.Option(help="mean, layer-mean or zero.")] = "mean",
    sentences: Annotated[int, typer.Option(help="Sentences containing target tokens (stratified per token).")] = 64,
    draws: DrawsOption = 20,
    seed: SeedOption = 0,
    level: LevelOption = 0.05,
    top_tokens: Annotated[int, typer.Option(help="A cluster's or neuron's target tokens: its first content tokens.")] = 10,
    corpus: Annotated[Optional[str], typer.Option(help="Evaluation corpus (default: the index's).")] = None,
    max_docs: Annotated[Optional[int], typer.Option(help="Read at most this many documents of it.")] = None,
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Is a hit causal? Its neurons ablated, read out by the model's objective, against random baselines; a verdict."""
    from neurosearch.experiments.checks import check_session
    from neurosearch.experiments.targets import TargetResolver

    given = [x is not None for x in (target, neurons, query)]
    if sum(given) != 1:
        fail("give exactly one of: a cluster id, --neurons L:I,..., --query TEXT")
    if tokens is not None and neurons is None:
        fail("--tokens goes with --neurons")
    opened = open_index(index)
    # everything that can be checked without the model (ids, neurons, tokens, corpus, a head for an
    # mlm readout), before torch is even imported
    chosen = TargetResolver.of_index(opened, top_tokens).resolve(cluster=target, neurons=neurons, query=query,
                                                                  tokens=tokens)
    check_session(opened, [r.strip() for r in readouts.split(",") if r.strip()], corpus, max_docs)
    config = _config(readouts, ablation=ablation, sentences=sentences, draws=draws, seed=seed, level=level,
                     top_tokens=top_tokens)
    from neurosearch.experiments.session import AblationSession, check_result_store
    from neurosearch.index.stored import store_ablation

    check_result_store(opened)  # a store that cannot take the result fails now, not after the work
    with RichReporter(as_json) as reporter:
        reporter.log("loading model, readouts and evaluation sentences ...")
        loading = time.time()
        session = AblationSession(opened, config, corpus=corpus, max_docs=max_docs)
        reporter.log(f"loaded in {time.time() - loading:.1f} s: {len(session.pool):,} sentences")
        progress: dict[str, Any] = {}

        def on_progress(done: int, total: int) -> None:
            if "advance" not in progress:  # the total is known once the sentences are chosen
                # short, so that the bar and its total fit at 80 columns (the report names the target in full)
                shown = "/".join(chosen.id.split("/")[-2:]) if chosen.kind == "cluster" else chosen.id
                shown = shown if len(shown) <= 24 else shown[:23] + "…"
                progress["advance"] = reporter.task(f"ablating {shown} ({', '.join(session.readout_names)})", total)
            progress["advance"](1)

        result = session.run(chosen, on_progress=on_progress)
    stored = store_ablation(opened.state, result)
    if as_json:
        print_json(result.to_json())
        return
    from rich.text import Text

    from neurosearch.cli.render import ablation_report, console
    from neurosearch.text import for_terminal

    out = console()
    out.print(ablation_report(result))
    out.print(Text(f"{result.seconds:.1f} s; stored in {for_terminal(stored, None)}", style="dim"))


def evaluate(
    index: IndexOption = None,
    methods: Annotated[str, typer.Option(help="Methods to evaluate, comma-separated, or all.")] = "all",
    k: Annotated[Optional[str], typer.Option("--k", help="K values, comma-separated (default: all in the index).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output directory (default: INDEX/evaluation, or INDEX/evaluation-sampleN with --max-clusters N; in the state folder for a read-only index, see `info`).")] = None,
    max_clusters: Annotated[Optional[int], typer.Option(help="Evaluate a seeded sample of this many clusters per method and K.")] = None,
    readouts: ReadoutOption = "auto",
    sentences: Annotated[int, typer.Option(help="Sentences per cluster (stratified per target token).")] = 64,
    draws: DrawsOption = 20,
    seed: SeedOption = 0,
    level: LevelOption = 0.05,
    ablation: Annotated[str, typer.Option(help="mean, layer-mean or zero.")] = "mean",
    corpus: Annotated[Optional[str], typer.Option(help="Evaluation corpus (default: the index's).")] = None,
) -> None:
    """The paper's Table 3 (per readout) and Figures 2-5: ablate every cluster of each method and K (resumable)."""
    from neurosearch.experiments.evaluation import run_evaluate
    from neurosearch.experiments.table3 import table3_rich

    config = _config(readouts, ablation=ablation, sentences=sentences, draws=draws, seed=seed, level=level)
    requested_ks = parse_ints(k, "--k")
    opened = open_index(index)
    chosen = opened.methods if methods == "all" else [m.strip() for m in methods.split(",")]
    unknown = [m for m in chosen if m not in opened.methods]
    if unknown:
        fail(f"method(s) {', '.join(unknown)} not in this index (has: {', '.join(opened.methods)})")
    ks = requested_ks or opened.ks
    missing = [x for x in ks if x not in opened.ks]
    if missing:
        fail(f"K={missing[0]} is not in this index (has K = {', '.join(map(str, opened.ks))})")
    with RichReporter() as reporter:
        rows, target = run_evaluate(opened, out, methods=chosen, ks=ks, config=config, max_clusters=max_clusters,
                                    corpus=corpus, reporter=reporter)
    from neurosearch.cli.render import console

    console().print(table3_rich(rows))
    typer.echo(f"wrote {target}/table3.md, table3.csv and figures")


def plot(
    name: Annotated[str, typer.Argument(help="distance-curve, losses, neurons or pca.")],
    cluster: Annotated[Optional[str], typer.Option(help="Cluster for 'neurons' (default: the tightest cluster of content words).")] = None,
    k: Annotated[Optional[int], typer.Option("--k", help="K for 'losses' and 'pca'.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="PNG path (default: figures/NAME.png in the index, or in the state folder for a read-only index).")] = None,
    readout: Annotated[Optional[str], typer.Option("--readout", help="Readout for 'losses' (default: the results' first).")] = None,
    index: IndexOption = None,
) -> None:
    """Draw one of the paper's figures for an index (PNG)."""
    from neurosearch.experiments import evaluation; from neurosearch import plots

    from neurosearch.format import layout

    opened = open_index(index)
    target = out or opened.state.write_path(layout.figure_file(name))

    def draw() -> Path:
        if name == "distance-curve":
            return plots.plot_distance_curve(evaluation.distance_curves(opened, opened.methods), target)
        if name == "losses":
            found = evaluation.load_results(*opened.state.read_paths(layout.EVALUATION_RESULTS))
            results = evaluation.current_results(opened, found)
            if not results:
                raise NeurosearchError("no evaluation results about the current clusters: run `neurosearch evaluate` first"
                                       if found else "no evaluation results yet: run `neurosearch evaluate` first")
            return plots.plot_cluster_losses(results, target, k=k, readout=readout)
        if name == "neurons":
            info = opened.cluster(cluster) if cluster else evaluation.word_clusters(opened, opened.search_method, opened.default_k, 1)[0]
            return plots.plot_cluster_neurons(info.neurons, opened.manifest.n_layers, opened.manifest.neurons_per_layer,
                                              target, title=f"cluster {info.key}: {info.label['theme']}")
        if name == "pca":
            chosen = evaluation.word_clusters(opened, opened.search_method, k or opened.default_k, 5)
            return plots.plot_token_pca(evaluation.pca_inputs(opened, chosen), target)
        raise NeurosearchError(f"unknown figure '{name}' (choose distance-curve, losses, neurons, pca)")

    typer.echo(f"wrote {draw()}")
