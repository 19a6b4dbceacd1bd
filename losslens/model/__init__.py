"""The LLaMA-style decoder: config and presets, the model, parameter/FLOP counts, Hugging Face export.

Exports load lazily, so `losslens --help` and `losslens model-info` do not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from losslens._lazy import lazy_exports

_EXPORTS = {"ModelConfig": "config", "PRESETS": "config", "param_counts": "counts",
            "flops_per_token": "counts", "LlamaLM": "llama", "export_hf": "hf"}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from losslens.model.config import PRESETS, ModelConfig
    from losslens.model.counts import flops_per_token, param_counts
    from losslens.model.hf import export_hf
    from losslens.model.llama import LlamaLM


__getattr__ = lazy_exports(__name__, _EXPORTS)
