"""`losslens import-lm-eval DIR`: store the metrics of existing lm-eval results JSON files."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "import-lm-eval", help="ingest lm-evaluation-harness results JSON into a results store",
        description="Read every results*.json under DIR (or the one file DIR names), as written by "
                    "`lm_eval --output_path`, and store its metrics as one checkpoint of run --model. "
                    "Files are read oldest first (lm-eval's dated names), so a later result of the same "
                    "task and metric wins. Nothing is stored if any file is malformed.")
    p.add_argument("dir", type=Path, metavar="DIR", help="lm-eval output directory or results file")
    p.add_argument("--db", type=Path, default=Path("results.db"), help="SQLite results store (default: %(default)s)")
    p.add_argument("--model", required=True, help="run name in the store, e.g. pythia-160m")
    p.add_argument("--params", type=int, help="parameter count N of the model")
    p.add_argument("--tokens", type=int, default=0,
                   help="pre-training tokens D of this checkpoint (default: 0, unknown)")
    p.add_argument("--loss", type=float, help="pre-training loss of this checkpoint, nats/token")
    p.add_argument("--step", type=int, default=0, help="checkpoint step (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    from losslens.errors import InputError
    from losslens.evaluate.harness import parse_results
    from losslens.store import LM_EVAL, Store

    checks = {"--params": args.params is None or args.params >= 1, "--tokens": args.tokens >= 0,
              "--step": args.step >= 0, "--loss": args.loss is None or (math.isfinite(args.loss) and args.loss > 0),
              "--model": bool(args.model.strip())}
    for flag, ok in checks.items():
        if not ok:
            value = getattr(args, flag.lstrip("-"))
            raise InputError(None, f"invalid value {value!r}", field=flag)
    parsed = parse_results(args.dir)  # every file is read and checked before anything is written
    rows = {(r.task, r.metric): r for _, file_rows in parsed for r in file_rows}  # later files win
    with Store(args.db) as st, st.transaction():
        run_id = st.upsert_run(args.model, params=args.params, source="lm-eval")
        ckpt = st.upsert_checkpoint(run_id, step=args.step, tokens=args.tokens, loss=args.loss,
                                    path=str(args.dir.resolve()))
        st.upsert_metrics(ckpt, [dataclasses.replace(r, source=LM_EVAL) for r in rows.values()])
    names = sorted({name for name, _ in parsed})
    tasks = sorted({task for task, _ in rows})
    print(f"stored {len(rows)} metrics of {len(tasks)} tasks from {len(parsed)} file(s) as {args.model} "
          f"step {args.step} in {args.db} (lm-eval model: {', '.join(names)})")
    return 0
