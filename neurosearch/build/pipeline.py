"""``neurosearch build``: run the stages into one index directory, resumably.

Stages, in order: ``stats`` (activations.py) -> ``profiles`` (profiles.py, embeddings.py) ->
``clusters`` (clustering.py) -> ``search`` (search.py). A finished stage is recorded in the
manifest and not recomputed on a rerun; the statistics stage checkpoints after every shard, so a
killed build resumes where it stopped. An index whose model, site or corpus differ from the
request is never silently mixed: the build refuses and says why.
"""

from __future__ import annotations

import json
import shutil
import time
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from neurosearch.config import BuildConfig, SearchConfig, to_dict
from neurosearch.corpus import CorpusSummary, read_documents, scan_corpus
from neurosearch.errors import NeurosearchError
from neurosearch.index.index import FIND_TOP_TOKENS, SEARCH_FORMAT
from neurosearch.format.manifest import MANIFEST, Manifest
from neurosearch.progress import Reporter, SilentReporter, peak_rss_gb, reset_peak_rss
from neurosearch.format.atomic import save_npy_atomic, write_bytes_atomic, write_json_atomic

STAGES = ("stats", "profiles", "clusters", "search")


def query_neighbours(vocabulary_space: np.ndarray, kept_space: np.ndarray, count: int,
                     block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Every vocabulary token's ``count`` nearest kept tokens (kept index, cosine), best first: what
    ``query.nearest_kept`` computes for a one-token word, stored so that queries need no numpy."""
    from neurosearch.index.query import nearest_kept_rows

    order, similarity = nearest_kept_rows(vocabulary_space, kept_space, count, block)
    index_type = np.uint16 if kept_space.shape[0] <= np.iinfo(np.uint16).max + 1 else np.int32
    return order.astype(index_type), similarity


def _shards(documents: Iterator[str], size: int) -> Iterator[list[str]]:
    while True:
        shard = list(islice(documents, size))
        if not shard:
            return
        yield shard


def _latest_checkpoint(root: Path) -> tuple[int, Path | None]:
    """The newest complete checkpoint (``stats-<shards>/progress.json`` is written last)."""
    best: tuple[int, Path | None] = (0, None)
    if root.is_dir():
        for path in root.glob("stats-*"):
            if (path / "progress.json").is_file() and path.name[6:].isdigit():
                shards = int(path.name[6:])
                if shards > best[0]:
                    best = (shards, path)
    return best


def _check_same_index(manifest: Manifest, wanted: dict[str, Any], out: Path) -> None:
    for key in ("model_id", "site", "corpus_fingerprint", "stats_config"):
        have = manifest.stages.get("stats", {}).get("identity", {}).get(key)
        if have is not None and have != wanted[key]:
            raise NeurosearchError(
                f"{out} already holds an index with a different {key.replace('_', ' ')}; "
                "choose another output directory or pass `force` to rebuild it", option="force"
            )


class Builder:
    """One build of one index directory (library entry: :func:`build_index`)."""

    def __init__(self, config: BuildConfig, out: Path, reporter: Reporter):
        self.config = config
        self.out = out
        self.reporter = reporter
        self.loaded: Any = None
        self.site: Any = None

    # -- helpers ------------------------------------------------------------------------------
    def _load_model(self) -> None:
        if self.loaded is None:
            from neurosearch.model.loading import load_model, neuron_site

            # under its masked-LM head when it has one, so that the manifest's has_mlm_head is true
            # (the encoder, its activations and its weights hash are the same either way)
            self.loaded = load_model(self.config.model, mlm=True)
            self.site = neuron_site(self.loaded.encoder, self.config.model.site)

    def _invalidate_changed(self, manifest: Manifest) -> None:
        """A stage whose config changed since it ran is redone, and so is every stage after it.

        Choosing another search method among the built ones, or another number of tokens to score
        neurons by, only redoes the search stage.
        """
        wanted = {"profiles": to_dict(self.config.profiles), "clusters": to_dict(self.config.clusters)}
        first_changed = None
        for stage in ("profiles", "clusters"):
            stored = manifest.configs.get(stage)
            if stored is None or json.loads(json.dumps(wanted[stage])) == stored:
                continue
            search_only = {"search_method": None, "neuron_score_tokens": None}
            if stage == "profiles" and {**stored, **search_only} == json.loads(json.dumps({**wanted[stage], **search_only})):
                manifest.configs["profiles"] = json.loads(json.dumps(wanted[stage]))
                first_changed = first_changed or "search"
                continue
            first_changed = stage
            break
        search = manifest.stages.get("search", {})
        wants = self._wants_concepts()
        if first_changed is None and search.get("done") and bool(search.get("concepts")) != wants:
            self.reporter.log("search: WordNet concept table to " + ("add" if wants else "drop"))
            first_changed = "search"
        elif first_changed is None and search.get("done") and search.get("format") != SEARCH_FORMAT:
            self.reporter.log("search: the search files' format changed, rebuilding them")
            first_changed = "search"
        if first_changed is not None:
            dropped = [later for later in STAGES[STAGES.index(first_changed):] if manifest.stages.pop(later, None) is not None]
            for later in dropped:
                self.reporter.log(f"{later}: configuration changed, rebuilding")
            if dropped and (self.out / MANIFEST).exists():
                manifest.save(self.out)  # not done on disk before any of its files changes: a kill resumes

    def _check_out(self) -> None:
        """The output folder can hold this index: a new or empty folder, or an index (even half-built)."""
        from neurosearch.format.store import check_writable

        out = self.out
        if out.exists() and not out.is_dir():
            raise NeurosearchError(f"{out} exists and is not a directory; choose another output directory")
        if out.is_dir() and any(out.iterdir()) and not any((out / name).exists() for name in (MANIFEST, "checkpoint", "stats")):
            raise NeurosearchError(f"{out} is a folder that holds no neurosearch index; choose a new or empty one")
        check_writable(out, "the index")

    def _wants_concepts(self) -> bool:
        from neurosearch.build.wordnet import find_wordnet

        return self.config.concepts and find_wordnet() is not None

    def _stage_done(self, manifest: Manifest, stage: str) -> bool:
        return bool(manifest.stages.get(stage, {}).get("done"))

    def _finish_stage(self, manifest: Manifest, stage: str, started: float, facts: dict[str, Any]) -> None:
        manifest.stages[stage] = {
            **manifest.stages.get(stage, {}),
            **facts,
            "done": True,
            "seconds": round(time.time() - started, 2),
            "peak_rss_gb": round(peak_rss_gb(), 3),
        }
        manifest.save(self.out)
        self.reporter.log(f"{stage}: done in {manifest.stages[stage]['seconds']:.1f} s")

    # -- stats ---------------------------------------------------------------------------------
    def stats(self, manifest: Manifest, corpus: CorpusSummary) -> None:
        from neurosearch.build.stats import StatsAccumulator, TokenStats, accumulate, vocab_size

        started = time.time()
        reset_peak_rss()
        self._load_model()
        config = self.config
        root = self.out / "checkpoint"
        shards_done, checkpoint = _latest_checkpoint(root)
        accumulator = StatsAccumulator(self.site, vocab_size(self.loaded), config.stats.top_k)
        if checkpoint is not None:
            progress = json.loads((checkpoint / "progress.json").read_text())
            if progress.get("identity") != manifest.stages["stats"]["identity"]:
                shutil.rmtree(root)
                shards_done, checkpoint = 0, None
            else:
                accumulator.load(TokenStats.load(checkpoint))
                self.reporter.log(f"stats: resuming after {shards_done} shard(s) ({accumulator.documents} documents)")
        total_docs = corpus.documents if corpus.documents >= 0 else None
        advance = self.reporter.task("statistics (documents)", total_docs)
        advance(accumulator.documents)
        documents = read_documents(config.corpus)
        first = accumulator.documents  # resume: skip what the checkpoint already holds
        for _ in islice(documents, first):
            pass
        for number, shard in enumerate(_shards(documents, config.stats.shard_docs), start=shards_done):
            accumulate(self.loaded, self.site, accumulator, shard, first, config.stats, config.corpus.window)
            first += len(shard)
            advance(len(shard))
            target = root / f"stats-{number + 1}"
            tmp = root / f".stats-{number + 1}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            accumulator.export().save(tmp)
            write_json_atomic(
                tmp / "progress.json",
                {"shards": number + 1, "documents": first, "identity": manifest.stages["stats"]["identity"]},
            )
            tmp.rename(target)
            for old in root.glob("stats-*"):
                if old != target:
                    shutil.rmtree(old, ignore_errors=True)
        self.reporter.finish("statistics (documents)")
        _, final = _latest_checkpoint(root)
        if final is None:
            raise NeurosearchError(f"corpus {config.corpus.source} has no documents")
        stats_dir = self.out / "stats"
        shutil.rmtree(stats_dir, ignore_errors=True)
        (final / "progress.json").unlink()
        final.rename(stats_dir)
        shutil.rmtree(root, ignore_errors=True)
        stats = TokenStats.load(stats_dir)
        self._write_neuron_files(manifest, stats)
        manifest.corpus.update(documents=stats.documents, windows=stats.windows, tokens=stats.tokens)
        self._finish_stage(
            manifest,
            "stats",
            started,
            {"documents": stats.documents, "windows": stats.windows, "tokens": stats.tokens,
             "tokens_per_second": round(stats.tokens / max(time.time() - started, 1e-9), 1)},
        )

    def _write_neuron_files(self, manifest: Manifest, stats: Any) -> None:
        mean = stats.neuron_mean().astype(np.float32)
        std = np.sqrt(stats.neuron_var()).astype(np.float32)
        for name, array in (
            ("neurons/mean.npy", mean),
            ("neurons/std.npy", std),
            ("neurons/top_values.npy", stats.top_values.astype(np.float32)),
            ("neurons/top_refs.npy", stats.top_refs.astype(np.int32)),
        ):
            save_npy_atomic(self.out / name, array)
            manifest.record(self.out, name)

    # -- profiles -------------------------------------------------------------------------------
    def profiles(self, manifest: Manifest) -> None:
        from neurosearch.build.stats import TokenStats
        from neurosearch.corpus import plain_backend
        from neurosearch.build.embeddings import nearest_neighbours, quantize_rows, unit
        from neurosearch.build.profiles import choose_min_count, filter_tokens, method_profiles, raw_profiles, top_tokens

        started = time.time()
        reset_peak_rss()
        config = self.config.profiles
        stats = TokenStats.load(self.out / "stats")
        tokenizer = self.loaded.tokenizer
        id_to_token = {index: token for token, index in tokenizer.get_vocab().items()}
        min_count = choose_min_count(config.min_count, stats.tokens)
        kept = filter_tokens(stats.token_ids, stats.token_counts, id_to_token, min_count)
        if len(kept.ids) < 10:
            raise NeurosearchError(
                f"only {len(kept.ids)} tokens occur at least {min_count} times; use a larger corpus or a lower `min_count`",
                option="min_count"
            )
        self.reporter.log(f"profiles: kept {len(kept.ids)} of {len(stats.token_ids)} seen tokens (count >= {min_count})")
        raw = raw_profiles(stats.token_sums, stats.token_counts, kept.rows)
        del stats
        space = self._token_space()  # [V, D] unit rows for the whole vocabulary
        codes, scale = quantize_rows(space)
        save_npy_atomic(self.out / "token_space.npy", codes)
        save_npy_atomic(self.out / "token_space_scale.npy", scale)
        neighbours, similarity = nearest_neighbours(unit(space[kept.ids]), config.neighbours)
        save_npy_atomic(self.out / "neighbours.npy", neighbours)
        save_npy_atomic(self.out / "neighbour_similarity.npy", similarity)
        write_json_atomic(self.out / "tokens.json", kept.to_json())
        plain_backend(tokenizer).save(str(self.out / "tokenizer.json"))
        for name in ("token_space.npy", "token_space_scale.npy", "neighbours.npy", "neighbour_similarity.npy",
                     "tokens.json", "tokenizer.json"):
            manifest.record(self.out, name)
        advance = self.reporter.task("profiles (methods)", len(config.methods))
        for method in config.methods:
            profiles = method_profiles(raw, method, neighbours, similarity, config.smoothing_lambda)
            save_npy_atomic(self.out / "profiles" / f"{method}.npy", profiles)
            index, values = top_tokens(profiles, config.top_tokens)
            for name, array in (("neuron_top_tokens", index), ("neuron_top_values", values.astype(np.float16))):
                relative = f"methods/{method}/{name}.npy"
                save_npy_atomic(self.out / relative, array)
                manifest.record(self.out, relative)
            advance(1)
        self.reporter.finish("profiles (methods)")
        manifest.configs["profiles"] = to_dict(config)
        self._finish_stage(manifest, "profiles", started, {"min_count": min_count, "tokens_kept": int(len(kept.ids))})

    def _token_space(self) -> np.ndarray:
        """Unit token vectors for the whole vocabulary from the configured source."""
        from neurosearch.build.embeddings import fasttext_embeddings, file_embeddings, unit

        config = self.config.profiles
        table = self.loaded.encoder.get_input_embeddings().weight.detach().float().cpu().numpy()
        if config.embeddings == "model":
            return unit(table)
        vocab = sorted(self.loaded.tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        tokens = [token for token, _ in vocab]
        if config.embeddings == "fasttext":
            from neurosearch.corpus import plain_backend

            backend = plain_backend(self.loaded.tokenizer)
            pieces = (backend.encode(doc, add_special_tokens=False).tokens for doc in read_documents(self.config.corpus))
            return unit(fasttext_embeddings(pieces, tokens, work_dir=self.out))
        if not config.embeddings_path:
            raise NeurosearchError("embeddings 'file' needs embeddings_path (a .vec or .bin file)")
        return unit(file_embeddings(config.embeddings_path, tokens))

    # -- clusters -------------------------------------------------------------------------------
    def clusters(self, manifest: Manifest) -> None:
        from neurosearch.build.clusters import build_clusters, distance_curve, linkage_tree, unit_rows

        started = time.time()
        reset_peak_rss()
        config = self.config.clusters
        too_big = [k for k in config.ks if k > manifest.n_neurons]
        if too_big:
            raise NeurosearchError(f"K={too_big[0]} is larger than the number of neurons ({manifest.n_neurons})")
        methods = manifest.configs["profiles"]["methods"]
        facts: dict[str, Any] = {}
        advance = self.reporter.task("clusters (methods)", len(methods))
        for method in methods:
            t0 = time.time()
            unit = unit_rows(np.load(self.out / "profiles" / f"{method}.npy"))
            tree = linkage_tree(unit)
            sizes = {}
            for k in config.ks:
                found = build_clusters(unit, tree, k, neurons_per_layer=manifest.neurons_per_layer, config=config)
                relative = f"methods/{method}/clusters_k{k}.json"
                write_json_atomic(self.out / relative, {"method": method, "k": k, "clusters": [c.to_json() for c in found]})
                manifest.record(self.out, relative)
                sizes[str(k)] = sorted((c.size for c in found), reverse=True)
            curve_ks = [k for k in config.curve_ks if k <= manifest.n_neurons]
            relative = f"methods/{method}/distance_curve.json"
            write_json_atomic(self.out / relative, distance_curve(unit, tree, curve_ks))
            manifest.record(self.out, relative)
            facts[method] = {"seconds": round(time.time() - t0, 2), "cluster_sizes": sizes}
            advance(1)
        self.reporter.finish("clusters (methods)")
        manifest.configs["clusters"] = to_dict(config)
        self._finish_stage(manifest, "clusters", started, {"methods": facts})

    # -- search ---------------------------------------------------------------------------------
    def search(self, manifest: Manifest) -> None:
        """Peak vectors for every method (exact search); HNSW indexes for the search method."""
        from neurosearch.build.clusters import unit_rows
        from neurosearch.build.embeddings import dequantize_rows
        from neurosearch.index.postings import build_postings
        from neurosearch.build.profiles import top_tokens
        from neurosearch.build.search import build_hnsw, dense_vectors, peak_weights
        from neurosearch.index.labels import fallback_label
        from neurosearch.index.wordpiece import WordPiece

        started = time.time()
        reset_peak_rss()
        manifest.stages.pop("search", None)  # on disk first, so that a kill from here on is redone
        manifest.files = {k: v for k, v in manifest.files.items() if not k.startswith("search/")}
        manifest.save(self.out)
        shutil.rmtree(self.out / "search", ignore_errors=True)  # no stale files of another search method
        search_method = manifest.configs["profiles"]["search_method"]
        m = manifest.configs["profiles"]["top_tokens"]
        kept = json.loads((self.out / "tokens.json").read_text())
        kept_ids = np.asarray(kept["ids"])
        codes, scale = np.load(self.out / "token_space.npy"), np.load(self.out / "token_space_scale.npy")
        vocabulary_space = dequantize_rows(codes, scale)
        space = vocabulary_space[kept_ids]
        kept_tokens = kept["tokens"]

        def offline_labels(top: Any) -> list[str]:  # served by Index.label_for when there is no LLM label
            return [fallback_label([kept_tokens[i] for i in row[:20]], space[list(row[:20])]).theme for row in top]

        for method in manifest.configs["profiles"]["methods"]:
            profiles = np.load(self.out / "profiles" / f"{method}.npy")
            top = np.load(self.out / "methods" / method / "neuron_top_tokens.npy")
            weights = peak_weights(profiles, top)
            unit = unit_rows(profiles)
            keys, means, members, shown = [], [], [], []
            for k in manifest.configs["clusters"]["ks"]:
                found = json.loads((self.out / "methods" / method / f"clusters_k{k}.json").read_text())["clusters"]
                for cluster in found:
                    keys.append(f"k{k}/{cluster['id']}")
                    means.append(unit[cluster["neurons"]].mean(axis=0))
                    members.append(cluster["neurons"])
                    shown.append(cluster["top_tokens"][:FIND_TOP_TOKENS])
            del unit
            cluster_profiles = np.stack(means).astype(np.float32)
            cluster_top, _ = top_tokens(cluster_profiles, m)
            cluster_weights = peak_weights(cluster_profiles, cluster_top)
            folder = f"search/{method}"
            neuron_top, neuron_weights = top, weights
            score_tokens = manifest.configs["profiles"].get("neuron_score_tokens")
            if score_tokens:  # the first tokens, equally weighted (ProfileConfig.neuron_score_tokens)
                neuron_top = top[:, :score_tokens]
                neuron_weights = np.full(neuron_top.shape, 1 / np.sqrt(neuron_top.shape[1]), dtype=np.float32)
            outputs = {
                # each neuron's strongest peak weight: how focused it is (label --neurons picks by it)
                f"{folder}/neuron_focus.npy": weights[:, 0].astype(np.float32),
                # what find shows of a cluster hit, without parsing the clusters' JSON
                f"{folder}/cluster_tokens.npy": np.asarray(shown, dtype=np.int32),
                f"{folder}/cluster_neurons_offsets.npy": np.cumsum([0] + [len(n) for n in members], dtype=np.int64),
                f"{folder}/cluster_neurons.npy": np.asarray([n for group in members for n in group], dtype=np.int32),
            }
            for name, (rows_top, rows_weights) in {"neurons": (neuron_top, neuron_weights), "clusters": (cluster_top, cluster_weights)}.items():
                built = build_postings(rows_top, rows_weights, len(kept_tokens))
                outputs.update({f"{folder}/{name}_postings_{part}.npy": array for part, array in built.items()})
            for relative, array in outputs.items():
                save_npy_atomic(self.out / relative, array)
                manifest.record(self.out, relative)
            write_json_atomic(self.out / folder / "clusters.json", {"method": method, "keys": keys})
            labels = offline_labels(top) + offline_labels(shown)
            write_bytes_atomic(self.out / folder / "fallback_labels.txt", ("\n".join(labels) + "\n").encode("utf-8"))
            for name in ("clusters.json", "fallback_labels.txt"):
                manifest.record(self.out, f"{folder}/{name}")
            if method == search_method:
                build_hnsw(dense_vectors(neuron_top, neuron_weights, space), self.out / folder / "neurons.hnsw")
                build_hnsw(dense_vectors(cluster_top, cluster_weights, space), self.out / folder / "clusters.hnsw")
                manifest.record(self.out, f"{folder}/neurons.hnsw")
                manifest.record(self.out, f"{folder}/clusters.hnsw")
        concepts = self._bake_concepts(manifest, kept_tokens)
        stored_space = space.astype(np.float16)  # no dequantising per query
        save_npy_atomic(self.out / "search" / "kept_space.npy", stored_space)
        manifest.record(self.out, "search/kept_space.npy")
        neighbours, similarity = query_neighbours(vocabulary_space, stored_space.astype(np.float32), SearchConfig().neighbours)
        for name, array in (("query_neighbours", neighbours), ("query_neighbour_similarity", similarity)):
            save_npy_atomic(self.out / "search" / f"{name}.npy", array)
            manifest.record(self.out, f"search/{name}.npy")
        wordpiece = WordPiece.settings_of(json.loads((self.out / "tokenizer.json").read_text(encoding="utf-8")))
        if wordpiece is not None:  # BERT's tokenizer: queries tokenise without the tokenizers library
            write_bytes_atomic(self.out / "search" / "wordpiece_vocab.txt", "\n".join(wordpiece.pop("tokens")).encode("utf-8"))
            write_json_atomic(self.out / "search" / "wordpiece.json", wordpiece)
            manifest.record(self.out, "search/wordpiece_vocab.txt")
            manifest.record(self.out, "search/wordpiece.json")
        self._finish_stage(manifest, "search", started,
                           {"method": search_method, "concepts": concepts, "format": SEARCH_FORMAT})

    def _bake_concepts(self, manifest: Manifest, kept_tokens: list[str]) -> str | None:
        """WordNet's concept members over the kept tokens (search/concepts.*), when WordNet is found."""
        from neurosearch.build.wordnet import WordNet, WordNetConfig, concept_table

        if not self.config.concepts:
            return None
        wordnet = WordNet.find()
        if wordnet is None:
            self.reporter.log("search: no WordNet data found (see README): queries will use embeddings only")
            return None
        table = concept_table(wordnet, kept_tokens, WordNetConfig())
        for name, array in (("concept_offsets", table.offsets), ("concept_members", table.members),
                            ("concept_depths", table.depths), ("concept_shares", table.shares),
                            ("concept_heads", table.heads)):
            save_npy_atomic(self.out / "search" / f"{name}.npy", array)
            manifest.record(self.out, f"search/{name}.npy")
        source = wordnet.version
        write_json_atomic(self.out / "search" / "concepts.json",
                          {"source": source, "config": to_dict(WordNetConfig()), "keys": table.keys})
        manifest.record(self.out, "search/concepts.json")
        self.reporter.log(f"search: {len(table.keys)} WordNet concepts baked into the index")
        return source

    # -- the build -------------------------------------------------------------------------------
    def run(self, until: str, force: bool) -> Manifest:
        if until not in STAGES:
            raise NeurosearchError(f"unknown stage '{until}' (choose from {', '.join(STAGES)})")
        config = self.config
        self._check_out()
        if config.profiles.embeddings == "file":
            from neurosearch.build.embeddings import check_embeddings_file

            check_embeddings_file(str(config.profiles.embeddings_path))
        corpus = scan_corpus(config.corpus)  # validates the corpus before anything is written
        self._load_model()
        loaded, site = self.loaded, self.site
        if config.profiles.embeddings == "file":
            from neurosearch.build.embeddings import check_embeddings_cover

            check_embeddings_cover(str(config.profiles.embeddings_path), list(loaded.tokenizer.get_vocab()))
        identity = {
            "model_id": loaded.model_id,
            "site": site.name,
            "corpus_fingerprint": corpus.fingerprint,
            "stats_config": {"top_k": config.stats.top_k, "window": config.corpus.window},
        }
        created = not self.out.exists()
        if force and (self.out / MANIFEST).exists():
            for child in ("stats", "checkpoint", "neurons", "profiles", "methods", "search"):
                shutil.rmtree(self.out / child, ignore_errors=True)
            (self.out / MANIFEST).unlink()
        if (self.out / MANIFEST).exists():
            manifest = Manifest.load(self.out)
            _check_same_index(manifest, identity, self.out)
        else:
            manifest = Manifest(
                model={
                    "id": loaded.model_id,
                    "weights_sha256": loaded.weights_hash(),
                    "vocab_sha256": loaded.vocab_hash(),
                    "has_mlm_head": loaded.has_mlm_head,
                },
                site=site.name,
                n_layers=site.n_layers,
                neurons_per_layer=site.neurons_per_layer,
            )
        manifest.corpus.update(
            source=config.corpus.source,
            text_field=config.corpus.text_field,
            max_docs=config.corpus.max_docs,
            fingerprint=corpus.fingerprint,
        )
        manifest.configs.update(model=to_dict(config.model), corpus=to_dict(config.corpus), stats=to_dict(config.stats))
        manifest.stages.setdefault("stats", {})["identity"] = identity
        self._invalidate_changed(manifest)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            if not self._stage_done(manifest, "stats"):
                self.stats(manifest, corpus)
            for stage in STAGES[1 : STAGES.index(until) + 1]:
                if not self._stage_done(manifest, stage):
                    getattr(self, stage)(manifest)
        except BaseException:
            if created and not (self.out / "checkpoint").exists() and not (self.out / MANIFEST).exists():
                shutil.rmtree(self.out, ignore_errors=True)
            raise
        return manifest


def build_index(
    config: BuildConfig,
    out: str | Path,
    *,
    until: str = "search",
    force: bool = False,
    reporter: Reporter | None = None,
) -> Manifest:
    """Build (or finish building) the index at ``out`` up to stage ``until``."""
    return Builder(config, Path(out), reporter or SilentReporter()).run(until, force)
