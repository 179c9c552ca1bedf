"""What commands stored about an index, read from every place it can be and written to the right one.

An index's results (LLM labels, ablation results, evaluation results and their table and figures,
a fitted MLM head) live in the index directory when it is the user's own, and in a per-user state
folder when the index is read-only product (:class:`neurosearch.format.state.IndexState`). Readers
here merge both: the results shipped in the index first, then the user's, which win on the same
key. Writers ask ``index.state.write_path(name)``. Standard library only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.format import layout
from neurosearch.format.state import IndexState
from neurosearch.format.store import read_json, read_jsonl, update_json
from neurosearch.ids import store_key

if TYPE_CHECKING:
    from neurosearch.index.labels import Label

LABELS = layout.LABELS
ABLATIONS = layout.ABLATIONS
EVALUATION = layout.EVALUATION_DIR
EVALUATION_RESULTS = layout.EVALUATION_RESULTS
HEAD = layout.HEAD_DIR
HEAD_META = layout.HEAD_META_NAME
"""File names inside a head folder (the index's ``head/`` or the state folder's)."""
HEAD_WEIGHTS = layout.HEAD_WEIGHTS_NAME
HEAD_FILES = (layout.HEAD_META, layout.HEAD_WEIGHTS)
HEAD_FORMAT = 1
"""Version of a fitted head's files (``head.json`` records it; ``model/head.py`` writes them)."""
ABLATIONS_VERSION = 1


def stored_labels(state: IndexState) -> dict[str, Label]:
    """Every stored label (``kind:id`` -> Label), the user's over the shipped ones."""
    paths = state.read_paths(LABELS)
    if not paths:
        return {}
    from neurosearch.labeling.store import load_labels

    merged: dict[str, Label] = {}
    for path in paths:
        merged.update(load_labels(path))
    return merged


def check_ablations(data: Any) -> None:
    """The shape of ``ablations.json`` (raises ValueError with the reason)."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError("expected an object with 'version' and 'results'")
    if data.get("version") != ABLATIONS_VERSION:
        raise ValueError(f"unsupported version {data.get('version')!r}")
    if not all(isinstance(result, dict) for result in data["results"].values()):
        raise ValueError("a result is not an object")


def ablation_results(state: IndexState) -> dict[str, dict[str, Any]]:
    """Every stored ablation result (``kind:id`` -> result), the user's over the shipped ones."""
    merged: dict[str, dict[str, Any]] = {}
    for path in state.read_paths(ABLATIONS):
        merged.update(read_json(path, default={}, check=check_ablations)["results"])
    return merged


def ablation_key(result: dict[str, Any]) -> str:
    """``kind:id`` of a result in ``ablations.json`` (a single neuron is stored as ``neuron:L:I``)."""
    target = result["target"]
    kind = "neuron" if target["kind"] == "neurons" and "," not in target["id"] else target["kind"]
    return store_key(kind, target["id"])


def store_ablation(state: IndexState, result: dict[str, Any]) -> Path:
    """Add one ablation result to the user's store (locked re-read and merge, atomic write)."""
    path = state.write_path(ABLATIONS)

    def add(data: dict[str, Any]) -> dict[str, Any]:
        data["results"][ablation_key(result)] = result
        return data

    update_json(path, add, default={"version": ABLATIONS_VERSION, "results": {}}, check=check_ablations)
    return path


def evaluation_results(state: IndexState, also: Path | None = None) -> list[dict[str, Any]]:
    """Stored evaluation results in merge order (shipped, the user's, then ``also``): later win."""
    paths = state.read_paths(EVALUATION_RESULTS)
    if also is not None and also.exists() and all(also.resolve() != p.resolve() for p in paths):
        paths.append(also)
    records: list[dict[str, Any]] = []
    for path in paths:
        records.extend(r for r in read_jsonl(path)[0] if isinstance(r, dict) and isinstance(r.get("target"), dict))
    return records


def head_dir(state: IndexState) -> Path | None:
    """The folder of the fitted MLM head to use: the user's when there is one, else the index's."""
    found = [path.parent for path in state.read_paths(HEAD_FILES[1]) if (path.parent / HEAD_META).is_file()]
    return found[-1] if found else None


def record_in_manifest(index_dir: Path, relatives: list[str]) -> None:
    """List files just written into an index (e.g. its fitted head) in its manifest, with their sha256."""
    from neurosearch.format.manifest import MANIFEST, Manifest
    from neurosearch.format.store import exclusive

    with exclusive(index_dir / MANIFEST):
        manifest = Manifest.load(index_dir)
        for relative in relatives:
            manifest.record(index_dir, relative)
        manifest.save(index_dir)
