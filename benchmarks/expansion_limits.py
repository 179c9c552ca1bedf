"""Where retrieval's gap to the oracle comes from (issue 18): the concepts, the candidates, the model.

    python benchmarks/expansion_limits.py [--index index/default] [--profiles DIR] [--folds 2]

1. **The concepts** (every file; the shipped index, nothing fitted): how many have no member among
   the kept tokens (oracle 0), how many an oracle no higher than the chance oracle (no neuron holds
   more of their members than a random list of the same size finds), and top-1 neuron / oracle on
   all of them and on those with a concept neuron (oracle >= 0.3 and >= 2x chance).
2. **The candidates** (tuning half): the share of kept members among the tokens an expansion scores,
   and the top-1 neuron and tree node when exactly those members are the query, at weight 1: what a
   perfect membership model over the same candidates would reach.
3. **The membership model** (tuning half, k-fold cross-validation by concept: fitted on the other
   folds, scored on the held-out one): the shipped features as a logistic regression (what
   ``ExpansionConfig`` is), as gradient boosting (scikit-learn, when installed), and the logistic
   regression with one more feature each: *hubness* (a token's mean similarity to its 10 nearest
   concept keys: a generic word near every category) and, with ``--profiles`` (the build's
   ``profiles`` folder), *co-activation* (cosine of a token's activation profile over all neurons
   with that of the first-round expansion's 10 likeliest tokens).

The test half enters only part 1, which fits nothing. Needs the model (torch).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_expansion import Concepts, logistic  # noqa: E402
from retrieval import DEFAULT_FILES, ROOT, Evaluator, cpu_flags, load_concept_sets, mean_row  # noqa: E402

from neurosearch import Index  # noqa: E402
from neurosearch.config import ExpansionConfig  # noqa: E402
from neurosearch.index.query import ExpandedQuery  # noqa: E402
from neurosearch.index.semantic import probabilities  # noqa: E402
from neurosearch.model.phrases import PhraseEmbedder  # noqa: E402

HAS_NEURON = (0.3, 2.0)
"""A concept has a concept neuron when its oracle is >= 0.3 and >= 2x its chance oracle."""


def concept_table(evaluator: Evaluator, sets: dict[str, dict[str, list[str]]]) -> Table:
    table = Table(title="1. the concepts: where an oracle can be reached at all (shipped index)")
    for column in ["file", "concepts", "oracle 0", "oracle <= chance", "with a concept neuron",
                   "top-1 / oracle", "top-1 / oracle, with a concept neuron"]:
        table.add_column(column)
    for name, concepts in sets.items():
        rows = evaluator.concepts(concepts)
        zero = [c for c, r in rows.items() if r["oracle"] == 0]
        luck = [c for c, r in rows.items() if 0 < r["oracle"] <= r["chance"]]
        real = {c: r for c, r in rows.items() if r["oracle"] >= HAS_NEURON[0] and r["oracle"] >= HAS_NEURON[1] * r["chance"]}
        ratio = lambda rs: sum(r["neuron"] for r in rs) / max(sum(r["oracle"] for r in rs), 1e-9)  # noqa: E731
        table.add_row(name, str(len(rows)), str(len(zero)), str(len(luck)), str(len(real)),
                      f"{ratio(rows.values()):.2f}", f"{ratio(real.values()):.2f}" if real else "-")
    return table


def members_in_pool(concepts: Concepts, text: str, members: list[str]) -> ExpandedQuery:
    """The concept's members among its candidates, each at weight 1."""
    _, candidates, _ = concepts.features(text)
    member_set = {m.lower() for m in members}
    allowed = concepts.index.vocabulary.expandable_mask
    ids = [int(t) for t in candidates if concepts.index.kept_tokens[t] in member_set and allowed[t]]
    return ExpandedQuery(text, ids, [1.0] * len(ids), [concepts.index.kept_tokens[i] for i in ids])


def candidate_row(concepts: Concepts, evaluator: Evaluator, tune: dict[str, list[str]]) -> dict[str, float]:
    kept = concepts.index.vocabulary._kept_position
    found = total = 0
    for text, members in tune.items():
        _, candidates, _ = concepts.features(text)
        member_set = {m.lower() for m in members if m.lower() in kept}
        total += len(member_set)
        found += sum(concepts.index.kept_tokens[t] in member_set for t in candidates)
    mean = mean_row(evaluator.concepts(tune, lambda text: members_in_pool(concepts, text, tune[text])))
    return {"recall": found / max(total, 1), **mean}


def folds_of(names: list[str], count: int) -> list[list[str]]:
    order = sorted(names, key=lambda name: hashlib.md5(name.encode("utf-8")).hexdigest())
    return [order[i::count] for i in range(count)]


