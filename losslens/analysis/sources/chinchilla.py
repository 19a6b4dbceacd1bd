"""Chinchilla training runs digitised by Epoch AI (../shared/data/epoch_chinchilla; Besiroglu et al. 2024).

`svg_extracted_data.csv` has one row per final training run of Hoffmann et al. (2022), Figure 4:
`Model Size` (N), `Training FLOP` (C) and `loss` (read off the colour bar). D = C / (6 N), as in
Epoch's notebook. There are no downstream tasks: the tidy table has one row per run with
task = "pretraining_loss", metric = "loss", value = loss (the pre-training loss itself, lower is
better). `analyze` leaves that pseudo-task out of the verdicts (its values are the x-axis itself, so
every verdict would be a tautology); the content is the scaling law.

`loss` is Chinchilla's final training loss (nats/token on MassiveText, as plotted), a real
pre-training loss, though digitised: N and C carry a few percent of reading error and the loss is
quantised by the colour map (99 distinct values).

The scaling law is fitted to `extras["scaling_points"]`: all runs but the `drop_highest` (default 5)
highest-loss ones, as in Epoch's analysis (`nr_of_models_excluded = 5`: keep the runs whose loss is
strictly below the 5th highest), which leaves 240 points. The table itself keeps every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from losslens.analysis.table import TidyTable, validate
from losslens.errors import InputError

FILE = "svg_extracted_data.csv"
COLUMNS = ("Model Size", "Training FLOP", "loss")


def read_runs(path: str | Path) -> tuple[Path, pd.DataFrame]:
    """The runs as a frame with columns params, tokens, compute, loss; InputError naming file and column."""
    path = Path(path)
    file = path / FILE if path.is_dir() else path
    if not file.is_file():
        raise InputError(file, f"no such file (expected Epoch's {FILE})")
    try:
        raw = pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(file, f"not a readable CSV ({str(err).splitlines()[0]})") from None
    for col in COLUMNS:
        if col not in raw.columns:
            raise InputError(file, f"missing column; found {', '.join(map(str, raw.columns))}", field=col)
        values = pd.to_numeric(raw[col], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            lines = ", ".join(str(i + 2) for i in np.flatnonzero(bad)[:8])
            raise InputError(file, f"must be a finite number > 0; bad at lines {lines}", field=col)
        raw[col] = values
    runs = pd.DataFrame({"params": raw["Model Size"], "compute": raw["Training FLOP"], "loss": raw["loss"]})
    runs["tokens"] = runs["compute"] / (6.0 * runs["params"])
    return file, runs


def load(path: str | Path, *, drop_highest: int | str = 5) -> TidyTable:
    file, runs = read_runs(path)
    try:  # options arrive as text from `--source-option drop_highest=0`
        drop_highest = int(drop_highest)
    except ValueError:
        raise InputError(file, f"not a whole number: {drop_highest!r}", field="drop_highest") from None
    if not 0 <= drop_highest < len(runs) - 5:
        raise InputError(file, f"must be between 0 and {len(runs) - 6}", field="drop_highest")
    df = pd.DataFrame({
        "model": [f"chinchilla-run-{i:03d}" for i in range(len(runs))],
        "params": runs["params"], "tokens": runs["tokens"], "loss": runs["loss"],
        "task": "pretraining_loss", "metric": "loss", "value": runs["loss"], "higher_is_better": False,
        "family": "chinchilla",
    })
    keep = np.ones(len(runs), bool)
    if drop_highest:
        keep = runs["loss"].to_numpy() < np.sort(runs["loss"].to_numpy())[-drop_highest]
    notes = [f"scaling law fitted to {int(keep.sum())} of {len(runs)} runs: the {drop_highest} highest "
             "losses dropped, as in Epoch's analysis" if drop_highest else
             f"scaling law fitted to all {len(runs)} runs",
             "no downstream tasks: task 'pretraining_loss' is the loss itself"]
    return TidyTable(validate(df, file), source="chinchilla", path=str(path), x_kind="loss",
                     x_label="final training loss (nats/token), digitised from Hoffmann et al. Fig. 4",
                     notes=notes,
                     extras={"scaling_points": runs.loc[keep, ["params", "tokens", "loss"]].reset_index(drop=True)})
