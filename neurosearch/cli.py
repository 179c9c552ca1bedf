"""The ``neurosearch`` command line: thin typer commands over the library.

Every command is a few lines over a library call; errors the user can fix arrive as one line on
stderr and a non-zero exit, never a traceback. Heavy imports (torch, transformers) happen inside
the commands that need a model, so ``find``/``show``/``info`` start fast. No ``from __future__
import annotations`` here: typer would have to evaluate every annotation string at start-up.
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from .errors import NeurosearchError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Find, explain and causally verify concept-selective neurons and clusters in BERT-style models.",
    pretty_exceptions_enable=False,
)

DEFAULT_INDEX = Path(__file__).resolve().parent.parent / "index" / "default"

IndexOption = Annotated[
    Optional[Path],
    typer.Option("--index", "-i", help="Index directory (default: the shipped index/default)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def default_index() -> Path:
    """The shipped index: beside the package in a checkout, or NEUROSEARCH_INDEX."""
    import os

    return Path(os.environ.get("NEUROSEARCH_INDEX", DEFAULT_INDEX))


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"neurosearch: error: {message}", err=True)
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


class RichReporter:
    """Reporter (see progress.py) drawing rich progress bars on stderr."""

    def __init__(self, quiet: bool = False, transient: bool = False):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=transient,
            disable=quiet,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def task(self, description: str, total: float | None = None) -> Callable[[float], None]:
        task_id = self.progress.add_task(description, total=total)
        self.tasks[description] = task_id
        return lambda amount: self.progress.advance(task_id, amount)

    def finish(self, description: str) -> None:
        task_id = self.tasks.get(description)
        if task_id is not None:
            task = self.progress.tasks[task_id]
            self.progress.update(task_id, total=task.completed)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.progress.console.print(message)


def run_guarded(function: Callable[[], Any]) -> Any:
    """Turn library errors into one line on stderr and exit 1."""
    try:
        return function()
    except NeurosearchError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except MemoryError:
        fail("out of memory; try a smaller --batch-tokens or corpus")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"neurosearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Find, explain and causally verify concept-selective neurons and clusters in BERT-style models."""


