"""Token embedding spaces: neighbours for Eq. 2 smoothing and for query expansion.

Three sources:

* ``model`` -- the model's own input-embedding table (semantic neighbours: ``weather`` -> rain,
  temperature, climate; no training; the default, chosen by measurement: docs/results/retrieval.md);
* ``fasttext`` -- skip-gram trained with the ``fasttext`` package on the corpus's own word-piece
  stream, as the paper did (good for frequent words, character n-gram look-alikes for others);
* ``file`` -- user vectors in word2vec text (.vec) or fastText binary (.bin) format.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from neurosearch.errors import NeurosearchError
from neurosearch.format.quantized import dequantize_rows, quantize_rows, unit  # noqa: F401 (part of this module's API)


def nearest_neighbours(vectors: np.ndarray, n: int = 5, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``n`` most cosine-similar other rows: (indices int32 [V, n], similarities float32)."""
    normed = unit(vectors)
    count = normed.shape[0]
    n = min(n, count - 1)
    indices = np.zeros((count, n), dtype=np.int32)
    sims = np.zeros((count, n), dtype=np.float32)
    for start in range(0, count, block):
        scores = normed[start : start + block] @ normed.T
        rows = np.arange(scores.shape[0])
        scores[rows, start + rows] = -np.inf  # never your own neighbour
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        values = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        indices[start : start + block] = np.take_along_axis(part, order, axis=1)
        sims[start : start + block] = np.take_along_axis(values, order, axis=1)
    return indices, sims


def fasttext_embeddings(
    word_piece_documents: Iterable[list[str]],
    tokens: list[str],
    *,
    dim: int = 100,
    epochs: int = 5,
    min_count: int = 1,
    work_dir: Path | None = None,
) -> np.ndarray:
    """Train skip-gram fastText on word-piece streams; vectors of ``tokens`` [V, dim].

    fastText trains with several threads, so two runs give slightly different vectors. It trains
    in a child process: its C++ threads inherit the parent's state (in a long test run it failed
    with "Encountered NaN" at every learning rate, never on its own), and a crash of theirs ends
    only the child.
    """
    import importlib.util
    import json
    import multiprocessing

    if importlib.util.find_spec("fasttext") is None:
        raise NeurosearchError(
            "embeddings 'fasttext' need the fasttext package: pip install 'neurosearch[fasttext]'"
        )
    with tempfile.TemporaryDirectory(dir=work_dir) as folder:
        corpus, words, vectors, failure = (Path(folder) / name for name in
                                           ("corpus.txt", "tokens.json", "vectors.npy", "error.txt"))
        with open(corpus, "w", encoding="utf-8") as out:
            for pieces in word_piece_documents:
                out.write(" ".join(pieces) + "\n")
        words.write_text(json.dumps(list(tokens)), encoding="utf-8")
        child = multiprocessing.get_context("spawn").Process(
            target=_train_in_child, args=(str(corpus), str(words), str(vectors), str(failure), dim, epochs, min_count))
        child.start()
        child.join()
        if failure.exists():
            raise NeurosearchError(failure.read_text(encoding="utf-8"))
        if child.exitcode != 0 or not vectors.exists():
            raise NeurosearchError(f"fastText training ended with exit code {child.exitcode}")
        return np.load(vectors, allow_pickle=False)


def _train_in_child(corpus: str, words: str, vectors: str, failure: str, dim: int, epochs: int,
                    min_count: int) -> None:
    """The child process of :func:`fasttext_embeddings`: vectors of the listed tokens to ``vectors``,
    or a one-line reason to ``failure``."""
    import json

    import fasttext

    try:
        model = _train_skipgram(fasttext, corpus, dim=dim, epochs=epochs, min_count=min_count)
    except NeurosearchError as exc:
        Path(failure).write_text(str(exc), encoding="utf-8")
        return
    tokens = json.loads(Path(words).read_text(encoding="utf-8"))
    np.save(vectors, np.stack([model.get_word_vector(token) for token in tokens]).astype(np.float32))


FASTTEXT_LEARNING_RATE = 0.05
"""fastText's default skip-gram learning rate, the first one tried."""

FASTTEXT_TRIES = 4
"""Learning rates tried (each half the last) before a diverging fastText run is an error."""


