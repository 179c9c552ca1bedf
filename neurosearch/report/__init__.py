"""A static HTML report of an index (``neurosearch report``); see :mod:`neurosearch.report.site`."""

from neurosearch.report.site import ReportConfig, ReportError, ReportSummary, write_report

__all__ = ["ReportConfig", "ReportError", "ReportSummary", "write_report"]
