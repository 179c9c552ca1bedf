"""The slow path of a query: a phrase without a stored expansion, embedded with the index's model.

Query time (``index/``) never imports the model; an :class:`PhraseEmbedder` handed to
``Index.load(..., embedder=PhraseEmbedder())`` (the CLI does) loads torch and the model on first
use (seconds, once per ``Index``), embeds the phrase in the model's sentence space and scores the
kept tokens with the same features and fitted weights as the build (``index/semantic.py``), taking
WordNet members from the phrase's head word. Importing this module imports neither torch nor numpy.

With a ``cache_dir`` (the CLI gives ``<state root>/cache``) the expansions it computed are kept
between runs, keyed by the index's files and the source of the code that computes them, so asking
for the same phrase again takes milliseconds, and a rebuilt index or changed code computes it anew.
The cache is never needed: a cache that cannot be read or written is left alone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from neurosearch.errors import NeurosearchError

CACHED_PHRASES = 2000
"""Most phrases kept per index (later ones are computed every time)."""
_EXPANSION_CODE = ("index/semantic.py", "index/semantic_names.py", "index/concepts.py", "index/query.py", "words.py",
                   "model/phrases.py", "model/sentences.py", "lm/membership.py")
"""The modules whose source decides a phrase's expansion (with the index's files)."""


class PhraseEmbedder:
    """``(vocabulary, text, head) -> expansion``: what ``index.vocabulary.Vocabulary`` calls for a
    phrase with no stored expansion (``vocabulary``: the index's ``Vocabulary``). It keeps the model
    and the kept tokens' families it loaded, per index folder, and the expansions it computed in
    ``cache_dir`` when given (:meth:`cached` reads them)."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, language_model: Any = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._code: str | None = None  # digest of the expansion code's source (cache_file)
        self._models: dict[Any, Any] = {}
        self._families: dict[Any, Any] = {}
        self._lms: dict[str, Any] = {}  # identity key -> MembershipScorer (or the reason it is unavailable)
        self._given_lm = language_model
        self.notes: list[str] = []
        """What the last call said about the language model (used, or why not)."""

    def __call__(self, vocabulary: Any, text: str, head: str | None) -> list[tuple[int, float]]:
        try:
            found = self.embed(vocabulary, text, head)
        except (OSError, RuntimeError, ValueError, MemoryError) as exc:  # torch and the weights' own errors
            raise NeurosearchError(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        self._keep(vocabulary, text, head, found)
        return found

    # -- the language model the index's expansions were scored with ------------------------------------
    @staticmethod
    def index_lm(vocabulary: Any) -> dict[str, Any] | None:
        """What the build recorded of its membership language model (``spec``, ``identity``), or None."""
        from neurosearch.format import layout

        record = vocabulary.files.json(layout.EXPANSION_KEYS).get("language_model")
        return record if isinstance(record, dict) and record.get("identity") else None

    def _lm_key(self, vocabulary: Any) -> str:
        """The identity of the language model a phrase of this index is scored with now, or '' when
        the index has none or it cannot be had here (:meth:`_lm_notes` says why)."""
        record = self.index_lm(vocabulary)
        if record is None:
            return ""
        identity = str(record["identity"])
        if identity not in self._lms:
            self._lms[identity] = self._find_lm(record)
        return "" if isinstance(self._lms[identity], str) else identity

    def _lm_notes(self, vocabulary: Any) -> list[str]:
        """What to tell about the language model of a phrase of this index: used, or why not."""
        key = self._lm_key(vocabulary)
        if key:
            return [f"membership scored by {key}"]
        record = self.index_lm(vocabulary)
        return [self._lms[str(record["identity"])]] if record is not None else []

    def _find_lm(self, record: dict[str, Any]) -> Any:
        """The index's language model (not loaded yet: ``_scorer``), or why it cannot be used."""
        from neurosearch.lm import LMError, identify

        given = self._given_lm
        if given is not None:
            return given if given.identity.key == record["identity"] else (
                f"the index's expansions were scored by {record['identity']}, not {given.identity.key}: "
                "this phrase is scored without a language model")
        try:
            from neurosearch.lm import LMSpec

            spec = LMSpec.parse(record.get("spec"))
            if spec.kind == "local" and spec.path is None:
                from neurosearch.lm.files import GEMMA_PACKAGE, require_extra

                require_extra([GEMMA_PACKAGE], "scoring a phrase like the index's keys")
            if identify(spec).key != record["identity"]:
                raise LMError(f"{record.get('spec')} is not the model the index was built with ({record['identity']})")
        except (LMError, NeurosearchError) as exc:
            return f"language model not used for this phrase: {str(exc).splitlines()[0]}"
        return spec

    def _scorer(self, vocabulary: Any, identity: str) -> Any:
        from neurosearch.lm.membership import MembershipScorer

        found = self._lms[identity]
        if not isinstance(found, MembershipScorer):
            from neurosearch.lm import LanguageModel, load_language_model

            lm = found if isinstance(found, LanguageModel) else load_language_model(found)
            found = self._lms[identity] = MembershipScorer(lm, list(vocabulary.kept_tokens))
        return found

    # -- the cache ---------------------------------------------------------------------------------
    def cache_file(self, vocabulary: Any) -> Path | None:
        """Where this index's phrase expansions are kept (None without a ``cache_dir``)."""
        if self.cache_dir is None:
            return None
        from neurosearch.format.state import index_identity

        if self._code is None:  # read once per embedder, not per query
            package = Path(__file__).resolve().parents[1]
            code = hashlib.sha256()
            for name in _EXPANSION_CODE:
                try:
                    code.update((package / name).read_bytes())
                except OSError:
                    code.update(name.encode())
            self._code = code.hexdigest()[:16]
        return self.cache_dir / f"phrases-{index_identity(vocabulary.files.manifest.files)}-{self._code}.json"

    def _entry(self, vocabulary: Any, text: str, head: str | None) -> str:
        lm = self._lm_key(vocabulary)
        return f"{head or ''}\t{' '.join(text.lower().split())}" + (f"\t{lm}" if lm else "")

    def cached(self, vocabulary: Any, text: str, head: str | None) -> list[tuple[int, float]] | None:
        """The expansion this embedder (or an earlier run) computed for the phrase, if kept."""
        from neurosearch.format.store import read_cache

        path = self.cache_file(vocabulary)
        if path is None:
            return None
        self.notes = self._lm_notes(vocabulary)
        found = read_cache(path).get(self._entry(vocabulary, text, head))
        n = len(vocabulary.kept_tokens)
        try:
            pairs = [(int(t), float(w)) for t, w in found] if isinstance(found, list) else None
        except (TypeError, ValueError):
            return None
        if pairs is None or not all(0 <= t < n and 0.0 <= w <= 1.0 for t, w in pairs):
            return None  # not what this code writes: compute it again
        return pairs

    def _keep(self, vocabulary: Any, text: str, head: str | None, found: list[tuple[int, float]]) -> None:
        from neurosearch.format.store import lock_path, put_in_cache

        path = self.cache_file(vocabulary)
        if path is None or not put_in_cache(path, self._entry(vocabulary, text, head),
                                            [[int(t), round(float(w), 6)] for t, w in found], CACHED_PHRASES):
            return
        identity = path.name.rsplit("-", 1)[0]  # phrases-<index files>: the same index, other code
        for stale in path.parent.glob(f"{identity}-*.json"):
            if stale != path:
                try:
                    stale.unlink(missing_ok=True)
                    lock_path(stale).unlink(missing_ok=True)
                except OSError:
                    pass  # another run's file it cannot remove: left as it is

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
        self.notes = self._lm_notes(vocabulary)
        scores = self.lm_scores(vocabulary, phrase) if self._lm_key(vocabulary) else None
        return expand_phrase(vocabulary, phrase, vector, self._families[key], head, scores)

    def lm_scores(self, vocabulary: Any, phrase: str) -> Any:
        """The index's language model's membership scores of the kept tokens for ``phrase``
        (``semantic.LMScores``, as the build keeps them), or None when the index has none or it
        cannot be had here."""
        lm_key = self._lm_key(vocabulary)
        return self._scorer(vocabulary, lm_key).as_stored([phrase]) if lm_key else None


def phrase_features(vocabulary: Any, phrase: str, vector: Any, families: Any, head: str | None,
                    lm: Any = None) -> tuple[Any, Any, Any]:
    """(the concept, its candidate tokens, their features) of a phrase with sentence vector ``vector``
    (``semantic.candidate_features``); its WordNet members are ``head``'s; ``lm``: a language
    model's membership scores of the kept tokens for it (``semantic.LMScores``), or None."""
    from neurosearch.index.semantic import candidate_features, concept_of

    concept = concept_of(phrase, vector, lambda word: vocabulary.word_vector(vocabulary.pieces(word)), families,
                         vocabulary.concepts, head=head)
    (candidates, features), = candidate_features([concept], vocabulary.kept_sentences, vocabulary.kept_space,
                                                 vocabulary.ancestors, lm, expansion_config(vocabulary).lm_pool)
    return concept, candidates, features


def expansion_config(vocabulary: Any) -> Any:
    """The ``ExpansionConfig`` the index's keys were expanded with."""
    from neurosearch.config import ExpansionConfig, from_dict
    from neurosearch.format import layout

    return from_dict(ExpansionConfig, vocabulary.files.json(layout.EXPANSION_KEYS)["config"])


def expand_phrase(vocabulary: Any, phrase: str, vector: Any, families: Any, head: str | None,
                  lm: Any = None) -> list[tuple[int, float]]:
    """The expansion of a phrase with sentence vector ``vector``, scored like the build's keys (with
    the language model's features when ``lm`` holds its scores)."""
    from neurosearch.index.semantic import expansion_of

    concept, candidates, features = phrase_features(vocabulary, phrase, vector, families, head, lm)
    return expansion_of(concept, candidates, features, expansion_config(vocabulary), vocabulary.expandable_mask)
