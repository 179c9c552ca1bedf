"""The index manifest: what an index is, how it was built, and the sha256 of every file.

Loading verifies the format version and the hashes and names the bad file in its error, so a
truncated copy or a hand-edited array is caught before it gives wrong answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurosearch import __version__
from neurosearch.errors import NeurosearchError
from neurosearch.format.atomic import sha256_file, write_json_atomic
from neurosearch.format.layout import MANIFEST, MANIFEST_FORMAT
from neurosearch.ids import UnitNames


class IndexError_(NeurosearchError):
    """The index directory is missing, incomplete, corrupt or of another format version."""


@dataclass
class Manifest:
    """Everything in ``manifest.json``; stages add their sections as the build proceeds."""

    model: dict[str, Any] = field(default_factory=dict)
    site: str = ""
    n_layers: int = 0
    neurons_per_layer: int = 0
    corpus: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    """Per finished stage: seconds, peak memory and stage facts (e.g. tokens kept)."""
    files: dict[str, str] = field(default_factory=dict)
    """Files the index needs at query time: relative path -> sha256 (verified on load)."""
    work_files: dict[str, str] = field(default_factory=dict)
    """Large build intermediates (stats, full profiles): relative path -> sha256, not shipped."""
    format_version: int = MANIFEST_FORMAT
    neurosearch_version: str = __version__
    units: dict[str, Any] = field(default_factory=dict)
    """What the units are: empty for the site's neurons; for the features of a sparse autoencoder
    ``{"kind": "sae", "layer": model layer it encodes, "site", "d_sae", "k", "sae": {"path",
    "files": {name: sha256}, "cfg": its cfg.json}}`` (``n_layers`` is then 1 and
    ``neurons_per_layer`` the number of features)."""
    read_only: bool = False
    """Read-only product (the shipped default index): commands store results about it elsewhere
    (see :mod:`neurosearch.format.state`)."""

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.neurons_per_layer

    # -- what a built index holds, which queries check their arguments against -----------------------
    @property
    def search_method(self) -> str:
        """The profile method that backs ``find`` (the one with HNSW graphs)."""
        return self.configs["profiles"]["search_method"]

    @property
    def methods(self) -> list[str]:
        return list(self.configs["profiles"]["methods"])

    @property
    def ks(self) -> list[int]:
        return [int(k) for k in self.configs["clusters"]["ks"]]

    @property
    def default_k(self) -> int:
        return max(self.ks)

    def check_method(self, method: str) -> str:
        if method not in self.methods:
            raise NeurosearchError(f"method '{method}' is not in this index (has: {', '.join(self.methods)})")
        return method

    def check_k(self, k: int) -> int:
        if k not in self.ks:
            raise NeurosearchError(f"K={k} is not in this index (has K = {', '.join(map(str, self.ks))})")
        return k

    @property
    def sae_layer(self) -> int | None:
        """The model layer of the SAE whose features are the units (None: the units are neurons)."""
        return int(self.units["layer"]) if self.units.get("kind") == "sae" else None

    @property
    def unit_names(self) -> UnitNames:
        """How this index names its units (``ids.py``)."""
        return UnitNames(self.n_layers, self.neurons_per_layer, self.sae_layer)

    @property
    def unit_noun(self) -> str:
        """``neuron`` or ``feature``."""
        return self.unit_names.noun

    def neuron_name(self, flat: int) -> str:
        """The name of the unit at flat index ``flat``: ``L:I`` (a neuron) or ``LL:fI`` (an SAE feature)."""
        return self.unit_names.name(flat)

    def neuron_index(self, name: str) -> int:
        """The flat index of the unit named ``name``; a one-line error when it is not one of this index's."""
        return self.unit_names.flat(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "neurosearch_version": self.neurosearch_version,
            "model": self.model,
            "site": self.site,
            "n_layers": self.n_layers,
            "neurons_per_layer": self.neurons_per_layer,
            "n_neurons": self.n_neurons,
            **({"units": self.units} if self.units else {}),
            "corpus": self.corpus,
            "configs": self.configs,
            "stages": self.stages,
            "files": dict(sorted(self.files.items())),
            "work_files": dict(sorted(self.work_files.items())),
            **({"read_only": True} if self.read_only else {}),
        }

    def save(self, directory: Path) -> None:
        write_json_atomic(directory / MANIFEST, self.to_json())

    def record(self, directory: Path, relative: str, *, work: bool = False) -> None:
        """Hash a file just written into the index and list it."""
        target = self.work_files if work else self.files
        target[relative] = sha256_file(directory / relative)

    @classmethod
    def load(cls, directory: Path) -> "Manifest":
        path = directory / MANIFEST
        if not directory.exists():
            raise IndexError_(f"index not found: {directory}")
        if not path.is_file():
            raise IndexError_(f"{directory} is not a neurosearch index (no {MANIFEST})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise IndexError_(f"corrupt index file {path}: not valid JSON") from None
        if not isinstance(data, dict):
            raise IndexError_(f"corrupt index file {path}: not a JSON object")
        version = data.get("format_version")
        if version != MANIFEST_FORMAT:
            raise IndexError_(
                f"index {directory} has format version {version}; this neurosearch reads version "
                f"{MANIFEST_FORMAT} -- rebuild it with `neurosearch build`"
            )
        problem = _shape_problem(data)
        if problem:
            raise IndexError_(f"corrupt index file {path}: {problem}")
        try:
            return cls(
                model=data["model"],
                site=data["site"],
                n_layers=int(data["n_layers"]),
                neurons_per_layer=int(data["neurons_per_layer"]),
                corpus=data.get("corpus", {}),
                configs=data.get("configs", {}),
                stages=data.get("stages", {}),
                files=data.get("files", {}),
                work_files=data.get("work_files", {}),
                format_version=version,
                neurosearch_version=data.get("neurosearch_version", "?"),
                read_only=data.get("read_only") is True,
                units=data.get("units", {}),
            )
        except (KeyError, TypeError, ValueError):
            raise IndexError_(f"corrupt index file {path}: missing or malformed fields") from None

    def verify(self, directory: Path, names: list[str] | None = None) -> None:
        """Check that the listed files exist with the recorded sha256 (all, or just ``names``)."""
        for relative in names if names is not None else list(self.files):
            expected = self.files.get(relative) or self.work_files.get(relative)
            path = directory / relative
            if expected is None:
                raise IndexError_(f"index {directory} lacks {relative}: run `neurosearch build` for its stage")
            if not path.is_file():
                raise IndexError_(f"index file missing: {path}")
            if sha256_file(path) != expected:
                raise IndexError_(f"corrupt index file {path}: sha256 does not match the manifest")


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _shape_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the shape of a parsed manifest (None when nothing), checked before it is used."""
    units = data.get("units", {})
    if not isinstance(units, dict) or (units and not (units.get("kind") == "sae" and _is_int(units.get("layer"), 0))):
        return "'units' must be an object with kind 'sae' and a layer (a whole number >= 0)"
    for name in ("model", "corpus", "configs", "stages", "files", "work_files"):
        if name in data and not isinstance(data[name], dict):
            return f"'{name}' is not an object"
    if not isinstance(data.get("site"), str):
        return "'site' is missing or not a string"
    for name in ("n_layers", "neurons_per_layer"):
        if not _is_int(data.get(name), 1):
            return f"'{name}' must be a whole number >= 1, got {data.get(name)!r}"
    if any(not isinstance(stage, dict) for stage in data.get("stages", {}).values()):
        return "a stage in 'stages' is not an object"
    for files in ("files", "work_files"):
        if any(not isinstance(v, str) for v in data.get(files, {}).values()):
            return f"a sha256 in '{files}' is not a string"
    configs = data.get("configs", {})
    if any(not isinstance(config, dict) for config in configs.values()):
        return "a config in 'configs' is not an object"
    profiles = configs.get("profiles")
    if profiles is not None:
        methods = profiles.get("methods")
        if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
            return "configs.profiles.methods must be a non-empty list of method names"
        if profiles.get("search_method") not in methods:
            return "configs.profiles.search_method must be one of its methods"
    clusters = configs.get("clusters")
    if clusters is not None:
        ks = clusters.get("ks")
        if not isinstance(ks, list) or not ks or not all(_is_int(k, 1) for k in ks):
            return f"configs.clusters.ks must be a non-empty list of whole numbers >= 1, got {ks!r}"
    return None
