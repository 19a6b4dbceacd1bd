"""`ModelConfig`: the shape of a LLaMA-style decoder, its named presets, and validation.

A config is data: it comes from a TOML table (`[model]`), a preset name, or Python, and is checked
once here so that a bad value fails before any work with one line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from losslens.config import Config, from_dict, knob
from losslens.errors import InputError

DTYPES = ("fp32", "bf16")  # the compute dtypes losslens trains and evaluates in, everywhere



@dataclass
class ModelConfig(Config):
    vocab_size: int = knob(4096, gt=0)
    d_model: int = knob(128, gt=0)
    n_layers: int = knob(4, gt=0)
    n_heads: int = knob(4, gt=0)
    n_kv_heads: int | None = knob(None, gt=0)  # grouped-query attention; None = n_heads (plain multi-head)
    multiple_of: int = knob(32, gt=0)  # 32 keeps the MLP width a multiple of the AVX-512/AMX tile width
    ffn_dim: int | None = knob(None, gt=0)  # None = LLaMA's 2/3 * 4 * d_model, rounded up to `multiple_of`
    max_seq_len: int = knob(256, gt=0)
    rope_theta: float = knob(10000.0, gt=0)
    norm_eps: float = knob(1e-5, gt=0)
    tie_embeddings: bool = True  # the LM head reuses the token embedding matrix
    init_std: float = knob(0.02, gt=0)

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.ffn_dim is None and _is_int(self.d_model) and _is_int(self.multiple_of) and self.multiple_of > 0:
            self.ffn_dim = self.multiple_of * -(-8 * self.d_model // (3 * self.multiple_of))
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def _rules(self, bad) -> None:
        """Shape rules on top of the knob checks (types, positive values)."""
        if self.d_model % self.n_heads:
            raise bad("n_heads", f"{self.n_heads} heads do not divide d_model={self.d_model}")
        if self.head_dim % 2:
            raise bad("n_heads", f"head dim d_model/n_heads = {self.head_dim} must be even for rotary embeddings")
        if self.n_heads % self.n_kv_heads:
            raise bad("n_kv_heads", f"{self.n_kv_heads} kv heads do not divide n_heads={self.n_heads}")

    # --- construction -----------------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str, **overrides) -> ModelConfig:
        if name not in PRESETS:
            raise InputError(None, f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}",
                             field="preset")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, d: dict, source: str | None = None, prefix: str = "model.") -> ModelConfig:
        """Build from a TOML-style table; `{"preset": "tiny", ...overrides}` starts from a preset.

        Every problem is an `InputError(source, msg, field="model.<name>")`.
        """
        prefix = prefix.rstrip(".")
        if not isinstance(d, dict):
            raise InputError(source, f"expected a table, got {type(d).__name__}", field=prefix)
        d = dict(d)
        base: dict = {}
        if "preset" in d:
            name = d.pop("preset")
            if name not in PRESETS:
                raise InputError(source, f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}",
                                 field=f"{prefix}.preset")
            base = dict(PRESETS[name])
        return from_dict(cls, {**base, **d}, source=source, prefix=prefix)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Named shapes from ~50k to ~50M non-embedding parameters, roughly 4x apart (`losslens model-info`
# prints exact counts). Head dim stays >= 16, kv heads are half the query heads from `micro` up (as in
# the paper's grouped-query models), and depth grows with width as in the Chinchilla/Pythia ladders.
PRESETS: dict[str, dict] = {
    "nano":   dict(d_model=48, n_layers=2, n_heads=2, n_kv_heads=1),
    "micro":  dict(d_model=64, n_layers=4, n_heads=4, n_kv_heads=2),
    "tiny":   dict(d_model=128, n_layers=4, n_heads=4, n_kv_heads=2),
    "mini":   dict(d_model=192, n_layers=6, n_heads=6, n_kv_heads=3),
    "small":  dict(d_model=384, n_layers=6, n_heads=6, n_kv_heads=3),
    "medium": dict(d_model=512, n_layers=10, n_heads=8, n_kv_heads=4),
    "base":   dict(d_model=640, n_layers=12, n_heads=10, n_kv_heads=5),
}
