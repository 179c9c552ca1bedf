"""``build`` and ``fit-head``: writing an index."""

import importlib.util
import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from neurosearch.cli.common import IndexOption, RichReporter, fail, open_index, parse_ints
from neurosearch.config import ClusterConfig, CorpusConfig, ExpansionConfig, ProfileConfig, SAEConfig, StatsConfig, UnitsConfig
from neurosearch.format import layout


def build(
    corpus: Annotated[str, typer.Option("--corpus", "-c", help="Corpus: .txt/.jsonl[.gz]/.csv path or hf:NAME[:CONFIG]:SPLIT.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to create or finish.")],
    model: Annotated[str, typer.Option(help="Model alias (minilm, bert-base), Hugging Face id or local path.")] = "minilm",
    site: Annotated[Optional[str], typer.Option(help="Neuron site: ffn (feed-forward activations, default) or hidden (layer outputs, the paper's).", show_default=False)] = None,
    sae: Annotated[Optional[Path], typer.Option("--sae", help="Index the features of this sparse autoencoder (a folder in the SAELens layout: cfg.json, sae_weights.safetensors) instead of the site's neurons; it is read at its own layer of --site (docs/sae.md).", show_default=False)] = None,
    units: Annotated[str, typer.Option("--units", help="The index's units: neurons (the site's), or sae: the features of a TopK sparse autoencoder this build trains on one layer of the site over the corpus (--sae-layer; an hour a layer for MiniLM's C4 sample on 2 CPU cores; resumable). --sae names one trained elsewhere instead.")] = UnitsConfig.kind,
    sae_layer: Annotated[Optional[int], typer.Option("--sae-layer", help="Layer of the site the SAE is trained on (--units sae; default: n_layers // 3, layer 2 of MiniLM).", show_default=False)] = None,
    sae_k: Annotated[int, typer.Option("--sae-k", help="Features active per token of the trained SAE (--units sae).")] = SAEConfig.k,
    sae_expansion: Annotated[int, typer.Option("--sae-expansion", help="Features per dimension of the layer (--units sae: 8 gives 12,288 for MiniLM's FFN).")] = SAEConfig.expansion,
    sae_epochs: Annotated[int, typer.Option("--sae-epochs", help="Passes over the training activations (--units sae).")] = SAEConfig.epochs,
    text_field: Annotated[str, typer.Option(help="Field holding the text in jsonl/csv/hf records.")] = "text",
    max_docs: Annotated[Optional[int], typer.Option(help="Read at most this many documents.")] = None,
    heldout_share: Annotated[float, typer.Option(help="Share of documents left out of the index (by a hash of their text), for `neurosearch score` to test explanations on.")] = CorpusConfig.heldout_share,
    until: Annotated[str, typer.Option(help="Stop after this stage: stats, profiles, clusters, search, contexts (the last: what `show` prints on a unit's top tokens).")] = "contexts",
    methods: Annotated[str, typer.Option(help="Profile methods to build, comma-separated (filter, filter+tfidf, filter+smooth, filter+smooth+tfidf) or 'all'.")] = "all",
    search_method: Annotated[Optional[str], typer.Option("--method", help=f"The method that backs `find` (default: {ProfileConfig.search_method} when it is built, else the last built of --methods in the order listed there).", show_default=False)] = None,
    k: Annotated[str, typer.Option("--k", help="Numbers of clusters, comma-separated.")] = "50,200",
    min_count: Annotated[str, typer.Option(help="Keep tokens seen at least this often ('auto' scales with corpus size).")] = "auto",
    embeddings: Annotated[Optional[str], typer.Option(help="Token neighbours for smoothing: model (default), fasttext (the paper's), or a .vec/.bin path.", show_default=False)] = None,
    refine: Annotated[Optional[bool], typer.Option("--refine/--no-refine", help="Refine clusters (the paper's step; default: no, as shipped).", show_default=False)] = None,
    paper: Annotated[bool, typer.Option("--paper", help="The paper's settings where the defaults differ: --site hidden --embeddings fasttext --refine (explicit flags still win).")] = False,
    mode: Annotated[str, typer.Option("--cluster-mode", help="exact (complete linkage over all pairs, the paper's) or scalable (kNN graph + communities + exact linkage inside; past 40k neurons).")] = ClusterConfig.mode,
    wordnet: Annotated[bool, typer.Option("--wordnet/--no-wordnet", help="Bake WordNet's concept members into the index when WordNet data is installed (see README).")] = True,
    lm: Annotated[str, typer.Option("--lm", help="Language model that scores concept membership for the search stage: none, local (Gemma 3 270M from the lm extra), auto (local when installed), a model directory or .gguf, or http://HOST:PORT/v1#MODEL.")] = ExpansionConfig.language_model,
    dtype: Annotated[str, typer.Option(help="auto, float32 or bfloat16 (auto uses bf16 only where it is fast).")] = "auto",
    batch_tokens: Annotated[int, typer.Option(help="Token budget of one forward batch.")] = StatsConfig.batch_tokens,
    shard_docs: Annotated[int, typer.Option(help="Documents per checkpointed shard.")] = StatsConfig.shard_docs,
    compress_stats: Annotated[bool, typer.Option("--compress-stats", help="Store checkpoints and stats/ zstd-compressed (lossless, ~3x smaller; needs zstandard).")] = False,
    checkpoint_share: Annotated[float, typer.Option(help="Largest share of the statistics time spent writing checkpoints.")] = StatsConfig.checkpoint_share,
    memory: Annotated[Optional[float], typer.Option("--memory", help="Memory budget of the statistics pass in GB (default: 80% of the memory available); past it, tables hold only the corpus's tokens, then one pass per group of layers. Same statistics under any budget.", show_default=False)] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Run the statistics shards on the running Ray cluster (pip install 'neurosearch\\[ray]').")] = False,
    ray_address: Annotated[Optional[str], typer.Option(help="Run the statistics shards on the Ray cluster at this address (implies --ray); 'local' starts one here.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild every stage from scratch.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Build an index: statistics, profiles, clusters and search vectors, resumably."""
    from neurosearch.pipeline import build_index
    from neurosearch.config import METHODS, BuildConfig, CorpusConfig, ModelConfig, build_recipe, default_search_method

    ks = tuple(parse_ints(k, "--k"))
    if ray_address is not None and (not ray_address.strip() or ray_address.startswith("-")):
        fail(f"--ray-address takes a Ray address (host:port, ray://host:port, auto or local), got '{ray_address}'")
    if (ray or ray_address is not None) and importlib.util.find_spec("ray") is None:
        fail("--ray needs Ray: pip install 'neurosearch[ray]'")
    if units not in ("neurons", "sae"):
        fail(f"--units must be neurons or sae, got '{units}'")
    if sae is not None and units == "neurons" and sae_layer is None:
        units = "sae"  # --sae DIR: the units are that SAE's features
    if sae is not None and sae_layer is not None:
        fail("--sae-layer trains an SAE; --sae names a trained one: give one of them")
    built_methods = METHODS if methods == "all" else tuple(m.strip() for m in methods.split(",") if m.strip())
    recipe = build_recipe(paper, site=site, embeddings=embeddings, refine=refine)
    site, embeddings, refine = recipe["site"], recipe["embeddings"], recipe["refine"]
    source = embeddings if embeddings in ("model", "fasttext") else "file"
    config = BuildConfig(
        model=ModelConfig(model=model, site=site, dtype=dtype, sae=str(sae) if sae is not None else None),
        corpus=CorpusConfig(source=corpus, text_field=text_field, max_docs=max_docs, heldout_share=heldout_share),
        stats=StatsConfig(batch_tokens=batch_tokens, shard_docs=shard_docs, checkpoint_share=checkpoint_share,
                          compress="zstd" if compress_stats else "none", memory_gb=memory),
        profiles=ProfileConfig(
            min_count=int(min_count) if re.fullmatch(r"-?\d+", min_count.strip()) else min_count,
            methods=built_methods,
            search_method=search_method or default_search_method(built_methods),
            embeddings=source,
            embeddings_path=embeddings if source == "file" else None,
        ),
        clusters=ClusterConfig(ks=ks, refine=refine, mode=mode),
        concepts=wordnet,
        expansion=ExpansionConfig(language_model=lm),
        units=UnitsConfig(kind=units, layer=sae_layer,  # type: ignore[arg-type] (checked by UnitsConfig)
                          training=SAEConfig(k=sae_k, expansion=sae_expansion, epochs=sae_epochs)),
    )
    with RichReporter(quiet) as reporter:
        manifest = build_index(config, out, until=until, force=force, reporter=reporter,
                               ray=ray_address or ("auto" if ray else None))
    stats = manifest.stages.get("stats", {})
    units = (f"{manifest.n_neurons:,} SAE features of layer {manifest.sae_layer}" if manifest.sae_layer is not None
             else f"{manifest.n_neurons:,} neurons")
    typer.echo(
        f"index {out}: {manifest.site} site, {units}; corpus {stats.get('documents', 0):,} "
        f"documents, {stats.get('windows', 0):,} windows, {stats.get('tokens', 0):,} tokens"
    )
    for line in next_steps(manifest, out):
        typer.echo(line)


def next_steps(manifest: Any, out: Path) -> list[str]:
    """What the user can run next on a finished build, with the step a command needs first."""
    from neurosearch.experiments.checks import needs_fitted_head

    if not manifest.stages.get("search", {}).get("done"):
        return []
    lines = [f"next: neurosearch find \"weekdays\" --index {out}"]
    if needs_fitted_head(manifest) and not (out / layout.HEAD_WEIGHTS).is_file():
        lines.append("      the model has no MLM head: `ablate` and `evaluate` read out sentence embeddings;")
        lines.append(f"      `neurosearch fit-head --index {out}` adds the mlm readouts")
    return lines


def fit_head_command(
    index: IndexOption = None,
    corpus: Annotated[Optional[str], typer.Option(help="Training corpus (default: the index's).")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the training split.")] = 2.0,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 3e-3,
    max_docs: Annotated[Optional[int], typer.Option(help="Read at most this many documents.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Head folder (default: INDEX/head, or the state folder's for a read-only index; see `info`).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the stored head even when the new one is not better on held-out text.")] = False,
) -> None:
    """Fit a masked-LM head (and [MASK] vector) on the frozen encoder; stored with the index's results."""
    from neurosearch.model.head_fit import fit_head_for_index

    opened = open_index(index)
    with RichReporter(transient=True) as reporter:  # the outcome is the one line after it
        meta = fit_head_for_index(opened, corpus=corpus, epochs=epochs, lr=lr, max_docs=max_docs, force=force,
                                  reporter=reporter, out=out)
    replaced = meta.get("replaced_heldout_loss")
    typer.echo(f"head stored in {meta['path']}: held-out masked loss {meta['heldout_loss']:.3f} "
               + (f"(the head it replaced: {replaced:.3f}; " if replaced is not None else "(")
               + f"unigram baseline {meta['unigram_loss']:.3f})")
