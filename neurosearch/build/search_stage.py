"""The build's last stage: everything ``find`` reads, so that queries need no numpy and no model.

Per profile method: the scoring weights of neurons and clusters as inverted lists, what ``find``
shows of a cluster hit, every row's offline label, and for the search method the HNSW graphs
(``search.py`` says how rows are scored). For the whole index: the kept tokens' embedding rows,
every vocabulary token's nearest kept tokens, the WordPiece tokenizer's files and, when WordNet
data is found, the concept table. Paths come from ``format/layout.py``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurosearch.config import SearchConfig, to_dict
from neurosearch.format import layout
from neurosearch.format.atomic import save_npy_atomic, write_bytes_atomic, write_json_atomic
from neurosearch.format.manifest import Manifest
from neurosearch.progress import Reporter


def query_neighbours(vocabulary_space: np.ndarray, kept_space: np.ndarray, count: int,
                     block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Every vocabulary token's ``count`` nearest kept tokens (kept index, cosine), best first: what
    ``query.nearest_kept`` computes for a one-token word, stored so that queries need no numpy."""
    from neurosearch.index.query import nearest_kept_rows

    order, similarity = nearest_kept_rows(vocabulary_space, kept_space, count, block)
    index_type = np.uint16 if kept_space.shape[0] <= np.iinfo(np.uint16).max + 1 else np.int32
    return order.astype(index_type), similarity


@dataclass
class TokenSpace:
    """The profiles stage's vocabulary, as the search stage needs it."""

    kept_tokens: list[str]
    vocabulary: np.ndarray
    """[V, D] unit rows of every vocabulary token (dequantised)."""
    kept: np.ndarray
    """[Vk, D] the kept tokens' rows."""


@dataclass
class ClusterRows:
    """Every cluster of every K of one method, in row order (rows are keyed ``kK/ID``)."""

    keys: list[str]
    means: list[np.ndarray]
    """Mean unit profile of each cluster."""
    members: list[list[int]]
    shown: list[list[int]]
    """The top tokens ``find`` shows of each cluster."""


