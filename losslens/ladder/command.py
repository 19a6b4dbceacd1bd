"""`losslens ladder`: train a grid of models, evaluate every checkpoint, analyse, report."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("ladder", help="train, evaluate and analyse a grid of models (resumable)",
                       description="Train every run of a ladder config (models x token budgets x seeds), "
                                   "evaluate every checkpoint into OUT/results.db, then write "
                                   "OUT/summary.json and the report. Re-running skips finished work.")
    p.add_argument("config", help="a ladder TOML file or a shipped ladder config name")
    p.add_argument("--out", type=Path, help="output directory (default: the config's `out`, else ladders/<name>)")
    p.add_argument("--executor", choices=("local", "ray"), help="where jobs run (default: the config's)")
    p.add_argument("--workers", type=int, metavar="N", help="jobs in flight (default: the config's, else cores)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="an existing Ray cluster (implies --executor ray; OUT must be on a shared filesystem)")
    p.add_argument("--quiet", action="store_true", help="one line per finished job instead of the live view")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report (summary.json is still written)")
    p.set_defaults(func=run_ladder_command)


def run_ladder_command(args) -> int:
    import dataclasses

    from losslens.errors import InputError
    from losslens.ladder.config import load_ladder_config
    from losslens.ladder.run import run_ladder

    cfg = load_ladder_config(args.config)
    if args.workers is not None and args.workers < 1:
        raise InputError(None, f"must be >= 1, got {args.workers}", field="--workers")
    if args.ray_address and args.executor == "local":
        raise InputError(None, "--ray-address needs the ray executor", field="--executor")
    changes = {k: v for k, v in (("workers", args.workers), ("address", args.ray_address),
                                 ("kind", "ray" if args.ray_address else args.executor)) if v is not None}
    cfg.executor = dataclasses.replace(cfg.executor, **changes)
    out = args.out or Path(cfg.out or Path("ladders") / cfg.name)
    run_ladder(cfg, out, quiet=args.quiet, report=not args.no_report)
    return 0
