"""The tidy table: the one interface between the store (or a published table) and the analysis.

One row per (model, checkpoint, task, metric). Required columns:

    model   run or model id; rows with the same model are checkpoints of one training run
    params  N, parameters (> 0)
    tokens  D, training tokens seen at this checkpoint (> 0)
    loss    pre-training loss at this checkpoint (> 0; see `TidyTable.x_label` for what it really is)
    task    task name
    metric  metric name (acc, exact_match, brier_sum, correct_choice_prob, ...)
    value   the metric's value

Optional: n (items scored), chance (random-guess value of the metric), majority (the value of the
best constant answer, e.g. always "yes", in the metric's units), stderr, step, family,
higher_is_better, perfect (the metric's best possible value; 1 or 0 by default).

`validate` turns every way a table can be unusable into one `InputError` naming the column and rows.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from losslens.errors import InputError

REQUIRED = ("model", "params", "tokens", "loss", "task", "metric", "value")
OPTIONAL = ("n", "chance", "majority", "stderr", "step", "family", "higher_is_better", "perfect")
NUMERIC = ("params", "tokens", "loss", "value", "n", "chance", "majority", "stderr", "step", "perfect")

# Metrics whose value is a count of successes over `n` items (binomial: items can be resampled).
BINOMIAL_METRICS = {"acc", "accuracy", "acc_norm", "exact_match", "em", "top1", "pass@1", "correct"}
# Metrics whose value must lie in [0, 1].
PROPORTION_METRICS = BINOMIAL_METRICS | {
    "correct_choice_prob", "correctchoiceprob", "brier_mean", "per_token_acc", "token_acc", "f1",
    "error", "err", "top1_error",
}
# Metrics where lower is better, unless a `higher_is_better` column says otherwise.
LOWER_IS_BETTER = {
    "brier", "brier_sum", "brier_mean", "edit_distance", "token_edit_distance", "bpb",
    "bits_per_byte", "nll", "loss", "error", "err", "top1_error", "ppl", "perplexity",
}


def _base(metric: str) -> str:
    """'acc,none' or 'ACC' -> 'acc' (lm-eval appends a filter after a comma)."""
    return str(metric).split(",")[0].strip().lower()


def is_binomial(metric: str) -> bool:
    base = _base(metric)
    return base in BINOMIAL_METRICS or base.startswith(("acc_", "exact_match"))


def is_proportion(metric: str) -> bool:
    return is_binomial(metric) or _base(metric) in PROPORTION_METRICS


def default_higher_is_better(metric: str) -> bool:
    return _base(metric) not in LOWER_IS_BETTER


@dataclasses.dataclass
class TidyTable:
    """A validated tidy DataFrame plus what its columns mean.

    `x_kind` says what the `loss` column is: "loss" (a real pre-training loss), "proxy" (a stand-in,
    described by `x_label`, e.g. a task loss or a law-predicted loss), so that no analysis passes a
    proxy off as the pre-training loss.
    """

    df: pd.DataFrame
    source: str = "csv"
    path: str | None = None
    x_kind: str = "loss"
    x_label: str = "pre-training loss (nats/token)"
    notes: list[str] = dataclasses.field(default_factory=list)
    extras: dict = dataclasses.field(default_factory=dict)  # source-specific data (e.g. scaling-law points)

    def groups(self):
        """Yield ((task, metric), sub-DataFrame) in a stable order."""
        yield from self.df.groupby(["task", "metric"], sort=True)

    def describe(self) -> dict:
        df = self.df
        return {
            "name": self.source,
            "path": self.path,
            "x_kind": self.x_kind,
            "x_label": self.x_label,
            "notes": list(self.notes),
            "rows": int(len(df)),
            "models": int(df["model"].nunique()),
            "tasks": int(df[["task", "metric"]].drop_duplicates().shape[0]),
        }


def _rows(mask, line_offset: int | None) -> str:
    """Name the offending rows: CSV line numbers when known, else 0-based row positions."""
    idx = np.flatnonzero(np.asarray(mask))
    shown = [str(i + line_offset) if line_offset is not None else str(i) for i in idx[:8]]
    more = f" (+{len(idx) - 8} more)" if len(idx) > 8 else ""
    word = "lines" if line_offset is not None else "rows"
    return f"{word} {', '.join(shown)}{more}"


def _as_bool(series: pd.Series, path, line_offset) -> pd.Series:
    truth = {"true": True, "1": True, "1.0": True, "yes": True, "false": False, "0": False,
             "0.0": False, "no": False}
    text = series.astype(str).str.strip().str.lower()
    bad = ~text.isin(truth) & series.notna()
    if bad.any():
        raise InputError(path, f"not true/false at {_rows(bad, line_offset)}", field="higher_is_better")
    return text.map(truth)


def validate(df: pd.DataFrame, source: str | Path | None = None, *, line_offset: int | None = None,
             min_losses: int = 3) -> pd.DataFrame:
    """Check and normalise a tidy table; return a clean copy or raise `InputError`.

    `source` names the file in error messages; `line_offset` turns row positions into file line
    numbers (2 for a CSV with one header line).
    """
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(source, f"missing required column(s) {', '.join(missing)}; "
                         f"found {', '.join(map(str, df.columns)) or 'none'}", field=missing[0])
    df = df.reset_index(drop=True).copy()
    if len(df) == 0:
        raise InputError(source, "the table has no rows", field="value")
    for col in ("model", "task", "metric"):
        blank = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if blank.any():
            raise InputError(source, f"empty at {_rows(blank, line_offset)}", field=col)
        df[col] = df[col].astype(str)
    for col in NUMERIC:
        if col not in df.columns:
            continue
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        if bad.any():
            raise InputError(source, f"not a number at {_rows(bad, line_offset)}", field=col)
        df[col] = num.astype(float)
    for col in ("params", "tokens", "loss"):
        bad = ~np.isfinite(df[col].to_numpy()) | (df[col].to_numpy() <= 0)
        if bad.any():
            raise InputError(source, f"must be finite and > 0; bad at {_rows(bad, line_offset)}", field=col)
    bad = ~np.isfinite(df["value"].to_numpy())
    if bad.any():
        raise InputError(source, f"must be a finite number; bad at {_rows(bad, line_offset)}", field="value")
    if "n" in df.columns:
        n = df["n"].to_numpy()
        bad = np.isfinite(n) & ((n < 1) | (n != np.round(n)))
        if bad.any():
            raise InputError(source, f"must be a whole number >= 1; bad at {_rows(bad, line_offset)}",
                             field="n")
    if "higher_is_better" in df.columns:
        given = _as_bool(df["higher_is_better"], source, line_offset)
        df["higher_is_better"] = given.where(given.notna(), df["metric"].map(default_higher_is_better))
    else:
        df["higher_is_better"] = df["metric"].map(default_higher_is_better)
    df["higher_is_better"] = df["higher_is_better"].astype(bool)
    proportion = df["metric"].map(is_proportion).to_numpy(bool)
    for col in ("value", "chance", "majority"):
        if col not in df.columns:
            continue
        v = df[col].to_numpy()
        bad = proportion & np.isfinite(v) & ((v < 0) | (v > 1))
        if bad.any():
            metrics = sorted(set(df.loc[bad, "metric"]))
            raise InputError(source, f"{', '.join(metrics)} is a proportion but lies outside [0, 1] at "
                             f"{_rows(bad, line_offset)}", field=col)
    for (task, metric), sub in df.groupby(["task", "metric"], sort=True):
        distinct = sub["loss"].nunique()
        if distinct < min_losses:
            mask = np.zeros(len(df), bool)
            mask[sub.index.to_numpy()] = True
            raise InputError(source, f"task {task!r} (metric {metric}) has {distinct} distinct loss "
                             f"value(s), at {_rows(mask, line_offset)}; need at least {min_losses}",
                             field="loss")
    return df


def read_csv(path: str | Path) -> TidyTable:
    """Load and validate a tidy CSV (see docs/analysis.md, "File formats")."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(path, f"not a readable CSV ({str(err).splitlines()[0]})") from None
    return TidyTable(validate(df, path, line_offset=2), source="csv", path=str(path))


