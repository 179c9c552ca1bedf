"""A built index, loaded for queries: ``Index.load(path).find("weekdays")``.

No torch, no transformers, and on the common path no numpy: queries are tokenised with the stored
WordPiece vocabulary, expanded with stored neighbour lists and scored exactly from inverted lists
(``postings.py``), all read with the standard library (``npyfile.py``); numpy and hnswlib come in
only for approximate search, words of several pieces, and the reports of ``show``. Each file is
checked against the manifest's sha256 the first time it is read, so a corrupt file is named, never
trusted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.config import SearchConfig
from neurosearch.errors import ConfigError, NeurosearchError
from neurosearch.format.manifest import IndexError_, Manifest
from neurosearch.format.npyfile import NpyFile
from neurosearch.format.state import IndexState
from neurosearch.index.postings import PARTS, Postings, ranked
from neurosearch.index.query import ExpandedQuery, QueryExpander, nearest_kept

if TYPE_CHECKING:
    import numpy as np

KINDS = ("both", "clusters", "neurons")
FIND_TOP_TOKENS = 30
"""Top tokens reported per hit (the JSON contract asks for at least 20)."""
SEARCH_FORMAT = 5
"""Version of the search stage's files (2: WordNet members carry sense shares; 3: BERT WordPiece
vocabulary for the pure-Python query tokenizer, kept tokens' embedding rows as float16; 4: peaks
as inverted lists, every vocabulary token's query neighbours, every row's offline label and the
clusters' members and top tokens as arrays, so that ``find`` needs neither numpy nor the clusters'
JSON; 5: WordNet members from the whole subtree, each marked as its synset's name or a synonym).
An index of an older version is refused with a one-line message; ``neurosearch build`` redoes just
its search stage."""


@dataclass
class Result:
    """One hit of ``find``: the JSON contract of ``neurosearch find --json``."""

    kind: str
    id: str
    score: float
    label: str | None
    label_source: str | None
    top_tokens: list[str]
    size: int
    neurons: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "score": round(float(self.score), 5),
            "label": self.label,
            "label_source": self.label_source,
            "top_tokens": self.top_tokens,
            "size": self.size,
            "neurons": self.neurons,
        }


@dataclass
class FindResult:
    query: ExpandedQuery
    results: list[Result]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query.text,
            "expanded_tokens": self.query.to_json(),
            "results": [r.to_json() for r in self.results],
        }


@dataclass
class ClusterInfo:
    """One cluster of one method and K, with everything ``show cluster`` prints."""

    method: str
    k: int
    id: int
    neurons: list[str]
    dropped: list[str]
    top_tokens: list[str]
    top_weights: list[float]
    layer_sizes: dict[int, int]
    avg_distance: float
    max_distance: float
    label: dict[str, Any] | None

    @property
    def key(self) -> str:
        return f"{self.method}/k{self.k}/{self.id}"


class Index:
    """Read access to an index directory (see docs/index-format.md)."""

    def __init__(self, path: Path, manifest: Manifest, config: SearchConfig | None = None,
                 state_root: str | Path | None = None):
        self.path = path
        self.manifest = manifest
        self.config = config or SearchConfig()
        self._state_root = state_root  # --state-dir; None: $NEUROSEARCH_STATE or the XDG default
        self._verified: set[str] = set()
        self._background: _Verifier | None = None  # while files are verified in the background
        self._pending: set[str] = set()  # files read while hashing runs in the background

    @classmethod
    def load(cls, path: str | Path, config: SearchConfig | None = None, *,
             state_root: str | Path | None = None) -> "Index":
        """Open an index; raises a one-line error for a missing, foreign or incomplete index.

        ``state_root`` is where results about a read-only index go (see :attr:`state`)."""
        directory = Path(path).expanduser()
        manifest = Manifest.load(directory)
        search = manifest.stages.get("search", {})
        if not search.get("done"):
            raise IndexError_(f"index {directory} is incomplete: run `neurosearch build` to finish it")
        if (search.get("format") or 0) < SEARCH_FORMAT:
            raise IndexError_(
                f"index {directory} has search files of an older neurosearch (format {search.get('format') or 1}, "
                f"now {SEARCH_FORMAT}): run `neurosearch build` on it again to redo its search stage")
        return cls(directory, manifest, config, state_root)

    # -- files ----------------------------------------------------------------------------------
    def _check(self, relative: str) -> Path:
        if relative not in self._verified and relative not in self._pending:
            if self._background is not None:
                self._background.submit(relative)
                self._pending.add(relative)
            else:
                self.manifest.verify(self.path, [relative])
                self._verified.add(relative)
        return self.path / relative

    @contextmanager
    def _verifying_in_background(self) -> Iterator[None]:
        """Hash the files read inside the block on a second thread; every hash is checked on exit.

        hashlib releases the GIL, so on a multi-core machine hashing overlaps with parsing and
        scoring instead of preceding them (a cold ``find`` reads ~30 MB). Results computed from a
        file whose hash then fails are never returned: the exit raises the one-line error.
        """
        if self._background is not None:
            yield
            return
        self._background = _Verifier(lambda relative: self.manifest.verify(self.path, [relative]))
        failed: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            failed = exc
        finally:
            verifier, self._background = self._background, None
            errors = verifier.finish()
            pending, self._pending = self._pending, set()
            for relative in pending:
                error = errors.get(relative)
                if error is None:
                    self._verified.add(relative)
                elif failed is None or not isinstance(failed, IndexError_):
                    failed = error  # a corrupt file explains any other failure reading it
        if isinstance(failed, IndexError_):  # forget whatever was parsed from unverified files
            core = ("path", "manifest", "config", "_state_root", "_verified", "_background", "_pending")
            for name in [n for n in self.__dict__ if n not in core]:
                del self.__dict__[name]
        if failed is not None:
            raise failed

    def table(self, relative: str) -> NpyFile:
        """Array file of the index read without numpy (rows and slices as tuples; read once per Index)."""
        cache = self.__dict__.setdefault("_table_cache", {})
        if relative not in cache:
            cache[relative] = NpyFile(self._check(relative))
        return cache[relative]

    def npy(self, relative: str) -> np.ndarray:
        """Array file of the index (read once per Index; callers must not mutate it)."""
        cache = self.__dict__.setdefault("_npy_cache", {})
        if relative not in cache:
            cache[relative] = self._read_npy(relative)
        return cache[relative]

    def _read_npy(self, relative: str, mmap: bool = False) -> np.ndarray:
        import numpy as np

        path = self._check(relative)
        try:
            return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
            raise IndexError_(f"corrupt index file {path}: {exc}") from None

    def json(self, relative: str) -> Any:
        """Parsed JSON file of the index (parsed once per Index; callers must not mutate it)."""
        cache = self.__dict__.setdefault("_json_cache", {})
        if relative not in cache:
            cache[relative] = self._read_json(relative)
        return cache[relative]

    def _read_json(self, relative: str) -> Any:
        path = self._check(relative)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise IndexError_(f"corrupt index file {path}: not valid JSON") from None

    # -- what the index holds ------------------------------------------------------------------------
    @cached_property
    def state(self) -> IndexState:
        """Where results about this index are stored and read (the index itself, or a state folder)."""
        return IndexState.of(self.path, self.manifest.files, read_only=self.manifest.read_only, root=self._state_root)

    @cached_property
    def head_dir(self) -> Path | None:
        """The fitted MLM head to use (the user's, else the shipped one), its listed files verified."""
        from neurosearch.index.stored import HEAD_FILES, head_dir

        found = head_dir(self.state)
        if found is not None and found == self.path / "head":
            self.manifest.verify(self.path, [name for name in HEAD_FILES if name in self.manifest.files])
        return found

    @property
    def search_method(self) -> str:
        return self.manifest.configs["profiles"]["search_method"]

    @property
    def methods(self) -> list[str]:
        return list(self.manifest.configs["profiles"]["methods"])

    @property
    def ks(self) -> list[int]:
        return [int(k) for k in self.manifest.configs["clusters"]["ks"]]

    @property
    def default_k(self) -> int:
        return max(self.ks)

    @cached_property
    def kept(self) -> dict[str, Any]:
        return self.json("tokens.json")

    @cached_property
    def kept_tokens(self) -> list[str]:
        return list(self.kept["tokens"])

    @cached_property
    def _token_space(self) -> tuple[np.ndarray, np.ndarray]:
        # memory-mapped: a query reads a few rows of the 30k-row table, not all of it
        return self._read_npy("token_space.npy", mmap=True), self.npy("token_space_scale.npy")

    @cached_property
    def kept_space(self) -> np.ndarray:
        """Unit float32 embedding rows of the kept tokens (stored as float16 by the build)."""
        import numpy as np

        return self.npy("search/kept_space.npy").astype(np.float32)

    def token_rows(self, ids: Any) -> np.ndarray:
        """Unit float32 embedding rows of vocabulary ids (dequantised on demand)."""
        import numpy as np

        from neurosearch.build.embeddings import dequantize_rows

        codes, scale = self._token_space
        ids = np.asarray(ids, dtype=np.int64)
        return dequantize_rows(codes[ids], scale[ids])

    @cached_property
    def expander(self) -> QueryExpander:
        return QueryExpander(self._pieces, self.kept_tokens, self.kept["ids"], self._word_neighbours, self.config,
                             self.concepts)

    def _word_neighbours(self, ids: list[int]) -> list[tuple[int, float]]:
        """A word's nearest kept tokens: stored for single tokens, computed (numpy) for words of several."""
        count = self.config.neighbours
        if len(ids) == 1:
            table = self.table("search/query_neighbours.npy")
            if table.shape[1] >= count:
                similarity = self.table("search/query_neighbour_similarity.npy")
                return list(zip(table.row(ids[0])[:count], similarity.row(ids[0])[:count]))
        vector = self._word_vector(ids)
        return [] if vector is None else nearest_kept(vector, self.kept_space, count)

    def _word_vector(self, ids: list[int]) -> np.ndarray | None:
        """Unit mean embedding of a word's pieces (None when it is zero)."""
        import numpy as np

        vector = self.token_rows(ids).mean(axis=0)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else None

    def dense_vector(self, expanded: ExpandedQuery) -> np.ndarray:
        """The query's unit vector in the token embedding space, which the HNSW graphs are searched with."""
        import numpy as np

        dense = np.zeros(self.kept_space.shape[1], dtype=np.float32)
        for ids in expanded.word_pieces:  # the sum of the query words' unit vectors
            vector = self._word_vector(ids)
            if vector is not None:
                dense += vector
        if not np.any(dense):  # or the weighted sum of its tokens' vectors
            weights = np.asarray(expanded.weights, dtype=np.float32)
            dense = (self.kept_space[np.asarray(expanded.token_index, dtype=np.int64)] * weights[:, None]).sum(axis=0)
        norm = np.linalg.norm(dense)
        return (dense / norm if norm > 0 else dense).astype(np.float32)

    @cached_property
    def _pieces(self) -> Callable[[str], list[int]]:
        """Text -> vocabulary ids: pure-Python WordPiece when the build extracted it (fast), else tokenizers."""
        if "search/wordpiece.json" in self.manifest.files:
            from neurosearch.index.wordpiece import WordPiece

            vocabulary = self._check("search/wordpiece_vocab.txt").read_text(encoding="utf-8").split("\n")
            try:
                return WordPiece.from_settings(self.json("search/wordpiece.json"), vocabulary).encode
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise IndexError_(f"corrupt index file {self.path / 'search/wordpiece.json'}: {exc}") from None
        tokenizer = self.tokenizer
        return lambda text: tokenizer.encode(text, add_special_tokens=False).ids

    @cached_property
    def tokenizer(self) -> Any:
        """The model's tokenizer (``tokenizers.Tokenizer``), with offsets for rendering contexts."""
        from tokenizers import Tokenizer

        path = self._check("tokenizer.json")
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers library raises a bare Exception for a bad file
            raise IndexError_(f"corrupt index file {path}: {exc}") from None

    @cached_property
    def concepts(self) -> Any:
        """WordNet's concept members over the kept tokens, when the build baked them (else None)."""
        if "search/concepts.json" not in self.manifest.files:
            return None
        from neurosearch.index.concepts import ConceptTable

        return ConceptTable(
            self.json("search/concepts.json")["keys"], self.table("search/concept_offsets.npy"),
            self.table("search/concept_members.npy"), self.table("search/concept_depths.npy"),
            self.table("search/concept_shares.npy"), self.table("search/concept_heads.npy"),
        )

    @cached_property
    def labels(self) -> dict[str, Any]:
        """Stored LLM labels (``kind:id`` -> Label): the index's, then the user's state folder's."""
        from neurosearch.index.stored import stored_labels

        return stored_labels(self.state)

    def neuron_name(self, flat: int) -> str:
        from neurosearch.ids import neuron_name

        return neuron_name(flat, self.manifest.neurons_per_layer)

    def neuron_index(self, name: str) -> int:
        from neurosearch.ids import parse_neuron

        return parse_neuron(name, self.manifest.n_layers, self.manifest.neurons_per_layer)

    def method_top(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        if method not in self.methods:
            raise NeurosearchError(f"method '{method}' is not in this index (has: {', '.join(self.methods)})")
        return (
            self.npy(f"methods/{method}/neuron_top_tokens.npy"),
            self.npy(f"methods/{method}/neuron_top_values.npy"),
        )

    # -- labels -----------------------------------------------------------------------------------
    def label_for(self, kind: str, key: str, method: str, row: int) -> tuple[str, str]:
        """(theme, source) of ``row`` of ``method``'s neurons or clusters (``key`` names it in
        labels.json): the LLM theme when stored, else the offline label the build made of its top
        tokens (``themes.fallback_label``)."""
        stored = self.labels.get(f"{kind}:{key}")
        if stored is not None:
            return stored.theme, stored.source
        offset = 0 if kind == "neuron" else self.manifest.n_neurons  # neurons first, then clusters
        return self._baked_labels(method)[offset + row], "fallback"

    def kept_vectors(self, tokens: list[str]) -> np.ndarray:
        """Unit embedding rows of kept tokens (for plots and labels)."""
        position = self._kept_position
        return self.kept_space[[position[t] for t in tokens]]

    @cached_property
    def _kept_position(self) -> dict[str, int]:
        return {token: index for index, token in enumerate(self.kept_tokens)}

    def _baked_labels(self, method: str) -> list[str]:
        """The build's offline labels of ``method``: one line per neuron, then one per cluster."""
        cache = self.__dict__.setdefault("_baked_labels_cache", {})
        if method not in cache:
            path = self._check(f"search/{method}/fallback_labels.txt")
            try:
                cache[method] = path.read_text(encoding="utf-8").split("\n")
            except UnicodeDecodeError:
                raise IndexError_(f"corrupt index file {path}: not UTF-8 text") from None
        return cache[method]

    # -- clusters -----------------------------------------------------------------------------------
    def parse_cluster_id(self, text: str) -> tuple[str, int, int]:
        """``17`` (search method, default K), ``k50/17`` or ``filter+tfidf/k200/17``."""
        parts = text.strip().split("/")
        try:
            if len(parts) == 1:
                return self.search_method, self.default_k, int(parts[0])
            if len(parts) == 2 and parts[0].startswith("k"):
                return self.search_method, int(parts[0][1:]), int(parts[1])
            if len(parts) == 3 and parts[1].startswith("k"):
                return parts[0], int(parts[1][1:]), int(parts[2])
        except ValueError:
            pass
        raise NeurosearchError(f"bad cluster id '{text}': use ID, kK/ID or METHOD/kK/ID (e.g. 17, k200/17)")

    def clusters(self, method: str, k: int) -> list[dict[str, Any]]:
        if method not in self.methods:
            raise NeurosearchError(f"method '{method}' is not in this index (has: {', '.join(self.methods)})")
        if k not in self.ks:
            raise NeurosearchError(f"K={k} is not in this index (has K = {', '.join(map(str, self.ks))})")
        return self.json(f"methods/{method}/clusters_k{k}.json")["clusters"]

    def cluster(self, cluster_id: str) -> ClusterInfo:
        method, k, number = self.parse_cluster_id(cluster_id)
        found = self.clusters(method, k)
        if not 0 <= number < len(found):
            raise NeurosearchError(f"cluster {cluster_id} does not exist: {method} K={k} has clusters 0..{len(found) - 1}")
        data = found[number]
        tokens = [self.kept_tokens[i] for i in data["top_tokens"]]
        key = f"{method}/k{k}/{number}"
        theme, source = self.label_for("cluster", key, method, self._cluster_rows(method)[f"k{k}/{number}"])
        stored = self.labels.get(f"cluster:{key}")
        return ClusterInfo(
            method=method,
            k=k,
            id=number,
            neurons=[self.neuron_name(n) for n in data["neurons"]],
            dropped=[self.neuron_name(n) for n in data.get("dropped", [])],
            top_tokens=tokens,
            top_weights=[float(w) for w in data["top_weights"]],
            layer_sizes={int(a): int(b) for a, b in data["layer_sizes"].items()},
            avg_distance=float(data["avg_distance"]),
            max_distance=float(data["max_distance"]),
            label={"theme": theme, "source": source, "explanation": stored.explanation if stored else None},
        )

    # -- find ---------------------------------------------------------------------------------------
    def expand(self, query: str | None = None, tokens: list[str] | None = None) -> ExpandedQuery:
        if tokens is not None:
            return self.expander.from_tokens(tokens)
        return self.expander.expand(query or "")

    def cluster_keys(self, method: str) -> list[str]:
        """``kK/ID`` of every cluster of ``method``: the rows that ``rank("clusters", ...)`` returns."""
        return list(self.json(f"search/{method}/clusters.json")["keys"])

    def _cluster_rows(self, method: str) -> dict[str, int]:
        cache = self.__dict__.setdefault("_cluster_rows_cache", {})
        if method not in cache:
            cache[method] = {key: row for row, key in enumerate(self.cluster_keys(method))}
        return cache[method]

    def postings(self, kind: str, method: str | None = None) -> Postings:
        """The inverted lists that score ``kind`` (neurons or clusters) of ``method``."""
        method = method or self.search_method
        name = "neurons" if kind == "neurons" else "clusters"
        cache = self.__dict__.setdefault("_postings_cache", {})
        if (method, name) not in cache:
            n_rows = self.manifest.n_neurons if name == "neurons" else len(self.cluster_keys(method))
            parts = [self.table(f"search/{method}/{name}_postings_{part}.npy") for part in PARTS]
            cache[(method, name)] = Postings(*parts, n_rows=n_rows)
        return cache[(method, name)]

    def rank(
        self, kind: str, expanded: ExpandedQuery, *, method: str | None = None, exact: bool | None = None,
        k: int | None = None, limit: int | None = None,
    ) -> list[tuple[int, float]]:
        """(row, score) of every neuron or cluster, best first (ties in row order).

        ``exact=True`` scores every row; ``False`` reranks HNSW candidates; ``None`` (default) is
        exact below ``SearchConfig.hnsw_min_rows`` rows, where scoring everything is faster than
        loading the HNSW graph. Rows index the neurons (flat index) or ``cluster_keys(method)``.
        Methods other than the index's search method have no HNSW files and are always exact.
        ``limit`` keeps only that many of the best rows.
        """
        method = method or self.search_method
        postings = self.postings(kind, method)
        if exact is None:
            exact = postings.n_rows < self.config.hnsw_min_rows
        scores = postings.scores(expanded.as_dict())
        rows: Any = range(postings.n_rows)
        if not exact and method == self.search_method:
            rows = self._hnsw_candidates(kind, method, self.dense_vector(expanded), postings.n_rows)
        if kind == "clusters" and k is not None:
            prefix = f"k{k}/"
            keys = self.cluster_keys(method)
            rows = [row for row in rows if keys[row].startswith(prefix)]
        return ranked(scores, rows, limit)

    def _hnsw_candidates(self, kind: str, method: str, dense: np.ndarray, total: int) -> list[int]:
        from neurosearch.build.search import load_hnsw

        name = "neurons" if kind == "neurons" else "clusters"
        cache = self.__dict__.setdefault("_hnsw", {})
        if name not in cache:
            relative = f"search/{method}/{name}.hnsw"
            if relative not in self._verified:  # hnswlib parses it in C: only verified bytes go in
                self.manifest.verify(self.path, [relative])
                self._verified.add(relative)
            try:
                cache[name] = load_hnsw(self.path / relative, dense.shape[0], self.config.hnsw_ef)
            except (RuntimeError, ValueError, MemoryError) as exc:
                raise IndexError_(f"corrupt index file {self.path / relative}: {exc}") from None
        count = min(self.config.candidates, total)
        labels, _ = cache[name].knn_query(dense[None, :], k=count)
        return [int(row) for row in labels[0]]

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
    ) -> FindResult:
        """Neurons and clusters ranked by how strongly the query's tokens are among their peaks."""
        if top < 1:
            raise ConfigError(f"top must be at least 1, got {top}", option="top")
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got '{kind}'", option="kind")
        if k is not None and k not in self.ks:
            raise NeurosearchError(f"K={k} is not in this index (has K = {', '.join(map(str, self.ks))})")
        method = method or self.search_method
        if method not in self.methods:
            raise NeurosearchError(f"method '{method}' is not in this index (has: {', '.join(self.methods)})")
        with self._verifying_in_background():
            return self._find(query, tokens, top, kind, k, exact, method)

    def _find(self, query: str | None, tokens: list[str] | None, top: int, kind: str, k: int | None,
              exact: bool | None, method: str) -> FindResult:
        expanded = self.expand(query, tokens)
        results: list[Result] = []
        if kind in ("both", "clusters"):
            keys = self.cluster_keys(method)
            ranked = self.rank("clusters", expanded, method=method, exact=exact, k=k if k is not None else self.default_k,
                               limit=top)
            for position, score in ranked:
                results.append(self._cluster_hit(method, position, keys[position], score))
        if kind in ("both", "neurons"):
            top_index = self.table(f"methods/{method}/neuron_top_tokens.npy")
            for position, score in self.rank("neurons", expanded, method=method, exact=exact, limit=top):
                name = self.neuron_name(position)
                tokens_of = [self.kept_tokens[i] for i in top_index.row(position)[:FIND_TOP_TOKENS]]
                theme, source = self.label_for("neuron", name, method, position)
                results.append(Result("neuron", name, score, theme, source, tokens_of, 1, [name]))
        results.sort(key=lambda r: -r.score)
        return FindResult(expanded, results[: top if kind != "both" else 2 * top], expanded.notes)

    def _cluster_hit(self, method: str, row: int, key: str, score: float) -> Result:
        """A cluster as ``find`` reports it, from the search stage's arrays (not the clusters' JSON)."""
        folder = f"search/{method}"
        offsets = self.table(f"{folder}/cluster_neurons_offsets.npy")
        neurons = [self.neuron_name(n) for n in self.table(f"{folder}/cluster_neurons.npy")[offsets[row] : offsets[row + 1]]]
        tokens = [self.kept_tokens[i] for i in self.table(f"{folder}/cluster_tokens.npy").row(row)[:FIND_TOP_TOKENS]]
        theme, source = self.label_for("cluster", f"{method}/{key}", method, row)
        return Result("cluster", f"{method}/{key}", score, theme, source, tokens, len(neurons), neurons)

    # -- neurons ------------------------------------------------------------------------------------
    def neuron(self, name: str, method: str | None = None) -> dict[str, Any]:
        import numpy as np

        flat = self.neuron_index(name)
        method = method or self.search_method
        top_index, top_values = self.method_top(method)
        refs = self.npy("neurons/top_refs.npy")[flat]
        values = self.npy("neurons/top_values.npy")[flat]
        tokens = [self.kept_tokens[i] for i in top_index[flat]]
        theme, source = self.label_for("neuron", name, method, flat)
        return {
            "id": self.neuron_name(flat),
            "method": method,
            "label": theme,
            "label_source": source,
            "top_tokens": tokens,
            "top_weights": [float(v) for v in top_values[flat]],
            "mean": float(self.npy("neurons/mean.npy")[flat]),
            "std": float(self.npy("neurons/std.npy")[flat]),
            "top_activations": [
                {"document": int(d), "position": int(p), "token_id": int(t), "value": float(v)}
                for (d, p, t), v in zip(refs, values)
                if np.isfinite(v)
            ],
        }

    def cluster_refs(self, info: ClusterInfo, limit: int) -> list[dict[str, Any]]:
        """The cluster's strongest occurrences: its neurons' top activations, ranked by z-score."""
        import numpy as np

        refs = self.npy("neurons/top_refs.npy")
        values = self.npy("neurons/top_values.npy")
        mean = self.npy("neurons/mean.npy")
        std = np.maximum(self.npy("neurons/std.npy"), 1e-6)
        candidates: dict[tuple[int, int], dict[str, Any]] = {}
        for name in info.neurons:
            flat = self.neuron_index(name)
            for (document, position, token_id), value in zip(refs[flat], values[flat]):
                if not np.isfinite(value):
                    continue
                z = float((value - mean[flat]) / std[flat])
                key = (int(document), int(position))
                if key not in candidates or candidates[key]["z"] < z:
                    candidates[key] = {"document": key[0], "position": key[1], "token_id": int(token_id),
                                       "value": float(value), "z": z, "neuron": name}
        return sorted(candidates.values(), key=lambda r: -r["z"])[:limit]

    def ablation_for(self, kind: str, key: str) -> dict[str, Any] | None:
        """The stored ``ablate`` result for a target, if any (the index's or the user's ablations.json)."""
        from neurosearch.index.stored import ablation_results

        return ablation_results(self.state).get(f"{kind}:{key}")

    def info(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": str(self.path),
            "format_version": m.format_version,
            "neurosearch_version": m.neurosearch_version,
            "model": m.model,
            "site": m.site,
            "layers": m.n_layers,
            "neurons_per_layer": m.neurons_per_layer,
            "neurons": m.n_neurons,
            "corpus": m.corpus,
            "tokens_kept": len(self.kept_tokens),
            "min_count": self.kept.get("min_count"),
            "methods": self.methods,
            "search_method": self.search_method,
            "ks": self.ks,
            "stages": {name: {k: v for k, v in stage.items() if k != "identity"} for name, stage in m.stages.items()},
            "labels": len(self.labels),
            "mlm_head": "model" if m.model.get("has_mlm_head") else "fitted" if self.head_dir is not None else "none",
            "head_path": str(self.head_dir) if self.head_dir is not None and not m.model.get("has_mlm_head") else None,
            "results": self.state.describe(),
            "refined": bool(m.configs.get("clusters", {}).get("refine")),
            "concepts": None if "search/concepts.json" not in m.files else {
                "source": m.stages.get("search", {}).get("concepts"),
                "count": len(self.json("search/concepts.json")["keys"])},
        }


class _Verifier:
    """One thread that hashes index files in the order they are read (``concurrent.futures``
    alone took ~9 ms of a cold ``find`` to import)."""

    def __init__(self, verify: Callable[[str], None]):
        import queue
        import threading

        self._verify = verify
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._errors: dict[str, BaseException] = {}
        self._thread = threading.Thread(target=self._run, name="neurosearch-verify", daemon=True)
        self._thread.start()

    def submit(self, relative: str) -> None:
        self._queue.put(relative)

    def _run(self) -> None:
        while (relative := self._queue.get()) is not None:
            try:
                self._verify(relative)
            except BaseException as exc:  # reported by finish(), in the caller's thread
                self._errors[relative] = exc

    def finish(self) -> dict[str, BaseException]:
        """Wait for every submitted file; the errors by file."""
        self._queue.put(None)
        self._thread.join()
        return self._errors
