"""What commands stored about an index, read from every place it can be and written to the right one.

An index's results (LLM labels, ablation results, evaluation results and their table and figures,
a fitted MLM head) live in the index directory when it is the user's own, and in a per-user state
folder when the index is read-only product (:class:`neurosearch.format.state.IndexState`). Readers
here merge both: the results shipped in the index first, then the user's, which win on the same
key. Writers ask ``index.state.write_path(name)``. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from neurosearch.format import layout
from neurosearch.format.state import IndexState
from neurosearch.format.store import read_json, read_jsonl, update_json

if TYPE_CHECKING:
    from neurosearch.format.results import AblationResult
    from neurosearch.index.labels import Label


def stored_labels(state: IndexState) -> dict[str, Label]:
    """Every stored label (``kind:id`` -> Label), the user's over the shipped ones."""
    paths = state.read_paths(layout.LABELS)
    if not paths:
        return {}
    from neurosearch.index.labels import load_labels

    merged: dict[str, Label] = {}
    for path in paths:
        merged.update(load_labels(path))
    return merged


def check_ablations(data: Any) -> None:
    """The shape of ``ablations.json``: format 2, or version 1 (legacy); raises ValueError with the reason."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError("expected an object with 'format' and 'results'")
    if data.get("format") != layout.ABLATIONS_FORMAT and data.get("version") != layout.LEGACY_ABLATIONS_VERSION:
        raise ValueError(f"unsupported format {data.get('format', data.get('version'))!r}")
    if not all(isinstance(result, dict) for result in data["results"].values()):
        raise ValueError("a result is not an object")


def ablation_results(state: IndexState) -> list[AblationResult]:
    """Every stored ablation result (``format.results.AblationResult``), the user's over the
    shipped ones on the same key (target, neuron set, readouts, ablation, draws, seed)."""
    from neurosearch.format.results import AblationResult

    merged: dict[str, AblationResult] = {}
    for path in state.read_paths(layout.ABLATIONS):
        for value in read_json(path, default={}, check=check_ablations)["results"].values():
            try:
                result = AblationResult.from_json(value)
            except ValueError:  # a damaged record: kept in the file, named by `neurosearch verify`
                continue
            merged[result.store_key()] = result
    return list(merged.values())


def ablation_key(value: dict[str, Any]) -> str:
    """The key a stored result belongs under: ``AblationResult.store_key`` (version 1: ``kind:id``)."""
    from neurosearch.format.results import AblationResult

    return _key(AblationResult.from_json(value))


def _key(result: AblationResult) -> str:
    return result.target_key() if result.legacy else result.store_key()


def store_ablation(state: IndexState, result: AblationResult) -> Path:
    """Add one ablation result to the user's store (locked re-read and merge, atomic write).

    A version-1 store is carried over: its results keep their keys and load as legacy results."""
    path = state.write_path(layout.ABLATIONS)

    def add(data: dict[str, Any]) -> dict[str, Any]:
        data = {"format": layout.ABLATIONS_FORMAT, "results": dict(data["results"])}
        data["results"][_key(result)] = result.to_json()
        return data

    update_json(path, add, default={"format": layout.ABLATIONS_FORMAT, "results": {}}, check=check_ablations)
    return path


@dataclass
class StoredLookup:
    """What the stores hold for one target: the result about its current neurons, and any others."""

    current: AblationResult | None
    stale: list[AblationResult]
    """Results for the same id but other neurons (an earlier clustering)."""

    def note(self, rerun: str) -> str | None:
        """The line ``show`` prints when only results about other neurons exist."""
        if self.current is not None or not self.stale:
            return None
        sizes = sorted({len(r.target.neurons) for r in self.stale})
        return (f"an ablation result exists for an earlier clustering ({', '.join(map(str, sizes))} neurons, not "
                f"these); it is not shown: rerun `{rerun}`")


def lookup(results: Iterable[AblationResult], kind: str, ident: str, neurons: Iterable[str]) -> StoredLookup:
    """The newest result for ``kind:ident`` about exactly ``neurons``; results about other neurons apart."""
    from neurosearch.format.results import neuron_hash

    wanted = neuron_hash(list(neurons))
    same = [r for r in results if r.target_key() == f"{kind}:{ident}"]
    current = [r for r in same if r.target.neurons_sha256 == wanted]
    current.sort(key=lambda r: (not r.legacy, r.created or ""))
    return StoredLookup(current[-1] if current else None, [r for r in same if r.target.neurons_sha256 != wanted])


def evaluation_results(state: IndexState, also: Path | None = None) -> list[dict[str, Any]]:
    """Stored evaluation results in merge order (shipped, the user's, then ``also``): later win."""
    paths = state.read_paths(layout.EVALUATION_RESULTS)
    if also is not None and also.exists() and all(also.resolve() != p.resolve() for p in paths):
        paths.append(also)
    records: list[dict[str, Any]] = []
    for path in paths:
        records.extend(r for r in read_jsonl(path)[0] if isinstance(r, dict) and isinstance(r.get("target"), dict))
    return records


def head_dir(state: IndexState) -> Path | None:
    """The folder of the fitted MLM head to use: the user's when there is one, else the index's."""
    found = [path.parent for path in state.read_paths(layout.HEAD_WEIGHTS) if (path.parent / layout.HEAD_META_NAME).is_file()]
    return found[-1] if found else None


def record_in_manifest(index_dir: Path, relatives: list[str]) -> None:
    """List files just written into an index (e.g. its fitted head) in its manifest, with their sha256."""
    from neurosearch.format.manifest import Manifest
    from neurosearch.format.store import exclusive

    with exclusive(index_dir / layout.MANIFEST):
        manifest = Manifest.load(index_dir)
        for relative in relatives:
            manifest.record(index_dir, relative)
        manifest.save(index_dir)
