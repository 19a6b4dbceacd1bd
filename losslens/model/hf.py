"""Export a `LlamaLM` as a Hugging Face `LlamaForCausalLM` directory.

    out_dir/config.json          LlamaConfig fields (readable by transformers 4.x and 5.x)
    out_dir/model.safetensors    weights under HF names; fused qkv / gate-up rows split back apart
    out_dir/tokenizer*.json ...  copied from `tokenizer_dir`, if given

The directory appears whole or not at all: everything is written into a temporary sibling directory,
fsynced, then renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from losslens.data.tokenizer import portable_tokenizer_config
from losslens.errors import InputError
from losslens.io import fsync_dir, make_temp_dir
from losslens.model.llama import LlamaLM

# Files a Hugging Face tokenizer directory may hold; whichever exist are copied.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "added_tokens.json", "tokenizer.model", "chat_template.jinja")


def unwrap(model: torch.nn.Module) -> LlamaLM:
    """The `LlamaLM` inside a torch.compile and/or DistributedDataParallel wrapper."""
    while not isinstance(model, LlamaLM):
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if inner is None:
            raise TypeError(f"expected a LlamaLM, got {type(model).__name__}")
        model = inner
    return model


def hf_state_dict(model: LlamaLM) -> dict[str, torch.Tensor]:
    """Our weights under `LlamaForCausalLM` names (contiguous copies, safe to save)."""
    cfg = model.cfg
    out = {"model.embed_tokens.weight": model.embed_tokens.weight, "model.norm.weight": model.norm.weight}
    if not cfg.tie_embeddings:  # tied: HF re-ties lm_head to the embedding on load
        out["lm_head.weight"] = model.lm_head.weight
    for i, layer in enumerate(model.layers):
        p = f"model.layers.{i}."
        q, k, v = layer.attn.qkv_proj.weight.split(layer.attn.split, dim=0)
        gate, up = layer.mlp.gate_up_proj.weight.chunk(2, dim=0)
        out |= {p + "input_layernorm.weight": layer.attn_norm.weight,
                p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k,
                p + "self_attn.v_proj.weight": v, p + "self_attn.o_proj.weight": layer.attn.o_proj.weight,
                p + "post_attention_layernorm.weight": layer.mlp_norm.weight,
                p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up,
                p + "mlp.down_proj.weight": layer.mlp.down_proj.weight}
    return {name: t.detach().to("cpu").contiguous().clone() for name, t in out.items()}


def hf_config(model: LlamaLM, special_token_ids: dict[str, int | None] | None = None) -> dict:
    cfg = model.cfg
    dtype = str(model.embed_tokens.weight.dtype).removeprefix("torch.")
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,  # transformers 4.x reads this ...
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},  # ... 5.x this
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": cfg.init_std,
        "use_cache": True,
        "dtype": dtype,
        **(special_token_ids or {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}),
    }


def _special_token_ids(tokenizer_dir: Path, vocab_size: int) -> dict[str, int | None]:
    from transformers import AutoTokenizer  # heavy import, only when a tokenizer is exported

    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except Exception as err:  # a broken or foreign directory is the user's input, not our bug
        raise InputError(tokenizer_dir, f"cannot load a Hugging Face tokenizer: {err}") from None
    if len(tok) > vocab_size:
        raise InputError(tokenizer_dir, f"tokenizer has {len(tok)} tokens but the model's vocab_size "
                         f"is {vocab_size}")
    return {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id}


def export_hf(model: torch.nn.Module, out_dir: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """Write `model` as a `LlamaForCausalLM` directory at `out_dir` (replacing an earlier export)."""
    model = unwrap(model)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "config.json").exists():
        raise InputError(out_dir, "exists and is not an earlier export (no config.json); refusing to "
                         "replace it")
    token_ids, tokenizer_files = None, []
    if tokenizer_dir is not None:
        tokenizer_dir = Path(tokenizer_dir)
        tokenizer_files = [tokenizer_dir / n for n in TOKENIZER_FILES if (tokenizer_dir / n).is_file()]
        if not tokenizer_files:
            raise InputError(tokenizer_dir, f"no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...)")
        token_ids = _special_token_ids(tokenizer_dir, model.cfg.vocab_size)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp")
    try:
        (tmp / "config.json").write_text(json.dumps(hf_config(model, token_ids), indent=2) + "\n")
        save_file(hf_state_dict(model), tmp / "model.safetensors", metadata={"format": "pt"})
        for src in tokenizer_files:
            shutil.copyfile(src, tmp / src.name)
        portable_tokenizer_config(tmp / "tokenizer_config.json")  # tokenizers trained before this fix too
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _replace_dir(new: Path, target: Path) -> None:
    """Rename `new` to `target`. An old `target` is first moved aside, so a reader sees the old export
    or the new one; only a crash between the two renames leaves neither (the old stays beside it)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.rename(target, old)
    os.rename(new, target)
    fsync_dir(target.parent)
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
