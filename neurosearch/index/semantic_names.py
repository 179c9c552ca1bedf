"""The names of the expansion features (``semantic.FEATURES``), importable without numpy."""

FEATURES = ("similarity", "similarity_z", "member", "member_similarity", "member_head", "member_sense_share",
            "sense_evidence", "member_prototype", "input_prototype", "ancestor_similarity")
"""What each feature is, for a token t (outside the concept word's own family, which shares a
weight of 1: ``semantic.expansion_of``) and a concept with sentence vector q:

- ``similarity``: cos(q, t) in the sentence space;
- ``similarity_z``: the same, standardised over the concept's 300 most similar tokens (scales
  differ from concept to concept);
- ``member``: WordNet lists t under the concept (a hyponym or instance, at any depth);
- ``member_similarity``: ``member`` x ``similarity``;
- ``member_head``: ``member`` and t names its synset (not a synonym listed after the name);
- ``member_sense_share``: ``member`` x log of the concept word's share of uses in the sense t is
  reached through (floored at 1e-3);
- ``sense_evidence``: ``member`` x that sense's evidence, the mean similarity to q of its 5 members
  closest to q (``sense_evidence``): the sense the model ties to the word wins, not WordNet's first;
- ``member_prototype``: cos(t, the similarity-weighted mean of the WordNet members' vectors), or
  when there are none, of the mean of the 20 tokens most similar to q (outside its family);
- ``input_prototype``: cos(t, the mean input embedding of those 20 tokens): kinds of a thing are
  interchangeable in text, so they sit together in the input space;
- ``ancestor_similarity``: the largest cos(q, a) over the names a of what WordNet says t is a kind
  of (its hypernyms all the way up, ``WordNet.ancestors``; 0 for a word WordNet does not know):
  "valley" is a kind of "geological formation", which is close to "landforms", though "landforms"
  is no WordNet concept and "valley" is not near it in the sentence space.
"""

LM_FLOOR = -30.0
"""The lowest membership score a language model gives (``lm/membership.py``), and the score of a
token that is not a word."""

LM_FEATURES = ("lm_logprob", "lm_pmi", "lm_z", "lm_partial")
"""Features a language model adds (``lm/membership.py``), after :data:`FEATURES`, when the index
was built with one:

- ``lm_logprob``: log P(t's first model token | "Examples of <concept>:" after two few-shot lines),
  floored at -30 (a token that is not a word has the floor);
- ``lm_pmi``: that minus the same for a concept that says nothing ("things"): how much more likely
  the concept makes t than a list of anything does (frequent words are likely in any list);
- ``lm_z``: ``lm_logprob`` standardised over the concept's scores of every kept word;
- ``lm_partial``: t has more than one model token, so its first token covers only a part of it
  (a prefix many words share scores for all of them).
"""
