"""Query time: open an index and search it (``Index``). Standard library only at import time.

``find`` for one-token words imports neither numpy nor torch (a test enforces it); numpy is
imported lazily for multi-piece words, HNSW and ``show``. The package itself is lazy: importing
one of its modules (``index.labels``, ``index.postings``) does not import ``Index``.
"""

__all__ = ["Index"]


def __getattr__(name: str):
    if name == "Index":
        from neurosearch.index.index import Index

        return Index
    raise AttributeError(name)
