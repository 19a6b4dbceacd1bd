"""The ladder's progress channel (a JSON file per run) and its live view."""

from __future__ import annotations

import io
import json
import time

from rich.console import Console

from losslens.ladder.progress import LadderView, ProgressWriter, RunState, read_progress


def test_progress_writer_reports_steps_tokens_and_rate(tmp_path):
    path = tmp_path / "progress" / "r.json"
    writer = ProgressWriter(path, run="r", total_steps=4, tokens_per_step=100, every=3600)
    since = time.time()
    writer(1, 5.0)                      # the first call writes (and starts the clock)
    assert json.loads(path.read_text())["step"] == 1
    time.sleep(0.05)
    writer(2, 4.5)                      # within `every`: not written
    assert json.loads(path.read_text())["step"] == 1
    writer(4, 4.0)                      # the last step is always written
    report = read_progress(path, since=since)
    assert report["step"] == 4 and report["tokens"] == 400 and report["total_tokens"] == 400
    assert report["loss"] == 4.0 and 0 < report["tokens_per_s"] < 300 / 0.05
    assert read_progress(path, since=time.time() + 1) is None       # a previous invocation's file
    assert read_progress(tmp_path / "missing.json", since=0) is None


def test_view_counts_runs_evals_and_shows_eta():
    states = {"a": RunState("a", 1000, tokens=1000, status="trained", evals_total=3, evals_done=3),
              "b": RunState("b", 2000, tokens=500, status="training", tokens_per_s=1234.0, evals_total=3,
                            evals_done=1),
              "c": RunState("c", 4000, evals_total=3)}
    out = io.StringIO()
    view = LadderView(states, live=False, console=Console(file=out, width=120))
    view.eta = 125
    view.running_evals[1] = "a step 7"
    view.console.print(view.render())
    text = out.getvalue()
    assert "runs: 1 done, 1 training, 1 queued" in text and "evals 4/9" in text and "ETA 2:05" in text
    assert "500/2,000" in text and "1,234" in text and "evaluating: a step 7" in text
    view.line("trained a")
    assert out.getvalue().splitlines()[-1].endswith("] trained a")
