"""`losslens model-info`: the named model presets with parameter counts and training FLOPs per token."""

from __future__ import annotations

from losslens.model.config import PRESETS


def register(sub) -> None:
    p = sub.add_parser("model-info", help="list model presets: parameters and training FLOPs per token",
                       description="Print the LLaMA-style model presets with total and non-embedding "
                                   "parameter counts and training FLOPs per token (formulas: docs/model.md).")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--preset", choices=list(PRESETS), help="show one preset")
    which.add_argument("--all", action="store_true", help="show every preset (the default)")
    p.add_argument("--vocab-size", type=int, default=4096, help="vocabulary size (default 4096)")
    p.add_argument("--seq-len", type=int, default=256, help="context length for the FLOPs (default 256)")
    p.set_defaults(func=run_model_info)


def run_model_info(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from losslens.errors import InputError
    from losslens.model.config import ModelConfig
    from losslens.model.counts import flops_per_token, param_counts

    for flag, value in (("--vocab-size", args.vocab_size), ("--seq-len", args.seq_len)):
        if value < 1:
            raise InputError("command line", f"must be >= 1, got {value}", field=flag)
    names = [args.preset] if args.preset else list(PRESETS)
    table = Table(title=f"Model presets at vocab {args.vocab_size:,}, sequence length {args.seq_len}")
    for col in ("preset", "d_model", "layers", "heads", "kv", "ffn", "params", "non-emb", "FLOPs/tok"):
        table.add_column(col, justify="left" if col == "preset" else "right")
    for name in names:
        cfg = ModelConfig.preset(name, vocab_size=args.vocab_size, max_seq_len=args.seq_len)
        total, non_embedding = param_counts(cfg)
        table.add_row(name, str(cfg.d_model), str(cfg.n_layers), str(cfg.n_heads), str(cfg.n_kv_heads),
                      str(cfg.ffn_dim), _si(total), _si(non_embedding), _si(flops_per_token(cfg, args.seq_len)))
    Console().print(table)
    print("params: total trainable (tied LM head counted once); non-emb: without token embedding and "
          "LM head;\nFLOPs/tok: training (forward + backward), 6 N + 12 L T d with N the matmul "
          "parameters incl. the head.")
    return 0


def _si(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)
