"""Where results about an index live: in the index when it is the user's own, else in a state folder.

An index is *read-only product* when its manifest says ``"read_only": true`` (the shipped default
index) or its directory is not writable (an installed package, a read-only copy). Commands then
store what they compute about it (labels, ablations, evaluation results, fitted heads) in a
per-user state directory keyed by the index's identity -- the sha256 of its manifest's file list,
so results never attach to an index whose files changed since. Readers see both: the results
shipped in the index first, then the user's (which win on the same key).

The state root is, in order: an explicit ``root`` (``--state-dir``), ``$NEUROSEARCH_STATE``,
``$XDG_STATE_HOME/neurosearch``, ``~/.local/state/neurosearch``. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

STATE_ENV = "NEUROSEARCH_STATE"


def state_root(root: str | os.PathLike[str] | None = None) -> Path:
    if root:
        return Path(root).expanduser()
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "neurosearch"


def index_identity(files: Mapping[str, str]) -> str:
    """A short, stable name for exactly these index files (relative path -> sha256)."""
    text = json.dumps(dict(sorted(files.items())), separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class IndexState:
    """The two places a result about one index can be: the index itself and the user's state folder."""

    index_dir: Path
    state_dir: Path | None
    """None when results are written into the index directory itself."""

    @classmethod
    def of(cls, index_dir: Path, files: Mapping[str, str], *, read_only: bool = False,
           root: str | os.PathLike[str] | None = None) -> "IndexState":
        index_dir = Path(index_dir)
        if not read_only and os.access(index_dir, os.W_OK):
            return cls(index_dir, None)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", index_dir.resolve().name)[:40] or "index"
        return cls(index_dir, state_root(root) / f"{slug}-{index_identity(files)}")

    @property
    def writes_into_index(self) -> bool:
        return self.state_dir is None

    def write_path(self, name: str) -> Path:
        """Where a command stores ``name`` (e.g. ``labels.json``, ``evaluation/results.jsonl``)."""
        return (self.state_dir or self.index_dir) / name

    def read_paths(self, name: str) -> list[Path]:
        """Every existing copy of ``name``, in merge order (shipped first, the user's last)."""
        places = [self.index_dir / name] + ([self.state_dir / name] if self.state_dir else [])
        return [path for path in places if path.exists()]

    def describe(self) -> dict[str, Any]:
        return {"index": str(self.index_dir), "results": str(self.state_dir or self.index_dir),
                "writes_into_index": self.writes_into_index}
