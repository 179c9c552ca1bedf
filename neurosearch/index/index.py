"""A built index, loaded for queries: ``Index.load(path).find("weekdays")``.

``Index`` is a facade over the parts of query time: verified, cached file reads
(``format/files.py``), the vocabulary and query expansion (``vocabulary.py``), ranking
(``scoring.py``), and clusters and neurons by id with their labels (``lookup.py``).
No torch, no transformers, and on the common path no numpy: a ``find`` for one-token words reads
its files with the standard library, while their hashes are checked on a second thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.config import SearchConfig
from neurosearch.errors import ConfigError
from neurosearch.format import layout
from neurosearch.format.files import IndexFiles
from neurosearch.format.manifest import IndexError_, Manifest
from neurosearch.format.state import IndexState
from neurosearch.ids import ClusterId
from neurosearch.index.lookup import IndexLabels, Lookup, UnitScores
from neurosearch.index.postings import Postings
from neurosearch.index.query import ExpandedQuery
from neurosearch.index.results import ClusterInfo, FindResult, Result
from neurosearch.index.scoring import Scoring
from neurosearch.index.vocabulary import Embedder, Vocabulary

if TYPE_CHECKING:
    import numpy as np

    from neurosearch.format.clusters import Cluster
    from neurosearch.index.records import IndexInfo, NeuronInfo, Occurrence

    from neurosearch.index.labels import Label

FIND_KINDS = ("both", "clusters", "neurons")

__all__ = ["ClusterInfo", "FindResult", "Index", "Result"]


class Index:
    """Read access to an index directory (see docs/index-format.md)."""

    def __init__(self, path: Path, manifest: Manifest, config: SearchConfig | None = None,
                 state_root: str | Path | None = None, embedder: Embedder | None = None):
        self.path = path
        self.embedder = embedder
        """Embeds a query phrase the index has no stored expansion of (``model.phrases.PhraseEmbedder``,
        which loads the model: the slow path); None: the expansion of its head word stands in."""
        self.manifest = manifest
        self.config = config or SearchConfig()
        self._state_root = state_root  # --state-dir; None: $NEUROSEARCH_STATE or the XDG default
        self.files = IndexFiles(path, manifest)
        self._ablations: tuple[tuple[Any, ...], list[Any]] | None = None
        """The stored ablation results, parsed once per version of their files (see ablation_for)."""
        self._open_parts()

    def _open_parts(self) -> None:
        """The parts that parse and keep what they read (new ones forget what the old ones kept)."""
        self.vocabulary = Vocabulary(self.files, self.config, self.embedder)
        self.scoring = Scoring(self.files, self.vocabulary, self.config)
        self.label_store = IndexLabels(self.files, lambda: self.state)
        self.unit_scores = UnitScores(lambda: self.state)
        self.lookup = Lookup(self.files, self.vocabulary, self.scoring, self.label_store, self.unit_scores)

    @classmethod
    def load(cls, path: str | Path, config: SearchConfig | None = None, *,
             state_root: str | Path | None = None, embedder: Embedder | None = None) -> "Index":
        """Open an index; raises a one-line error for a missing, foreign or incomplete index.

        ``state_root`` is where results about a read-only index go (see :attr:`state`); ``embedder``
        embeds a query phrase without a stored expansion (``neurosearch.model.phrases.PhraseEmbedder()``,
        the CLI's; without one the expansion of its head word stands in, with a note)."""
        directory = Path(path).expanduser()
        manifest = Manifest.load(directory)
        search = manifest.stages.get("search", {})
        if not search.get("done"):
            raise IndexError_(f"index {directory} is incomplete: run `neurosearch build` to finish it")
        if (search.get("format") or 0) < layout.SEARCH_FORMAT:
            raise IndexError_(
                f"index {directory} has search files of an older neurosearch (format {search.get('format') or 1}, "
                f"now {layout.SEARCH_FORMAT}): run `neurosearch build` on it again to redo its search stage")
        return cls(directory, manifest, config, state_root, embedder)

    @contextmanager
    def _verifying(self) -> Iterator[None]:
        """Files read inside are hashed in the background; a failure forgets everything parsed."""
        try:
            with self.files.verifying_in_background():
                yield
        except IndexError_:
            self._open_parts()  # the files' cache is cleared; so is what the parts derived from it
            raise

    # -- what the index holds ----------------------------------------------------------------------
    @cached_property
    def state(self) -> IndexState:
        """Where results about this index are stored and read (the index itself, or a state folder)."""
        return IndexState.of(self.path, self.manifest.files, read_only=self.manifest.read_only, root=self._state_root)

    @cached_property
    def head_dir(self) -> Path | None:
        """The fitted MLM head to use (the user's, else the shipped one), its listed files verified."""
        from neurosearch.index.stored import head_dir

        found = head_dir(self.state)
        if found is not None and found == self.path / layout.HEAD_DIR:
            self.manifest.verify(self.path, [name for name in layout.HEAD_FILES if name in self.manifest.files])
        return found

    @property
    def search_method(self) -> str:
        return self.manifest.search_method

    @property
    def methods(self) -> list[str]:
        return self.manifest.methods

    @property
    def ks(self) -> list[int]:
        return self.manifest.ks

    @property
    def default_k(self) -> int:
        return self.manifest.default_k

    def npy(self, relative: str) -> np.ndarray:
        """Array file of the index (read once per Index; callers must not mutate it)."""
        return self.files.npy(relative)

    def json(self, relative: str) -> Any:
        """Parsed JSON file of the index (parsed once per Index; callers must not mutate it)."""
        return self.files.json(relative)

    @property
    def kept_tokens(self) -> list[str]:
        return self.vocabulary.kept_tokens

    @property
    def tokenizer(self) -> Any:
        return self.vocabulary.tokenizer

    def kept_vectors(self, tokens: list[str]) -> np.ndarray:
        return self.vocabulary.kept_vectors(tokens)

    @property
    def labels(self) -> dict[str, Label]:
        return self.label_store.stored

    def neuron_name(self, flat: int) -> str:
        return self.manifest.neuron_name(flat)

    def neuron_index(self, name: str) -> int:
        return self.manifest.neuron_index(name)

    # -- queries -----------------------------------------------------------------------------------
    def expand(self, query: str | None = None, tokens: list[str] | None = None) -> ExpandedQuery:
        return self.vocabulary.expand(query, tokens)

    def cluster_keys(self, method: str) -> list[str]:
        return self.scoring.cluster_keys(method)

    def postings(self, kind: str, method: str | None = None) -> Postings:
        return self.scoring.postings(kind, method)

    def rank(self, kind: str, expanded: ExpandedQuery, *, method: str | None = None, exact: bool | None = None,
             k: int | None = None, limit: int | None = None) -> list[tuple[int, float]]:
        """(row, score) of every neuron or cluster, best first (see :meth:`Scoring.rank`)."""
        return self.scoring.rank(kind, expanded, method=method, exact=exact, k=k, limit=limit)

    def find(
        self,
        query: str | None = None,
        *,
        tokens: list[str] | None = None,
        top: int = 10,
        kind: str = "both",
        k: int | None = None,
        exact: bool | None = None,
        method: str | None = None,
        all_hits: bool = False,
        min_simulation: float | None = None,
    ) -> FindResult:
        """Neurons and clusters ranked by the expected precision of their top tokens for the query.

        Clusters are the nodes of the method's cluster tree (``k=None``, the search method) or the
        clusters of one cut (``k``; default for other methods: the largest K). Hits scoring below
        ``SearchConfig.min_score`` are left out unless ``all_hits``; with ``min_simulation``, so are
        hits whose explanation scored below it on held-out text, or was not scored (``neurosearch score``).
        """
        if top < 1:
            raise ConfigError(f"top must be at least 1, got {top}", option="top")
        if kind not in FIND_KINDS:
            raise ConfigError(f"kind must be one of {', '.join(FIND_KINDS)}, got '{kind}'", option="kind")
        if k is not None:
            self.manifest.check_k(k)
        method = self.manifest.check_method(method or self.search_method)
        with self._verifying():
            expanded = self.vocabulary.expand(query, tokens)
            results: list[Result] = []
            if kind in ("both", "clusters"):
                cut = k if k is not None else (0 if self.scoring.has_tree(method) else self.default_k)
                ranked = self.scoring.rank("clusters", expanded, method=method, exact=exact, k=cut, limit=top)
                results += [self.lookup.cluster_hit(method, row, score) for row, score in ranked]
            if kind in ("both", "neurons"):
                ranked = self.scoring.rank("neurons", expanded, method=method, exact=exact, limit=top)
                results += [self.lookup.neuron_hit(method, row, score) for row, score in ranked]
        results.sort(key=lambda r: -r.score)  # stable: each kind is already in its tie-broken order
        found = self._judged(expanded, results[: top if kind != "both" else 2 * top], all_hits, tokens is not None)
        return found if min_simulation is None else self._explained(found, min_simulation)

    def _explained(self, found: FindResult, floor: float) -> FindResult:
        """The hits whose simulation score is at least ``floor``, with a note on how many were left out."""
        if self.unit_scores.rows is None:
            raise ConfigError("this index has no explanation scores yet: run `neurosearch score` first "
                              "(min_simulation filters by them)", option="min_simulation")
        kept = [r for r in found.results if r.simulation_score is not None and r.simulation_score >= floor]
        if len(kept) < len(found.results):
            found.notes.append(f"{len(found.results) - len(kept)} hit(s) whose explanation scored below {floor} "
                               f"on held-out text (or was not scored) left out")
        found.results = kept
        return found

    def _judged(self, expanded: ExpandedQuery, results: list[Result], all_hits: bool, listed: bool) -> FindResult:
        """The hits above the relevance floor (all with ``all_hits``), with notes on how good they are."""
        notes = list(expanded.notes)
        best = results[0].score if results else 0.0
        count = self.scoring.score_tokens
        weak = self.config.weak_score
        if listed:  # a list of 2 tokens can reach 0.2 at most: "weak" is half of what it can reach
            weak = min(weak, min(len(expanded.weights), count) / count / 2)
        if best < weak:
            notes.append(f"no neuron or cluster matches this query well (best expected precision {best:.2f} < "
                         f"{weak:.2f}: fewer than {weak * count:.0f} of its first {count} top tokens are likely members)"
                         + ("" if listed else "; if the concept's members are missing from the expansion above, name "
                            "them (--tokens a,b,c) or let an LLM list them (--llm)"))
        shown = results if all_hits else [r for r in results if r.score >= self.config.min_score]
        hidden = len(results) - len(shown)
        if hidden:
            notes.append(f"{hidden} hit(s) scoring below {self.config.min_score} left out (--all lists them)")
        return FindResult(expanded, shown, notes, hidden)

    # -- clusters and neurons ----------------------------------------------------------------------
    def parse_cluster_id(self, text: str) -> ClusterId:
        """``17`` (search method, default K), ``k50/17``, ``filter+tfidf/k200/17`` or ``tree/412``."""
        return self.lookup.parse_cluster_id(text)

    def clusters(self, method: str, k: int) -> list[Cluster]:
        """The clusters of ``method`` at K, in id order."""
        return self.lookup.clusters(method, k)

    def cluster(self, cluster_id: str) -> ClusterInfo:
        return self.lookup.cluster(cluster_id)

    def cluster_refs(self, info: ClusterInfo, limit: int) -> list[Occurrence]:
        """The cluster's ``limit`` strongest occurrences: its neurons' top activations, by z-score."""
        return self.lookup.cluster_refs(info, limit)

    def method_top(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        return self.lookup.method_top(method)

    def neuron(self, name: str, method: str | None = None) -> NeuronInfo:
        """One neuron (``L:I``) with its label, top tokens under ``method`` and strongest activations."""
        return self.lookup.neuron(name, method)

    def neurons(self, names: list[str], method: str | None = None) -> list[NeuronInfo]:
        """:meth:`neuron` of many neurons at once (each array read once)."""
        return self.lookup.neurons(names, method)

    def ablation_for(self, kind: str, key: str, neurons: list[str]) -> Any:
        """The stored ``ablate`` results for a target (``index.stored.StoredLookup``): the one about
        exactly ``neurons`` (its current neurons), and apart any about other neurons."""
        from neurosearch.index.stored import ablation_results, lookup

        paths = self.state.read_paths(layout.ABLATIONS)
        stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
        if self._ablations is None or self._ablations[0] != stamp:  # parsed again only when a file changed
            self._ablations = (stamp, ablation_results(self.state))
        return lookup(self._ablations[1], kind, key, neurons)

    def info(self) -> IndexInfo:
        """What the index holds: model, site, corpus, tokens, methods, K, stages, where results go."""
        from neurosearch.index.records import IndexInfo

        m = self.manifest
        return IndexInfo(
            path=str(self.path),
            format_version=m.format_version,
            neurosearch_version=m.neurosearch_version,
            model=m.model,
            site=m.site,
            layers=m.n_layers,
            neurons_per_layer=m.neurons_per_layer,
            neurons=m.n_neurons,
            units=_units_summary(m.units),
            corpus=m.corpus,
            tokens_kept=len(self.kept_tokens),
            min_count=self.vocabulary.kept.get("min_count"),
            methods=self.methods,
            search_method=self.search_method,
            ks=self.ks,
            stages={name: {k: v for k, v in stage.items() if k != "identity"} for name, stage in m.stages.items()},
            labels=len(self.labels),
            mlm_head="model" if m.model.get("has_mlm_head") else "fitted" if self.head_dir is not None else "none",
            head_path=str(self.head_dir) if self.head_dir is not None and not m.model.get("has_mlm_head") else None,
            results=self.state.describe(),
            refined=bool(m.configs.get("clusters", {}).get("refine")),
            concepts=None if not self.files.has(layout.CONCEPTS) else {
                "source": m.stages.get("search", {}).get("concepts"),
                "count": len(self.json(layout.CONCEPTS)["keys"])},
        )


def _units_summary(units: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``units`` for ``info``: without the SAE's cfg.json, with its training's held-out
    FVU, dead share and seconds (when it records them) beside the path and file hashes."""
    if not units:
        return {}
    sae = units.get("sae") or {}
    trained = ((sae.get("cfg") or {}).get("neurosearch") or {}) if isinstance(sae.get("cfg"), dict) else {}
    facts = {name: trained[name] for name in ("fvu", "dead_share", "train_seconds") if name in trained}
    return {**units, "sae": {**{k: v for k, v in sae.items() if k != "cfg"}, **facts}}
