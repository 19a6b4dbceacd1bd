"""A live progress bar (loss, tokens/s, MFU, ETA) and one printed line per checkpoint."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(self, *, total_steps: int, start_step: int, tokens_per_step: int, enabled: bool):
        self.enabled, self.tokens_per_step = enabled, tokens_per_step
        self.start_step, self.t0 = start_step, time.perf_counter()
        self.console = Console(highlight=False, soft_wrap=True)
        self.bar = Progress(
            TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} tok/s"),
            TextColumn("MFU {task.fields[mfu]}"),
            TextColumn("ETA"), TimeRemainingColumn(), console=self.console, disable=not enabled,
            transient=True,
        )
        self.task = self.bar.add_task("train", total=total_steps, completed=start_step, loss="-", rate="-", mfu="-")

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def tokens_per_second(self, step: int) -> float:
        return (step - self.start_step) * self.tokens_per_step / max(time.perf_counter() - self.t0, 1e-9)

    def update(self, step: int, loss: float, mfu: float | None = None) -> None:
        """`mfu`: the share of the device peak the latest steps achieved (None: peak unknown)."""
        if self.enabled:
            self.bar.update(self.task, completed=step, loss=f"{loss:.4f}",
                            rate=f"{self.tokens_per_second(step):,.0f}", mfu=_percent(mfu))

    def milestone(self, entry: dict) -> None:
        if self.enabled:
            self.console.print(
                f"step {entry['step']:>6}  tokens {entry['tokens']:>11,}  "
                f"val loss {entry['val_loss']:.4f} nats/tok {entry['val_bpb']:.4f} bits/byte  "
                f"train {entry['train_loss']:.4f}  lr {entry['lr']:.1e}  "
                f"{self.tokens_per_second(entry['step']):,.0f} tok/s  MFU {_percent(entry.get('mfu'))}")


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"
