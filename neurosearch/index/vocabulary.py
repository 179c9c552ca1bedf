"""An index's vocabulary: its kept tokens, its token embedding space, and queries expanded over them.

Queries are matched to the build's stored concept expansions (``query.py``), without numpy; the
stored WordPiece vocabulary (``wordpiece.py``) tokenises words for the slow path, which embeds a
phrase with no stored expansion using the model (``phrases.py``). The embedding rows (numpy) are
read only for that path, the ANN vector and plots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from neurosearch.config import SearchConfig
from neurosearch.format import layout
from neurosearch.format.files import IndexFiles
from neurosearch.format.manifest import IndexError_
from neurosearch.index.query import ExpandedQuery, ExpansionTable, QueryExpander

if TYPE_CHECKING:
    import numpy as np

    from neurosearch.index.concepts import ConceptTable


Embedder = Callable[[Any, str, "str | None"], Sequence[tuple[int, float]]]
"""(the index's Vocabulary, a phrase, the concept key of its head word or None) -> the phrase's
expansion (kept index, membership probability); raises NeurosearchError when it cannot. One with a
``cached`` method of the same arguments (returning the expansion or None) is asked that first."""


class Vocabulary:
    """The kept tokens of one index (rows of every profile) and the token space they live in."""

    def __init__(self, files: IndexFiles, config: SearchConfig, embedder: Embedder | None = None):
        self.files = files
        self.config = config
        self.embedder = embedder
        """Embeds a phrase without a stored expansion (``model.phrases.PhraseEmbedder``), or None."""

    # -- kept tokens -------------------------------------------------------------------------------
    @cached_property
    def kept(self) -> dict[str, Any]:
        """``tokens.json``: kept tokens, their vocabulary ids and counts, and the count threshold."""
        return self.files.json(layout.TOKENS)

    @cached_property
    def kept_tokens(self) -> list[str]:
        return list(self.kept["tokens"])

    @cached_property
    def _kept_position(self) -> dict[str, int]:
        return {token: index for index, token in enumerate(self.kept_tokens)}

    def is_kept(self, token: str) -> bool:
        """Whether ``token`` is one of the index's kept tokens (what a search can weigh)."""
        return token in self._kept_position

    def tokens_of(self, rows: Any) -> list[str]:
        """The kept tokens at kept-token indices ``rows``."""
        kept = self.kept_tokens
        return [kept[i] for i in rows]

    # -- the token embedding space ---------------------------------------------------------------------
    @cached_property
    def kept_space(self) -> np.ndarray:
        """Unit float32 embedding rows of the kept tokens (stored as float16 by the build)."""
        import numpy as np

        return self.files.npy(layout.KEPT_SPACE).astype(np.float32)

    def kept_vectors(self, tokens: list[str]) -> np.ndarray:
        """Unit embedding rows of kept tokens (for plots and labels)."""
        position = self._kept_position
        return self.kept_space[[position[t] for t in tokens]]

    def token_rows(self, ids: Any) -> np.ndarray:
        """Unit float32 embedding rows of vocabulary ids (dequantised on demand)."""
        import numpy as np

        from neurosearch.format.quantized import dequantize_rows

        # memory-mapped: a query reads a few rows of the 30k-row table, not all of it
        codes = self.files.npy(layout.TOKEN_SPACE, mmap=True)
        scale = self.files.npy(layout.TOKEN_SPACE_SCALE)
        ids = np.asarray(ids, dtype=np.int64)
        return dequantize_rows(codes[ids], scale[ids])

    def word_vector(self, ids: list[int]) -> np.ndarray | None:
        """Unit mean embedding of a word's pieces (None when it is zero)."""
        import numpy as np

        vector = self.token_rows(ids).mean(axis=0)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else None

    def dense_vector(self, expanded: ExpandedQuery) -> np.ndarray:
        """The query's unit vector in the token embedding space, which the HNSW graphs are searched
        with: the weighted sum of its tokens' embedding rows."""
        import numpy as np

        weights = np.asarray(expanded.weights, dtype=np.float32)
        dense = (self.kept_space[np.asarray(expanded.token_index, dtype=np.int64)] * weights[:, None]).sum(axis=0)
        norm = np.linalg.norm(dense)
        return (dense / norm if norm > 0 else dense).astype(np.float32)

    @cached_property
    def expandable_mask(self) -> np.ndarray:
        """1 for the kept tokens an expansion may hold (``semantic.expandable_mask``)."""
        from neurosearch.index.semantic import expandable_mask

        return expandable_mask(self.kept_tokens)

    @cached_property
    def kept_sentences(self) -> np.ndarray:
        """The kept tokens' unit vectors in the model's sentence space (the slow path's)."""
        import numpy as np

        return self.files.npy(layout.KEPT_SENTENCES).astype(np.float32)

    @cached_property
    def ancestors(self) -> Any:
        """What WordNet says each kept token is a kind of (``semantic.Ancestors``; None without WordNet)."""
        if not self.files.has(layout.ANCESTOR_ROWS):
            return None
        import numpy as np

        from neurosearch.index.semantic import Ancestors

        return Ancestors(self.files.npy(layout.ANCESTOR_SENTENCES).astype(np.float32),
                         self.files.npy(layout.ANCESTOR_ROWS))

    def _embed_phrase(self, text: str, head: str | None) -> tuple[list[tuple[int, float]], float | None, list[str]]:
        """The slow path: a phrase without a stored expansion, embedded with the index's model, the
        seconds it took (None: the embedder had kept it from an earlier run, ``cached``) and what
        the embedder noted (its language model: used, or why not)."""
        import time

        cached = getattr(self.embedder, "cached", None)
        found = cached(self, text, head) if cached is not None else None
        if found is not None:
            return list(found), None, list(getattr(self.embedder, "notes", []))
        started = time.time()
        found = self.embedder(self, text, head)
        return found, time.time() - started, list(getattr(self.embedder, "notes", []))

    # -- tokenising and expanding queries ----------------------------------------------------------------
    @cached_property
    def pieces(self) -> Callable[[str], list[int]]:
        """Text -> vocabulary ids: pure-Python WordPiece when the build extracted it (fast), else tokenizers."""
        if self.files.has(layout.WORDPIECE):
            from neurosearch.index.wordpiece import WordPiece

            vocabulary = self.files.lines(layout.WORDPIECE_VOCAB)
            try:
                return WordPiece.from_settings(self.files.json(layout.WORDPIECE), vocabulary).encode
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise IndexError_(f"corrupt index file {self.files.path / layout.WORDPIECE}: {exc}") from None
        tokenizer = self.tokenizer
        return lambda text: tokenizer.encode(text, add_special_tokens=False).ids

    @cached_property
    def tokenizer(self) -> Any:
        """The model's tokenizer (``tokenizers.Tokenizer``), with offsets for rendering contexts."""
        from tokenizers import Tokenizer

        path = self.files.checked(layout.TOKENIZER)
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers library raises a bare Exception for a bad file
            raise IndexError_(f"corrupt index file {path}: {exc}") from None

    @cached_property
    def concepts(self) -> ConceptTable | None:
        """WordNet's concept members over the kept tokens, when the build baked them (else None)."""
        if not self.files.has(layout.CONCEPTS):
            return None
        from neurosearch.index.concepts import ConceptTable

        keys = self.files.json(layout.CONCEPTS)["keys"]
        return ConceptTable(keys, *(self.files.table(layout.concept_array(name)) for name in layout.CONCEPT_ARRAYS))

    @cached_property
    def expander(self) -> QueryExpander:
        keys = self.files.json(layout.EXPANSION_KEYS)
        table = ExpansionTable(keys["keys"], keys.get("aliases", {}),
                               *(self.files.table(layout.expansion_array(name)) for name in layout.EXPANSION_ARRAYS))
        concepts = self.concepts
        slow = self._embed_phrase if self.config.embed_phrases and self.embedder is not None else None
        return QueryExpander(self.kept_tokens, table, concepts.key_of if concepts else lambda _: None, slow,
                             concepts is not None)

    def expand(self, query: str | None = None, tokens: list[str] | None = None) -> ExpandedQuery:
        """A concept (``weekdays``) or an explicit list of kept tokens, as weighted kept tokens."""
        if tokens is not None:
            return self.expander.from_tokens(tokens)
        return self.expander.expand(query or "")