# The store (issue 3) may expose a `tidy` view; otherwise its `metrics` table must carry the
# tidy columns itself. This is the one function the store's own loader can replace.
DB_QUERIES = {
    "tidy": "SELECT * FROM tidy",
    "metrics": "SELECT * FROM metrics",
}


def read_db(path: str | Path, loss_corpus: str | None = None) -> TidyTable:
    """Load the tidy table from a SQLite results file: `SELECT * FROM tidy` if that table or view
    exists, else `SELECT * FROM metrics` when it has the required columns.

    With `loss_corpus`, the x-axis is each checkpoint's held-out loss on that corpus instead
    (`losslens.store.Store.tidy`); checkpoints without it are left out, with a note.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    if loss_corpus is not None:
        from losslens.store import Store

        with Store(path, create=False) as store:
            df = store.tidy(loss_corpus)
        missing = df["loss"].isna()
        notes = [f"{int(missing.sum())} rows without a held-out loss on {loss_corpus!r} left out"] if missing.any() else []
        return TidyTable(validate(df[~missing], path), source="db", path=str(path),
                         x_label=f"held-out loss on {loss_corpus} (nats/token)", notes=notes)
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table','view')")}
            for name, query in DB_QUERIES.items():
                if name not in names:
                    continue
                cols = [r[1] for r in con.execute(f"PRAGMA table_info({name})")]
                if all(c in cols for c in REQUIRED):
                    df = pd.read_sql_query(query, con)
                    return TidyTable(validate(df, path), source="db", path=str(path))
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        raise InputError(path, f"not a readable SQLite file ({err})") from None
    raise InputError(path, "no table or view 'tidy' or 'metrics' with the columns "
                     f"{', '.join(REQUIRED)}; found tables: {', '.join(sorted(names)) or 'none'}")
