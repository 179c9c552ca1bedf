"""The WordNet concept table baked into an index: a concept word's member tokens, read at query time.

Built by :func:`neurosearch.pipeline.wordnet.concept_table`; standard library only (``find`` imports it).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import NamedTuple, Sequence

_NOUN_SUFFIXES = (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                  ("men", "man"), ("ies", "y"), ("s", ""))


def plural(word: str) -> str:
    """The regular English plural of a noun (irregular ones come from WordNet's noun.exc)."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def lemma_candidates(phrase: str) -> list[str]:
    """Possible base forms of a noun phrase, itself first (morphy's suffix rules on the last word)."""
    phrase = " ".join(phrase.lower().replace("_", " ").split())
    head, _, last = phrase.rpartition(" ")
    return list(dict.fromkeys(f"{head} {form}" if head else form for form in word_forms(last)))


def word_forms(word: str) -> list[str]:
    """A word and its possible singular forms by morphy's noun suffix rules ("boxes": box, boxe)."""
    return list(dict.fromkeys([word] + [word[: -len(suffix)] + base for suffix, base in _NOUN_SUFFIXES
                                        if word.endswith(suffix) and len(word) > len(suffix) + 1]))


class ConceptMember(NamedTuple):
    """One member token of a concept, through the sense the build chose for it."""

    index: int
    """Kept-token index."""
    depth: int
    """0: one of the concept's own lemmas (colour for "colors"), 1: a direct kind, ..."""
    share: float
    """The member word's share of uses in the sense it is reached through."""
    head: bool
    """The member names its synset (its first lemma), rather than being a synonym."""
    sense_share: float
    """The concept word's share of uses in that sense."""
    evidence: float
    """How strongly the model ties that sense to the concept word (``semantic.sense_evidence``)."""


@dataclass
class ConceptTable:
    """Every WordNet noun concept with at least ``min_members`` members among an index's tokens.

    ``keys[i]`` (a lemma, or an irregular plural of one) has the members
    ``members[offsets[i]:offsets[i+1]]`` (kept-token indices) at ``depths[...]`` with the fields
    of :class:`ConceptMember` in the parallel arrays (``heads``: all 1 when None; ``sense_shares``
    and ``evidence``: 1 and 0 when None). Baked into the index by the build, so that queries use
    WordNet without having it installed.
    """

    keys: list[str]
    offsets: Sequence[int]
    members: Sequence[int]
    depths: Sequence[int]
    shares: Sequence[float]
    heads: Sequence[int] | None = None
    sense_shares: Sequence[float] | None = None
    evidence: Sequence[float] | None = None

    def key_of(self, phrase: str) -> str | None:
        """The first base form of ``phrase`` that is a concept of the table."""
        for form in lemma_candidates(phrase):
            position = bisect.bisect_left(self.keys, form)
            if position < len(self.keys) and self.keys[position] == form:
                return form
        return None

    def entries(self, key: str) -> list[ConceptMember]:
        """The members of a key of the table (none for other strings)."""
        position = bisect.bisect_left(self.keys, key)
        if position >= len(self.keys) or self.keys[position] != key:
            return []
        start, end = int(self.offsets[position]), int(self.offsets[position + 1])
        n = end - start
        heads = [1] * n if self.heads is None else self.heads[start:end]
        sense_shares = [1.0] * n if self.sense_shares is None else self.sense_shares[start:end]
        evidence = [0.0] * n if self.evidence is None else self.evidence[start:end]
        return [ConceptMember(int(m), int(d), float(s), bool(h), float(q), float(e)) for m, d, s, h, q, e in
                zip(self.members[start:end], self.depths[start:end], self.shares[start:end], heads, sense_shares,
                    evidence)]

    def lookup(self, phrase: str) -> list[tuple[int, int, float, bool]]:
        """(kept index, depth, share, head) of the members of the first known base form of ``phrase``."""
        key = self.key_of(phrase)
        return [] if key is None else [(m.index, m.depth, m.share, m.head) for m in self.entries(key)]


_SPELLINGS = (("our", "or"), ("ise", "ize"), ("isation", "ization"), ("tre", "ter"), ("ogue", "og"))
"""British -> American spellings (colour/color, organise/organize, centre/center, catalogue/catalog)."""


def inflections(word: str) -> set[str]:
    """A word's regular inflections and spellings: plural or third person (-s, -es, -ies), past
    (-ed, -d, -ied), present participle (-ing, e dropped), and the British/American spelling of
    each (colour, colours, coloured; centre, centres). Derived words are not forms of it
    (currency: not "currently"; thing: not "thin"; month: not "monthly")."""
    stems = {word}
    if word.endswith("e"):
        stems.add(word[:-1])
    found = {word, plural(word), word + "s", word + "ed", word + "ing"}
    found.update(stem + "ing" for stem in stems)
    found.add(word + "d" if word.endswith("e") else word + "ed")
    if word.endswith("y") and len(word) > 2 and word[-2] not in "aeiou":
        found.update({word[:-1] + "ies", word[:-1] + "ied"})
    for british, american in _SPELLINGS:
        for form in list(found):
            if british in form:
                found.add(form.replace(british, american))
            if american in form:
                found.add(form.replace(american, british))
    return found


def same_family(token: str, lemmas: list[str]) -> bool:
    """Whether ``token`` is an inflection or spelling of one of ``lemmas`` or of their singular
    forms (colors: color, colour, colored; weekday: not weekend; currency: not currently)."""
    return any(token in inflections(form) for lemma in lemmas for form in word_forms(lemma))


class FamilyIndex:
    """A word's family among the kept tokens (``same_family``): its forms, looked up exactly."""

    def __init__(self, kept_tokens: list[str]):
        self.kept_tokens = kept_tokens
        self.exact = {token: index for index, token in enumerate(kept_tokens)}

    def family(self, words: list[str]) -> list[int]:
        """Kept-token indices of the words, their singular forms and their inflections and spellings."""
        forms = {form for w in words for base in word_forms(w) for form in inflections(base)}
        return sorted(self.exact[f] for f in forms if f in self.exact)
