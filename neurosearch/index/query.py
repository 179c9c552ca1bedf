"""Queries: a concept ("weekdays", "european capitals") or a token list becomes weighted kept tokens.

A concept's weights are the probabilities that each kept token belongs to it (``semantic.py``).
The build stores them for every *key*: every WordNet noun lemma with members among the kept
tokens, and every whole word of the model's vocabulary (``pipeline/semantic.py``). A query is
matched to a key by lemmatising its words ("units of time" -> "unit of time", "currencies" ->
"currency"): a word of several word pieces is looked up as one word, never as its first piece,
and a phrase WordNet knows as one concept is one key. No torch and no numpy on that path.

A phrase no key matches ("european capitals") is embedded with the model on a slower path that
loads it (seconds; ``find`` says so), and takes its WordNet members from its head word
("capital"); without the model, the head word's expansion stands in for it, with a note.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from neurosearch.errors import NeurosearchError
from neurosearch.format.manifest import IndexError_
from neurosearch.index.concepts import word_forms
from neurosearch.words import QUERY_STOPWORDS, is_content


def all_words(text: str) -> list[str]:
    """The words of a text, lower case (letters, digits, apostrophes and hyphens)."""
    return re.findall(r"[\w'-]+", text.lower().replace("_", " "))


def content_words(text: str) -> list[str]:
    """The words of a text that are not function words."""
    return [w for w in all_words(text) if w not in QUERY_STOPWORDS]


def expandable(token: str) -> bool:
    """Whether a kept token may be added to an expansion: a word (or number), not a function word."""
    return is_content(token, QUERY_STOPWORDS)

MAX_QUERY_CHARS = 1000
"""Longest query accepted (a concept is a few words; a long one is slow to expand: docs/decisions.md)."""
MAX_QUERY_TOKENS = 500
"""Most tokens accepted in an explicit token list."""


@dataclass
class ExpandedQuery:
    """What a query became: kept-token indices with weights."""

    text: str
    token_index: list[int]
    """Kept-token indices, each once."""
    weights: list[float]
    """Probability that each token belongs to the concept (1 for a ``--tokens`` list)."""
    tokens: list[str]
    notes: list[str] = field(default_factory=list)
    key: str | None = None
    """The stored concept the query was matched to, if any."""

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.token_index, self.weights))

    def to_json(self) -> list[dict]:
        order = sorted(range(len(self.weights)), key=lambda i: -self.weights[i])  # stable: the word's own forms first
        return [{"token": self.tokens[i], "weight": round(float(self.weights[i]), 4)} for i in order]


class ExpansionTable:
    """The build's stored expansions: sorted keys (and aliases) -> (kept index, weight) lists."""

    def __init__(self, keys: list[str], aliases: dict[str, str], offsets: Sequence[int], tokens: Sequence[int],
                 weights: Sequence[float]):
        self.keys, self.aliases = keys, aliases
        self.offsets, self.tokens, self.weights = offsets, tokens, weights

    def key_of(self, phrase: str) -> str | None:
        phrase = self.aliases.get(phrase, phrase)
        position = bisect.bisect_left(self.keys, phrase)
        return phrase if position < len(self.keys) and self.keys[position] == phrase else None

    def expansion(self, key: str) -> list[tuple[int, float]]:
        position = bisect.bisect_left(self.keys, key)
        start, end = int(self.offsets[position]), int(self.offsets[position + 1])
        return [(int(t), float(w)) for t, w in zip(self.tokens[start:end], self.weights[start:end])]


SlowPath = Callable[[str, "str | None"], "tuple[Any, ...]"]
"""(phrase, the key of its head word or None) -> (its expansion, seconds taken or None when kept from an earlier run[,
notes to show]); raises NeurosearchError when the model cannot be loaded."""


