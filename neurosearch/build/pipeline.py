"""``neurosearch build``: run the stages into one index directory, resumably.

Stages, in order (:meth:`Builder.stages`): ``stats`` (here, over ``stats.py``) -> ``profiles``
(``profiles_stage.py`` over ``profiles.py``, ``embeddings.py``) -> ``clusters`` (``clusters_stage.py``
over ``clusters.py``) -> ``search`` (``search_stage.py`` over ``search.py``); the files they write
are named in ``format/layout.py``. A finished stage is recorded in the
manifest and not recomputed on a rerun; the statistics stage checkpoints after every shard, so a
killed build resumes where it stopped. An index whose model, site or corpus differ from the
request is never silently mixed: the build refuses and says why.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from neurosearch.build.search_stage import query_neighbours  # noqa: F401 (part of the build's API)
from neurosearch.config import BuildConfig, to_dict
from neurosearch.corpus import CorpusSummary, read_documents, scan_corpus
from neurosearch.errors import NeurosearchError
from neurosearch.format import layout
from neurosearch.format.atomic import save_npy_atomic, write_json_atomic
from neurosearch.format.layout import MANIFEST, SEARCH_FORMAT, STAGES
from neurosearch.format.manifest import Manifest
from neurosearch.progress import Reporter, SilentReporter, peak_rss_gb, reset_peak_rss



@dataclass(frozen=True)
class Stage:
    """One stage of the build: its name and what runs it (each is recorded in the manifest when done)."""

    name: str
    run: Callable[[Manifest], dict[str, Any]]
    """Writes the stage's files into the index and lists them in the manifest; returns the stage's facts."""


def _shards(documents: Iterator[str], size: int) -> Iterator[list[str]]:
    while True:
        shard = list(islice(documents, size))
        if not shard:
            return
        yield shard


def _latest_checkpoint(root: Path) -> tuple[int, Path | None]:
    """The newest complete checkpoint (its progress file is written last)."""
    best: tuple[int, Path | None] = (0, None)
    if root.is_dir():
        for path in root.glob(f"{layout.CHECKPOINT_PREFIX}*"):
            shards = layout.checkpoint_shards(path.name)
            if shards is not None and (path / layout.CHECKPOINT_PROGRESS).is_file() and shards > best[0]:
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
        neurons by, only redoes the search stage. The stages to redo are marked not done in the
        manifest on disk before any of their files is touched (here, and again as each stage
        starts), so a build killed while redoing them is resumed by the next run whatever it is
        asked, never left "done" over half its files.
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
        if out.is_dir() and any(out.iterdir()) and not any((out / name).exists() for name in (MANIFEST, layout.CHECKPOINT_DIR, layout.STATS_DIR)):
            raise NeurosearchError(f"{out} is a folder that holds no neurosearch index; choose a new or empty one")
        check_writable(out, "the index")

    def _wants_concepts(self) -> bool:
        from neurosearch.build.wordnet import find_wordnet

        return self.config.concepts and find_wordnet() is not None

    def _stage_done(self, manifest: Manifest, stage: str) -> bool:
        return bool(manifest.stages.get(stage, {}).get("done"))

    # -- stats ---------------------------------------------------------------------------------
    def stats(self, manifest: Manifest, corpus: CorpusSummary) -> dict[str, Any]:
        """Eq. 1 statistics in one streaming pass, checkpointed after every shard; the stage's facts."""
        from neurosearch.build.stats import StatsAccumulator, TokenStats, accumulate, vocab_size

        started = time.time()
        self._load_model()
        config = self.config
        root = self.out / layout.CHECKPOINT_DIR
        shards_done, checkpoint = _latest_checkpoint(root)
        accumulator = StatsAccumulator(self.site, vocab_size(self.loaded), config.stats.top_k)
        if checkpoint is not None:
            progress = json.loads((checkpoint / layout.CHECKPOINT_PROGRESS).read_text())
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
            target = self.out / layout.checkpoint_dir(number + 1)
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            accumulator.export().save(tmp)
            write_json_atomic(
                tmp / layout.CHECKPOINT_PROGRESS,
                {"shards": number + 1, "documents": first, "identity": manifest.stages["stats"]["identity"]},
            )
            tmp.rename(target)
            for old in root.glob(f"{layout.CHECKPOINT_PREFIX}*"):
                if old != target:
                    shutil.rmtree(old, ignore_errors=True)
        self.reporter.finish("statistics (documents)")
        _, final = _latest_checkpoint(root)
        if final is None:
            raise NeurosearchError(f"corpus {config.corpus.source} has no documents")
        stats_dir = self.out / layout.STATS_DIR
        shutil.rmtree(stats_dir, ignore_errors=True)
        (final / layout.CHECKPOINT_PROGRESS).unlink()
        final.rename(stats_dir)
        shutil.rmtree(root, ignore_errors=True)
        stats = TokenStats.load(stats_dir)
        self._write_neuron_files(manifest, stats)
        manifest.corpus.update(documents=stats.documents, windows=stats.windows, tokens=stats.tokens)
        return {"documents": stats.documents, "windows": stats.windows, "tokens": stats.tokens,
                "tokens_per_second": round(stats.tokens / max(time.time() - started, 1e-9), 1)}

    def _write_neuron_files(self, manifest: Manifest, stats: Any) -> None:
        mean = stats.neuron_mean().astype(np.float32)
        std = np.sqrt(stats.neuron_var()).astype(np.float32)
        for name, array in (
            (layout.NEURON_MEAN, mean),
            (layout.NEURON_STD, std),
            (layout.NEURON_TOP_VALUES, stats.top_values.astype(np.float32)),
            (layout.NEURON_TOP_REFS, stats.top_refs.astype(np.int32)),
        ):
            save_npy_atomic(self.out / name, array)
            manifest.record(self.out, name)

    # -- the build -------------------------------------------------------------------------------
    def stages(self, corpus: CorpusSummary) -> tuple[Stage, ...]:
        """The stages in order (their names are :data:`STAGES`); each returns its facts."""
        from neurosearch.build import clusters_stage, profiles_stage, search_stage

        out, config, reporter = self.out, self.config, self.reporter
        return (
            Stage("stats", lambda manifest: self.stats(manifest, corpus)),
            Stage("profiles", lambda manifest: profiles_stage.run(out, manifest, config, self.loaded, reporter)),
            Stage("clusters", lambda manifest: clusters_stage.run(out, manifest, config.clusters, reporter)),
            Stage("search", lambda manifest: search_stage.SearchStage(out, manifest, reporter, config.concepts).run()),
        )

    def _run_stage(self, manifest: Manifest, stage: Stage) -> None:
        started = time.time()
        reset_peak_rss()
        if (self.out / MANIFEST).exists():  # not done on disk while its files change: a kill is redone
            manifest.stages.setdefault(stage.name, {})["done"] = False
            manifest.save(self.out)
        facts = stage.run(manifest)
        manifest.stages[stage.name] = {
            **manifest.stages.get(stage.name, {}),
            **facts,
            "done": True,
            "seconds": round(time.time() - started, 2),
            "peak_rss_gb": round(peak_rss_gb(), 3),
        }
        manifest.save(self.out)
        self.reporter.log(f"{stage.name}: done in {manifest.stages[stage.name]['seconds']:.1f} s")

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
            for child in layout.BUILD_DIRS:
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
            for stage in self.stages(corpus)[: STAGES.index(until) + 1]:
                if not self._stage_done(manifest, stage.name):
                    self._run_stage(manifest, stage)
        except BaseException:
            if created and not (self.out / layout.CHECKPOINT_DIR).exists() and not (self.out / MANIFEST).exists():
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