def cross_validated(concepts: Concepts, evaluator: Evaluator, tune: dict[str, list[str]], folds: list[list[str]],
                    train, extra=None) -> dict[str, float]:
    """Mean row over the held-out folds; ``train(x, y)`` returns features -> probabilities."""
    config = ExpansionConfig()
    rows: dict[str, dict[str, float]] = {}
    for held in folds:
        fitted = {name: tune[name] for fold in folds if fold is not held for name in fold}
        model = train(*concepts.training_rows(fitted, extra))
        rows.update(evaluator.concepts({name: tune[name] for name in held},
                                       lambda text: concepts.expanded(text, config, model, extra)))
    return mean_row(rows)


def logistic_model(x: np.ndarray, y: np.ndarray):
    coefficients, intercept = logistic(x, y, 1.0)
    return lambda features: probabilities(features, coefficients, intercept)


def boosting_model(x: np.ndarray, y: np.ndarray):
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_depth=3, max_iter=100, l2_regularization=1.0, random_state=0).fit(x, y)
    return lambda features: model.predict_proba(features)[:, 1]


def hubness_feature(concepts: Concepts):
    """A column: each candidate's mean cosine with its 10 nearest concept keys (sentence space)."""
    from neurosearch.model.sentences import sentence_vectors

    keys = list(concepts.index.vocabulary.expander.expansions.keys)
    key_vectors = sentence_vectors(concepts.model, keys)
    space = concepts.kept_sentences.astype(np.float32)
    hub = np.zeros(len(space))
    for start in range(0, len(space), 1000):
        similarity = space[start:start + 1000] @ key_vectors.T
        hub[start:start + 1000] = np.sort(similarity, axis=1)[:, -10:].mean(axis=1)
    return lambda text, concept, candidates, features: hub[candidates][:, None]


def coactivation_feature(concepts: Concepts, profiles: Path, method: str, first_round):
    """A column: cosine of a candidate's activation profile (standardised per neuron) with the
    probability-weighted mean profile of the first round's 10 likeliest candidates."""
    matrix = np.asarray(np.load(profiles / f"{method}.npy", mmap_mode="r"), dtype=np.float32).T.copy()
    matrix -= matrix.mean(axis=0, keepdims=True)
    matrix /= matrix.std(axis=0, keepdims=True) + 1e-6
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-9
    allowed = concepts.index.vocabulary.expandable_mask

    def column(text, concept, candidates, features):
        p = first_round(features) * allowed[candidates]
        p[np.isin(candidates, list(concept.family))] = 0.0
        top = np.argsort(-p)[:10]
        prototype = (p[top, None] * matrix[candidates[top]]).sum(axis=0)
        prototype /= np.linalg.norm(prototype) + 1e-9
        return (matrix[candidates] @ prototype)[:, None]

    return column


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "default")
    parser.add_argument("--profiles", type=Path, default=None, help="the build's profiles folder (co-activation feature)")
    parser.add_argument("--folds", type=int, default=2)
    args = parser.parse_args()
    console = Console(width=max(Console().width, 150))
    console.print(f"CPU: {cpu_flags()}")
    index = Index.load(args.index, embedder=PhraseEmbedder())
    sets: dict[str, dict[str, list[str]]] = {}
    for path in DEFAULT_FILES:
        if path.exists():
            sets.update(load_concept_sets(path))
    evaluator = Evaluator(index)
    console.print(concept_table(evaluator, sets))

    tune = sets["general-tune"]
    concepts = Concepts(index)
    candidates = candidate_row(concepts, evaluator, tune)
    console.print(f"2. the candidates (tuning half): they hold {candidates['recall']:.0%} of the kept members; with "
                  f"exactly those as the query, top-1 neuron {candidates['neuron']:.3f}, tree node "
                  f"{candidates['cluster_k0']:.3f}, against an oracle of {candidates['oracle']:.3f} "
                  f"({candidates['neuron'] / max(candidates['oracle'], 1e-9):.2f}x)")

    folds = folds_of(sorted(tune), args.folds)
    table = Table(title=f"3. the membership model: tuning half, {args.folds}-fold cross-validation by concept")
    for column in ["model", "top-1 neuron", "top-1 tree node", "oracle", "neuron / oracle"]:
        table.add_column(column)
    variants = [("logistic, shipped features (ExpansionConfig)", logistic_model, None)]
    try:
        import sklearn  # noqa: F401

        variants.append(("gradient boosting (depth 3), shipped features", boosting_model, None))
    except ImportError:
        console.print("scikit-learn is not installed: gradient boosting skipped")
    variants.append(("logistic + hubness", logistic_model, hubness_feature(concepts)))
    if args.profiles is not None:
        config = ExpansionConfig()
        shipped = lambda features: probabilities(features, config.coefficients, config.intercept)  # noqa: E731
        variants.append(("logistic + co-activation", logistic_model,
                         coactivation_feature(concepts, args.profiles, index.search_method, shipped)))
    for label, train, extra in variants:
        row = cross_validated(concepts, evaluator, tune, folds, train, extra)
        table.add_row(label, f"{row['neuron']:.3f}", f"{row['cluster_k0']:.3f}", f"{row['oracle']:.3f}",
                      f"{row['neuron'] / max(row['oracle'], 1e-9):.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
