"""The training log, `<run dir>/metrics.jsonl`: one JSON line per optimizer step.

    {"step": 12, "tokens": 49152, "loss": 5.91, "lr": 0.0012, "grad_norm": 0.83,
     "tokens_per_s": 10234.5, "mfu": 0.41, "time": 1764750000.1}

Lines are appended with one `write` of whole lines to a file opened O_APPEND, so a reader (or a
crash) sees whole lines plus at most one torn last line, which `read_metrics` skips. A resumed run
first drops the lines after the step it resumes from (and any torn line), rewriting the file
atomically, then appends: the file never holds a step twice. `mfu` is null where the peak is unknown.

TensorBoard and Weights & Biases get the same numbers when asked for (`train.tensorboard`,
`train.wandb`) and installed; neither is a dependency.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from losslens.io import write_text

FILENAME = "metrics.jsonl"
SCALARS = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu")


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every whole line of a run's metrics file, in step order ([] when there is none)."""
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


class MetricsLog:
    """Rank 0's writer of the metrics file (and the optional TensorBoard / W&B mirrors)."""

    def __init__(self, run_dir: str | Path, *, start_step: int, tensorboard: bool = False, wandb: bool = False,
                 run_name: str = "run", config: dict | None = None):
        self.path = Path(run_dir) / FILENAME
        kept = [r for r in read_metrics(run_dir) if r["step"] <= start_step]
        if self.path.exists() and _raw_lines(self.path) != len(kept):
            write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self.mirrors = []
        if tensorboard:
            self.mirrors += _tensorboard(Path(run_dir) / "tensorboard")
        if wandb:
            self.mirrors += _wandb(run_name, config, run_dir)

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        os.write(self.fd, "".join(json.dumps(r) + "\n" for r in rows).encode())
        for mirror in self.mirrors:
            for row in rows:
                mirror(row)

    def sync(self) -> None:
        """Make what is written durable (called at each checkpoint)."""
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)
        for mirror in self.mirrors:
            getattr(mirror, "close", lambda: None)()


def _raw_lines(path: Path) -> int:
    return sum(1 for line in path.read_bytes().split(b"\n") if line.strip())


def _tensorboard(log_dir: Path) -> list:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("warning: train.tensorboard is on but tensorboard is not installed; skipping it", file=sys.stderr)
        return []
    writer = SummaryWriter(str(log_dir))

    def log(row: dict) -> None:
        for key in SCALARS:
            if row.get(key) is not None:
                writer.add_scalar(f"train/{key}", row[key], row["step"])

    log.close = writer.close
    return [log]


def _wandb(run_name: str, config: dict | None, run_dir) -> list:
    try:
        import wandb
    except ImportError:
        print("warning: train.wandb is on but wandb is not installed; skipping it", file=sys.stderr)
        return []
    run = wandb.init(project="losslens", name=run_name, config=config, dir=str(run_dir))

    def log(row: dict) -> None:
        run.log({f"train/{k}": row[k] for k in SCALARS if row.get(k) is not None}, step=row["step"])

    log.close = run.finish
    return [log]
