"""Top activating contexts, re-read by reference from the corpus (the index never stores text)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurosearch.config import CorpusConfig


def corpus_path(index: Any) -> Path | None:
    """The index's corpus file if it can be found: as recorded, or relative to the index."""
    source = index.manifest.corpus.get("source") or ""
    if not source or source.startswith("hf:"):
        return None
    for candidate in (Path(source).expanduser(), index.path / source, index.path.parent.parent / source):
        if candidate.is_file():
            return candidate
    return None


def index_corpus(index: Any, corpus: str | None = None, max_docs: int | None = None) -> CorpusConfig:
    """The corpus to read for an index: ``corpus`` when given, else the index's own file."""
    from neurosearch.errors import NeurosearchError

    if corpus is None:
        found = corpus_path(index)
        if found is None:
            raise NeurosearchError("the index's corpus file is not here; give the `corpus` to read", option="corpus")
        corpus = str(found)
    return CorpusConfig(source=corpus, text_field=index.manifest.corpus.get("text_field", "text"), max_docs=max_docs)


def context_records(index: Any, refs: list[dict], limit: int, width: int = 12) -> list[dict]:
    """For each reference (document, position, value): the token and ``width`` pieces either side.

    Returns ``{"document", "position", "value", "left", "token", "right"}``; text fields are None
    when the corpus file is not available (the reference is still reported).
    """
    refs = refs[:limit]
    if not refs:
        return []
    path = corpus_path(index)
    wanted = {int(r["document"]) for r in refs}
    texts: dict[int, str] = {}
    if path is not None:
        from neurosearch.corpus import read_documents

        config = CorpusConfig(source=str(path), text_field=index.manifest.corpus.get("text_field", "text"))
        last = max(wanted)
        try:
            for number, document in enumerate(read_documents(config)):
                if number in wanted:
                    texts[number] = document
                if number >= last:
                    break
        except Exception:  # a changed or unreadable corpus must not break the report
            texts = {}
    tokenizer = index.tokenizer
    records = []
    for ref in refs:
        record = {"document": int(ref["document"]), "position": int(ref["position"]), "value": float(ref["value"]),
                  "left": None, "token": None, "right": None}
        text = texts.get(record["document"])
        if text is not None:
            encoding = tokenizer.encode(text, add_special_tokens=False)
            position = record["position"]
            if 0 <= position < len(encoding.ids):
                offsets = encoding.offsets
                start, end = offsets[position]
                left_start = offsets[max(0, position - width)][0]
                right_end = offsets[min(len(offsets) - 1, position + width)][1]
                record.update(
                    left=text[left_start:start].replace("\n", " "),
                    token=text[start:end],
                    right=text[end:right_end].replace("\n", " "),
                )
        records.append(record)
    return records
