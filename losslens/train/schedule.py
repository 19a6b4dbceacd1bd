"""Learning rate: linear warmup, then cosine decay that reaches its minimum exactly at the budget.

As in Du et al. (and Chinchilla), each run's schedule ends at its own token budget, so a checkpoint
in the middle of a long run is *not* an annealed short run — the two can be compared on one axis.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, total_steps: int, max_lr: float, min_lr: float, warmup_steps: int) -> float:
    """Learning rate for optimizer step `step` (0-based); step total_steps-1 gets exactly min_lr."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    decay_steps = total_steps - 1 - warmup_steps
    if decay_steps <= 0:
        return min_lr
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))
