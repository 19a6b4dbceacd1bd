"""A live progress bar with ETA for the long commands (`eval`, `external`, `analyze`), like training's.

    with Steps("eval", total=8) as steps:
        for task in tasks:
            steps.start(f"task {task}")   # what runs now
            ...
            steps.done()                  # one step finished: the ETA is re-estimated

Drawn only when the console is a terminal (`rich.console.Console.is_terminal`): piped or redirected
output, logs and tests get no bar and no escape codes. The bar is transient: it is gone when the
command ends, leaving only the command's own lines.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class Steps:
    def __init__(self, label: str, total: int | None = None, *, console: Console | None = None,
                 enabled: bool | None = None):
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self.bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.description}"), TextColumn("ETA"), TimeRemainingColumn(),
                            console=self.console, disable=not self.enabled, transient=True)
        self.task = self.bar.add_task("", total=total)

    def __enter__(self) -> Steps:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def start(self, what: str) -> None:
        # drawn at once: steps can be shorter than the bar's refresh interval, and each one should show
        self.bar.update(self.task, description=what, refresh=True)

    def done(self, n: int = 1) -> None:
        self.bar.advance(self.task, n)

    def update(self, completed: int, total: int | None = None, what: str | None = None) -> None:
        """Set the position directly: a callback `progress(done, total, what)` for a library loop."""
        self.bar.update(self.task, completed=completed, total=total, refresh=True,
                        **({"description": what} if what else {}))

    __call__ = update
