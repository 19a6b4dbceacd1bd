"""`losslens results`: summarise a results store, or export its tidy table as CSV."""

from __future__ import annotations

from losslens.fmt import num, plus_minus

MAX_RUN_COLUMNS = 6  # the latest-values table gets one column per run; beyond this, use --csv


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "results", help="summarise a SQLite results store or export its tidy table",
        description="Summarise a SQLite results store (runs, checkpoints, tasks, latest metric values), "
                    "or with --csv write its tidy table: one row per (run, checkpoint, task, metric).")
    p.add_argument("--db", required=True, metavar="FILE", help="the SQLite results file")
    p.add_argument("--csv", metavar="OUT", help="write the tidy table to this CSV (docs/store.md)")
    p.add_argument("--loss-corpus", metavar="NAME",
                   help="take `loss` from the held-out loss on this corpus instead of the checkpoint's loss")
    p.set_defaults(func=run)


def run(args) -> int:
    from losslens.store import Store

    with Store(args.db, create=False) as st:
        df = st.tidy(loss_corpus=args.loss_corpus)
        if args.csv:
            from losslens.io import atomic_open

            with atomic_open(args.csv, "w", encoding="utf-8", newline="") as f:
                df.to_csv(f, index=False)
            print(f"wrote {len(df)} rows ({df['model'].nunique()} runs, {df['task'].nunique()} tasks) "
                  f"to {args.csv}")
            return 0
        print_summary(st, df)
    return 0


def print_summary(st, df) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=160)
    counts = st.counts()
    corpora = st.corpora()
    console.print(f"[bold]{st.path}[/]: {counts['runs']} runs, {counts['checkpoints']} checkpoints, "
                  f"{counts['tasks']} tasks, {counts['metrics']} metric rows, {counts['heldout']} held-out "
                  f"losses" + (f" (corpora: {', '.join(corpora)})" if corpora else ""))

    runs = Table(title="Runs (latest checkpoint)", title_justify="left")
    for col in ("run", "N", "family", "checkpoints", "step", "tokens", "loss", "tasks"):
        runs.add_column(col, justify="left" if col in ("run", "family") else "right")
    for r in st.runs():
        runs.add_row(r["name"], num(r["params"], ",d"), r["family"] or "", str(r["checkpoints"]),
                     num(r["step"], "d"), num(r["tokens"], ",d"), num(r["loss"], ".4g"), str(r["tasks"]))
    console.print(runs)
    if df.empty:
        console.print("no metrics stored yet")
        return

    # Each run's value at the latest checkpoint where that (task, metric) was measured.
    latest = df.sort_values("step").groupby(["model", "task", "metric"], sort=False).tail(1)
    order = df.drop_duplicates("model").sort_values(["params", "model"])["model"].tolist()
    shown = order[-MAX_RUN_COLUMNS:]  # the largest runs
    table = Table(title="Latest values (value ± stderr)", title_justify="left")
    table.add_column("task")
    table.add_column("metric")
    for name in shown:
        table.add_column(name, justify="right")
    cells = {(r.model, r.task, r.metric): r for r in latest.itertuples()}
    for task, metric in sorted(set(zip(latest["task"], latest["metric"]))):
        row = [task, metric]
        for name in shown:
            r = cells.get((name, task, metric))
            row.append("" if r is None else plus_minus(r.value, r.stderr, ".4g", ".2g", sep=" ±"))
        table.add_row(*row)
    console.print(table)
    if len(order) > len(shown):
        console.print(f"(showing the {len(shown)} largest of {len(order)} runs; --csv OUT exports everything)")
