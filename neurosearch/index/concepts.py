"""The WordNet concept table baked into an index: a concept word's member tokens, read at query time.

Built by :func:`neurosearch.build.wordnet.concept_table`; standard library only (``find`` imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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
    forms = [last] + [last[: -len(suffix)] + base for suffix, base in _NOUN_SUFFIXES
                      if last.endswith(suffix) and len(last) > len(suffix) + 1]
    return list(dict.fromkeys(f"{head} {form}" if head else form for form in forms))


@dataclass
class ConceptTable:
    """Every WordNet noun concept with at least ``min_members`` members among an index's tokens.

    ``keys[i]`` (a lemma, or an irregular plural of one) has the members
    ``members[offsets[i]:offsets[i+1]]`` (kept-token indices) at ``depths[...]`` (0: the concept's
    own lemmas, 1: its direct kinds or parts, ...) with sense shares ``shares[...]`` (see
    ``Membership``) and ``heads[...]`` (1: the name of its synset, 0: a synonym; all 1 when None).
    Baked into the index by the build, so that queries use WordNet without having it installed.
    """

    keys: list[str]
    offsets: Sequence[int]
    members: Sequence[int]
    depths: Sequence[int]
    shares: Sequence[float]
    heads: Sequence[int] | None = None

    def lookup(self, phrase: str) -> list[tuple[int, int, float, bool]]:
        """(kept index, depth, share, head) of the members of the first known base form of ``phrase``."""
        import bisect

        for form in lemma_candidates(phrase):
            position = bisect.bisect_left(self.keys, form)
            if position < len(self.keys) and self.keys[position] == form:
                start, end = int(self.offsets[position]), int(self.offsets[position + 1])
                heads = [1] * (end - start) if self.heads is None else self.heads[start:end]
                return [(int(m), int(d), float(s), bool(h)) for m, d, s, h in
                        zip(self.members[start:end], self.depths[start:end], self.shares[start:end], heads)]
        return []
