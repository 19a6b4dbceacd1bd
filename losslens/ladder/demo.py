"""`losslens demo`: the paper's study, end to end, on the embedded synthetic world.

The demo is only a ladder config (losslens/configs/ladders/demo.toml; `--quick`: demo-quick.toml)
run by the same code as `losslens ladder`. `--seed` changes the world and every run's initialisation
and data order, so the same claims can be checked on independent worlds. The verdicts come from the
analysis of the data the demo has just produced (losslens.analysis.study.claims); nothing is hard-coded.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

STATUS_STYLE = {"holds": "green", "fails": "red", "not testable here": "yellow"}


def register(sub) -> None:
    p = sub.add_parser("demo", help="the embedded study: train a ladder, evaluate, analyse, report",
                       description="Train the embedded ladder of LLaMA-style models on the synthetic world, "
                                   "evaluate every checkpoint, decide the paper's claims from the data and "
                                   "write OUT/summary.json, OUT/results.db and OUT/report/index.html. "
                                   "Re-running with the same --out resumes.")
    p.add_argument("--out", type=Path, help="output directory (default: demo, or demo-quick with --quick)")
    p.add_argument("--quick", action="store_true", help="a small ladder that finishes in a minute or two (tests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the world and of every run (default 0)")
    p.add_argument("--executor", choices=("local", "ray"), help="where jobs run (default: local processes)")
    p.add_argument("--workers", type=int, metavar="N", help="jobs in flight (default: the config's)")
    p.add_argument("--quiet", action="store_true", help="one line per finished job instead of the live view")
    p.set_defaults(func=run)


def demo_config(*, quick: bool = False, seed: int = 0):
    """The shipped demo ladder with `seed` as its world seed and its one training seed."""
    from losslens.ladder.config import load_ladder_config

    cfg = load_ladder_config("demo-quick" if quick else "demo")
    cfg.data = dataclasses.replace(cfg.data, world={**(cfg.data.world or {}), "seed": seed})
    cfg.seeds = [seed]
    cfg.validate(source=cfg.source)
    return cfg


def run(args) -> int:
    from rich.console import Console

    from losslens.errors import InputError
    from losslens.ladder.run import run_ladder
    from losslens.report.claims import headline

    if args.seed < 0:
        raise InputError(None, f"must be >= 0, got {args.seed}", field="--seed")
    if args.workers is not None and args.workers < 1:
        raise InputError(None, f"must be >= 1, got {args.workers}", field="--workers")
    cfg = demo_config(quick=args.quick, seed=args.seed)
    if args.workers is not None:
        cfg.executor = dataclasses.replace(cfg.executor, workers=args.workers)
    out = args.out or Path(cfg.out or cfg.name)
    console = Console(highlight=False)
    t0 = time.perf_counter()
    result = run_ladder(cfg, out, executor=args.executor, quiet=args.quiet, console=console)
    study = result.study
    console.print(claims_table(study.claims, f"the paper's claims on this ladder (seed {args.seed})"))
    console.print(f"{headline(study.claims)} all claims hold: {'yes' if study.summary.get('all_hold') else 'no'}; "
                  f"{time.perf_counter() - t0:.0f} s")
    console.print(f"summary: {Path(out) / 'summary.json'}")
    if result.report is not None:
        console.print(f"report:  {result.report}")
    return 0


def claims_table(claims, title: str):
    """The claims as a rich table: the rows of `report.claims.claim_rows`, as on the HTML report."""
    from rich.markup import escape
    from rich.table import Table

    from losslens.report.claims import claim_rows

    table = Table("claim", "verdict", "evidence", title=title)
    for row in claim_rows(claims):
        style = STATUS_STYLE.get(row.status, "dim")
        table.add_row(row.label, f"[{style}]{row.status}[/]", escape("; ".join(row.evidence)))
    return table
