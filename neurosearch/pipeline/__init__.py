"""Build time: the pipeline that turns a model and a corpus into an index.

Stages, in order: ``stats`` (per-token activation statistics, Eq. 1), ``profiles`` (frequency
filter, Eq. 2 smoothing, TF-IDF), ``clusters`` (complete linkage), ``search`` (postings, tree nodes,
HNSW, concept expansions, WordNet concept table). :func:`build_index` runs them resumably into one directory.
"""

__all__ = ["build_index", "SEARCH_FORMAT"]


def __getattr__(name: str):  # lazy: importing a build module does not import the whole pipeline
    if name in __all__:
        from neurosearch.pipeline import builder

        return getattr(builder, name)
    raise AttributeError(name)
