"""An SAE as the units of an index: what the manifest records of it, and loading it back.

``build --sae DIR`` (``ModelConfig.sae``), or ``build --units sae`` (which trains one into the
index's ``sae/``), records in the manifest's ``units`` the SAE's layer, site, size, and ``sae``: its
directory (relative to the index when inside it), the sha256 of each of its files and its
``cfg.json`` (with the training's held-out FVU, dead share and seconds). Every
later command that runs the model over the index's units (``ablate``, ``trace``, ``score``) loads
the SAE from that directory and refuses it when a file no longer hashes as recorded. Standard
library only until the SAE itself is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurosearch.errors import NeurosearchError

SAE_FILES = ("cfg.json", "sae_weights.safetensors", "feature_stats.safetensors")
"""The files of an SAE directory that are hashed (``feature_stats.safetensors`` when present)."""


def sae_record(directory: str | Path) -> dict[str, Any]:
    """``{"path", "files": {name: sha256}, "cfg"}`` of the SAE in ``directory`` (cfg.json read and
    checked: architecture, sizes, site and layer), before any slow work."""
    from neurosearch.format.atomic import sha256_file
    from neurosearch.sae.model import CONFIG_FILE, WEIGHTS_FILE, SAEFileError, read_cfg

    root = Path(directory).expanduser()
    cfg = read_cfg(root)
    if not (root / WEIGHTS_FILE).is_file():
        raise SAEFileError(f"the SAE in {root} has no {WEIGHTS_FILE}")
    ours = cfg.get("neurosearch") if isinstance(cfg.get("neurosearch"), dict) else {}
    layer = ours.get("layer")
    if not (isinstance(layer, int) and not isinstance(layer, bool) and layer >= 0):
        raise SAEFileError(f"the SAE config {root / CONFIG_FILE} names no layer (neurosearch.layer, a whole number "
                           ">= 0): neurosearch cannot tell where to read its inputs")
    files = {name: sha256_file(root / name) for name in SAE_FILES if (root / name).is_file()}
    return {"path": str(root.resolve()), "files": files, "cfg": cfg}


def units_record(directory: str | Path, site: str, index: str | Path | None = None) -> dict[str, Any]:
    """The manifest's ``units`` for an index of the features of the SAE in ``directory`` read at ``site``;
    an SAE inside the ``index`` folder (one the build trained) is recorded by its path relative to
    the index, so that the index can move."""
    record = sae_record(directory)
    if index is not None:
        home = Path(index).expanduser().resolve()
        if Path(record["path"]).is_relative_to(home):
            record["path"] = Path(record["path"]).relative_to(home).as_posix()
    cfg = record["cfg"]
    return {"kind": "sae", "layer": int(cfg["neurosearch"]["layer"]), "site": site, "d_sae": cfg.get("d_sae"),
            "k": cfg.get("k"), "sae": record}


def recorded_sae_dir(units: dict[str, Any], index: str | Path | None = None) -> tuple[Path, bool]:
    """(directory, inside the index) of the SAE an index's ``units`` record names: a relative path
    lies in the ``index`` folder."""
    root = Path(str((units.get("sae") or {}).get("path", "")))
    if root.is_absolute():
        return root, False
    return (Path(index) / root if index is not None else root), True


def load_recorded_sae(units: dict[str, Any], index: str | Path | None = None) -> Any:
    """The SAE an index's ``units`` record names (a relative path: inside the ``index`` folder),
    refused when its files changed since the build."""
    from neurosearch.format.atomic import sha256_file
    from neurosearch.sae.model import load_sae

    record = units.get("sae", {})
    root, _ = recorded_sae_dir(units, index)
    for name, digest in record.get("files", {}).items():
        path = root / name
        if not path.is_file():
            raise NeurosearchError(f"the index's SAE file {path} is missing; its units are that SAE's features")
        if sha256_file(path) != digest:
            raise NeurosearchError(f"the index's SAE file {path} changed since the index was built (sha256 differs); "
                                   "rebuild the index with `neurosearch build --sae` or restore the SAE")
    return load_sae(root)
