"""Explanation scores as stored beside an index (``neurosearch score``; ``scores/run.py`` computes them).

Two files: ``layout.SIMULATION_SCORES`` (every score of every unit, with what the run measured: what
``show`` and the report read) and ``layout.SIMULATION_ROWS`` (the simulation score only, by row: what
``find`` reads, a tenth of the size). Both are in the index, or for a read-only index in the user's
state folder, whose copy wins. Standard library only.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from neurosearch.format import layout
from neurosearch.ids import store_key

if TYPE_CHECKING:
    from neurosearch.format.state import IndexState


class StoredScores:
    """The stored simulation scores of an index (the user's run over the shipped one) and what they
    measured. (A plain class: ``find`` defines it on every cold start.)"""

    __slots__ = ("about", "columns", "units", "summary", "path")

    def __init__(self, about: dict[str, Any], columns: list[str], units: dict[str, list[float | None]],
                 summary: dict[str, Any], path: Path):
        self.about = about
        self.columns = columns
        self.units = units
        """Store key (``neuron:L:I``, ``cluster:METHOD/kK/ID``) -> a value per column."""
        self.summary = summary
        self.path = path

    def of(self, key: str) -> dict[str, float | None]:
        """The scores of one unit by column name (empty when it was not scored)."""
        values = self.units.get(key)
        return {} if values is None else dict(zip(self.columns, values))


def check_scores(data: Any) -> None:
    if not isinstance(data, dict) or data.get("format") != layout.SIMULATION_FORMAT:
        raise ValueError(f"not a format-{layout.SIMULATION_FORMAT} scores file")
    if not isinstance(data.get("units"), dict) or not isinstance(data.get("columns"), list):
        raise ValueError("no units or columns")


def stored_scores(state: IndexState) -> StoredScores | None:
    """The newest stored simulation scores (the user's state folder's, else the shipped ones), None without any."""
    from neurosearch.format.store import read_json

    paths = state.read_paths(layout.SIMULATION_SCORES)
    if not paths:
        return None
    data = read_json(paths[-1], check=check_scores)
    return StoredScores(data.get("about") or {}, list(data["columns"]), data["units"], data.get("summary") or {},
                        paths[-1])


def score_rows(data: dict[str, Any]) -> dict[str, Any]:
    """The compact file ``find`` reads (``layout.SIMULATION_ROWS``) of a run's scores: each unit's
    simulation score as stored, in row order (the run lists neurons by flat index, then the
    search method's cluster rows)."""
    neurons = int(data["summary"]["neurons"]["simulation_score"]["units"])
    column = data["columns"].index("simulation_score")
    values = [row[column] for row in data["units"].values()]
    return {"format": layout.SIMULATION_FORMAT, "method": data["about"].get("method"),
            "neurons": values[:neurons], "clusters": values[neurons:]}


def store_scores(state: IndexState, data: dict[str, Any]) -> Path:
    """Write a run's scores where results about the index go (replacing an earlier run), and the
    compact copy ``find`` reads; the path of the full one."""
    from neurosearch.format.store import exclusive, write_json

    path = state.write_path(layout.SIMULATION_SCORES)
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path):
        write_json(path, data)
        write_json(state.write_path(layout.SIMULATION_ROWS), score_rows(data))
    return path


class UnitScores:
    """The stored explanation scores of one index's units (``neurosearch score``), read when first
    asked: ``find`` reads the compact file of simulation scores by row, ``show`` the full one."""

    def __init__(self, state: Callable[[], IndexState]):
        self._state = state

    def _newest(self, name: str) -> dict[str, Any] | None:
        """The parsed copy of ``name`` (the user's state folder's, else the shipped one), None without one."""
        paths = self._state().read_paths(name)
        if not paths:
            return None
        from neurosearch.format.store import read_json

        data = read_json(paths[-1])
        return data if isinstance(data, dict) else None

    @cached_property
    def rows(self) -> dict[str, Any] | None:
        """The compact scores by row, None without any."""
        data = self._newest(layout.SIMULATION_ROWS)
        return data if data is not None and data.get("format") == layout.SIMULATION_FORMAT else None

    def at_row(self, kind: str, method: str, row: int) -> float | None:
        """The simulation score of row ``row`` of ``kind`` (``neurons``/``clusters``) under ``method``."""
        rows = self.rows
        if rows is None or rows.get("method") != method:
            return None
        values = rows.get(kind) or []
        return values[row] if 0 <= row < len(values) else None

    @cached_property
    def stored(self) -> StoredScores | None:
        return stored_scores(self._state())

    @cached_property
    def detection(self) -> dict[str, Any] | None:
        """The stored detection scores (``layout.DETECTION_SCORES``: a sample of units), None without any."""
        data = self._newest(layout.DETECTION_SCORES)
        ok = data is not None and isinstance(data.get("units"), dict) and isinstance(data.get("columns"), list)
        return data if ok else None

    def detection_auc(self, kind: str, key: str) -> float | None:
        """The unit's detection AUC (None: not in the sample, or not measured)."""
        found = self.detection
        values = found["units"].get(store_key(kind, key)) if found else None
        return values[found["columns"].index("detection_auc")] if values else None

    def of(self, kind: str, key: str) -> dict[str, float | None]:
        """Every stored score of the unit by name (empty when none): the simulation scores, and the
        detection scores when the unit was in their sample."""
        found = {} if self.stored is None else self.stored.of(store_key(kind, key))
        detection = self.detection
        values = detection["units"].get(store_key(kind, key)) if detection else None
        return {**found, **dict(zip(detection["columns"], values))} if values else found
