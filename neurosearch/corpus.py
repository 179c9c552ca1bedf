"""Corpus readers and model windows.

A corpus is a sequence of documents addressed by their position (document index). Readers stream:
``.txt`` (one document per line), ``.jsonl`` / ``.jsonl.gz`` (one JSON object per line, field
``text``), ``.csv`` (a header row, field ``text``) and ``hf:NAME[:CONFIG]:SPLIT`` (the ``datasets``
library, streaming; an optional extra). Empty documents keep their index so references stay valid.

Documents are tokenised without special tokens and cut into consecutive windows of
``window - 2`` word pieces, each wrapped in [CLS] ... [SEP]; nothing is truncated or dropped.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterator

from neurosearch.config import CorpusConfig
from neurosearch.errors import NeurosearchError


class CorpusError(NeurosearchError):
    """The corpus is missing, empty, binary or malformed."""


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")


def _kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if last == ".csv":
        return "csv"
    return "txt"


def _check_text_file(path: Path) -> None:
    if not path.exists():
        raise CorpusError(f"corpus file not found: {path}")
    if path.is_dir():
        raise CorpusError(f"corpus path is a directory, not a file: {path}")
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
            head = handle.read(8192)
    except (OSError, EOFError) as exc:
        raise CorpusError(f"cannot read corpus {path}: {exc}") from None
    if b"\x00" in head:
        raise CorpusError(f"corpus {path} looks binary (NUL bytes), not text")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the buffer end is fine
            raise CorpusError(f"corpus {path} is not UTF-8 text") from None


def _read_file(path: Path, config: CorpusConfig) -> Iterator[str]:
    kind = _kind(path)
    field = config.text_field
    try:
        with _open_text(path) as handle:
            if kind == "txt":
                for line in handle:
                    yield line.rstrip("\r\n")
            elif kind == "jsonl":
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        raise CorpusError(f"{path} line {number}: not valid JSON") from None
                    if not isinstance(record, dict) or field not in record:
                        keys = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
                        raise CorpusError(
                            f"{path} line {number}: no field '{field}' (has: {keys}); choose one with `text_field`",
                            option="text_field",
                        )
                    yield str(record[field] or "")
            else:
                reader = csv.DictReader(handle)
                if reader.fieldnames is None or field not in reader.fieldnames:
                    raise CorpusError(
                        f"{path}: no column '{field}' (has: {', '.join(reader.fieldnames or [])}); "
                        "choose one with `text_field`", option="text_field"
                    )
                for row in reader:
                    yield row[field] or ""
    except UnicodeDecodeError:
        raise CorpusError(f"corpus {path} is not UTF-8 text") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise CorpusError(f"cannot read corpus {path}: {exc}") from None


def _read_hf(spec: str, config: CorpusConfig) -> Iterator[str]:
    parts = spec[3:].split(":")
    if len(parts) == 2:
        name, subset, split = parts[0], None, parts[1]
    elif len(parts) == 3:
        name, subset, split = parts
    else:
        raise CorpusError(f"bad corpus '{spec}': use hf:NAME[:CONFIG]:SPLIT, e.g. hf:allenai/c4:en:validation")
    try:
        import datasets
    except ImportError:
        raise CorpusError("hf: corpora need the datasets library: pip install 'neurosearch[hf]'") from None
    try:
        stream = datasets.load_dataset(name, subset, split=split, streaming=True)
        for record in stream:
            if config.text_field not in record:
                raise CorpusError(f"{spec}: no field '{config.text_field}'; choose one with `text_field`",
                                  option="text_field")
            yield str(record[config.text_field] or "")
    except CorpusError:
        raise
    except Exception as exc:
        raise CorpusError(f"cannot stream {spec}: {type(exc).__name__}: {exc}".splitlines()[0]) from None


def read_documents(config: CorpusConfig) -> Iterator[str]:
    """Stream the documents of a corpus, in a stable order, at most ``max_docs``."""
    if not config.source:
        raise CorpusError("no corpus given: name a `corpus`", option="corpus")
    if config.source.startswith("hf:"):
        documents = _read_hf(config.source, config)
    else:
        path = Path(config.source).expanduser()
        _check_text_file(path)
        documents = _read_file(path, config)
    for number, document in enumerate(documents):
        if config.max_docs is not None and number >= config.max_docs:
            return
        yield document


def is_heldout(text: str, share: float) -> bool:
    """Whether a document is held out of the build at ``share``: the first 8 bytes of the sha256 of
    its text, as a fraction of 2**64, fall below ``share`` (the same text is always on the same side)."""
    if share <= 0.0:
        return False
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") < share * 2.0**64


def training_documents(config: CorpusConfig) -> Iterator[str]:
    """:func:`read_documents` with every held-out document empty (so every index stays its own)."""
    share = config.heldout_share
    for document in read_documents(config):
        yield "" if is_heldout(document, share) else document


def heldout_documents(config: CorpusConfig, share: float | None = None) -> Iterator[tuple[int, str]]:
    """(index, text) of the documents held out at ``share`` (default: the config's)."""
    share = config.heldout_share if share is None else share
    for number, document in enumerate(read_documents(config)):
        if is_heldout(document, share):
            yield number, document


@dataclass(frozen=True)
class CorpusSummary:
    """What a corpus is, for the manifest: a description and a content fingerprint."""

    source: str
    documents: int
    fingerprint: str
    """sha256 over the documents' text; for hf: corpora, over the spec (streams are not hashed)."""
    heldout: int = 0
    """Documents held out of the build (``CorpusConfig.heldout_share``; -1 for an hf: stream)."""


def scan_corpus(config: CorpusConfig) -> CorpusSummary:
    """Read the whole corpus once: validates it before any index file is written, and fingerprints it."""
    if config.source.startswith("hf:"):
        spec = f"{config.source}|{config.text_field}|{config.max_docs}"
        return CorpusSummary(config.source, -1, hashlib.sha256(spec.encode()).hexdigest(), -1)
    digest = hashlib.sha256()
    count = 0
    nonempty = 0
    heldout = 0
    for document in read_documents(config):
        digest.update(document.encode("utf-8"))
        digest.update(b"\n")
        count += 1
        out = is_heldout(document, config.heldout_share)
        heldout += out
        nonempty += bool(document.strip()) and not out
    if nonempty == 0:
        raise CorpusError(f"corpus {config.source} has no documents" + (" outside the held-out share" if heldout else ""))
    return CorpusSummary(config.source, count, digest.hexdigest(), heldout)


@dataclass
class Windows:
    """Model windows of a run of documents, sorted by nothing yet (order of appearance)."""

    input_ids: list[list[int]]
    """Token ids with [CLS] ... [SEP]."""
    document: list[int]
    """Corpus document index of each window."""
    start: list[int]
    """Position in the document's word-piece sequence of each window's first token."""


def make_windows(
    tokenizer: object, documents: list[str], first_document: int, window: int
) -> Windows:
    """Tokenise documents (no truncation) and cut them into consecutive windows."""
    backend = plain_backend(tokenizer)
    cls_id = tokenizer.cls_token_id  # type: ignore[attr-defined]
    sep_id = tokenizer.sep_token_id  # type: ignore[attr-defined]
    body = window - 2
    if body < 1:
        raise NeurosearchError(f"window {window} is too small (needs at least 3 tokens)")
    encodings = backend.encode_batch(documents, add_special_tokens=False)
    result = Windows([], [], [])
    for offset, encoding in enumerate(encodings):
        ids = encoding.ids
        for start in range(0, len(ids), body):
            result.input_ids.append([cls_id, *ids[start : start + body], sep_id])
            result.document.append(first_document + offset)
            result.start.append(start)
    return result


def plain_backend(tokenizer: object) -> object:
    """The fast tokenizer's backend without truncation or padding (model configs often set them)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())  # type: ignore[attr-defined]
    backend.no_truncation()
    backend.no_padding()
    return backend


def shards(documents: Iterator[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of ``size`` documents (the last one shorter) until ``documents`` ends."""
    while True:
        shard = list(islice(documents, size))
        if not shard:
            return
        yield shard
