"""`losslens external SPEC.toml`: evaluate Hugging Face checkpoint series into the results store."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("external", help="held-out loss and tasks of Hugging Face checkpoints listed in a spec",
                       description="Evaluate the Hugging Face causal LMs a TOML spec lists (local directories, or "
                                   "hub ids at revisions) on a held-out corpus and tasks, into a results store "
                                   "that `losslens analyze --db` reads. Checkpoints already stored are skipped.")
    p.add_argument("spec", type=Path, help="the TOML spec (docs/external.md)")
    p.add_argument("--db", type=Path, help="results store to write (default: the spec's db, else results.db "
                                           "beside the spec)")
    p.add_argument("--device", help="cpu or cuda (default: the spec's device, else cpu)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the spec and show what is stored and what would be evaluated; load no model")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from losslens.external.run import print_summary, run_external
    from losslens.external.spec import load_spec

    spec = load_spec(args.spec)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)  # a pipe or a log file: don't wrap the table at 80
    work, stored = run_external(spec, db=args.db, device=args.device, dry_run=args.dry_run, console=console)
    print_summary(spec, args.db or spec.db, work, stored, console, dry_run=args.dry_run)
    return 0
