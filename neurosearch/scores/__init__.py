"""Explanation scores: how well each unit's explanation predicts what it does, on held-out text.

``score_index(index)`` runs the offline simulation score of every neuron, K-cut cluster and tree
node (``simulation.py``: a token-lookup simulator, Pearson correlation, a shuffled-explanation
calibration); ``index.unit_scores.store_scores`` keeps the run beside the index's other results, and
``find``, ``show`` and the report read it back.
"""

__all__ = ["ScoreConfig", "ScoreRun", "score_index"]


def __getattr__(name: str):  # lazy: importing one module of the package does not import them all
    if name == "ScoreConfig":
        from neurosearch.scores import config

        return config.ScoreConfig
    if name in __all__:
        from neurosearch.scores import run

        return getattr(run, name)
    raise AttributeError(name)
