"""`losslens analyze`: load a tidy table, run every analysis, print the verdicts, write JSON and figures."""

from __future__ import annotations

import argparse

from losslens.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze", help="emergence, same-loss test, backtests and scaling law on a tidy table",
        description="Analyse a tidy table of (model, checkpoint, task, metric) results: which tasks are "
                    "emergent and at what loss, whether loss alone explains performance, and the scaling law.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", metavar="FILE", help="a tidy CSV (docs/analysis.md, 'File formats')")
    src.add_argument("--db", metavar="FILE", help="a SQLite results file with a 'tidy' view or 'metrics' table")
    src.add_argument("--source", nargs=2, metavar=("NAME", "PATH"),
                     help="a published table: chinchilla, gadre, olmo, pythia or obsscaling, and its folder")
    p.add_argument("--loss-corpus", metavar="NAME",
                   help="with --db: take the x-axis from the held-out loss on this corpus instead")
    p.add_argument("--source-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the source loader, e.g. proxy=chinchilla for pythia")
    p.add_argument("--json", metavar="OUT", help="write the full results as JSON")
    p.add_argument("--figures", metavar="DIR", help="write performance-vs-loss and scaling-law figures (PNG)")
    add_resampling_args(p)
    p.add_argument("--details", action="store_true", help="print every task's evidence, not just the table")
    p.set_defaults(func=run)


def add_resampling_args(p) -> None:
    """--seed, --bootstrap, --permutations: shared with `losslens report`."""
    p.add_argument("--seed", type=int, default=0, help="seed of every resampling (default 0)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--permutations", type=int, default=99, help="permutations of the same-loss test (default 99)")


def check_resampling_args(args) -> None:
    for flag in ("bootstrap", "permutations"):
        if getattr(args, flag) < 0:
            raise InputError(None, "must be >= 0", field=f"--{flag}")


def load_table(args):
    from losslens.analysis.sources import load_source
    from losslens.analysis.table import read_csv, read_db

    if args.csv:
        return read_csv(args.csv)
    if args.loss_corpus and not args.db:
        raise InputError(None, "only applies with --db", field="--loss-corpus")
    if args.db:
        return read_db(args.db, args.loss_corpus)
    options = {}
    for item in args.source_option:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InputError(None, f"expected KEY=VALUE, got {item!r}", field="--source-option")
        options[key] = value
    name, path = args.source
    return load_source(name, path, **options)


def _fmt(x, spec=".3g"):
    return "-" if x is None else format(x, spec)


def print_report(report, console) -> None:
    from rich.table import Table

    src = report.source
    console.print(f"[bold]{src['name']}[/]: {src['rows']} rows, {src['models']} models, "
                  f"{len(report.tasks)} (task, metric) pairs")
    console.print(f"x-axis: {src['x_label']}" + ("" if src["x_kind"] == "loss" else "  [yellow](proxy)[/]"))
    for note in [*src["notes"], *report.notes]:
        console.print(f"  note: {note}")
    table = Table(show_lines=False)
    for col, just in (("task", "left"), ("metric", "left"), ("verdict", "left"), ("reason (q)", "left"), ("eta [95% CI]", "right"),
                      ("spearman", "right"), ("size beyond loss", "right"), ("compute collapses", "left"),
                      ("backtest", "left")):
        table.add_column(col, justify=just, no_wrap=col in ("task", "metric"))  # names stay greppable
    style = {"emergent": "bold red", "smooth": "green", "not_emerged": "dim", "inconclusive": "yellow"}
    for t in report.tasks:
        e, s = t.emergence, t.same_loss
        eta = ""
        if e.verdict == "emergent":
            eta = f"{e.eta:.3g}" + (f" [{e.eta_ci[0]:.3g}, {e.eta_ci[1]:.3g}]" if e.eta_ci else "")
        size = s.test("loss", "log_params")
        size_txt = "-" if size is None else f"{size.improvement:+.3f} (p {_fmt(size.p_value, '.2f')})"
        collapse = "-" if s.compute_collapses is None else ("yes" if s.compute_collapses else "no")
        bt = "-" if t.backtest is None else str(t.backtest.to_dict().get("verdict", "-"))
        why = e.reason_code + ("" if e.q_value is None else f" (q {_fmt(e.q_value, '.2g')})")
        table.add_row(t.task, t.metric, f"[{style[e.verdict]}]{e.verdict}[/]", why, eta, _fmt(s.spearman),
                      size_txt, collapse, bt)
    if report.tasks:
        console.print(table)
    console.print("verdicts: " + ", ".join(f"{k} {v}" for k, v in report.counts().items()))
    if report.scaling_law is not None:
        console.print(report.scaling_law.summary(), markup=False)
    if report.targets is not None:
        console.print(report.targets.summary(), markup=False)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from losslens.analysis.report import analyze

    check_resampling_args(args)
    table = load_table(args)
    report = analyze(table, seed=args.seed, bootstrap=args.bootstrap, permutations=args.permutations)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a pipe or file: don't squeeze the table to 80 columns
    print_report(report, console)
    if args.details:
        for t in report.tasks:
            console.print(t.summary(), markup=False)
    if args.json:
        report.write_json(args.json)
        console.print(f"wrote {args.json}")
    if args.figures:
        from losslens.analysis.figures import write_figures

        paths = write_figures(report, table, args.figures)
        console.print(f"wrote {len(paths)} figures to {args.figures}")
    return 0