@app.command()
def build(
    corpus: Annotated[str, typer.Option("--corpus", "-c", help="Corpus: .txt/.jsonl[.gz]/.csv path or hf:NAME[:CONFIG]:SPLIT.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to create or finish.")],
    model: Annotated[str, typer.Option(help="Model alias (minilm, bert-base), Hugging Face id or local path.")] = "minilm",
    site: Annotated[str, typer.Option(help="Neuron site: ffn (feed-forward activations) or hidden (layer outputs).")] = "ffn",
    text_field: Annotated[str, typer.Option(help="Field holding the text in jsonl/csv/hf records.")] = "text",
    max_docs: Annotated[Optional[int], typer.Option(help="Read at most this many documents.")] = None,
    until: Annotated[str, typer.Option(help="Stop after this stage: stats, profiles, clusters, search.")] = "search",
    methods: Annotated[str, typer.Option(help="Profile methods to build, comma-separated (filter, filter+tfidf, filter+smooth, filter+smooth+tfidf) or 'all'.")] = "all",
    search_method: Annotated[str, typer.Option("--method", help="The method that backs `find`.")] = "filter",
    k: Annotated[str, typer.Option("--k", help="Numbers of clusters, comma-separated.")] = "50,200",
    min_count: Annotated[str, typer.Option(help="Keep tokens seen at least this often ('auto' scales with corpus size).")] = "auto",
    embeddings: Annotated[str, typer.Option(help="Token neighbours for smoothing: model, fasttext, or a .vec/.bin path.")] = "model",
    no_refine: Annotated[bool, typer.Option("--no-refine", help="Skip cluster refinement.")] = False,
    wordnet: Annotated[bool, typer.Option("--wordnet/--no-wordnet", help="Bake WordNet's concept members into the index when WordNet data is installed (see README).")] = True,
    dtype: Annotated[str, typer.Option(help="auto, float32 or bfloat16 (auto uses bf16 only where it is fast).")] = "auto",
    batch_tokens: Annotated[int, typer.Option(help="Token budget of one forward batch.")] = 8192,
    shard_docs: Annotated[int, typer.Option(help="Documents per checkpointed shard.")] = 4000,
    force: Annotated[bool, typer.Option("--force", help="Rebuild every stage from scratch.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Build an index: statistics, profiles, clusters and search vectors, resumably."""
    from .build import build_index
    from .config import (
        METHODS,
        BuildConfig,
        ClusterConfig,
        CorpusConfig,
        ModelConfig,
        ProfileConfig,
        StatsConfig,
    )

    def parse_methods() -> tuple[str, ...]:
        chosen = METHODS if methods == "all" else tuple(m.strip() for m in methods.split(",") if m.strip())
        unknown = [m for m in chosen if m not in METHODS]
        if unknown or not chosen:
            fail(f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}")
        if search_method not in chosen:
            fail(f"--method {search_method} must be one of the built methods ({', '.join(chosen)})")
        return chosen

    try:
        ks = tuple(int(value) for value in k.split(","))
        if any(value < 1 for value in ks):
            raise ValueError
    except ValueError:
        fail(f"--k must be positive integers separated by commas, got '{k}'")
    if min_count != "auto" and not min_count.isdigit():
        fail(f"--min-count must be 'auto' or a positive integer, got '{min_count}'")
    source = embeddings if embeddings in ("model", "fasttext") else "file"
    config = BuildConfig(
        model=ModelConfig(model=model, site=site, dtype=dtype),
        corpus=CorpusConfig(source=corpus, text_field=text_field, max_docs=max_docs),
        stats=StatsConfig(batch_tokens=batch_tokens, shard_docs=shard_docs),
        profiles=ProfileConfig(
            min_count=min_count if min_count == "auto" else int(min_count),
            methods=parse_methods(),
            search_method=search_method,
            embeddings=source,
            embeddings_path=embeddings if source == "file" else None,
        ),
        clusters=ClusterConfig(ks=ks, refine=not no_refine),
        concepts=wordnet,
    )
    with RichReporter(quiet) as reporter:
        manifest = run_guarded(lambda: build_index(config, out, until=until, force=force, reporter=reporter))
    stats = manifest.stages.get("stats", {})
    typer.echo(
        f"index {out}: {manifest.site} site, {manifest.n_neurons} neurons; corpus {stats.get('documents')} documents, "
        f"{stats.get('windows')} windows, {stats.get('tokens')} tokens"
    )


def _open_index(index: Optional[Path]) -> Any:
    from .index import Index

    return run_guarded(lambda: Index.load(index or default_index()))


@app.command()
def find(
    query: Annotated[Optional[str], typer.Argument(help="A concept, e.g. 'weekdays' or 'colours of the rainbow'.")] = None,
    tokens: Annotated[Optional[str], typer.Option("--tokens", "-t", help="Search for these tokens instead: a,b,c.")] = None,
    top: Annotated[int, typer.Option("--top", "-n", help="Results per kind.")] = 10,
    kind: Annotated[str, typer.Option(help="clusters, neurons or both.")] = "both",
    k: Annotated[Optional[int], typer.Option("--k", help="Cluster granularity (default: the largest K).")] = None,
    exact: Annotated[Optional[bool], typer.Option("--exact/--ann", help="Score every row exactly, or rerank HNSW candidates (default: exact below 50,000 rows, where it is faster than loading the HNSW graph).", show_default=False)] = None,
    method: Annotated[Optional[str], typer.Option(help="Profile method to search (default: the index's).")] = None,
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find the neurons and clusters that specialise in a concept."""
    if query is None and tokens is None:
        fail("give a query (e.g. neurosearch find weekdays) or --tokens a,b,c")
    opened = _open_index(index)
    token_list = tokens.split(",") if tokens is not None else None
    result = run_guarded(lambda: opened.find(query, tokens=token_list, top=top, kind=kind, k=k, exact=exact, method=method))
    if as_json:
        print_json(result.to_json())
        return
    from .report import console, find_table

    out = console()
    out.print(find_table(result, out.width))


@app.command()
def show(
    what: Annotated[str, typer.Argument(help="cluster or neuron.")],
    ident: Annotated[str, typer.Argument(metavar="ID", help="Cluster id (17, k50/17, filter+tfidf/k200/17) or neuron L:I.")],
    contexts: Annotated[int, typer.Option(help="Top activating contexts to show (needs the corpus file).")] = 5,
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Report on one cluster or neuron: theme, tokens, layers, contexts, ablation results."""
    from .contexts import context_records

    opened = _open_index(index)
    if what not in ("cluster", "neuron"):
        fail(f"show takes 'cluster' or 'neuron', got '{what}'")
    if what == "cluster":
        info = run_guarded(lambda: opened.cluster(ident))
        refs = run_guarded(lambda: opened.cluster_refs(info, contexts))
        ablation = opened.ablation_for("cluster", info.key)
        records = context_records(opened, refs, contexts)
        if as_json:
            from dataclasses import asdict

            print_json({**asdict(info), "key": info.key, "contexts": records, "ablation": ablation})
            return
        from .plots import neuron_layer_text
        from .report import cluster_report, console

        layer_text = neuron_layer_text(info.neurons, opened.manifest.n_layers)
        console().print(cluster_report(info, layer_text, _render(records), ablation))
    else:
        data = run_guarded(lambda: opened.neuron(ident))
        ablation = opened.ablation_for("neuron", data["id"])
        records = context_records(opened, data["top_activations"], contexts)
        if as_json:
            print_json({**data, "contexts": records, "ablation": ablation})
            return
        from .report import console, neuron_report

        console().print(neuron_report(data, _render(records), ablation))


def _render(records: list[dict]) -> list[Any]:
    from .report import highlight_context

    return [highlight_context(r["left"], r["token"], r["right"]) for r in records if r.get("token") is not None]


@app.command()
def info(index: IndexOption = None, as_json: JsonOption = False) -> None:
    """What an index holds: model, site, corpus, tokens, methods, K, stage timings."""
    opened = _open_index(index)
    data = run_guarded(opened.info)
    if as_json:
        print_json(data)
        return
    from .report import console, info_table

    console().print(info_table(data))


@app.command()
def ablate(
    target: Annotated[Optional[str], typer.Argument(help="Cluster id (17, k50/17, filter+tfidf/k200/17).")] = None,
    neurons: Annotated[Optional[str], typer.Option("--neurons", help="Ablate these neurons instead: L:I,L:I.")] = None,
    query: Annotated[Optional[str], typer.Option("--query", "-q", help="Ablate the top cluster for this query.")] = None,
    tokens: Annotated[Optional[str], typer.Option("--tokens", help="Target tokens for --neurons (default: their top tokens).")] = None,
    ablation: Annotated[str, typer.Option(help="mean, layer-mean or zero.")] = "mean",
    sentences: Annotated[int, typer.Option(help="Evaluation sentences containing target tokens.")] = 96,
    seeds: Annotated[int, typer.Option(help="Draws of each random baseline.")] = 5,
    top_tokens: Annotated[int, typer.Option(help="A cluster's target tokens: its top-k tokens.")] = 30,
    corpus: Annotated[Optional[str], typer.Option(help="Evaluation corpus (default: the index's).")] = None,
    max_docs: Annotated[Optional[int], typer.Option(help="Read at most this many documents of it.")] = None,
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Is a hit causal? Masked-LM loss on its tokens with its neurons ablated, against random baselines."""
    from .ablation import AblationConfig, AblationSession, store_result

    given = [x is not None for x in (target, neurons, query)]
    if sum(given) != 1:
        fail("give exactly one of: a cluster id, --neurons L:I,..., --query TEXT")
    opened = _open_index(index)
    config = AblationConfig(ablation=ablation, sentences=sentences, seeds=seeds, top_tokens=top_tokens)
    if sentences < 1 or seeds < 2:
        fail("--sentences must be >= 1 and --seeds >= 2")

    def work() -> dict:
        import time

        with RichReporter(as_json) as reporter:
            reporter.log("loading model, head and evaluation sentences ...")
            session = AblationSession(opened, config, corpus=corpus, max_docs=max_docs)
            if target is not None:
                chosen = session.cluster_target(target)
            elif query is not None:
                chosen = session.query_target(query)
            else:
                chosen = session.neurons_target(neurons.split(","), tokens.split(",") if tokens else None)
            advance = reporter.task(f"ablating {chosen.kind} {chosen.id}", None)
            started = time.time()
            result = session.run(chosen, on_progress=lambda done, total: advance(1))
            result["seconds"] = round(time.time() - started, 2)
        store_result(opened.path, result)
        return result

    result = run_guarded(work)
    if as_json:
        print_json(result)
        return
    from .report import ablation_table, console

    out = console()
    out.print(f"target {result['target']['kind']} {result['target']['id']} ({len(result['target']['neurons'])} neurons); "
              f"tokens: {' '.join(result['tokens'][:15])}")
    out.print(ablation_table(result))
    out.print(f"{result['seconds']:.1f} s")


@app.command()
def label(
    index: IndexOption = None,
    llm_model: Annotated[str, typer.Option(help="Chat model name.")] = "gpt-4o-mini",
    base_url: Annotated[Optional[str], typer.Option(help="Any OpenAI-compatible server (llama.cpp, vLLM, ...).")] = None,
    neurons: Annotated[int, typer.Option(help="Also label the N most selective neurons.")] = 0,
    k: Annotated[Optional[str], typer.Option("--k", help="Label clusters at these K (default: all).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-label even what is cached.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 30.0,
    contexts: Annotated[int, typer.Option(help="Activating contexts per prompt (needs the corpus file).")] = 3,
) -> None:
    """Ask an LLM for a short theme of every cluster (key from OPENAI_API_KEY only)."""
    from .labels import LabelConfig, label_items
    from .labeling import label_requests

    opened = _open_index(index)
    ks = [int(x) for x in k.split(",")] if k else None
    config = LabelConfig(llm_model=llm_model, base_url=base_url, timeout=timeout, contexts=contexts)
    requests = run_guarded(lambda: label_requests(opened, ks=ks, neurons=neurons, contexts=contexts))
    with RichReporter(transient=True) as reporter:
        advance = reporter.task("labelling", len(requests))
        run = run_guarded(lambda: label_items(requests, opened.path / "labels.json", config, force=force,
                                              on_progress=lambda *a: advance(1)))
    if run.aborted:
        fail(run.aborted)
    for message in run.messages:
        typer.echo(message, err=True)
    typer.echo(f"labels: {run.labelled} new, {run.cached} cached, {run.failed} failed, {run.skipped} skipped")
    if not run.ok:
        raise typer.Exit(1)


@app.command()
def evaluate(
    index: IndexOption = None,
    methods: Annotated[str, typer.Option(help="Methods to evaluate, comma-separated, or all.")] = "all",
    k: Annotated[Optional[str], typer.Option("--k", help="K values, comma-separated (default: all in the index).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output directory (default: INDEX/evaluation).")] = None,
    max_clusters: Annotated[Optional[int], typer.Option(help="Evaluate a seeded sample of this many clusters per method and K.")] = None,
    sentences: Annotated[int, typer.Option(help="Evaluation sentences per cluster.")] = 96,
    seeds: Annotated[int, typer.Option(help="Draws of each random baseline.")] = 5,
    ablation: Annotated[str, typer.Option(help="mean, layer-mean or zero.")] = "mean",
    corpus: Annotated[Optional[str], typer.Option(help="Evaluation corpus (default: the index's).")] = None,
) -> None:
    """The paper's Table 3 and Figures 2-5: ablate every cluster of each method and K (resumable)."""
    from .ablation import AblationConfig
    from .evaluation import run_evaluate, table3_rich

    opened = _open_index(index)
    chosen = opened.methods if methods == "all" else [m.strip() for m in methods.split(",")]
    unknown = [m for m in chosen if m not in opened.methods]
    if unknown:
        fail(f"method(s) {', '.join(unknown)} not in this index (has: {', '.join(opened.methods)})")
    ks = [int(x) for x in k.split(",")] if k else opened.ks
    missing = [x for x in ks if x not in opened.ks]
    if missing:
        fail(f"K={missing[0]} is not in this index (has K = {', '.join(map(str, opened.ks))})")
    config = AblationConfig(ablation=ablation, sentences=sentences, seeds=seeds)
    target = out or opened.path / "evaluation"
    with RichReporter() as reporter:
        rows = run_guarded(lambda: run_evaluate(opened, target, methods=chosen, ks=ks, config=config,
                                                max_clusters=max_clusters, corpus=corpus, reporter=reporter))
    from .report import console

    console().print(table3_rich(rows))
    typer.echo(f"wrote {target}/table3.md, table3.csv and figures")


@app.command()
def plot(
    name: Annotated[str, typer.Argument(help="distance-curve, losses, neurons or pca.")],
    cluster: Annotated[Optional[str], typer.Option(help="Cluster for 'neurons' (default: the tightest).")] = None,
    k: Annotated[Optional[int], typer.Option("--k", help="K for 'losses' and 'pca'.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="PNG path.")] = None,
    index: IndexOption = None,
) -> None:
    """Draw one of the paper's figures for an index (PNG)."""
    from . import evaluation, plots

    opened = _open_index(index)
    target = out or Path(f"{name}.png")

    def draw() -> Path:
        if name == "distance-curve":
            return plots.plot_distance_curve(evaluation.distance_curves(opened, opened.methods), target)
        if name == "losses":
            results = evaluation.load_results(opened.path / "evaluation" / "results.jsonl")
            if not results:
                raise NeurosearchError("no evaluation results yet: run `neurosearch evaluate` first")
            return plots.plot_cluster_losses(results, target, k=k)
        if name == "neurons":
            info = opened.cluster(cluster) if cluster else evaluation.tightest_clusters(opened, opened.search_method, opened.default_k, 1)[0]
            return plots.plot_cluster_neurons(info.neurons, opened.manifest.n_layers, opened.manifest.neurons_per_layer,
                                              target, title=f"cluster {info.key}: {info.label['theme']}")
        if name == "pca":
            chosen = evaluation.tightest_clusters(opened, opened.search_method, k or opened.default_k, 5)
            return plots.plot_token_pca(evaluation.pca_inputs(opened, chosen), target)
        raise NeurosearchError(f"unknown figure '{name}' (choose distance-curve, losses, neurons, pca)")

    typer.echo(f"wrote {run_guarded(draw)}")


@app.command("fit-head")
def fit_head_command(
    index: IndexOption = None,
    corpus: Annotated[Optional[str], typer.Option(help="Training corpus (default: the index's).")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the training split.")] = 2.0,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 3e-3,
    max_docs: Annotated[Optional[int], typer.Option(help="Read at most this many documents.")] = None,
) -> None:
    """Fit a masked-LM head (and [MASK] vector) on the frozen encoder; stored in the index."""
    from .head import fit_head_for_index

    opened = _open_index(index)
    with RichReporter() as reporter:
        meta = run_guarded(lambda: fit_head_for_index(opened, corpus=corpus, epochs=epochs, lr=lr, max_docs=max_docs, reporter=reporter))
    typer.echo(f"head stored in {opened.path / 'head'}: held-out masked loss {meta['heldout_loss']:.3f} "
               f"(unigram baseline {meta['unigram_loss']:.3f})")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
