"""How evaluation results group into Table 3's rows, and when one passes (shared by the runner and plots)."""

from __future__ import annotations

from typing import Any

from neurosearch.config import METHODS
from neurosearch.ids import BadClusterId, ClusterId

SIGNIFICANCE = 0.05


def group_key(result: dict[str, Any]) -> tuple[str, int | None]:
    """(method, k) of a result; falls back to the target id ``method/kK/index`` for older files."""
    method = result.get("method")
    k = result.get("k")
    if method is None or k is None:
        try:
            parsed = ClusterId.parse(str(result.get("target", {}).get("id", "")))
        except BadClusterId:
            parsed = None
        if parsed is not None and parsed.method is not None:
            method = method if method is not None else parsed.method
            k = k if k is not None else parsed.k
    return (str(method) if method is not None else "?", int(k) if k is not None else None)


def group_sort_key(key: tuple[str, int | None]) -> tuple[int, str, int]:
    method, k = key
    order = METHODS.index(method) if method in METHODS else len(METHODS)
    return (order, method, -1 if k is None else k)


def beats_all_baselines(result: dict[str, Any], alpha: float = SIGNIFICANCE) -> bool:
    """True when the cluster's change exceeds every baseline run for it, each with p < alpha.

    A result without any baseline does not count as beating them: there is nothing to show.
    """
    baselines = result.get("baselines") or {}
    if not baselines:
        return False
    change = result.get("change_pct")
    if change is None:
        return False
    for stats in baselines.values():
        p = stats.get("p")
        mean = stats.get("mean_pct")
        if p is None or mean is None or not p < alpha or not change > mean:
            return False
    return True
