"""`losslens report`: analyse a results store on both loss axes and write the static HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from losslens.analysis.command import add_resampling_args, analysis_settings
from losslens.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="the static HTML report of a ladder's results store",
        description="Run the study on a results store (verdicts on the validation loss and, with --world, on "
                    "the loss of the other genres; the claims (a)-(e)) and write OUT/report/index.html with "
                    "its figures and OUT/summary.json.")
    p.add_argument("--db", required=True, metavar="FILE", help="the SQLite results store")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (report/ and summary.json)")
    p.add_argument("--world", metavar="DIR", help="the world the ladder trained on: adds the other-genres axis")
    add_resampling_args(p)
    p.add_argument("--title", default="losslens report", help="the page title (default 'losslens report')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.analysis.study import run_study
    from losslens.report.claims import claim_rows
    from losslens.report.html import write_report

    settings = analysis_settings(args)
    if args.world is not None and not (Path(args.world) / "world.json").is_file():
        raise InputError(args.world, "not a world directory (no world.json)", field="--world")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory", field="--out")
    study = run_study(args.db, world_dir=args.world, **settings)
    study.write_summary(out / "summary.json")
    index = write_report(out, study, title=args.title)
    for row in claim_rows(study.claims):
        print(f"{row.label:<18} {row.status}" + (f" ({row.evidence[-1]})" if row.status != "holds" else ""))
    print(f"wrote {index}")
    return 0
