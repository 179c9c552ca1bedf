"""Function words: the one list of words that name no concept, and the one test of a content token.

Queries drop them from their words and expansions never hold them (``index/query.py``, and the
build's expansions through it); ablations never take them as target tokens
(``experiments/targets.py``). Standard library only (``find`` imports it).
"""

from __future__ import annotations

STOPWORDS = frozenset("""
a about above across after again against all along also am among an and any are aren around as at be
because been before behind being below between beyond both but by can could d did didn do does doesn
doing don done down during each else even ever every few for from further had has have having he her
here hers herself him himself his how however i if in into is isn it its itself just let like ll m
may me might mine more most much must my myself no nor not now of off on once one's only onto or
other ought our ours ourselves out over own per quite rather re s said same say says shall she
should since so some still such t than that the their theirs them themselves then there these they
this those though through thus to too under until up upon us ve very via was wasn we were weren what
whatever when where whether which while who whom whose why will with within without won would yes
yet you your yours yourself yourselves
""".split())
"""Function words: articles, pronouns, prepositions, auxiliaries, conjunctions, common adverbs and
the pieces of contractions (``don``, ``ll``). Never an ablation's target token; never a query's
content word nor an expansion's member, but for :data:`QUERY_WORDS`."""

QUERY_WORDS = frozenset("""
again aren because d didn doesn don even ever every further however isn let like ll m much once
one's ought per quite rather re said say says since still though thus until ve via wasn weren
whatever whether while won yet yourselves
""".split())
"""Function words that queries and expansions take as words (:data:`QUERY_STOPWORDS` leaves them
out): the shipped index's expansions were built so, and dropping them would change 1,349 of its
24,811 stored expansions on a rebuild and refuse a query of one of them ("like", "won")."""

QUERY_STOPWORDS = STOPWORDS - QUERY_WORDS
"""The function words of queries and expansions."""


def is_content(token: str, stopwords: frozenset[str] = STOPWORDS) -> bool:
    """Whether a token can stand for a concept: a word or number (not a ``##`` piece; a letter or
    digit in it) that is not one of ``stopwords``."""
    return not token.startswith("##") and any(c.isalnum() for c in token) and token not in stopwords
