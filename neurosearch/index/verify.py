"""``neurosearch verify``: is an index whole, of a readable format, and are its stored results about it?

Checks, each problem one line naming its file:

- the manifest: readable, of this format version, every stage finished, search files of the
  current format;
- every file the manifest lists (and every build intermediate it lists that is present): there,
  with the recorded sha256; the files of the SAE whose features are the units (``units.sae``);
- a fitted MLM head (the index's and the user's): its format, its weights against the sha256 the
  manifest or ``head.json`` records (else the safetensors header against the file size), its
  vocabulary against the index's tokenizer;
- stored results, in the index and in the user's state folder: readable, of a known version, and
  about what the index holds now -- an ablation or evaluation result whose neurons are not its
  cluster's (or that does not say which neurons it measured) is stale, a label for a cluster or
  neuron the index does not have is an orphan.

Standard library only: no numpy, no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.errors import NeurosearchError
from neurosearch.format import layout
from neurosearch.format.atomic import sha256_file
from neurosearch.format.layout import MANIFEST, SEARCH_FORMAT, STAGES
from neurosearch.format.manifest import IndexError_, Manifest
from neurosearch.format.store import read_json, read_jsonl
from neurosearch.index import stored

if TYPE_CHECKING:
    from neurosearch.index.index import Index


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an index, and the file it is in."""

    file: str
    """Path relative to the index, or absolute for a file in the user's state folder."""
    problem: str

    def line(self) -> str:
        return f"{self.file}: {self.problem}"


@dataclass
class VerifyReport:
    """What ``verify`` found (``--json`` prints :meth:`to_json`)."""

    index: str
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    """How many of each thing were checked: files, ablation and evaluation results, labels, heads."""
    notes: list[str] = field(default_factory=list)
    """Things worth knowing that are not problems (e.g. a torn line a killed run left in a log)."""
    results: dict[str, Any] = field(default_factory=dict)
    """Where results about the index are kept (``IndexState.describe``)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: str | Path, problem: str) -> None:
        self.problems.append(Problem(str(file), problem))

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "ok": self.ok, "problems": [vars(p) for p in self.problems],
                "checked": self.checked, "notes": self.notes, "results": self.results}


def neuron_set_hash(neurons: list[str]) -> str:
    """The sha256 of a neuron set (names ``L:I``, any order): what a stored result was about
    (``format.results.neuron_hash``; a stored hash may be its first 16 hex digits)."""
    from neurosearch.format.results import neuron_hash

    return neuron_hash(neurons)


def verify_index(path: str | Path, *, state_root: str | Path | None = None) -> VerifyReport:
    """Check the index at ``path`` and the results stored about it (see the module docstring)."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise IndexError_(f"index not found: {directory}")
    report = VerifyReport(str(directory))
    try:
        manifest = Manifest.load(directory)
    except IndexError_ as exc:
        report.add(MANIFEST, str(exc))
        return report
    _check_stages(manifest, report)
    _check_files(directory, manifest, report)
    _check_sae(directory, manifest, report)
    from neurosearch.index.index import Index

    index = Index(directory, manifest, state_root=state_root)
    report.results = index.state.describe()
    if report.ok:  # the results are compared with clusters that are now known to be intact
        _check_heads(index, report)
        _check_ablations(index, report)
        _check_evaluation(index, report)
        _check_labels(index, report)
    return report


def _check_stages(manifest: Manifest, report: VerifyReport) -> None:
    for stage in STAGES:
        if not manifest.stages.get(stage, {}).get("done"):
            report.add(MANIFEST, f"stage {stage} is not finished: run `neurosearch build` to finish the index")
    search = manifest.stages.get("search", {})
    if search.get("done") and (search.get("format") or 1) != SEARCH_FORMAT:
        report.add(MANIFEST, f"search files of format {search.get('format') or 1}, this neurosearch reads "
                             f"{SEARCH_FORMAT}: run `neurosearch build` on the index again to redo its search stage")


def _check_files(directory: Path, manifest: Manifest, report: VerifyReport) -> None:
    listed = [(name, sha, True) for name, sha in sorted(manifest.files.items())]
    listed += [(name, sha, False) for name, sha in sorted(manifest.work_files.items())]
    count = 0
    for relative, expected, needed in listed:
        path = directory / relative
        if not path.is_file():
            if needed:
                report.add(relative, "missing (listed in the manifest)")
            continue  # build intermediates stay where the index was built
        count += 1
        try:
            actual = sha256_file(path)
        except OSError as exc:
            report.add(relative, f"cannot be read: {exc.strerror or exc}")
            continue
        if actual != expected:
            report.add(relative, "sha256 does not match the manifest (corrupt or changed since the build)")
    report.checked["files"] = count


