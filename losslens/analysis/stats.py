"""Small statistical helpers shared by the analyses: monotone fits, grouped resampling, tests.

Everything here is a pure function of arrays and an explicit `numpy.random.Generator`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.optimize import isotonic_regression

try:  # scipy's C pool-adjacent-violators, without the public wrapper's per-call checks (2x faster here)
    from scipy.optimize._pava_pybind import pava as _pava
except ImportError:  # pragma: no cover - a scipy that moved it
    _pava = None


def group_codes(labels) -> tuple[np.ndarray, int]:
    """Map group labels (e.g. run ids) to 0..G-1; return (codes, G)."""
    _, codes = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    return codes.astype(np.intp), int(codes.max()) + 1 if len(codes) else 0


def isotonic_fit(x, y, w=None, *, increasing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Weighted monotone least-squares fit of y on x; ties in x are pooled first.

    Returns the distinct x values (sorted) and the fitted value at each; `isotonic_predict` evaluates it.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    w = np.ones_like(y) if w is None else np.asarray(w, float)
    ux, inv = np.unique(x, return_inverse=True)
    sw = np.bincount(inv, weights=w, minlength=len(ux))
    sy = np.bincount(inv, weights=w * y, minlength=len(ux))
    fit = isotonic_regression(sy / sw, weights=sw, increasing=increasing).x
    return ux, fit


def pava_decreasing(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted non-increasing least-squares fit of y (already in x order); w > 0."""
    if _pava is None:
        return isotonic_regression(y, weights=w, increasing=False).x
    x = np.ascontiguousarray(y[::-1], dtype=np.float64)
    wx = np.ascontiguousarray(w[::-1], dtype=np.float64)
    return _pava(x, wx, np.full(len(x) + 1, -1, dtype=np.intp))[0][::-1]


def isotonic_predict(knots: tuple[np.ndarray, np.ndarray], x) -> np.ndarray:
    """Evaluate a fitted monotone step function by linear interpolation (flat beyond the ends)."""
    ux, fit = knots
    return np.interp(np.asarray(x, float), ux, fit)


def grouped_folds(codes: np.ndarray, n_groups: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Assign each group (run) to one of k folds at random, balanced; return the fold of every row."""
    order = rng.permutation(n_groups)
    fold_of_group = np.empty(n_groups, np.intp)
    fold_of_group[order] = np.arange(n_groups) % k
    return fold_of_group[codes]


def bootstrap_group_counts(n_groups: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each group is drawn in each of `n_boot` resamples of groups with replacement: (B, G)."""
    return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot).astype(float)


def percentile_ci(samples, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of bootstrap samples, ignoring NaNs; None when there are none."""
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        return None
    lo, hi = np.quantile(s, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def z_above(mean: float, se: float) -> float:
    """One-sided p-value of H1: mean > 0, for a normal estimate with standard error se."""
    if not np.isfinite(se) or se <= 0:
        return 0.0 if mean > 0 else 1.0
    return float(stats.norm.sf(mean / se))


def weighted_mean_se(y, w) -> tuple[float, float]:
    """Inverse-variance weighted mean and its standard error (w = 1/variance)."""
    y = np.asarray(y, float)
    w = np.asarray(w, float)
    sw = w.sum()
    return float((w * y).sum() / sw), float(1.0 / math.sqrt(sw))


def wls_slope(x, y, w) -> tuple[float, float]:
    """Weighted least-squares slope of y on x and its standard error (w = 1/variance)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    w = np.asarray(w, float)
    xm = (w * x).sum() / w.sum()
    sxx = (w * (x - xm) ** 2).sum()
    if sxx <= 0:
        return 0.0, math.inf
    ym = (w * y).sum() / w.sum()
    return float((w * (x - xm) * (y - ym)).sum() / sxx), float(1.0 / math.sqrt(sxx))


def correlations(x, y) -> tuple[float | None, float | None]:
    """Spearman and Pearson correlation (None where undefined, e.g. a constant column)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    return float(stats.spearmanr(x, y).statistic), float(stats.pearsonr(x, y).statistic)
