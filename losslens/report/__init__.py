"""The static HTML report of a study: `write_report(out_dir, study)` (docs/report.md).

The names below are imported on first use, so `losslens report --help` does not pay for matplotlib.
"""

from losslens._lazy import lazy_exports

_EXPORTS = {"render": "html", "write_report": "html"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
