"""neurosearch: find, explain and causally verify concept-selective neurons in BERT-style models.

Importing the package is cheap (no torch): heavy modules load lazily where they are used.
"""

__version__ = "0.1.0"

from neurosearch.errors import NeurosearchError

__all__ = ["Index", "NeurosearchError", "__version__"]


def __getattr__(name: str):  # lazy: `neurosearch.Index` without importing numpy-heavy code eagerly
    if name == "Index":
        from neurosearch.index import Index

        return Index
    raise AttributeError(name)
