"""Progress bars (rich, with ETA) on `eval`, `external` and `analyze`: drawn on a terminal, silent when
stdout is not one (a pipe, a file, a test)."""

from __future__ import annotations

import io
import os

from conftest import run_cli
from rich.console import Console

from losslens.analysis.pipeline import analyze
from losslens.analysis.synthetic import planted_table
from losslens.analysis.table import TidyTable, validate
from losslens.progress import Steps

NOT_A_TTY = {k: "" for k in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120), out



def test_a_terminal_shows_the_bar_with_eta():
    console, out = _terminal()
    with Steps("analyze", console=console) as steps:
        analyze(TidyTable(validate(planted_table(seed=0))), bootstrap=20, permutations=3, progress=steps)
    text = out.getvalue()
    assert "analyze" in text and "ETA" in text and "sigmoid / " in text and "scaling law" in text


def test_no_terminal_no_bar():
    out = io.StringIO()
    with Steps("analyze", console=Console(file=out)) as steps:
        analyze(TidyTable(validate(planted_table(seed=0))), bootstrap=20, permutations=3, progress=steps)
    assert out.getvalue() == ""


def test_analyze_cli_prints_no_bar_into_a_pipe(tmp_path):
    csv = tmp_path / "t.csv"
    planted_table(seed=0).to_csv(csv, index=False)
    proc = run_cli("analyze", "--csv", csv, "--bootstrap", "20", "--permutations", "3", check=True,
                   env={**os.environ, **NOT_A_TTY})
    assert "verdicts:" in proc.stdout and "ETA" not in proc.stdout + proc.stderr and "\x1b[" not in proc.stdout


def test_eval_bar_on_a_terminal_and_not_in_a_pipe(world_run, world_dir, tmp_path):
    from losslens.evaluate.evaluate import evaluate_model

    console, out = _terminal()
    with Steps("eval", console=console) as steps:
        evaluate_model(world_run, tasks=["world:exam,copying"], limit=4, heldout=[world_dir / "val.txt"],
                       heldout_tokens=512, progress=steps)
    text = out.getvalue()
    assert "eval" in text and "ETA" in text and "task exam" in text and "held-out val" in text

    proc = run_cli("eval", world_run, "--tasks", "world:exam", "--limit", "4", "--heldout-tokens", "512",
                   check=True, env={**os.environ, **NOT_A_TTY})
    assert "exam" in proc.stdout and "ETA" not in proc.stdout + proc.stderr and "\x1b[" not in proc.stdout
    assert "Loading weights" not in proc.stderr