class QueryExpander:
    """Expands queries against one index's stored expansions."""

    def __init__(self, kept_tokens: list[str], expansions: ExpansionTable, concept_keys: Callable[[str], str | None],
                 slow: SlowPath | None = None, has_wordnet: bool = True):
        self.kept_tokens = kept_tokens
        self.expansions = expansions
        self.concept_key = concept_keys  # phrase -> key of the WordNet concept table, or None
        self.slow = slow
        self.has_wordnet = has_wordnet
        self.kept_index = {token: index for index, token in enumerate(kept_tokens)}

    def key_of(self, text: str) -> str | None:
        """The stored key a text means: the whole phrase, with its words in any of their base forms."""
        words, content = all_words(text), content_words(text)
        for phrase_words in dict.fromkeys((tuple(words), tuple(content))):
            if not phrase_words or len(phrase_words) > 5:
                continue
            for forms in itertools.product(*(word_forms(w) for w in phrase_words)):
                key = self.expansions.key_of(" ".join(forms))
                if key is not None:
                    return key
        return None

    def expand(self, text: str) -> ExpandedQuery:
        """A free-text concept, e.g. ``weekdays`` or ``european capitals``."""
        text = " ".join(text.split())
        if not text:
            raise NeurosearchError("empty query: give a concept (e.g. 'weekdays') or `tokens` a,b,c", option="tokens")
        if len(text) > MAX_QUERY_CHARS:
            raise NeurosearchError(f"the query is {len(text):,} characters long; the limit is {MAX_QUERY_CHARS:,} "
                                   "(a concept is a few words)")
        content = content_words(text)
        if not content:
            raise NeurosearchError(f"query '{text}' has only function words (the, of, is, ...): name a concept")
        notes = [] if self.has_wordnet else [NO_WORDNET_NOTE]
        unknown = [w for w in content if self.key_of(w) is None]
        if unknown:
            notes.append(f"unknown word(s): {', '.join(unknown)} (neither a word of the model's vocabulary nor a "
                         "WordNet concept of this index)")
        key = self.key_of(text)
        if key is not None:
            found = self.expansions.expansion(key)
            if key != text.lower():
                notes.insert(0, f"matched the concept '{key}'")
        else:
            found = self._unstored(text, content, notes)
        weights = {i: w for i, w in found if w > 0}
        if not weights:
            raise NeurosearchError(f"query '{text}' matched no token of this index's vocabulary")
        expanded = self._finish(text, weights, notes)
        expanded.key = key
        return expanded

    def _unstored(self, text: str, content: list[str], notes: list[str]) -> list[tuple[int, float]]:
        """A phrase or word without a stored expansion: embedded with the model, or its head word's."""
        head = _head_word(text)
        head_key = self.concept_key(head) if head else None
        if self.slow is not None:
            try:
                found, seconds, *said = self.slow(text, head_key)
                how = f"{seconds:.1f} s" if seconds is not None else "kept from an earlier run"
                notes.insert(0, f"'{text}' has no stored expansion: embedded it with the model (slow path, "
                                f"{how})" + (f"; WordNet members of '{head_key}'" if head_key else ""))
                notes[1:1] = [str(n) for n in (said[0] if said else [])]
                return found
            except IndexError_:
                raise  # a damaged index file is an error, not a reason to fall back
            except NeurosearchError as exc:
                notes.insert(0, f"could not load the model to embed '{text}' ({exc})")
        stand_in = next((k for k in (self.key_of(head) if head else None, *map(self.key_of, reversed(content)))
                         if k is not None), None)
        if stand_in is None:
            hint = "" if self.slow is not None else " (Index.load(..., embedder=PhraseEmbedder()) would embed it)"
            raise NeurosearchError(f"query '{text}' has no stored expansion and no known word to stand in for it{hint}")
        why = "" if self.slow is not None else " (no model to embed it with: Index.load(..., embedder=PhraseEmbedder()))"
        notes.insert(0, f"'{text}' has no stored expansion: used that of '{stand_in}'" + why)
        return self.expansions.expansion(stand_in)

    def from_tokens(self, tokens: list[str]) -> ExpandedQuery:
        """An explicit token list: the kept tokens among them, each at weight 1; the others are named."""
        tokens = [t.strip().lower() for t in tokens if t.strip()]
        if not tokens:
            raise NeurosearchError("empty token list: give `tokens` a,b,c", option="tokens")
        if len(tokens) > MAX_QUERY_TOKENS:
            raise NeurosearchError(f"{len(tokens):,} tokens given; the limit is {MAX_QUERY_TOKENS:,}")
        tokens = list(dict.fromkeys(tokens))
        known = [t for t in tokens if t in self.kept_index]
        unknown = [t for t in tokens if t not in self.kept_index]
        if not known:
            raise NeurosearchError(
                f"unknown token(s) {', '.join(unknown)}: none is in this index's kept vocabulary "
                f"({len(self.kept_tokens)} tokens seen often enough in its corpus)")
        notes = [f"not in this index's kept vocabulary, left out: {', '.join(unknown)}"] if unknown else []
        return self._finish(",".join(known), {self.kept_index[t]: 1.0 for t in known}, notes)

    def _finish(self, text: str, weights: dict[int, float], notes: list[str]) -> ExpandedQuery:
        index = list(weights)
        return ExpandedQuery(text=text, token_index=index, weights=[float(weights[i]) for i in index],
                             tokens=[self.kept_tokens[i] for i in index], notes=notes)


NO_WORDNET_NOTE = (
    "this index has no WordNet concept table (rebuild its search stage with WordNet data installed, "
    "see README): expansion uses the model's semantic space only"
)


def _head_word(text: str) -> str | None:
    """The noun a phrase is about: the last content word before "of" ("rooms of a house": rooms),
    else the last content word ("european capitals": capitals)."""
    before = re.split(r"\bof\b", text.lower(), maxsplit=1)[0]
    words = content_words(before) or content_words(text)
    return words[-1] if words else None
