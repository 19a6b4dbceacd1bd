"""Model FLOPs utilisation: achieved training FLOP/s over the device's peak.

    MFU = tokens/s * training FLOPs/token (PaLM formula, losslens.model.counts) / (peak FLOP/s * devices)

The peak is the vendor's dense (no sparsity) tensor-core figure for the precision the run computes
in: bf16 under bf16 autocast, TF32 for fp32 with TF32 on, plain fp32 otherwise. CPUs have no
dependable peak (it depends on cores, clocks and AVX/AMX), so MFU there needs `train.peak_flops`.
"""

from __future__ import annotations

import re

# (name pattern, bf16, tf32, fp32) in FLOP/s, dense; the first matching pattern wins, so more specific
# names come first ("H100 PCIe" before "H100", "L40S" before "L4", "A100" before "A10").
PEAKS: list[tuple[str, float, float, float]] = [
    (r"B200", 2250e12, 1100e12, 80e12),
    (r"H100.*PCIe", 756e12, 378e12, 51e12),
    (r"H100 NVL", 835e12, 418e12, 60e12),
    (r"H100|H200|GH200", 989e12, 495e12, 67e12),
    (r"A100", 312e12, 156e12, 19.5e12),
    (r"A10G", 70e12, 35e12, 31.2e12),
    (r"A10\b", 125e12, 62.5e12, 31.2e12),
    (r"L40S", 362e12, 183e12, 91.6e12),
    (r"L40\b", 181e12, 90.5e12, 90.5e12),
    (r"\bL4\b", 121e12, 60e12, 30.3e12),
    (r"RTX 4090", 165e12, 82.6e12, 82.6e12),
    (r"RTX 3090", 71e12, 35.6e12, 35.6e12),
    (r"MI300X", 1307e12, 654e12, 163e12),
    (r"MI250X", 383e12, 95.7e12, 95.7e12),
]


def peak_flops(device_name: str | None, precision: str, tf32: bool = True) -> float | None:
    """Dense peak FLOP/s of one device called `device_name` computing in `precision`; None if unknown."""
    if not device_name:
        return None
    for pattern, bf16, tf32_peak, fp32 in PEAKS:
        if re.search(pattern, device_name):
            return bf16 if precision == "bf16" else tf32_peak if tf32 else fp32
    return None


def device_name(device) -> str:
    """"NVIDIA H100 80GB HBM3" for a CUDA device, "cpu" otherwise."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None, devices: int = 1) -> float | None:
    """Share of `devices` x `peak` FLOP/s the run achieves; None when the peak is unknown."""
    if not peak:
        return None
    return tokens_per_s * flops_per_token / (peak * devices)
