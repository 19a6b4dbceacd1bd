"""Random draws shared by all genres: seeded streams, Zipf ranks, and the train/eval split of item keys.

Streams: every random choice comes from `rng_for(seed, *path)`, a numpy Generator seeded from
`SeedSequence([seed, *path])`. Chunk `i` of the training text uses path (TRAIN, i), so a chunk's
text does not depend on how many worker processes made the others.

Held-out keys: each unit a genre can produce (a story, a word problem, an (entity, attribute)
question, a list to copy, ...) has a key string. `Split.heldout(key)` hashes it with the seed; a
fixed share of the key space is reserved for evaluation. Training text only ever renders units
whose key is not held out and eval items only units whose key is, so an eval item's question can
never occur in training text (tests check the rendered text as well).
"""

from __future__ import annotations

import hashlib

import numpy as np

# Stream ids: the first number after the seed in `rng_for`.
KB, TRAIN, VAL, EVAL = 0, 1, 2, 3


def rng_for(seed: int, *path: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *path]))


def zipf_cdf(n: int, exponent: float) -> np.ndarray:
    """Cumulative probabilities of ranks 0..n-1 with p(rank r) proportional to (r + 1) ** -exponent."""
    p = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(p / p.sum())
    cdf[-1] = 1.0
    return cdf


def draw(rng: np.random.Generator, cdf: np.ndarray, size) -> np.ndarray:
    """Ranks drawn from a cumulative distribution (vectorised inverse-CDF sampling)."""
    return np.searchsorted(cdf, rng.random(size), side="right")


class Popularity:
    """Draws over `n` ranked things: Zipf for training text, uniform for eval items, so that eval covers
    the rare things as evenly as the common ones (accuracy then grows as rarer things are learned)."""

    def __init__(self, n: int, exponent: float):
        self.zipf, self.uniform = zipf_cdf(n, exponent), zipf_cdf(n, 0.0)

    def draw(self, rng: np.random.Generator, size, evaluating: bool = False) -> np.ndarray:
        return draw(rng, self.uniform if evaluating else self.zipf, size)


class Split:
    """Deterministic partition of item keys into training (most) and held-out evaluation (`share`)."""

    def __init__(self, seed: int, share: float):
        self._salt = seed.to_bytes(8, "little")
        self._cut = int(share * 2**64)

    def heldout(self, key: str) -> bool:
        digest = hashlib.blake2b(key.encode(), digest_size=8, key=self._salt).digest()
        return int.from_bytes(digest, "little") < self._cut


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
