"""A static HTML report of an index (``neurosearch report``); see :mod:`neurosearch.report.site`."""

from __future__ import annotations

from typing import Any

__all__ = ["ReportConfig", "ReportError", "ReportSummary", "write_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from neurosearch.report import site

        return getattr(site, name)
    raise AttributeError(f"module 'neurosearch.report' has no attribute {name!r}")
