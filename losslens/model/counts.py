"""Parameter and FLOP counts from a `ModelConfig` alone (no model needs to be built).

Non-embedding parameters follow Kaplan et al. (2020): everything except the token embedding and the
LM head (tied or not), so N is comparable across vocabularies. Norm weights are included.

Training FLOPs per token follow PaLM (Chowdhery et al. 2022, appendix B), the formula nanoGPT's
`estimate_mfu` uses:

    6 * (N_non_embedding + d_model * vocab_size)  +  12 * n_layers * seq_len * d_model

The first term is every weight matrix, the LM head included (its matmul costs the same whether or not
it is tied to the embedding; the embedding lookup itself is free): 2 FLOPs per multiply-add forward,
4 backward. The second is attention's QK^T and AV matmuls over the full T x T score matrix (a causal
kernel skips about half of those; the convention counts them all). Elementwise work (norms, rotary,
softmax, SwiGLU gate) is not counted.
"""

from __future__ import annotations

from losslens.model.config import ModelConfig


def layer_params(cfg: ModelConfig) -> int:
    d, hd = cfg.d_model, cfg.head_dim
    attention = d * cfg.n_heads * hd + 2 * d * cfg.n_kv_heads * hd + cfg.n_heads * hd * d  # q, k, v, o
    mlp = 3 * d * cfg.ffn_dim  # gate, up, down
    return attention + mlp + 2 * d  # + two RMSNorm weights


def param_counts(cfg: ModelConfig) -> tuple[int, int]:
    """(total, non_embedding) trainable parameters; a tied LM head is counted once."""
    non_embedding = cfg.n_layers * layer_params(cfg) + cfg.d_model  # + final RMSNorm
    embedding = cfg.vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2)
    return non_embedding + embedding, non_embedding


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> int:
    """Training (forward + backward) FLOPs per token at context length `seq_len` (default max_seq_len)."""
    seq_len = cfg.max_seq_len if seq_len is None else seq_len
    _, non_embedding = param_counts(cfg)
    matmul_params = non_embedding + cfg.d_model * cfg.vocab_size
    attention = 12 * cfg.n_layers * seq_len * cfg.n_heads * cfg.head_dim
    return 6 * matmul_params + attention
