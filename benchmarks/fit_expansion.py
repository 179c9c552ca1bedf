"""Fit the expansion model (``ExpansionConfig``) on the tuning half of ``concepts/general.json``.

    python benchmarks/fit_expansion.py [--index index/default] [--l2 1] [--evaluate]

For every tuning concept, the query is expanded as ``find`` would (its stored key, or the phrase
with its head word's WordNet members), every candidate token gets the features of
``semantic.FEATURES``, and it is labelled a member when the concept's list holds it (the concept
word's own family, whose weight is fixed, and function words are left out). A logistic
regression with an L2 penalty on the coefficients is fitted to those labels (scipy's L-BFGS):
its coefficients and intercept are what ``ExpansionConfig`` ships. The test half is never read.
``--evaluate`` also prints top-1 P@10 with the fitted model, computed in this process for the
benchmark concepts only (the build computes it for every key), on the tuning half and on
``dev.json`` and ``extra.json`` (already tuned on by earlier sessions).

Needs the model (torch), WordNet is not needed (the index holds its concept table).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval import ROOT, Evaluator, load_concept_sets, mean_row  # noqa: E402

from neurosearch.model.phrases import PhraseEmbedder, phrase_features  # noqa: E402
from neurosearch import Index  # noqa: E402
from neurosearch.config import ExpansionConfig  # noqa: E402
from neurosearch.index.concepts import FamilyIndex  # noqa: E402
from neurosearch.index.query import ExpandedQuery, _head_word  # noqa: E402
from neurosearch.index.semantic import FEATURES, LM_FEATURES, expansion_of  # noqa: E402


class Concepts:
    """Each benchmark query as the concept ``find`` expands it, with its candidates' features."""

    def __init__(self, index: Index, lm=None):
        from neurosearch.model.sentences import sentence_vectors

        self.index = index
        self.model = PhraseEmbedder().model(index.vocabulary)
        self.embed = lambda text: sentence_vectors(self.model, [text])[0]
        self.families = FamilyIndex(index.kept_tokens)
        self.kept_sentences = index.vocabulary.kept_sentences
        self.cache: dict[str, tuple] = {}
        self.lm = None  # membership scored as the build does with --lm (the index need not have been built with it)
        if lm is not None:
            from neurosearch.lm.membership import MembershipScorer

            self.lm = MembershipScorer(lm, list(index.kept_tokens))

    def features(self, text: str):
        """(concept, candidates, features) of a query."""
        if text not in self.cache:
            index = self.index
            key = index.vocabulary.expander.key_of(text)
            if key is not None:
                phrase, head = key, None
            else:
                phrase = " ".join(text.lower().split())
                word = _head_word(text)
                head = index.vocabulary.concepts.key_of(word) if index.vocabulary.concepts is not None and word else None
            lm = self.lm.as_stored([phrase]) if self.lm is not None else None
            self.cache[text] = phrase_features(index.vocabulary, phrase, self.embed(phrase), self.families, head, lm)
        return self.cache[text]

    def expanded(self, text: str, config: ExpansionConfig, model=None, extra=None) -> ExpandedQuery:
        """The query's expansion under ``config`` (or ``model``: features -> probabilities, with
        ``extra``: (text, concept, candidates, features) -> more feature columns)."""
        concept, candidates, features = self.features(text)
        if extra is not None:
            features = np.hstack([features, extra(text, concept, candidates, features)])
        found = expansion_of(concept, candidates, features, config, self.index.vocabulary.expandable_mask, model)
        tokens = [self.index.kept_tokens[i] for i, _ in found]
        return ExpandedQuery(text, [i for i, _ in found], [w for _, w in found], tokens)

    def training_rows(self, concepts: dict[str, list[str]], extra=None) -> tuple[np.ndarray, np.ndarray]:
        """(features, labels) of every candidate of the concepts that an expansion may hold: 1 when
        the concept's list holds it (the concept word's own family, whose weight is fixed, and
        function words are left out)."""
        rows, labels = [], []
        allowed = self.index.vocabulary.expandable_mask
        for text, members in concepts.items():
            concept, candidates, features = self.features(text)
            if extra is not None:
                features = np.hstack([features, extra(text, concept, candidates, features)])
            keep = allowed[candidates].astype(bool) & ~np.isin(candidates, list(concept.family))
            member_set = {m.lower() for m in members}
            rows.append(features[keep])
            labels.append(np.array([self.index.kept_tokens[i] in member_set for i in candidates[keep]], float))
        return np.concatenate(rows), np.concatenate(labels)


def logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Coefficients and intercept of a logistic regression with an L2 penalty on the coefficients."""
    from scipy.optimize import minimize

    x1 = np.hstack([x, np.ones((len(x), 1))])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x1 @ w
        p = 1.0 / (1.0 + np.exp(-z))
        gradient = x1.T @ (p - y)
        gradient[:-1] += l2 * w[:-1]
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * np.sum(w[:-1] ** 2)), gradient

    w = minimize(loss, np.zeros(x1.shape[1]), jac=True, method="L-BFGS-B").x
    return w[:-1], float(w[-1])


def fit(concepts: Concepts, tune: dict[str, list[str]], l2: float) -> tuple[np.ndarray, float]:
    x, y = concepts.training_rows(tune)
    print(f"fitted on {len(tune)} concepts, {len(y)} candidates, {int(y.sum())} members")
    return logistic(x, y, l2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "default")
    parser.add_argument("--l2", type=float, default=1.0, help="L2 penalty (0.01, 1 and 10 measured alike on the tuning half)")
    parser.add_argument("--evaluate", action="store_true")
    parser.add_argument("--lm", default=None, help="fit the model with a language model's features (LM_FEATURES) "
                        "scored by this model ('local': the lm extra's Gemma 3 270M; a path; URL#MODEL)")
    parser.add_argument("--test", action="store_true", help="with --evaluate, also the test half of general.json "
                        "(run once, at the end: it is what the fitted model is judged on)")
    args = parser.parse_args()
    index = Index.load(args.index, embedder=PhraseEmbedder())  # what the CLI opens: phrases take the slow path
    general = load_concept_sets(ROOT / "benchmarks" / "concepts" / "general.json")
    tune = general["general-tune"]
    lm = None
    if args.lm is not None:
        from neurosearch.lm import load_language_model

        lm = load_language_model(args.lm)
        print(f"language model: {lm.identity.key}")
    concepts = Concepts(index, lm)
    coefficients, intercept = fit(concepts, tune, args.l2)
    names = FEATURES + (LM_FEATURES if lm is not None else ())
    for name, value in zip(names, coefficients):
        print(f"  {name:20s} {value:+.2f}")
    print(f"  {'intercept':20s} {intercept:+.2f}")
    field, at = ("lm_coefficients", "lm_intercept") if lm is not None else ("coefficients", "intercept")
    print(f"ExpansionConfig({field}=(" + ", ".join(f"{v:.2f}" for v in coefficients) + f"), {at}={intercept:.2f})")
    if args.evaluate:
        config = replace(ExpansionConfig(), **{field: tuple(coefficients), at: intercept})
        evaluator = Evaluator(index)
        sets = {"general-tune": tune}
        if args.test:
            sets["general-test"] = general["general-test"]
        for path in (ROOT.parent / "shared" / "concepts" / "dev.json", ROOT / "benchmarks" / "concepts" / "extra.json"):
            if path.exists():
                sets.update(load_concept_sets(path))
        for name, members in sets.items():
            mean = mean_row(evaluator.concepts(members, lambda text: concepts.expanded(text, config)))
            print(f"{name}: top-1 neuron {mean['neuron']:.3f} / oracle {mean['oracle']:.3f}; " +
                  ", ".join(f"{key} {value:.3f}" for key, value in mean.items() if key.startswith("cluster_k")))


if __name__ == "__main__":
    main()