class SearchStage:
    """One run of the search stage into an index directory whose earlier stages are done."""

    def __init__(self, out: Path, manifest: Manifest, reporter: Reporter, concepts: bool):
        self.out = out
        self.manifest = manifest
        self.reporter = reporter
        self.concepts = concepts
        self.profiles = manifest.configs["profiles"]

    def run(self) -> dict[str, Any]:
        """Write every file of the stage; the stage's facts for the manifest."""
        self._clear()
        space = self._token_space()
        methods = self.profiles["methods"]
        advance = self.reporter.task("search (methods, concepts)", len(methods) + 1)
        for method in methods:
            self._write_method(method, space)
            advance(1)
        concepts = self._bake_concepts(space.kept_tokens)
        advance(1)
        self.reporter.finish("search (methods, concepts)")
        stored = space.kept.astype(np.float16)  # no dequantising per query
        self._save(layout.KEPT_SPACE, stored)
        self._write_query_neighbours(space.vocabulary, stored.astype(np.float32))
        self._write_wordpiece()
        return {"method": self.profiles["search_method"], "concepts": concepts, "format": layout.SEARCH_FORMAT}

    # -- steps ---------------------------------------------------------------------------------------
    def _clear(self) -> None:
        """No stale files of another search method (or an older format)."""
        shutil.rmtree(self.out / layout.SEARCH_DIR, ignore_errors=True)
        prefix = layout.SEARCH_DIR + "/"
        self.manifest.files = {k: v for k, v in self.manifest.files.items() if not k.startswith(prefix)}

    def _token_space(self) -> TokenSpace:
        from neurosearch.format.quantized import dequantize_rows

        kept = json.loads((self.out / layout.TOKENS).read_text())
        codes, scale = np.load(self.out / layout.TOKEN_SPACE), np.load(self.out / layout.TOKEN_SPACE_SCALE)
        vocabulary = dequantize_rows(codes, scale)
        return TokenSpace(kept["tokens"], vocabulary, vocabulary[np.asarray(kept["ids"])])

    def _write_method(self, method: str, space: TokenSpace) -> None:
        """The scoring weights, find's arrays, the cluster keys and offline labels of one method."""
        from neurosearch.build.linkage import unit_rows
        from neurosearch.build.profiles import top_tokens
        from neurosearch.build.search import peak_weights

        profiles = np.load(self.out / layout.profiles_file(method))
        top = np.load(self.out / layout.neuron_top_tokens(method))
        weights = peak_weights(profiles, top)
        clusters = self._cluster_rows(method, unit_rows(profiles))
        cluster_profiles = np.stack(clusters.means).astype(np.float32)
        cluster_top, _ = top_tokens(cluster_profiles, self.profiles["top_tokens"])
        cluster_weights = peak_weights(cluster_profiles, cluster_top)
        neuron_top, neuron_weights = self._neuron_scoring(top, weights)
        members = clusters.members
        # each neuron's strongest peak weight: how focused it is (label --neurons picks by it)
        self._save(layout.neuron_focus_file(method), weights[:, 0].astype(np.float32))
        # what find shows of a cluster hit, without parsing the clusters' JSON
        self._save(layout.cluster_tokens_file(method), np.asarray(clusters.shown, dtype=np.int32))
        self._save(layout.cluster_neurons_offsets_file(method),
                   np.cumsum([0] + [len(n) for n in members], dtype=np.int64))
        self._save(layout.cluster_neurons_file(method), np.asarray([n for group in members for n in group], dtype=np.int32))
        self._write_postings(method, "neurons", neuron_top, neuron_weights, len(space.kept_tokens))
        self._write_postings(method, "clusters", cluster_top, cluster_weights, len(space.kept_tokens))
        write_json_atomic(self.out / layout.cluster_keys_file(method), {"method": method, "keys": clusters.keys})
        labels = _offline_labels(top, space) + _offline_labels(clusters.shown, space)
        write_bytes_atomic(self.out / layout.fallback_labels_file(method), ("\n".join(labels) + "\n").encode("utf-8"))
        self._record(layout.cluster_keys_file(method), layout.fallback_labels_file(method))
        if method == self.profiles["search_method"]:
            self._write_hnsw(method, "neurons", neuron_top, neuron_weights, space.kept)
            self._write_hnsw(method, "clusters", cluster_top, cluster_weights, space.kept)

    def _cluster_rows(self, method: str, unit: np.ndarray) -> ClusterRows:
        from neurosearch.ids import ClusterId

        rows = ClusterRows([], [], [], [])
        for k in self.manifest.configs["clusters"]["ks"]:
            found = json.loads((self.out / layout.clusters_file(method, k)).read_text())["clusters"]
            for cluster in found:
                rows.keys.append(ClusterId(None, k, cluster["id"]).row_key)
                rows.means.append(unit[cluster["neurons"]].mean(axis=0))
                rows.members.append(cluster["neurons"])
                rows.shown.append(cluster["top_tokens"][: layout.FIND_TOP_TOKENS])
        return rows

    def _neuron_scoring(self, top: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What scores a neuron: its z-score peaks, or its first tokens at equal weight
        (``ProfileConfig.neuron_score_tokens``)."""
        score_tokens = self.profiles.get("neuron_score_tokens")
        if not score_tokens:
            return top, weights
        neuron_top = top[:, :score_tokens]
        return neuron_top, np.full(neuron_top.shape, 1 / np.sqrt(neuron_top.shape[1]), dtype=np.float32)

    def _write_postings(self, method: str, kind: str, top: np.ndarray, weights: np.ndarray, n_tokens: int) -> None:
        from neurosearch.index.postings import build_postings

        for part, array in build_postings(top, weights, n_tokens).items():
            self._save(layout.postings_file(method, kind, part), array)

    def _write_hnsw(self, method: str, kind: str, top: np.ndarray, weights: np.ndarray, space: np.ndarray) -> None:
        from neurosearch.build.search import build_hnsw, dense_vectors

        build_hnsw(dense_vectors(top, weights, space), self.out / layout.hnsw_file(method, kind))
        self._record(layout.hnsw_file(method, kind))

    def _write_query_neighbours(self, vocabulary: np.ndarray, kept: np.ndarray) -> None:
        neighbours, similarity = query_neighbours(vocabulary, kept, SearchConfig().neighbours)
        self._save(layout.QUERY_NEIGHBOURS, neighbours)
        self._save(layout.QUERY_NEIGHBOUR_SIMILARITY, similarity)

    def _write_wordpiece(self) -> None:
        """BERT's tokenizer: queries tokenise without the tokenizers library."""
        from neurosearch.index.wordpiece import WordPiece

        wordpiece = WordPiece.settings_of(json.loads((self.out / layout.TOKENIZER).read_text(encoding="utf-8")))
        if wordpiece is not None:
            write_bytes_atomic(self.out / layout.WORDPIECE_VOCAB, "\n".join(wordpiece.pop("tokens")).encode("utf-8"))
            write_json_atomic(self.out / layout.WORDPIECE, wordpiece)
            self._record(layout.WORDPIECE_VOCAB, layout.WORDPIECE)

    def _bake_concepts(self, kept_tokens: list[str]) -> str | None:
        """WordNet's concept members over the kept tokens, when WordNet is found; its version."""
        from neurosearch.build.wordnet import WordNet, WordNetConfig, concept_table

        if not self.concepts:
            return None
        wordnet = WordNet.find()
        if wordnet is None:
            self.reporter.log("search: no WordNet data found (see README): queries will use embeddings only")
            return None
        self.reporter.log(f"search: WordNet concept table over {len(kept_tokens):,} kept tokens ...")
        table = concept_table(wordnet, kept_tokens, WordNetConfig())
        for name in layout.CONCEPT_ARRAYS:
            self._save(layout.concept_array(name), getattr(table, name))
        write_json_atomic(self.out / layout.CONCEPTS,
                          {"source": wordnet.version, "config": to_dict(WordNetConfig()), "keys": table.keys})
        self._record(layout.CONCEPTS)
        self.reporter.log(f"search: {len(table.keys)} WordNet concepts baked into the index")
        return wordnet.version

    # -- writing -------------------------------------------------------------------------------------
    def _save(self, relative: str, array: np.ndarray) -> None:
        save_npy_atomic(self.out / relative, array)
        self._record(relative)

    def _record(self, *relative: str) -> None:
        for name in relative:
            self.manifest.record(self.out, name)


def _offline_labels(top: Any, space: TokenSpace) -> list[str]:
    """The offline label of each row of top tokens (served when there is no LLM label)."""
    from neurosearch.index.labels import fallback_label

    tokens = space.kept_tokens
    return [fallback_label([tokens[i] for i in row[:20]], space.kept[list(row[:20])]).theme for row in top]
