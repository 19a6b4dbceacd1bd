"""Progress of the whole ladder: workers write a small JSON file per run, the driver shows them.

The channel is a file, `OUT/progress/<run>.json`, replaced atomically about once a second by the
training loop's `on_step` callback. It works for local worker processes and for Ray tasks alike (on a
cluster, OUT is on a shared filesystem), and a killed worker leaves nothing half-written.

The view is one `rich.live.Live` table on a terminal; with `--quiet` or a non-terminal stdout it is
one printed line per finished job instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from losslens.fmt import num
from losslens.io import write_json


class ProgressWriter:
    """The `on_step(step, loss)` callback of one training job."""

    def __init__(self, path: str | Path, *, run: str, total_steps: int, tokens_per_step: int,
                 every: float = 1.0):
        self.path, self.run, self.every = Path(path), run, every
        self.total_steps, self.tokens_per_step = total_steps, tokens_per_step
        self.first: tuple[int, float] | None = None   # (step, time) of the first step this job ran
        self.last_write = 0.0
        self.step, self.loss, self.tokens_per_s = 0, None, None

    def __call__(self, step: int, loss: float) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = (step, now)  # tokens/s counts from the end of this job's first step
        self.step, self.loss = step, loss
        if now > self.first[1]:
            self.tokens_per_s = (step - self.first[0]) * self.tokens_per_step / (now - self.first[1])
        if now - self.last_write >= self.every or step == self.total_steps:
            self.write()
            self.last_write = now

    def write(self) -> None:
        write_json(self.path, {"run": self.run, "step": self.step, "total_steps": self.total_steps,
                               "tokens": self.step * self.tokens_per_step,
                               "total_tokens": self.total_steps * self.tokens_per_step,
                               "loss": self.loss, "tokens_per_s": self.tokens_per_s, "time": time.time()})

    def close(self) -> None:
        if self.first is not None:
            self.write()


def read_progress(path: Path, since: float) -> dict | None:
    """A worker's latest report, if written after `since` (an older file is a previous invocation's)."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if report.get("time", 0) >= since else None


@dataclass
class RunState:
    name: str
    total_tokens: int
    tokens: int = 0                  # trained so far (from its record, then from progress reports)
    status: str = "queued"           # queued | training | trained | failed
    tokens_per_s: float | None = None
    evals_total: int = 0             # checkpoints to evaluate
    evals_done: int = 0              # evaluated and stored (this invocation or before)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class LadderView:
    """What is done, running and queued; tokens/s; ETA. `live=False` prints a line per finished job."""

    def __init__(self, states: dict[str, RunState], *, live: bool, console=None):
        from rich.console import Console

        self.states, self.live_mode = states, live
        self.console = console or Console(highlight=False)
        self.t0 = time.perf_counter()
        self.running_evals: dict[str, str] = {}   # job key -> label
        self.eta: float | None = None
        self._live = None

    def __enter__(self):
        if self.live_mode:
            from rich.live import Live

            self._live = Live(self.render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(*exc)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render())

    def line(self, text: str) -> None:
        """One line per finished job (quiet mode); the live table shows the same in place."""
        if not self.live_mode:
            self.console.print(f"[{_duration(self.elapsed())}] {text}", markup=False)

    def render(self):
        from rich.console import Group
        from rich.table import Table

        s = list(self.states.values())
        count = {k: sum(r.status == k for r in s) for k in ("trained", "training", "queued", "failed")}
        evals_done, evals_total = sum(r.evals_done for r in s), sum(r.evals_total for r in s)
        head = (f"[bold]ladder[/]  runs: {count['trained']} done, {count['training']} training, "
                f"{count['queued']} queued" + (f", [red]{count['failed']} failed[/]" if count["failed"] else "")
                + f"  ·  evals {evals_done}/{evals_total}  ·  elapsed {_duration(self.elapsed())}"
                + f"  ·  ETA {_duration(self.eta)}")
        table = Table(box=None, pad_edge=False)
        for col, just in (("run", "left"), ("status", "left"), ("tokens", "right"), ("tok/s", "right"),
                          ("evals", "right")):
            table.add_column(col, justify=just)
        style = {"trained": "green", "training": "bold cyan", "queued": "dim", "failed": "red"}
        for r in s:
            table.add_row(r.name, f"[{style[r.status]}]{r.status}[/]", f"{r.tokens:,}/{r.total_tokens:,}",
                          num(r.tokens_per_s, ",.0f"),
                          f"{r.evals_done}/{r.evals_total}")
        parts = [head, table]
        if self.running_evals:
            parts.append("evaluating: " + ", ".join(sorted(self.running_evals.values())))
        return Group(*parts)
