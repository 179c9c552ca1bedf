"""Query time: open an index and search it (``Index``). Standard library only at import time.

``find`` for one-token words imports neither numpy nor torch (a test enforces it); numpy is
imported lazily for multi-piece words, HNSW and ``show``.
"""

from neurosearch.index.index import Index

__all__ = ["Index"]