def _check_sae(directory: Path, manifest: Manifest, report: VerifyReport) -> None:
    """The files of the SAE whose features are the index's units, against the hashes the build
    recorded: one inside the index (``build --units sae``) must be there; one elsewhere
    (``build --sae DIR``) is checked where it is, and noted when it is not there (``find`` needs
    it not, ``ablate``, ``trace`` and ``score`` do)."""
    record = (manifest.units or {}).get("sae") if isinstance(manifest.units, dict) else None
    if not isinstance(record, dict):
        return
    from neurosearch.sae.units import recorded_sae_dir  # standard library only

    root, inside = recorded_sae_dir(manifest.units, directory)
    count = 0
    for name, expected in sorted((record.get("files") or {}).items()):
        path = root / name
        shown = f"{record.get('path')}/{name}"
        if not path.is_file():
            if inside:
                report.add(shown, "missing (the SAE whose features are the index's units)")
            else:
                report.notes.append(f"{path}: the SAE of the index's units is not on this machine "
                                    "(find works without it; ablate, trace and score need it)")
            continue
        count += 1
        if sha256_file(path) != expected:
            report.add(shown, "sha256 does not match the manifest's units record (the SAE changed since the build)")
    report.checked["files"] = report.checked.get("files", 0) + count


def _check_heads(index: Index, report: VerifyReport) -> None:
    folders = {p.parent for p in index.state.read_paths(layout.HEAD_META)}
    folders |= {p.parent for p in index.state.read_paths(layout.HEAD_WEIGHTS)}
    for folder in sorted(folders):
        _check_head(index, folder, report)
    report.checked["heads"] = len(folders)


def _check_head(index: Index, folder: Path, report: VerifyReport) -> None:
    shown = _shown(index, folder)
    meta_path, weights = folder / layout.HEAD_META_NAME, folder / layout.HEAD_WEIGHTS_NAME
    for path in (meta_path, weights):
        if not path.is_file():
            report.add(f"{shown}/{path.name}", "missing (a fitted head needs head.json and head.safetensors)")
            return
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        arch = meta["head"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        report.add(f"{shown}/{layout.HEAD_META_NAME}", "not a head record (invalid JSON or no 'head' section)")
        return
    if not isinstance(arch, dict) or arch.get("format") != layout.HEAD_FORMAT:
        report.add(f"{shown}/{layout.HEAD_META_NAME}", f"head format {arch.get('format') if isinstance(arch, dict) else '?'}"
                                                  f", this neurosearch reads {layout.HEAD_FORMAT}: fit it again")
        return
    relative = layout.HEAD_WEIGHTS
    in_manifest = folder == index.path / layout.HEAD_DIR and relative in index.manifest.files
    if not in_manifest:  # listed files were hashed with the others
        expected = meta.get("weights_sha256")
        if expected is not None and sha256_file(weights) != expected:
            report.add(f"{shown}/{layout.HEAD_WEIGHTS_NAME}", "sha256 does not match head.json (corrupt or changed)")
        elif expected is None and (problem := safetensors_problem(weights)) is not None:
            report.add(f"{shown}/{layout.HEAD_WEIGHTS_NAME}", problem)
    model = index.manifest.model.get("id")
    if meta.get("model") and model and meta["model"] != model:
        report.add(f"{shown}/{layout.HEAD_META_NAME}", f"fitted for model {meta['model']}, the index is of {model}")
    vocabulary = _vocabulary_size(index)
    if vocabulary is not None and arch.get("vocab_size") != vocabulary:
        report.add(f"{shown}/{layout.HEAD_META_NAME}", f"head for a vocabulary of {arch.get('vocab_size')} tokens, "
                                                  f"the index's tokenizer has {vocabulary}")


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's structure (header and size), or None."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= size - 8:
                return "not a safetensors file (bad header length)"
            header = json.loads(handle.read(length).decode("utf-8"))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError, IndexError):
        return "not a safetensors file (unreadable header)"
    if 8 + length + max(ends, default=0) != size:
        return f"truncated or padded: the header describes {8 + length + max(ends, default=0)} bytes, the file has {size}"
    return None


def _vocabulary_size(index: Index) -> int | None:
    try:
        data = json.loads((index.path / layout.TOKENIZER).read_text(encoding="utf-8"))
        vocabulary = data["model"]["vocab"]
        added = {t["id"] for t in data.get("added_tokens", [])}
        ids = set(vocabulary.values()) if isinstance(vocabulary, dict) else set(range(len(vocabulary)))
        return len(ids | added)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _shown(index: Index, path: Path) -> str:
    """A path as a problem line names it: relative inside the index, absolute in the state folder."""
    try:
        return path.relative_to(index.path).as_posix()
    except ValueError:
        return str(path)


