"""``neurosearch build``: run the stages into one index directory, resumably.

Stages, in order (:meth:`Builder.stages`): ``stats`` (``stats_stage.py`` over ``stats.py``) ->
``profiles`` (``profiles_stage.py`` over ``profiles.py``, ``embeddings.py``) -> ``clusters``
(``clusters_stage.py`` over ``clusters.py``) -> ``search`` (``search_stage.py`` over ``search.py``)
-> ``contexts`` (``contexts_stage.py`` over ``contexts.py``); the files they write are named in
``format/layout.py``. A finished stage is recorded in the manifest and not recomputed on a rerun
(the build says which it skips, and loads the model only for a stage that needs it); the statistics
stage checkpoints between shards, so a killed build resumes from its last checkpoint, and Ctrl-C ends
in an :class:`~neurosearch.errors.Interrupted` that says what was kept and how to resume. An index
whose model, site or corpus differ from the request is never silently mixed: the build refuses and
says why.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from neurosearch.config import ADDED_LATER, BuildConfig, to_dict
from neurosearch.corpus import CorpusSummary, scan_corpus
from neurosearch.errors import Interrupted, NeurosearchError
from neurosearch.format import layout
from neurosearch.format.layout import MANIFEST, SEARCH_FORMAT, STAGES
from neurosearch.format.manifest import Manifest
from neurosearch.pipeline.stage import Stage, StageContext
from neurosearch.progress import Reporter, SilentReporter, peak_rss_gb, reset_peak_rss



def _check_same_index(manifest: Manifest, wanted: dict[str, Any], out: Path) -> None:
    have_sae = manifest.stages.get("stats", {}).get("identity", {}).get("sae")
    if have_sae != wanted.get("sae"):
        what = "the features of another SAE" if have_sae and wanted.get("sae") else "SAE features" if have_sae else "neurons"
        raise NeurosearchError(f"{out} already holds an index of {what}; choose another output directory or pass "
                               "`force` to rebuild it", option="force")
    for key in ("model_id", "site", "corpus_fingerprint", "stats_config"):
        have = manifest.stages.get("stats", {}).get("identity", {}).get(key)
        if key == "stats_config" and have is not None:  # an index built before held-out documents kept none
            have = {"heldout_share": 0.0, **have}
        if have is not None and have != wanted[key]:
            raise NeurosearchError(
                f"{out} already holds an index with a different {key.replace('_', ' ')}; "
                "choose another output directory or pass `force` to rebuild it", option="force"
            )


class Builder:
    """One build of one index directory (library entry: :func:`build_index`)."""

    def __init__(self, config: BuildConfig, out: Path, reporter: Reporter, ray: str | None = None):
        self.config = config
        self.out = out
        self.reporter = reporter
        self.ray = ray
        """Ray cluster address (``auto``, ``local``, ``ray://...``) for the statistics shards, or None."""
        self.loaded: Any = None
        self.site: Any = None
        self.position: dict[str, int] = {}  # statistics: documents done and checkpointed (interrupt messages)

    # -- helpers ------------------------------------------------------------------------------
    def _load_model(self, units: bool = True) -> None:
        if self.loaded is None:
            from neurosearch.model.loading import load_model

            started = time.time()
            self.reporter.log(f"loading model {self.config.model.model} ...")
            # under its masked-LM head when it has one, so that the manifest's has_mlm_head is true
            # (the encoder, its activations and its weights hash are the same either way)
            self.loaded = load_model(self.config.model, mlm=True)
            self.reporter.log(f"model {self.loaded.model_id}: loaded in {time.time() - started:.1f} s")
        if self.site is None and units:
            from neurosearch.model.loading import unit_site

            self.site = unit_site(self.loaded, self.config.model)
            units = (f"{self.site.neurons_per_layer:,} features of the SAE at {self.site.name} layer {self.site.first_layer}"
                     if self.site.sae is not None else
                     f"{self.site.n_layers} x {self.site.neurons_per_layer} {self.site.name} neurons")
            self.reporter.log(f"units: {units}")

    def _model(self) -> tuple[Any, Any]:
        """The model and its units' site, loaded on first use (a finished index reruns without it)."""
        self._load_model()
        return self.loaded, self.site

    def _trained_sae(self) -> Path:
        """The SAE of a ``build --units sae``: trained here, on the build's corpus, into ``sae/``
        (``layout.SAE_DIR``), or the one a previous run of the same settings left there.

        The layer's activations of every counted token go to ``sae-training/activations/``
        (float16; resumable by shards), then training runs with checkpoints in ``sae-training/``
        (resumable by steps: ``neurosearch.sae.train``); the finished SAE moves to ``sae/`` with its
        training log, and ``sae-training/`` is removed."""
        from neurosearch.model.loading import neuron_site
        from neurosearch.sae.activations import collect_activations
        from neurosearch.sae.model import CONFIG_FILE, read_cfg
        from neurosearch.sae.train import LOG_FILE, SAE_DIR, train_sae

        units, model, corpus = self.config.units, self.config.model, self.config.corpus
        target, work = self.out / layout.SAE_DIR, self.out / layout.SAE_TRAINING_DIR
        self._load_model(units=False)
        loaded = self.loaded
        layer = units.chosen_layer(neuron_site(loaded.encoder, model.site).n_layers)
        wanted = {"config": units.training.identity(), "model": loaded.model_id, "site": model.site, "layer": layer,
                  "corpus": json.loads(json.dumps(to_dict(corpus)))}
        if (target / CONFIG_FILE).is_file():
            training = read_cfg(target).get("neurosearch", {}).get("training", {}).get("identity", {})
            activations = training.get("activations", {})
            have = {"config": training.get("config"), "model": activations.get("model"), "site": activations.get("site"),
                    "layer": activations.get("layer"), "corpus": activations.get("corpus")}
            if have != wanted:
                raise NeurosearchError(f"{target} holds an SAE trained with other settings (layer, corpus or training); "
                                       "choose another output directory or pass `force` to train again", option="force")
            shutil.rmtree(work, ignore_errors=True)  # a run stopped after the move
            return target
        self.reporter.log(f"sae: training a TopK SAE on {model.site} layer {layer} (k {units.training.k}, "
                          f"{units.training.expansion} x the layer's width), work in {work}")
        collect = replace(model, sae=None)
        files = collect_activations(collect, corpus, layer, work / "activations",
                                    batch_tokens=self.config.stats.batch_tokens, log=self.reporter.log)
        if files is None:  # pragma: no cover (only a test's stop_after_shards returns None)
            raise NeurosearchError("collecting the SAE's activations stopped early; rerun to resume")
        result = train_sae(files, work, units.training, echo=self.reporter.log)
        if not result.complete:  # pragma: no cover (only a test's stop_after_steps)
            raise NeurosearchError("SAE training stopped early; rerun to resume")
        self.reporter.log(f"sae: held-out FVU {result.fvu:.3f}, dead share {result.dead_share:.2%}, "
                          f"{result.train_seconds or 0:,.0f} s of training")
        (work / SAE_DIR).rename(target)
        if (work / LOG_FILE).is_file():
            shutil.copy2(work / LOG_FILE, target / LOG_FILE)
        shutil.rmtree(work, ignore_errors=True)
        return target

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
            if stored is not None:  # fields added later mean what older indexes were built with
                stored = {**ADDED_LATER.get(stage, {}), **stored}
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
        expansion = json.loads(json.dumps(to_dict(self.config.expansion)))
        expansions_only = False
        if first_changed is None and search.get("done") and manifest.configs.get("expansion") != expansion:
            self.reporter.log("search: the expansion model changed, computing the concept expansions again")
            expansions_only = True
        elif first_changed is None and search.get("done") and search.get("language_model") != self._lm_identity():
            self.reporter.log("search: the membership language model changed, computing the concept expansions again")
            expansions_only = True
        wants = self._wants_concepts()
        if first_changed is None and search.get("done") and bool(search.get("concepts")) != wants:
            self.reporter.log("search: WordNet concept table to " + ("add" if wants else "drop"))
            first_changed = "search"
        elif first_changed is None and search.get("done") and search.get("format") != SEARCH_FORMAT:
            self.reporter.log("search: the search files' format changed, rebuilding them")
            first_changed = "search"
        dropped: list[str] = []
        if expansions_only and first_changed is None:
            search["done"], search["expansions_only"] = False, True
            dropped.append("search")
        elif first_changed is not None:
            # the contexts depend on profiles and clusters only (the search method: outdated below)
            later = [name for name in STAGES[STAGES.index(first_changed):] if name != "contexts" or first_changed != "search"]
            dropped = [name for name in later if manifest.stages.pop(name, None) is not None]
            for name in dropped:
                self.reporter.log(f"{name}: configuration changed, rebuilding")
        from neurosearch.pipeline.contexts_stage import outdated

        reason = outdated(manifest, self.config.contexts)
        if reason is not None:
            manifest.stages.pop("contexts")
            dropped.append("contexts")
            self.reporter.log(f"contexts: {reason}, rebuilding")
        if dropped and (self.out / MANIFEST).exists():
            manifest.save(self.out)  # not done on disk before any of its files changes: a kill resumes

    def _check_out(self) -> None:
        """The output folder can hold this index: a new or empty folder, or an index (even half-built)."""
        from neurosearch.format.store import check_writable

        out = self.out
        if out.exists() and not out.is_dir():
            raise NeurosearchError(f"{out} exists and is not a directory; choose another output directory")
        if out.is_dir() and any(out.iterdir()) and not any((out / name).exists() for name in (MANIFEST, layout.CHECKPOINT_DIR, layout.STATS_DIR, layout.STATS_PARTS_DIR, layout.SAE_DIR, layout.SAE_TRAINING_DIR)):
            raise NeurosearchError(f"{out} is a folder that holds no neurosearch index; choose a new or empty one")
        check_writable(out, "the index")

    def _kept_work(self) -> bool:
        """Whether a stopped build left anything to resume from (a manifest, a checkpoint, finished passes)."""
        return any((self.out / name).exists() for name in (MANIFEST, layout.CHECKPOINT_DIR, layout.STATS_PARTS_DIR,
                                                              layout.SAE_DIR, layout.SAE_TRAINING_DIR))

    def _lm_identity(self) -> str | None:
        """The identity key of the language model the expansions would be scored with (None: none);
        checked here, before slow work (a missing file or a wrong sha256 is refused)."""
        from neurosearch.pipeline.lm_scores import resolve_spec

        spec = resolve_spec(self.config.expansion.language_model)
        if spec is None:
            return None
        from neurosearch.errors import ConfigError
        from neurosearch.lm import LMSpec, identify

        try:
            parsed = LMSpec.parse(spec)
        except ConfigError as exc:  # its option names LMSpec's fields, not build's: say it of --lm
            raise NeurosearchError(f"--lm {spec}: {exc}") from None
        if parsed.kind == "local" and parsed.path is None:
            from neurosearch.lm.files import GEMMA_PACKAGE, require_extra

            require_extra([GEMMA_PACKAGE], "membership scores by the default local language model (build --lm local)")
        return identify(parsed).key

    def _sae_units(self, model_id: str) -> dict[str, Any]:
        """The manifest's ``units`` of a build of SAE features (``ModelConfig.sae``; empty: neurons).
        Whatever can be checked without the model (its files, its model's name, its site) is checked
        now; its layer and width once the model loads, still before the statistics."""
        directory = self.config.model.sae
        if directory is None:
            return {}
        from neurosearch.sae.units import units_record

        record = units_record(directory, self.config.model.site, index=self.out)
        cfg = record["sae"]["cfg"]
        named = (cfg.get("metadata") or {}).get("model_name") if isinstance(cfg.get("metadata"), dict) else None
        site = cfg["neurosearch"].get("site")
        problems = []
        if named and named != model_id:
            problems.append(f"it encodes the model '{named}', not '{model_id}'")
        if site and site != self.config.model.site:
            problems.append(f"it encodes the {site} site, not {self.config.model.site} (choose --site {site})")
        if problems:
            raise NeurosearchError(f"the SAE in {directory} (`sae`) does not fit this build: " + "; ".join(problems),
                                   option="sae")
        self._model()  # loads the SAE too, and checks its layer and width against the model's site
        return record

    def _wants_concepts(self) -> bool:
        from neurosearch.pipeline.wordnet import find_wordnet

        return self.config.concepts and find_wordnet() is not None

    def _stage_done(self, manifest: Manifest, stage: str) -> bool:
        return bool(manifest.stages.get(stage, {}).get("done"))

    def _interrupted(self, manifest: Manifest, stage: str | None, stages: tuple[str, ...]) -> str:
        """What an interrupted build kept and how to resume it (one line)."""
        kept = [name for name in stages if self._stage_done(manifest, name)]
        parts = [f"during {stage}" if stage else "before the first stage"]
        saved = self.position.get("checkpointed", 0) if stage == "stats" else 0
        if stage == "stats":
            done, total = self.position.get("done", 0), self.position.get("total", -1)
            parts[0] = f"during statistics at document {done:,}" + (f" of {total:,}" if total >= 0 else "")
            passes, finished = self.position.get("passes", 1), self.position.get("passes_done", 0)
            if passes > 1:
                parts[0] += f" (pass {min(finished + 1, passes)} of {passes}, one per group of layers)"
            if finished:
                parts.append(f"kept: {finished} finished pass(es) in {self.out / layout.STATS_PARTS_DIR}")
            if saved or not finished:
                parts.append(f"kept: statistics of the first {saved:,} documents in {self.out / layout.CHECKPOINT_DIR}"
                             if saved else f"kept: nothing of {'this pass' if passes > 1 else 'it'} (checkpoints come between shards of "
                                           f"{self.config.stats.shard_docs:,} documents, --shard-docs sets how many, once "
                                           f"due by time, --checkpoint-share)")
        elif kept:
            parts.append(f"kept: the finished stages ({', '.join(kept)}); {stage} starts again")
        resume = ("rerun the same command to resume from there" if kept or saved or self.position.get("passes_done")
                  else "rerun the same command to start again")
        return "; ".join(parts) + "; " + resume

    # -- the build -------------------------------------------------------------------------------
    def stages(self) -> tuple[Stage, ...]:
        """The stages in order (their names are :data:`STAGES`)."""
        from neurosearch.pipeline import clusters_stage, contexts_stage, profiles_stage, search_stage, stats_stage

        return (stats_stage.STAGE, profiles_stage.STAGE, clusters_stage.STAGE, search_stage.STAGE, contexts_stage.STAGE)

    def _run_stage(self, manifest: Manifest, stage: Stage, corpus: CorpusSummary) -> None:
        missing = [name for name in stage.reads if not self._stage_done(manifest, name)]
        if missing:
            raise NeurosearchError(f"stage {stage.name} needs {', '.join(missing)} built first; "
                                   f"rerun the build without --until to finish them")
        started = time.time()
        reset_peak_rss()
        if (self.out / MANIFEST).exists():  # not done on disk while its files change: a kill is redone
            manifest.stages.setdefault(stage.name, {})["done"] = False
            manifest.save(self.out)
        facts = stage.run(StageContext(self.out, manifest, self.config, self.reporter, self._model, corpus,
                                       self.position, self.ray))
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
            from neurosearch.pipeline.embeddings import check_embeddings_file

            check_embeddings_file(str(config.profiles.embeddings_path))
        corpus = scan_corpus(config.corpus)  # validates the corpus before anything is written
        from neurosearch.model.loading import resolve_model

        _, model_id = resolve_model(config.model.model)  # the model itself loads when a stage needs it
        if config.units.kind == "sae" and config.model.sae is None:
            if force:
                for child in (layout.SAE_DIR, layout.SAE_TRAINING_DIR):
                    shutil.rmtree(self.out / child, ignore_errors=True)
            if "search" in STAGES[: STAGES.index(until) + 1]:
                self._lm_identity()  # said before the hours of training, not after
            try:
                trained = self._trained_sae()
            except KeyboardInterrupt:
                raise Interrupted(f"during SAE training; kept: its work in {self.out / layout.SAE_TRAINING_DIR} "
                                  "(activations by shards, training by checkpoints); rerun the same command to "
                                  "resume from there") from None
            self.config = config = replace(config, model=replace(config.model, sae=str(trained)))
            self.site = None  # the units are now the SAE's features
        units = self._sae_units(model_id)
        identity = {
            "model_id": model_id,
            "site": config.model.site,
            "corpus_fingerprint": corpus.fingerprint,
            "stats_config": {"top_k": config.stats.top_k, "window": config.corpus.window,
                             "heldout_share": config.corpus.heldout_share},
            **({"sae": units["sae"]["files"]} if units else {}),
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
            loaded, site = self._model()
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
                units=units,
            )
        manifest.corpus.update(
            source=config.corpus.source,
            text_field=config.corpus.text_field,
            max_docs=config.corpus.max_docs,
            fingerprint=corpus.fingerprint,
            heldout_share=config.corpus.heldout_share,
            heldout_documents=corpus.heldout,
            heldout_rule="sha256 of the document's text: its first 8 bytes / 2**64 < heldout_share",
        )
        manifest.configs.update(model=to_dict(config.model), corpus=to_dict(config.corpus), stats=to_dict(config.stats))
        manifest.stages.setdefault("stats", {})["identity"] = identity
        self._invalidate_changed(manifest)
        if "search" in STAGES[: STAGES.index(until) + 1] and not self._stage_done(manifest, "search"):
            self._lm_identity()  # a language model that cannot be had is said now, not after the statistics
        if config.profiles.embeddings == "file" and not self._stage_done(manifest, "profiles"):
            from neurosearch.pipeline.embeddings import check_embeddings_cover

            check_embeddings_cover(str(config.profiles.embeddings_path), list(self._model()[0].tokenizer.get_vocab()))
        stages = STAGES[: STAGES.index(until) + 1]
        skipped = [name for name in stages if self._stage_done(manifest, name)]
        if skipped:
            todo = [name for name in stages if name not in skipped]
            self.reporter.log(f"resuming {self.out}: skipping finished {', '.join(skipped)}"
                              + (f"; building {', '.join(todo)}" if todo else "; nothing left to build")
                              + " (--force rebuilds everything)")
        current: str | None = None
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            for stage in self.stages()[: len(stages)]:
                if not self._stage_done(manifest, stage.name):
                    current = stage.name
                    self._run_stage(manifest, stage, corpus)
        except KeyboardInterrupt:
            if created and not self._kept_work():
                shutil.rmtree(self.out, ignore_errors=True)
            raise Interrupted(self._interrupted(manifest, current, stages)) from None
        except BaseException:
            if created and not self._kept_work():
                shutil.rmtree(self.out, ignore_errors=True)
            raise
        return manifest


def build_index(
    config: BuildConfig,
    out: str | Path,
    *,
    until: str = STAGES[-1],
    force: bool = False,
    reporter: Reporter | None = None,
    ray: str | None = None,
) -> Manifest:
    """Build (or finish building) the index at ``out`` up to stage ``until`` (default: every stage).

    ``ray``: run the statistics shards on a Ray cluster at this address (``local`` starts one
    here; see :mod:`~neurosearch.pipeline.ray_stats`); the statistics are the same bits either way."""
    return Builder(config, Path(out), reporter or SilentReporter(), ray=ray).run(until, force)
