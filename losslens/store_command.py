"""`losslens results`: summarise a results store, or export its tidy table as CSV."""

from __future__ import annotations

from losslens.fmt import num, plus_minus

MAX_RUN_COLUMNS = 6  # the latest-values table gets one column per run; beyond this, use --csv
MAX_SAMPLE_ROWS = 200  # --samples prints at most this many items; --csv writes them all


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "results", help="summarise a SQLite results store or export its tidy table",
        description="Summarise a SQLite results store (runs, checkpoints, tasks, latest metric values), "
                    "or with --csv write its tidy table: one row per (run, checkpoint, task, metric).")
    p.add_argument("--db", required=True, metavar="FILE", help="the SQLite results file")
    p.add_argument("--csv", metavar="OUT", help="write the tidy table to this CSV (docs/store.md)")
    p.add_argument("--loss-corpus", metavar="NAME",
                   help="take `loss` from the held-out loss on this corpus instead of the checkpoint's loss")
    p.add_argument("--samples", action="store_true",
                   help="show the per-item records (`eval --log-samples`, ladders) instead; with --csv, write them")
    p.add_argument("--task", metavar="T", help="with --samples: only this task (`lm-eval:T` for lm-eval's)")
    p.add_argument("--checkpoint", metavar="C", help="with --samples: only this checkpoint, STEP or RUN@STEP")
    p.set_defaults(func=run)


def run(args) -> int:
    from losslens.store import Store

    if (args.task or args.checkpoint) and not args.samples:
        from losslens.errors import InputError
        raise InputError(None, "--task and --checkpoint select samples: add --samples", field="--task")
    with Store(args.db, create=False) as st:
        if args.samples:
            return show_samples(st, args)
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
    latest = df.sort_values("step").groupby(["model", "task", "metric", "source"], sort=False).tail(1)
    order = df.drop_duplicates("model").sort_values(["params", "model"])["model"].tolist()
    shown = order[-MAX_RUN_COLUMNS:]  # the largest runs
    table = Table(title="Latest values (value ± stderr)", title_justify="left")
    table.add_column("task")
    table.add_column("metric")
    table.add_column("source")  # the scorer: a task name two scorers share is qualified (docs/store.md)
    for name in shown:
        table.add_column(name, justify="right")
    cells = {(r.model, r.task, r.metric, r.source): r for r in latest.itertuples()}
    for task, metric, source in sorted(set(zip(latest["task"], latest["metric"], latest["source"]))):
        row = [task, metric, source]
        for name in shown:
            r = cells.get((name, task, metric, source))
            row.append("" if r is None else plus_minus(r.value, r.stderr, ".4g", ".2g", sep=" ±"))
        table.add_row(*row)
    console.print(table)
    if len(order) > len(shown):
        console.print(f"(showing the {len(shown)} largest of {len(order)} runs; --csv OUT exports everything)")


def _checkpoint(spec: str) -> tuple[str | None, int]:
    from losslens.errors import InputError

    run, _, step = spec.rpartition("@")
    if not step.isdigit():
        raise InputError(None, f"expected STEP or RUN@STEP, got {spec!r}", field="--checkpoint")
    return run or None, int(step)


def show_samples(st, args) -> int:
    """Print (or with --csv write) the stored per-item records; none stored is a one-line error."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from losslens.errors import InputError

    run, step = _checkpoint(args.checkpoint) if args.checkpoint else (None, None)
    df = st.samples(task=args.task, run=run, step=step)
    if df.empty:
        what = " and ".join(x for x in (args.task and f"task {args.task}", args.checkpoint and
                                        f"checkpoint {args.checkpoint}") if x) or "any task"
        raise InputError(st.path, f"no per-item records stored for {what} (evaluate with --log-samples)",
                         field="samples")
    if args.csv:
        from losslens.io import atomic_open

        out = df.assign(logprobs=[" ".join(f"{x:.6g}" for x in lp) for lp in df["logprobs"]])
        with atomic_open(args.csv, "w", encoding="utf-8", newline="") as f:
            out.to_csv(f, index=False)
        print(f"wrote {len(df)} items ({df['task'].nunique()} tasks, {len(df.groupby(['model', 'step']))} "
              f"checkpoints) to {args.csv}")
        return 0
    console = Console(highlight=False) if sys.stdout.isatty() else Console(width=200, highlight=False)
    table = Table(title=f"Items ({len(df)})", title_justify="left")
    for col in ("run", "step", "task", "source", "item", "gold", "choice", "correct", "log-likelihoods",
                "generation"):
        table.add_column(col, justify="right" if col in ("step", "gold", "choice") else "left")
    for r in df.head(MAX_SAMPLE_ROWS).itertuples():
        text = r.generation or ""
        if r.reference is not None:
            text = f"{text!r} -> {r.answer!r} (ref {r.reference!r})"
        table.add_row(r.model, str(r.step), r.task, r.source, r.item or "", _opt(r.gold), _opt(r.choice),
                      _opt(r.correct), " ".join(f"{x:.3f}" for x in r.logprobs), text)
    console.print(table)
    if len(df) > MAX_SAMPLE_ROWS:
        console.print(f"(showing {MAX_SAMPLE_ROWS} of {len(df)} items; --task, --checkpoint or --csv OUT for the rest)")
    return 0


def _opt(x) -> str:
    import pandas as pd

    return "" if x is None or pd.isna(x) else str(x)
