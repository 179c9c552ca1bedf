"""The slow path of a query: a phrase without a stored expansion, embedded with the index's model.

Query time (``index/``) never imports the model; an :class:`PhraseEmbedder` handed to
``Index.load(..., embedder=PhraseEmbedder())`` (the CLI does) loads torch and the model on first
use (seconds, once per ``Index``), embeds the phrase in the model's sentence space and scores the
kept tokens with the same features and fitted weights as the build (``index/semantic.py``), taking
WordNet members from the phrase's head word. Importing this module imports neither torch nor numpy.
"""

from __future__ import annotations

from typing import Any

from neurosearch.errors import NeurosearchError


class PhraseEmbedder:
    """``(vocabulary, text, head) -> expansion``: what ``index.vocabulary.Vocabulary`` calls for a
    phrase with no stored expansion (``vocabulary``: the index's ``Vocabulary``). It keeps the model
    and the kept tokens' families it loaded, per index folder."""

    def __init__(self) -> None:
        self._models: dict[Any, Any] = {}
        self._families: dict[Any, Any] = {}

    def __call__(self, vocabulary: Any, text: str, head: str | None) -> list[tuple[int, float]]:
        try:
            return self.embed(vocabulary, text, head)
        except (OSError, RuntimeError, ValueError, MemoryError) as exc:  # torch and the weights' own errors
            raise NeurosearchError(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None

    def model(self, vocabulary: Any) -> Any:
        """The index's model, loaded once (checked against the manifest's weights hash)."""
        key = vocabulary.files.path
        if key not in self._models:
            try:
                from neurosearch.model.loading import load_index_model
            except ImportError as exc:  # torch or transformers missing
                raise NeurosearchError(f"torch/transformers are not installed ({exc.name})") from None
            self._models[key] = load_index_model(vocabulary.files)
        return self._models[key]

    def embed(self, vocabulary: Any, text: str, head: str | None) -> list[tuple[int, float]]:
        """Expansion of ``text`` (kept index, membership probability), heaviest first; its WordNet
        members are those of ``head`` (a key of the index's concept table) when given."""
        from neurosearch.index.concepts import FamilyIndex
        from neurosearch.model.sentences import sentence_vectors

        key = vocabulary.files.path
        if key not in self._families:
            self._families[key] = FamilyIndex(vocabulary.kept_tokens)
        phrase = " ".join(text.lower().split())
        vector = sentence_vectors(self.model(vocabulary), [phrase])[0]
        return expand_phrase(vocabulary, phrase, vector, self._families[key], head)


def expand_phrase(vocabulary: Any, phrase: str, vector: Any, families: Any, head: str | None) -> list[tuple[int, float]]:
    """The expansion of a phrase with sentence vector ``vector``, scored like the build's keys."""
    from neurosearch.config import ExpansionConfig, from_dict
    from neurosearch.format import layout
    from neurosearch.index.semantic import candidate_features, concept_of, expansion_of

    concept = concept_of(phrase, vector, lambda word: vocabulary.word_vector(vocabulary.pieces(word)), families,
                         vocabulary.concepts, head=head)
    (candidates, features), = candidate_features([concept], vocabulary.kept_sentences, vocabulary.kept_space,
                                                 vocabulary.ancestors)
    config = from_dict(ExpansionConfig, vocabulary.files.json(layout.EXPANSION_KEYS)["config"])
    return expansion_of(concept, candidates, features, config, vocabulary.expandable_mask)
