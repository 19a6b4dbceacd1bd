"""`losslens eval`: held-out loss and task metrics of one model, printed and stored."""

from __future__ import annotations

from pathlib import Path

from losslens.model.config import DTYPES


def register(sub) -> None:
    p = sub.add_parser("eval", help="held-out loss and task metrics of a checkpoint or HF model dir",
                       description="Evaluate a losslens checkpoint (ckpt-*.pt, or a run dir: its newest "
                                   "checkpoint) or a local Hugging Face causal LM directory.")
    p.add_argument("model", type=Path, help="ckpt-*.pt, a run dir, or a Hugging Face model directory")
    p.add_argument("--tasks", nargs="+", default=["world:all"], metavar="SPEC",
                   help="world:all, world:qa,exam, or task JSONL files (default: %(default)s)")
    p.add_argument("--db", type=Path, help="SQLite results store to write (created if missing)")
    p.add_argument("--world", type=Path, help="world dir for world:* tasks (default: the run's own world)")
    p.add_argument("--heldout", type=Path, nargs="*", metavar="CORPUS",
                   help=".txt or .jsonl corpora for held-out loss (default: the world's val.txt and per-genre files)")
    p.add_argument("--heldout-tokens", type=int, default=65536, help="max tokens scored per corpus")
    p.add_argument("--bpb", choices=("losslens", "lm-eval"), default="losslens",
                   help="held-out scoring: losslens (EOS per document, packed windows; the default) or "
                        "lm-eval (its loglikelihood_rolling: reproduces lm-eval's bits_per_byte)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, help="evaluate only the first N items of each task")
    p.add_argument("--seed", type=int, default=0, help="few-shot example draw")
    p.add_argument("--harness", metavar="TASKS", help="comma-separated lm-evaluation-harness tasks to run too")
    p.add_argument("--harness-include", type=Path, help="extra lm-eval task YAML directory")
    p.add_argument("--run", help="run name in the store (default: the checkpoint's run or the dir name)")
    p.add_argument("--tokens", type=int, help="training tokens seen (HF models; ours record it)")
    p.add_argument("--step", type=int, help="checkpoint step (HF models; ours record it)")
    p.add_argument("--log-samples", action="store_true",
                   help="also store every item's record (per-choice log-likelihoods, choice, gold, generation) "
                        "in the store's samples table; read them with `losslens results --samples`")
    p.set_defaults(func=run_eval)


def run_eval(args) -> int:
    from losslens.errors import InputError
    from losslens.evaluate.evaluate import evaluate_model, print_results
    from losslens.progress import Steps

    if args.batch_size < 1 or args.heldout_tokens < 2 or (args.limit is not None and args.limit < 1):
        raise InputError(None, "--batch-size, --heldout-tokens and --limit must be positive", field="arguments")
    if args.log_samples and args.db is None:
        raise InputError(None, "needs --db: the records are stored in the results store", field="--log-samples")
    with Steps("eval") as steps:  # a bar with ETA on a terminal; nothing when piped
        result = evaluate_model(args.model, tasks=args.tasks, world=args.world, heldout=args.heldout,
                                heldout_tokens=args.heldout_tokens, bpb=args.bpb, dtype=args.dtype, device=args.device,
                                batch_size=args.batch_size, limit=args.limit, seed=args.seed,
                                harness=[t for t in (args.harness or "").split(",") if t],
                                harness_include=args.harness_include, db=args.db, run=args.run,
                                tokens=args.tokens, step=args.step, progress=steps, log_samples=args.log_samples)
    print_results(result)
    return 0
