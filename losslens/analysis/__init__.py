"""Analysis: pure functions over a tidy table (one row per model, checkpoint, task and metric).

    table.py      the tidy schema, validation, CSV / SQLite loading (`TidyTable`)
    sources/      loaders for the published tables in ../shared/data
    emergence.py  Eq. 3 vs smooth curves: calibrated likelihood-ratio test, equivalence pair, eta interval
    same_loss.py  does size or data explain performance beyond loss? (and does compute collapse?)
    scaling.py    Chinchilla and Gadre scaling-law fits          predict.py  prediction and backtests
    report.py     `analyze(table) -> AnalysisReport`, the JSON    figures.py  matplotlib figures

The names below are imported on first use, so `losslens --help` does not pay for scipy.
"""

from losslens._lazy import lazy_exports

_EXPORTS = {
    "EmergenceConfig": "emergence", "EmergenceResult": "emergence", "analyze_emergence": "emergence",
    "SameLossConfig": "same_loss", "SameLossResult": "same_loss", "analyze_same_loss": "same_loss",
    "AnalysisReport": "report", "TaskReport": "report", "analyze": "report",
    "TidyTable": "table", "read_csv": "table", "read_db": "table", "validate": "table",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
