"""`losslens train` and `losslens export`."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("train", help="train one model (resumes if --out holds an unfinished run)",
                       description="Train one LLaMA-style model from a TOML config. Re-running the same "
                                   "command resumes from the newest good checkpoint. Under torchrun it "
                                   "trains data-parallel (gloo on CPU, NCCL on GPU).")
    p.add_argument("config", nargs="?", default="default",
                   help="a TOML file or a shipped config name (default: %(default)s)")
    p.add_argument("--out", type=Path, help="run directory (default: runs/<name>)")
    p.add_argument("--world", type=Path, metavar="DIR",
                   help="train on a world made by `losslens world --out DIR` instead of the config's corpus")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-checkpoint lines")
    p.set_defaults(func=run_train)

    e = sub.add_parser("export", help="write a checkpoint as a Hugging Face LlamaForCausalLM directory")
    e.add_argument("checkpoint", type=Path, help="a ckpt-*.pt file, or a run dir (its newest checkpoint)")
    e.add_argument("out_dir", type=Path)
    e.set_defaults(func=run_export)


def run_train(args) -> int:
    from losslens.train.config import load_run_config
    from losslens.train.loop import train

    cfg, source = load_run_config(args.config)
    if args.world is not None:
        from losslens.config import from_dict
        from losslens.data import DataConfig
        cfg.data = from_dict(DataConfig, {"world_dir": str(args.world), "vocab_size": cfg.data.vocab_size,
                                          "dir": cfg.data.dir}, source="--world", prefix="data")
    out = args.out or Path("runs") / cfg.name
    result = train(cfg, out, config_source=str(source), quiet=args.quiet)
    rec = result.record
    if result.already_complete:
        print(f"{out}: already complete ({len(rec.checkpoints)} checkpoints)")
    elif rec.checkpoints:
        last = rec.checkpoints[-1]
        print(f"{out}: complete — {len(rec.checkpoints)} checkpoints, {last['tokens']:,} tokens, "
              f"final val loss {last['val_loss']:.4f} nats/token; record in {out / 'run.json'}")
    return 0


def run_export(args) -> int:
    from losslens.model import export_hf
    from losslens.train import checkpoint as ckpt

    model, meta = ckpt.load_model(args.checkpoint)
    export_hf(model, args.out_dir, tokenizer_dir=meta["tokenizer"])
    print(f"wrote {args.out_dir} (LlamaForCausalLM, step {meta['step']}, {meta['tokens']:,} tokens)")
    return 0