def _cluster_neurons(index: Index, cluster_id: str) -> list[str] | None:
    """The neurons of cluster ``method/kK/ID`` (or tree node ``method/tree/ID``) now (None when the
    index has no such cluster)."""
    try:
        method, k, number = index.parse_cluster_id(cluster_id)
        if k == 0:
            return index.cluster(cluster_id).neurons
        found = index.clusters(method, k)
    except NeurosearchError:
        return None
    if not 0 <= number < len(found):
        return None
    return [index.neuron_name(n) for n in found[number].neurons]


def _current(index: Index, kind: Any, ident: str) -> tuple[list[str] | None, str | None]:
    """(the neurons of a cluster or neuron list now, None) or (None, why the index has no such target)."""
    if kind == "cluster":
        current = _cluster_neurons(index, ident)
        return (current, None) if current is not None else (None, f"about cluster {ident}, which this index does not have")
    if kind in ("neuron", "neurons"):
        try:
            return [index.neuron_name(index.neuron_index(n)) for n in ident.split(",")], None
        except NeurosearchError as exc:
            return None, f"about neurons {ident}: {exc}"
    return None, f"about a target of unknown kind {kind!r}"


def target_problem(index: Index, target: Any) -> str | None:
    """Why a stored result is not about what the index holds now (None: it is)."""
    if not isinstance(target, dict) or not isinstance(target.get("id"), str):
        return "about no named target: an unknown neuron set (stale)"
    kind, ident, neurons = target.get("kind"), target["id"], target.get("neurons")
    current, missing = _current(index, kind, ident)
    if current is None:
        return missing
    if not isinstance(neurons, list) or not all(isinstance(n, str) for n in neurons):
        return f"about an unknown neuron set (stale): it does not say which neurons of {kind} {ident} it measured"
    if set(neurons) != set(current):
        return (f"about {len(set(neurons))} neurons that are not {kind} {ident}'s {len(set(current))} "
                f"(stale: measured on an earlier clustering)")
    expected = target.get("neurons_sha256")
    if expected is not None and (len(str(expected)) < 16 or not neuron_set_hash(neurons).startswith(str(expected))):
        return "about neurons its neuron-set hash does not match (changed after it was stored)"
    return None


def _check_ablations(index: Index, report: VerifyReport) -> None:
    count = 0
    for path in index.state.read_paths(layout.ABLATIONS):
        shown = _shown(index, path)
        try:
            data = read_json(path, default={}, check=stored.check_ablations)
        except NeurosearchError as exc:
            report.add(shown, str(exc))
            continue
        for key, result in data["results"].items():
            count += 1
            target = result.get("target") if isinstance(result, dict) else None
            problem = target_problem(index, target)
            if problem is None:
                try:
                    if stored.ablation_key(result) != key:
                        problem = f"about {target.get('kind')} {target.get('id')} but stored under another key"
                except (KeyError, TypeError, ValueError) as exc:
                    problem = f"not a readable ablation result ({type(exc).__name__}: {exc})"
            if problem is not None:
                cluster = isinstance(target, dict) and target.get("kind") == "cluster"
                rerun = f"neurosearch ablate {target['id']}" if cluster else "neurosearch ablate --neurons ..."
                report.add(shown, f"result {key} is {problem}; rerun `{rerun}`")
    report.checked["ablation_results"] = count


def _check_evaluation(index: Index, report: VerifyReport) -> None:
    stale: dict[str, str] = {}  # target id -> problem, for targets with no result about them now
    good: set[str] = set()
    count = 0
    for path in index.state.read_paths(layout.EVALUATION_RESULTS):
        try:
            records, skipped = read_jsonl(path)
        except NeurosearchError as exc:
            report.add(_shown(index, path), str(exc))
            continue
        if skipped:
            report.notes.append(f"{_shown(index, path)}: {skipped} unreadable line(s) skipped (a killed run)")
        for record in records:
            count += 1
            target = record.get("target") if isinstance(record, dict) else None
            ident = str(target.get("id")) if isinstance(target, dict) else "?"
            problem = target_problem(index, target)
            if problem is None:
                good.add(ident)
            else:
                stale.setdefault(ident, f"{_shown(index, path)}: {problem}")
    for ident, line in stale.items():
        if ident not in good:
            file, problem = line.split(": ", 1)
            report.add(file, f"result for {ident} is {problem}; rerun `neurosearch evaluate`")
    report.checked["evaluation_results"] = count


def _check_labels(index: Index, report: VerifyReport) -> None:
    from neurosearch.index.labels import load_labels

    count = 0
    for path in index.state.read_paths(layout.LABELS):
        shown = _shown(index, path)
        try:
            labels = load_labels(path)
        except NeurosearchError as exc:
            report.add(shown, str(exc))
            continue
        for key in labels:
            count += 1
            kind, _, ident = key.partition(":")
            missing = _current(index, kind, ident)[1]
            if missing is not None:
                report.add(shown, f"label {key} is {missing}")
    report.checked["labels"] = count
