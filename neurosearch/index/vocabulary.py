"""An index's vocabulary: its kept tokens, its token embedding space, and queries expanded over them.

Queries are tokenised with the stored WordPiece vocabulary (``wordpiece.py``; other tokenizers
with the ``tokenizers`` library) and expanded with stored neighbour lists, all without numpy; the
embedding rows (numpy, memory-mapped) are read only for words of several pieces, the ANN vector
and plots.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from neurosearch.config import SearchConfig
from neurosearch.format import layout
from neurosearch.format.files import IndexFiles
from neurosearch.format.manifest import IndexError_
from neurosearch.index.query import ExpandedQuery, QueryExpander, nearest_kept

if TYPE_CHECKING:
    import numpy as np

    from neurosearch.index.concepts import ConceptTable


class Vocabulary:
    """The kept tokens of one index (rows of every profile) and the token space they live in."""

    def __init__(self, files: IndexFiles, config: SearchConfig):
        self.files = files
        self.config = config

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
        """The query's unit vector in the token embedding space, which the HNSW graphs are searched with."""
        import numpy as np

        dense = np.zeros(self.kept_space.shape[1], dtype=np.float32)
        for ids in expanded.word_pieces:  # the sum of the query words' unit vectors
            vector = self.word_vector(ids)
            if vector is not None:
                dense += vector
        if not np.any(dense):  # or the weighted sum of its tokens' vectors
            weights = np.asarray(expanded.weights, dtype=np.float32)
            dense = (self.kept_space[np.asarray(expanded.token_index, dtype=np.int64)] * weights[:, None]).sum(axis=0)
        norm = np.linalg.norm(dense)
        return (dense / norm if norm > 0 else dense).astype(np.float32)

    def word_neighbours(self, ids: list[int]) -> list[tuple[int, float]]:
        """A word's nearest kept tokens: stored for single tokens, computed (numpy) for words of several."""
        count = self.config.neighbours
        if len(ids) == 1:
            table = self.files.table(layout.QUERY_NEIGHBOURS)
            if table.shape[1] >= count:
                similarity = self.files.table(layout.QUERY_NEIGHBOUR_SIMILARITY)
                return list(zip(table.row(ids[0])[:count], similarity.row(ids[0])[:count]))
        vector = self.word_vector(ids)
        return [] if vector is None else nearest_kept(vector, self.kept_space, count)

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
        return QueryExpander(self.pieces, self.kept_tokens, self.kept["ids"], self.word_neighbours, self.config,
                             self.concepts)

    def expand(self, query: str | None = None, tokens: list[str] | None = None) -> ExpandedQuery:
        """A concept (``weekdays``) or an explicit list of kept tokens, as weighted kept tokens."""
        if tokens is not None:
            return self.expander.from_tokens(tokens)
        return self.expander.expand(query or "")
