"""L-BFGS for many small problems at once, in numpy.

The Chinchilla fit runs L-BFGS from 4,500 starting points, and its bootstrap refits the law 1,000
times. One `scipy.optimize.minimize` call per problem costs ~6 ms (~28 s for the grid, mostly
per-iteration overhead); stepping all problems together turns the work into a few large array
operations.

`minimize_batched(fun, x0)` minimises P independent problems of the same dimension. `fun(X, rows)`
returns the objective values (len(X),) and gradients (len(X), n) of the problems `rows` (indices into
x0) at the points X, so it can look up per-problem data such as bootstrap weights. Each problem stops
on its own, like scipy's L-BFGS-B: when an accepted step lowers f by at most
`ftol * max(|f_old|, |f_new|, floor)`, when max |gradient| <= `gtol`, or when the backtracking line
search finds no decrease. Converged problems leave the batch, so cost follows the slowest few only
in proportion to their number.

Line search: backtracking from the full L-BFGS step with the Armijo condition (the curvature pair is
skipped when s.y <= 0, which keeps the inverse-Hessian estimate positive definite).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

Objective = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]

SCIPY_FTOL = 1e7 * np.finfo(float).eps  # L-BFGS-B's default factr=1e7, as a relative tolerance


@dataclasses.dataclass
class BatchResult:
    x: np.ndarray        # (P, n) final points
    fun: np.ndarray      # (P,) final objective values (inf where the start was not finite)
    nit: np.ndarray      # (P,) iterations taken
    stalled: np.ndarray  # (P,) True where the line search found no decrease (not an error near an optimum)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("pk,pk->p", a, b)


def _direction(g: np.ndarray, S: np.ndarray, Y: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """The two-loop recursion, -H g, for every row at once (history slots with rho = 0 are empty)."""
    m = S.shape[1]
    q = g.copy()
    alpha = np.zeros((len(g), m))
    for j in range(m - 1, -1, -1):  # newest pair is at index m-1
        alpha[:, j] = rho[:, j] * _dot(S[:, j], q)
        q -= alpha[:, j, None] * Y[:, j]
    yy = _dot(Y[:, -1], Y[:, -1])
    # Initial scaling s.y / y.y from the newest pair; before any pair, a step of unit length along -g.
    gamma = np.where(rho[:, -1] > 0, 1.0 / np.maximum(rho[:, -1] * yy, 1e-300),
                     1.0 / np.maximum(np.sqrt(_dot(g, g)), 1e-300))
    q *= gamma[:, None]
    for j in range(m):
        beta = rho[:, j] * _dot(Y[:, j], q)
        q += S[:, j] * (alpha[:, j] - beta)[:, None]
    return -q


def minimize_batched(fun: Objective, x0: np.ndarray, *, memory: int = 10, maxiter: int = 2000,
                     ftol: float = SCIPY_FTOL, ftol_floor: float = 1.0, gtol: float = 1e-10,
                     c1: float = 1e-4, max_backtracks: int = 50) -> BatchResult:
    """Minimise P problems from the rows of `x0` (P, n); see the module docstring.

    `ftol_floor` = 1 reproduces L-BFGS-B's absolute floor on the decrease test (fine for screening
    starts); 0 makes the test purely relative, which matters when f itself is tiny (a Huber sum of
    ~1e-3) and a fit must be converged tightly, as in bootstrap refits.
    """
    X = np.array(x0, dtype=float)
    P, n = X.shape
    rows = np.arange(P)
    f, g = fun(X, rows)
    f = np.where(np.isfinite(f), f, np.inf)
    S = np.zeros((P, memory, n))
    Y = np.zeros((P, memory, n))
    rho = np.zeros((P, memory))
    nit = np.zeros(P, dtype=int)
    stalled = np.zeros(P, dtype=bool)
    active = np.isfinite(f) & np.all(np.isfinite(g), axis=1)
    for _ in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        gi, xi, fi = g[idx], X[idx], f[idx]
        d = _direction(gi, S[idx], Y[idx], rho[idx])
        slope = _dot(gi, d)
        uphill = ~(slope < 0)
        d[uphill] = -gi[uphill]
        slope[uphill] = -_dot(gi[uphill], gi[uphill])
        # Backtracking line search; only the rows still searching are re-evaluated.
        t = np.ones(idx.size)
        x_new, f_new, g_new = xi.copy(), fi.copy(), gi.copy()
        pending = np.arange(idx.size)
        for _ in range(max_backtracks):
            xt = xi[pending] + t[pending, None] * d[pending]
            ft, gt = fun(xt, idx[pending])
            ok = np.isfinite(ft) & (ft <= fi[pending] + c1 * t[pending] * slope[pending])
            ok &= np.all(np.isfinite(gt), axis=1)
            done = pending[ok]
            x_new[done], f_new[done], g_new[done] = xt[ok], ft[ok], gt[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            t[pending] *= 0.5
        moved = np.ones(idx.size, dtype=bool)
        moved[pending] = False
        s, y = x_new - xi, g_new - gi
        sy = _dot(s, y)
        keep = moved & (sy > 1e-10 * _dot(y, y))
        u = idx[keep]
        S[u] = np.roll(S[u], -1, axis=1)
        Y[u] = np.roll(Y[u], -1, axis=1)
        rho[u] = np.roll(rho[u], -1, axis=1)
        S[u, -1], Y[u, -1], rho[u, -1] = s[keep], y[keep], 1.0 / sy[keep]
        m = idx[moved]
        X[m], f[m], g[m] = x_new[moved], f_new[moved], g_new[moved]
        nit[m] += 1
        scale = np.maximum(np.maximum(np.abs(fi[moved]), np.abs(f_new[moved])), ftol_floor)
        converged = (fi[moved] - f_new[moved] <= ftol * scale) | (np.abs(g_new[moved]).max(axis=1) <= gtol)
        active[m[converged]] = False
        active[idx[pending]] = False
        stalled[idx[pending]] = True
    return BatchResult(X, f, nit, stalled)
