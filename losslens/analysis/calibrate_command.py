"""`losslens calibrate`: run the calibration suite (losslens/analysis/calibration.py) and write its
tables; with --write-docs also the tables in docs/analysis.md and bench/RESULTS.md and the shipped
error-rate lookup (losslens/analysis/calibration_rates.json)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from losslens.errors import InputError

REPO = Path(__file__).resolve().parents[2]
DOCS = {"docs/analysis.md": "calibration-{grid}", "bench/RESULTS.md": "calibration-{grid}"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate", help="measure the emergence verdicts' error rates on planted ladders",
        description="Plant thresholds, smooth curves and flat tasks on synthetic ladders, analyse each as a "
                    "user's table, and report verdict rates, power, false-emergent rate and eta-interval "
                    "coverage per condition (docs/analysis.md, 'Calibration').")
    p.add_argument("--grid", default="fast", choices=("fast", "full", "independent", "all"),
                   help="which grid of conditions (all = full and independent; default fast)")
    p.add_argument("--reps", type=int, default=None,
                   help="tasks per cell (full, fast) or planted thresholds (independent); default per grid")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2; results do not depend on it)")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="bootstrap resamples per task (default 1000, as analyze)")
    p.add_argument("--out", default="calibration-results", metavar="DIR",
                   help="where GRID/tasks.csv, cells.csv, summary.json and summary.md go")
    p.add_argument("--shard", metavar="I/K", help="run only the I-th of K slices of the grid (0-based) and write "
                   "DIR/GRID/tasks-I-of-K.csv; summarise later with --from-shards K")
    p.add_argument("--from-shards", type=int, metavar="K", help="analyse nothing: summarise the K shard files")
    p.add_argument("--write-docs", action="store_true",
                   help="also regenerate the tables in docs/analysis.md, bench/RESULTS.md and the error-rate "
                        "lookup calibration_rates.json (full and independent grids only)")
    p.set_defaults(func=run)


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(None, f"expected I/K, got {text!r}", field="--shard") from None
    if not (k >= 1 and 0 <= i < k):
        raise InputError(None, f"need 0 <= I < K, got {text!r}", field="--shard")
    return i, k


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from losslens.analysis import calibration as cal
    from losslens.io import write_text

    if args.workers < 1:
        raise InputError(None, "must be >= 1", field="--workers")
    if args.reps is not None and args.reps < 1:
        raise InputError(None, "must be >= 1", field="--reps")
    if args.bootstrap < 1:
        raise InputError(None, "must be >= 1 (the eta interval is part of the verdict)", field="--bootstrap")
    shard = _shard(args.shard)
    if args.write_docs and args.grid == "fast":
        raise InputError(None, "the docs hold the full and independent grids, not fast", field="--write-docs")
    if args.write_docs and shard:
        raise InputError(None, "a shard is part of a grid: write the docs from --from-shards", field="--write-docs")
    grids = ["full", "independent"] if args.grid == "all" else [args.grid]
    if shard and len(grids) > 1:
        raise InputError(None, "a shard is a slice of one grid: pass --grid full or --grid independent",
                         field="--grid")
    out = Path(args.out)
    results = {}
    for name in grids:
        if args.from_shards:
            parts = [out / name / f"tasks-{i}-of-{args.from_shards}.csv" for i in range(args.from_shards)]
            missing = [str(p) for p in parts if not p.is_file()]
            if missing:
                raise InputError(missing[0], "no such shard file (run --shard I/K first)", field="--from-shards")
            rows = pd.concat([pd.read_csv(p) for p in parts]).sort_values("index", kind="stable")
            rows = rows.reset_index(drop=True)
        else:
            conditions = cal.grid(name, args.reps)
            if shard:
                conditions = conditions[shard[0]::shard[1]]
            t0 = time.time()

            def progress(done, total, t0=t0, name=name):
                print(f"\r{name}: {done}/{total} tasks, {time.time() - t0:.0f} s", end="", file=sys.stderr)

            rows = cal.run(conditions, workers=args.workers, bootstrap=args.bootstrap, progress=progress)
            print(f"\n{name}: {len(rows)} tasks in {time.time() - t0:.0f} s with {args.workers} workers",
                  file=sys.stderr)
            if shard:
                from losslens.io import atomic_open

                path = out / name / f"tasks-{shard[0]}-of-{shard[1]}.csv"
                with atomic_open(path) as f:
                    rows.to_csv(f, index=False)
                print(f"wrote {path}")
                continue
        res = cal.write_results(rows, out, name)
        results[name] = (rows, res)
        print(res["markdown"])
        print(f"wrote {out / name}/(tasks.csv, cells.csv, summary.json, summary.md)")
    if args.write_docs and results:
        for rel, marker in DOCS.items():
            path = REPO / rel
            text = path.read_text()
            for name, (_, res) in results.items():
                text = cal.replace_between_markers(text, marker.format(grid=name), res["markdown"])
            write_text(path, text)
            print(f"updated {path}")
        rows = pd.concat([r for r, _ in results.values()], ignore_index=True)
        write_text(cal.RATES_PATH, cal.rates_json(cal.rate_table(rows, grids=" + ".join(results))))
        print(f"wrote {cal.RATES_PATH} ({len(rows)} tasks)")
    return 0