def _train_skipgram(fasttext: Any, path: str, *, dim: int, epochs: int, min_count: int) -> Any:
    """Train skip-gram on ``path``; on divergence (fastText's "Encountered NaN") retry at half the rate.

    fastText diverges now and then on small or repetitive corpora, where two threads update the
    same few rows at once; a lower learning rate is its maintainers' remedy.
    """
    rate = FASTTEXT_LEARNING_RATE
    for attempt in range(FASTTEXT_TRIES):
        try:
            return fasttext.train_unsupervised(
                path, model="skipgram", dim=dim, epoch=epochs, minCount=min_count, lr=rate, thread=2, verbose=0
            )
        except RuntimeError as exc:
            if "nan" not in str(exc).lower() or attempt == FASTTEXT_TRIES - 1:
                raise NeurosearchError(f"fastText training failed at learning rate {rate:g}: {exc}") from None
            rate /= 2
    raise AssertionError("unreachable")


FASTTEXT_MAGIC = 793712314
"""First four bytes (little-endian int32) of a fastText .bin model."""


def check_embeddings_file(path: str) -> None:
    """Refuse, before a build does any work, a word-vector file that cannot be what it claims.

    A ``.bin`` must start with fastText's magic number; a ``.vec`` must start with a ``count dim``
    header or a ``word x1 x2 ...`` line of numbers.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise NeurosearchError(f"embeddings file not found: {source}")
    try:
        with open(source, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError as exc:
        raise NeurosearchError(f"cannot read embeddings file {source}: {exc.strerror or exc}") from None
    if source.suffix == ".bin":
        if len(head) < 4 or int.from_bytes(head[:4], "little") != FASTTEXT_MAGIC:
            raise NeurosearchError(f"embeddings file {source} is not a fastText .bin model")
        return
    first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").split()
    try:
        if len(first) == 2:
            ok = int(first[0]) >= 1 and int(first[1]) >= 1
        else:
            ok = len(first) >= 2 and all(np.isfinite(float(x)) for x in first[1:])
    except ValueError:
        ok = False
    if not ok:
        raise NeurosearchError(f"embeddings file {source} is not in .vec format (first line: 'count dim' "
                               "or 'word x1 x2 ...')")


def check_embeddings_cover(path: str, tokens: list[str]) -> None:
    """A .vec file holds a vector for at least one of ``tokens`` (read until the first one is found)."""
    source = Path(path).expanduser()
    if source.suffix == ".bin":
        return  # fastText composes a vector for any token from its character n-grams
    wanted = set(tokens)
    with open(source, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.split(" ", 1)[0] in wanted:
                return
    raise NeurosearchError(f"embeddings file {source} has a vector for none of the model's tokens")


def file_embeddings(path: str, tokens: list[str]) -> np.ndarray:
    """Vectors for ``tokens`` from a .vec (text) or .bin (fastText) file; unknown tokens get zeros."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise NeurosearchError(f"embeddings file not found: {source}")
    if source.suffix == ".bin":
        try:
            import fasttext
        except ImportError:
            raise NeurosearchError(".bin embeddings need the fasttext package: pip install 'neurosearch[fasttext]'") from None
        check_embeddings_file(path)
        try:
            model = fasttext.load_model(str(source))
        except (ValueError, RuntimeError, MemoryError) as exc:
            raise NeurosearchError(f"embeddings file {source} cannot be read by fastText ({exc})") from None
        return np.stack([model.get_word_vector(token) for token in tokens]).astype(np.float32)
    wanted = {token: row for row, token in enumerate(tokens)}
    vectors: np.ndarray | None = None
    try:
        with open(source, encoding="utf-8", errors="replace") as handle:
            first = handle.readline().split()
            dim = int(first[1]) if len(first) == 2 else len(first) - 1
            vectors = np.zeros((len(tokens), dim), dtype=np.float32)
            lines = handle if len(first) == 2 else [" ".join(first), *handle]
            for line in lines:
                parts = line.rstrip().split(" ")
                row = wanted.get(parts[0])
                if row is not None and len(parts) == dim + 1:
                    vectors[row] = np.asarray(parts[1:], dtype=np.float32)
    except (ValueError, IndexError):
        raise NeurosearchError(f"embeddings file {source} is not in .vec format") from None
    if vectors is None or not np.any(vectors):
        raise NeurosearchError(f"embeddings file {source} has a vector for none of the model's tokens")
    return vectors
