"""Planted ladders: synthetic tidy tables with a known answer, for tests, benchmarks and demos of the
analysis itself.

Runs of several sizes each log checkpoints along their token budget; the loss follows a Chinchilla law
L(N, D) = E + A/N^alpha + B/D^beta (plus a little noise); task performance is a planted function of the
loss alone (unless `size_effect` adds a dependence on log N), measured on `n_items` items with binomial
noise. Shapes, in normalised units (chance 0, perfect 1):

    emergent  0 for L >= eta, rising as amplitude * ((eta - L) / (eta - L_min))^power below
    linear    0.1 + 0.8 * (L_max - L) / (L_max - L_min)        (above chance everywhere)
    sigmoid   0.05 + 0.9 / (1 + exp((L - L_mid) / width))       (width = 1/6 of the loss range)
    flat      0                                                  (never leaves chance)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SHAPES = ("emergent", "linear", "sigmoid", "flat")
LAW = dict(E=1.8, A=400.0, alpha=0.34, B=400.0, beta=0.28)


def ladder_points(sizes=(2e7, 5e7, 1.2e8, 3e8, 8e8), checkpoints: int = 8, tokens_per_param=(5, 20, 80),
                  *, loss_noise: float = 0.005, seed: int = 0) -> pd.DataFrame:
    """One row per (run, checkpoint): model, params, tokens, step, loss."""
    rng = np.random.default_rng(seed)
    rows = []
    for N in sizes:
        for tpp in tokens_per_param:
            model = f"n{N:.0e}-x{tpp}"
            for step in range(1, checkpoints + 1):
                D = N * tpp * step / checkpoints
                L = LAW["E"] + LAW["A"] / N ** LAW["alpha"] + LAW["B"] / D ** LAW["beta"]
                rows.append((model, float(N), float(D), step, L * (1 + loss_noise * rng.standard_normal())))
    return pd.DataFrame(rows, columns=["model", "params", "tokens", "step", "loss"])


def shape_curve(shape: str, loss: np.ndarray, *, eta: float | None = None, power: float = 1.0,
                amplitude: float = 0.7) -> np.ndarray:
    """Normalised performance of a planted shape at each loss."""
    lo, hi = float(loss.min()), float(loss.max())
    if shape == "emergent":
        eta = lo + 0.5 * (hi - lo) if eta is None else eta
        return amplitude * (np.maximum(eta - loss, 0.0) / (eta - lo)) ** power
    if shape == "linear":
        return 0.1 + 0.8 * (hi - loss) / (hi - lo)
    if shape == "sigmoid":
        return 0.05 + 0.9 / (1 + np.exp((loss - (lo + hi) / 2) / ((hi - lo) / 6)))
    if shape == "flat":
        return np.zeros_like(loss)
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def planted_table(shapes: dict[str, str] | None = None, *, n_items: int = 1000, chance: float = 0.25,
                  size_effect: float = 0.0, seed: int = 0, points: pd.DataFrame | None = None,
                  **shape_kw) -> pd.DataFrame:
    """A tidy table (metric `acc`) with one task per entry of `shapes` ({task: shape})."""
    shapes = shapes or {s: s for s in SHAPES}
    rng = np.random.default_rng(seed + 1)
    pts = ladder_points(seed=seed) if points is None else points
    logn = np.log(pts["params"].to_numpy())
    frames = []
    for task, shape in shapes.items():
        y = shape_curve(shape, pts["loss"].to_numpy(), **shape_kw) + size_effect * (logn - logn.mean())
        p = np.clip(chance + (1 - chance) * y, 0.0, 1.0)
        k = rng.binomial(n_items, p)
        frames.append(pts.assign(task=task, metric="acc", value=k / n_items, n=n_items, chance=chance))
    return pd.concat(frames, ignore_index=True)
