"""The report's training section: each losslens run's per-step log (`metrics.jsonl`, written by the
trainer) as one loss-against-tokens figure and a line per run (steps, final loss, tokens/s, MFU).

Runs are found from the store: a losslens checkpoint lives at `<run dir>/checkpoints/ckpt-*.pt`, and
the run dir holds the log. Models without a log (external checkpoints, older runs) are left out.
"""

from __future__ import annotations

import sqlite3
import statistics
from dataclasses import dataclass
from pathlib import Path

from losslens.train.metrics import read_metrics


@dataclass(frozen=True)
class TrainingLog:
    run: str
    rows: list[dict]

    @property
    def final_loss(self) -> float:
        return self.rows[-1]["loss"]

    @property
    def tokens_per_s(self) -> float:
        return statistics.median(r["tokens_per_s"] for r in self.rows)

    @property
    def mfu(self) -> float | None:
        known = [r["mfu"] for r in self.rows if r.get("mfu") is not None]
        return statistics.median(known) if known else None


def training_logs(db: str | Path | None) -> list[TrainingLog]:
    """The training log of every run in the store whose run dir has one, by run name."""
    if db is None or not Path(db).is_file():
        return []
    try:
        with sqlite3.connect(f"file:{Path(db).resolve()}?mode=ro", uri=True) as con:
            found = con.execute("SELECT runs.name, checkpoints.path FROM checkpoints JOIN runs "
                                "ON runs.id = checkpoints.run_id WHERE checkpoints.path IS NOT NULL").fetchall()
    except sqlite3.Error:
        return []
    run_dirs = {}
    for name, path in found:
        run_dirs.setdefault(name, Path(path).parent.parent)
    logs = []
    for name, run_dir in sorted(run_dirs.items()):
        rows = read_metrics(run_dir)
        if rows:
            logs.append(TrainingLog(name, rows))
    return logs


def training_figure(logs: list[TrainingLog], path: Path) -> Path:
    """Training loss against tokens, one line per run (log x)."""
    from losslens.analysis.figures import plt, save

    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    cmap = plt.get_cmap("viridis")
    for i, log in enumerate(logs):
        ax.plot([r["tokens"] for r in log.rows], [r["loss"] for r in log.rows], lw=0.9,
                color=cmap(i / max(len(logs) - 1, 1)), label=log.run)
    ax.set_xscale("log")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title(f"training loss per step ({len(logs)} runs)", fontsize=9)
    if len(logs) <= 12:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save(fig, path)
