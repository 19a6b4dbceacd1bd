"""A LLaMA-style decoder: pre-norm RMSNorm, rotary embeddings, grouped-query attention, SwiGLU MLP.

Same maths as Hugging Face `LlamaForCausalLM` (rotate-half rotary embeddings, no biases, final
RMSNorm, optionally tied LM head), so `losslens.model.hf.export_hf` is a plain weight copy. Two
layout choices for speed: q, k and v come from one fused matmul (`qkv_proj`), and the MLP's gate and
up projections from another (`gate_up_proj`); the export splits them back into HF's separate weights.
The elementwise pieces (RMSNorm, rotary, SwiGLU gate, LM head + cross-entropy) live in `ops.py`, with
hand-written backwards that profiling showed pay off in eager CPU training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losslens.model.config import ModelConfig
from losslens.model.ops import linear_cross_entropy, qkv_rope, rms_norm, swiglu


class RMSNorm(nn.Module):
    """`feeds_matmul`: the output only feeds a Linear, so under CPU autocast it may come already cast
    to the autocast dtype (the same values, one pass less; see ops.rms_norm)."""

    def __init__(self, dim: int, eps: float, feeds_matmul: bool = False):
        super().__init__()
        self.eps, self.feeds_matmul = eps, feeds_matmul
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps, autocast_output=self.feeds_matmul)


def rope_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (max_seq_len, head_dim), computed exactly as HF's default rotary embedding."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
    freqs = torch.arange(max_seq_len, dtype=torch.float)[:, None] * inv_freq[None, :]
    angles = torch.cat((freqs, freqs), dim=-1)  # non-interleaved: dim i pairs with dim i + head_dim/2
    return angles.cos(), angles.sin()


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.split = (q_dim, kv_dim, kv_dim)
        self.qkv_proj = nn.Linear(cfg.d_model, q_dim + 2 * kv_dim, bias=False)
        self.o_proj = nn.Linear(q_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        qkv = self.qkv_proj(x).view(B, T, self.n_heads + 2 * self.n_kv_heads, self.head_dim)
        q, k, v = qkv_rope(qkv, cos, sin, self.n_heads, self.n_kv_heads)  # rotary on q and k at once
        # SDPA wants (B, heads, T, head_dim); a KV cache would concatenate past k, v here.
        y = causal_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal SDPA over (B, heads, T, head_dim) tensors; k and v may have fewer (grouped) heads.

    On CUDA, SDPA's `enable_gqa` runs only in the flash kernel (fp16/bf16) or the slow math one, so
    fp32 (and any case flash cannot take) would fall back to math: there the KV heads are repeated
    instead, which the memory-efficient and cuDNN kernels take. CPU keeps `enable_gqa` (its flash
    kernel handles groups, and CPU numbers stay what they were)."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1 and _repeat_kv(q):
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=k.shape[1] != q.shape[1])


def _repeat_kv(q: torch.Tensor) -> bool:
    return q.is_cuda and q.dtype not in (torch.float16, torch.bfloat16)


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_up_proj = nn.Linear(cfg.d_model, 2 * cfg.ffn_dim, bias=False)  # [gate; up] rows
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(swiglu(self.gate_up_proj(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps, feeds_matmul=True)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps, feeds_matmul=True)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class LlamaLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # rebuilt from cfg, never checkpointed
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, init_std) for every matrix, with the two projections that write into the
        residual stream scaled by 1/sqrt(2 * n_layers) so its variance stays O(1) with depth."""
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.ones_(p)  # RMSNorm gains
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, std=std / (2 * self.cfg.n_layers) ** 0.5)
            else:
                nn.init.normal_(p, std=std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids (B, T) -> next-token logits (B, T, vocab_size); with `targets` (B, T), instead the
        mean cross-entropy in nats/token (targets == -100 ignored), computed without materialising
        the logits -- the fast path for training and validation loss."""
        T = idx.shape[1]
        if T > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {T} exceeds max_seq_len={self.cfg.max_seq_len}")
        x = self.embed_tokens(idx)
        cos = self.rope_cos[:T, None, :]  # (T, 1, head_dim): broadcast over batch and heads
        sin = self.rope_sin[:T, None, :]
        for layer in self.layers:
            x = layer(x, cos, sin)
        x = self.norm(x)
        if targets is not None:
            return linear_cross_entropy(x, self.lm_head.weight, targets)
        return self.lm_head(x)
