"""Training windows: a pure function of (seed, step), so resuming at step s replays exactly.

The global batch of step s draws `batch_size` random window starts with `default_rng([seed, s])`;
under data parallelism rank r takes rows [r*b, (r+1)*b) with b = B/world_size,
so the union over ranks is exactly the single-process batch.
"""

from __future__ import annotations

import numpy as np
import torch


class WindowSampler:
    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int):
        if tokens.size < seq_len + 2:
            raise ValueError(f"{tokens.size} tokens cannot fill one window of {seq_len + 1}")
        self.tokens, self.seq_len, self.batch_size, self.seed = tokens, seq_len, batch_size, seed
        self._span = np.arange(seq_len + 1)

    def starts(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        return rng.integers(0, self.tokens.size - self.seq_len - 1, size=self.batch_size, endpoint=True)

    def batch(self, step: int, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of shape (rows, seq_len) for global step `step`."""
        windows = self.tokens[self.starts(step)[rows, None] + self._span].astype(np.int64)
        windows = torch.from_numpy(windows)
        return windows[:, :-1], windows[:, 1:]


def eval_windows(tokens: np.ndarray, seq_len: int, max_tokens: int) -> torch.Tensor:
    """Fixed, consecutive (seq_len + 1)-token windows from the start of a held-out shard.

    Windows overlap by one token so every token after the first is a target exactly once.
    """
    n_windows = min(max_tokens, tokens.size - 1) // seq_len
    if n_windows < 1:
        raise ValueError(f"{tokens.size} held-out tokens cannot fill one window of {seq_len + 1}")
    idx = np.arange(n_windows)[:, None] * seq_len + np.arange(seq_len + 1)
    return torch.from_numpy(tokens[idx].astype(np.int64))
