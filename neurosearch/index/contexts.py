"""Contexts, re-read by reference from the corpus (the index never stores text).

An index stores occurrences as (document, position in the document's word pieces, token id). To
show one, the corpus file is read again up to the last document needed, the document tokenised,
and the word pieces around the position cut out. The corpus is looked for where the manifest says
(as given, relative to the working directory, to the index, and to the index's parent project);
when it is not found, or it changed since the build (the token at a position is not the one
recorded), the references are still reported with their token and values, and
:class:`CorpusLookup` says where the corpus was looked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from neurosearch.config import CorpusConfig

if TYPE_CHECKING:
    from neurosearch.index.index import Index


@dataclass
class CorpusLookup:
    """Where an index's corpus is, or where it was looked for and why it cannot be used."""

    source: str
    """The corpus as the manifest records it."""
    path: Path | None
    """The file found (None: not found, or not a file that can be re-read)."""
    looked: list[str] = field(default_factory=list)
    """Every place looked, in order."""
    problem: str | None = None
    """Why contexts cannot be shown (None: they can)."""

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "path": str(self.path) if self.path else None, "looked": self.looked,
                "problem": self.problem}


def locate_corpus(index: Index, corpus: str | None = None) -> CorpusLookup:
    """The index's corpus file (or ``corpus`` when given), with the places looked."""
    source = corpus or index.manifest.corpus.get("source") or ""
    if not source:
        return CorpusLookup(source, None, [], "the index records no corpus")
    if source.startswith("hf:"):
        return CorpusLookup(source, None, [], f"the corpus {source} is a streamed dataset, not a file to re-read")
    candidates = [Path(source).expanduser()]
    if corpus is None and not Path(source).is_absolute():
        candidates += [index.path / source, index.path.parent.parent / source]
    looked: list[str] = []
    for candidate in candidates:
        resolved = os.path.abspath(candidate)
        if resolved not in looked:
            looked.append(resolved)
        if candidate.is_file():
            return CorpusLookup(source, candidate, looked)
    return CorpusLookup(source, None, looked, f"corpus {source} not found (looked at {', '.join(looked)})")


def corpus_path(index: Index) -> Path | None:
    """The index's corpus file if it can be found: as recorded, or relative to the index."""
    return locate_corpus(index).path


def index_corpus(index: Index, corpus: str | None = None, max_docs: int | None = None) -> CorpusConfig:
    """The corpus to read for an index: ``corpus`` when given, else the index's own file."""
    from neurosearch.errors import NeurosearchError

    lookup = locate_corpus(index, corpus)
    if lookup.path is None and not (corpus or "").startswith("hf:"):
        raise NeurosearchError(f"{lookup.problem or 'no corpus'}; give the `corpus` to read", option="corpus")
    source = corpus if (corpus or "").startswith("hf:") else str(lookup.path)
    return CorpusConfig(source=source, text_field=index.manifest.corpus.get("text_field", "text"), max_docs=max_docs)


def read_contexts(index: Index, groups: Sequence[Sequence[dict]], width: int = 12, corpus: str | None = None,
                  ) -> tuple[list[list[dict]], CorpusLookup]:
    """Each reference of each group with its text: one pass over the corpus for all of them.

    A record is the reference's fields plus ``piece`` (the vocabulary token), ``token`` (the text
    it covers, or the piece when the text is unavailable), and ``left``/``right`` (``width`` word
    pieces either side, or None).
    """
    lookup = locate_corpus(index, corpus)
    wanted = {int(r["document"]) for group in groups for r in group}
    texts: dict[int, str] = {}
    if lookup.path is not None and wanted:
        from neurosearch.corpus import read_documents

        config = CorpusConfig(source=str(lookup.path), text_field=index.manifest.corpus.get("text_field", "text"))
        last = max(wanted)
        try:
            for number, document in enumerate(read_documents(config)):
                if number in wanted:
                    texts[number] = document
                if number >= last:
                    break
        except Exception as exc:  # an unreadable corpus must not break the report
            texts = {}
            lookup.problem = f"cannot re-read the corpus {lookup.path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        if not lookup.problem and len(texts) < len(wanted):
            lookup.problem = f"the corpus {lookup.path} has fewer documents than the index refers to: it changed since the build"
    tokenizer = index.tokenizer
    encodings: dict[int, Any] = {}
    mismatched = total = 0
    out: list[list[dict]] = []
    for group in groups:
        records = []
        for ref in group:
            record = {**ref, "piece": tokenizer.id_to_token(int(ref["token_id"])) or "?", "left": None, "right": None}
            record["token"] = record["piece"]
            text = texts.get(int(ref["document"]))
            if text is not None:
                total += 1
                if int(ref["document"]) not in encodings:
                    encodings[int(ref["document"])] = tokenizer.encode(text, add_special_tokens=False)
                encoding = encodings[int(ref["document"])]
                position = int(ref["position"])
                if 0 <= position < len(encoding.ids) and encoding.ids[position] == int(ref["token_id"]):
                    offsets = encoding.offsets
                    start, end = offsets[position]
                    left_start = offsets[max(0, position - width)][0]
                    right_end = offsets[min(len(offsets) - 1, position + width)][1]
                    record.update(left=text[left_start:start].replace("\n", " "), token=text[start:end],
                                  right=text[end:right_end].replace("\n", " "))
                else:
                    mismatched += 1
            records.append(record)
        out.append(records)
    if mismatched and not lookup.problem:
        lookup.problem = (f"the corpus {lookup.path} is not the one indexed: {mismatched} of {total} references "
                          "point at other tokens (contexts not shown)")
    return out, lookup
