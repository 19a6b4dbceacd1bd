"""`losslens world`: generate the synthetic world (corpus, validation text, evaluation tasks)."""

from __future__ import annotations

import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("world", help="generate the synthetic world: corpus, held-out text and eval tasks",
                       description="Generate the synthetic world from one seed: train.txt, val.txt, "
                                   "eval/<task>.jsonl and world.json in --out. Knobs: docs/world.md.")
    p.add_argument("--seed", type=int, help="random seed (default: the config's, else 0)")
    p.add_argument("--out", type=Path, required=True,
                   help="output directory (created; if it already holds this world, it is reused)")
    p.add_argument("--size-mb", type=float, help="size of train.txt in MB (default: the config's, else 4)")
    p.add_argument("--config", type=Path, help="TOML file with a [world] table of knobs")
    p.add_argument("--workers", type=int, help="worker processes (default: all cores from 8 MB on); "
                                               "never changes the output")
    p.set_defaults(func=run_world)


def run_world(args) -> int:
    from losslens.config import load_toml
    from losslens.errors import InputError
    from losslens.world import WorldConfig, generate_world

    table, source = {}, "command line"
    if args.config is not None:
        doc = load_toml(args.config)
        source = str(args.config)
        unknown = sorted(set(doc) - {"world"})
        if unknown:
            raise InputError(source, "unknown table (expected [world])", field=unknown[0])
        table = dict(doc.get("world", {}))
    if args.seed is not None:
        table["seed"] = args.seed
    if args.size_mb is not None:
        table["size_mb"] = args.size_mb
    if args.workers is not None and args.workers < 1:
        raise InputError(None, f"must be >= 1, got {args.workers}", field="--workers")
    cfg = WorldConfig.from_dict(table, source=source)

    start = time.perf_counter()
    manifest = generate_world(cfg, args.out, workers=args.workers)
    seconds = time.perf_counter() - start
    print(summary(manifest, args.out, seconds))
    return 0


def summary(manifest: dict, out: Path, seconds: float) -> str:
    files, docs = manifest["files"], manifest["documents"]
    lines = [f"world seed={manifest['seed']} -> {out}  ({seconds:.1f} s)",
             f"  train.txt {files['train.txt']['bytes'] / 1e6:.2f} MB, {sum(docs['train'].values())} documents; "
             f"val.txt {files['val.txt']['bytes'] / 1e6:.2f} MB, {sum(docs['val'].values())} documents",
             "  documents per genre: " + ", ".join(f"{g} {n}" for g, n in docs["train"].items() if n)]
    for t in manifest["tasks"]:
        lines.append(f"  task {t['name']:<11} {t['type']:<15} {t['n_items']:>5} items, {t['n_fewshot']:>3} few-shot, "
                     f"chance {t['chance']:.2f}  ({t['items']})")
    for name, why in manifest.get("skipped_tasks", {}).items():
        lines.append(f"  task {name:<11} skipped: {why}")
    return "\n".join(lines)
