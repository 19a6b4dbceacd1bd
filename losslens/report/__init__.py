"""The static HTML report of a study: `write_report(out_dir, study)` (docs/report.md)."""

from losslens.report.html import render, write_report

__all__ = ["render", "write_report"]
