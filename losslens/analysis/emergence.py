"""Emergence (the paper's claims 2 and 3): is a task at chance above a loss threshold eta and above
chance below it, or does it improve smoothly, or never leave chance?

Per (task, metric), on performance normalised so that chance = 0 and perfect = 1:

1. Noise. Each point's sampling variance comes from its items (binomial p(1-p)/n) or its stderr; a
   between-checkpoint variance tau^2 is estimated from the residuals of a monotone (isotonic) fit.
   Weights w = 1 / (sampling variance + tau^2) make every fit below a Gaussian likelihood with the same
   known variances, so BIC = weighted SSE + k log(n) compares them fairly.
2. Fits. Eq. 3 of Du et al. (at chance for L >= eta, any monotone rise below) in two forms: the elbow
   y = c0 + s u^p and the saturating elbow y = c0 + s u^p / (u^p + w^p), u = max(0, eta - L), s >= 0;
   the nonlinear (eta, p[, w]) by grid search, the inner fit linear in c0, s. The one with the lower
   BIC is "the threshold fit". Smooth alternatives: flat, linear, exponential y = a + b exp(c (ref - L))
   and sigmoid y = a + b / (1 + exp(k (L - m))), likewise profiled.
3. Tests at the fitted eta: the points above it are not above chance (one-sided z-test, p > alpha), are
   known to within `delta` of chance (one-sided 95% upper bound), and show no trend; the points below
   it are significantly above chance, and the lowest third of them known to be more than `delta`
   above it (present, the mirror of absent: a rise of a point is not an ability). A smooth alternative is a *rival* of the threshold only if it
   puts the task more than `delta` above chance somewhere above eta: a sigmoid that itself sits at
   chance there tells the same story (absent at higher loss, present at lower) with a rounder onset.
4. Bootstrap: resample runs (whole runs, so checkpoints stay together; with few runs, the checkpoints
   within each run) and items (binomial redraws using n; Gaussian with stderr), refit the threshold
   fit's form with the same estimator as the data (grid plus sub-grid refinement), and take the
   percentile interval of eta. All replicates
   are fitted at once with a few matrix products.

Verdicts:
- `emergent`: a threshold shape (a flat stretch above eta, a rise below, Eq. 3 beating every rival by
  `bic_margin` and no smooth fit beating Eq. 3 by more than `max_bic_deficit`), the tests in 3 pass, the interval of eta stays below the highest loss, and with
  several runs, both sides of eta hold points of at least two runs (else model identity, not loss,
  could explain the jump).
- `smooth`: rising as loss falls, and above chance at the highest losses: by more than `delta`
  (then decided first: a task present at the highest losses is not emergent, however well a
  threshold fits), or significantly when the data show no threshold shape.
- `not_emerged`: no rise, and the lowest-loss models are known to be within `delta` of chance.
- `inconclusive`: anything else (too few points, too noisy, a plateau that a rival explains as well
  as a threshold, too small a rise, no chance level). The reasons are in `EmergenceResult.reasons`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
from scipy import optimize, stats

from losslens.analysis import stats as st
from losslens.analysis.table import is_binomial, is_proportion

VERDICTS = ("emergent", "smooth", "not_emerged", "inconclusive")
THRESHOLD_FITS = ("elbow", "elbow_saturating")  # the two forms of Eq. 3; the rest are smooth


@dataclasses.dataclass(frozen=True)
class EmergenceConfig:
    alpha: float = 0.01        # significance level of every one-sided test
    delta: float = 0.05        # "at chance" means within delta of chance (normalised units), at 95%
    bic_margin: float = 2.0    # Eq. 3 must beat every rival (see `rivals`) by this much BIC ("positive")
    max_bic_deficit: float = 10.0  # ... and no smooth fit may beat it by more ("very strong"): else Eq. 3
                                   # describes the rise too poorly for its eta to be trusted
    min_points: int = 6        # distinct losses needed for any verdict
    min_side: int = 3          # distinct losses needed on each side of eta
    bootstrap: int = 1000      # resamples for the interval of eta (0: no interval)
    min_runs_resampled: int = 8  # from this many runs on, the bootstrap resamples whole runs
    level: float = 0.95        # confidence level of the eta interval
    n_eta: int = 160           # eta grid points across [min loss, max loss + extend * range]
    extend: float = 0.5        # how far beyond the highest loss eta may go (a rise with no plateau)
    n_power: int = 9           # grid of the rise's power p, log-uniform over [min_power, max_power]
    min_power: float = 0.25
    max_power: float = 4.0
    max_sigmoid_steepness: float = 30.0  # k * range: steeper "sigmoids" are steps, i.e. thresholds
    saturation: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8)  # saturating elbow's w, x loss range


# ---------------------------------------------------------------- data preparation


@dataclasses.dataclass
class Prepared:
    """One (task, metric) as arrays, normalised so chance = 0 and perfect = 1."""

    loss: np.ndarray
    y: np.ndarray          # normalised performance
    raw: np.ndarray        # the metric as given
    var: np.ndarray        # sampling variance of y (0 where unknown)
    n: np.ndarray | None   # items per point (binomial metrics only)
    codes: np.ndarray      # run index of every point
    n_runs: int
    chance: float | None
    perfect: float
    higher_is_better: bool
    binomial: bool
    notes: list[str]

    @property
    def scale(self) -> float:
        return self.perfect - (self.chance or 0.0)


def _median(sub: pd.DataFrame, col: str) -> float | None:
    if col not in sub.columns:
        return None
    v = pd.to_numeric(sub[col], errors="coerce").dropna()
    return float(v.median()) if len(v) else None


def prepare(sub: pd.DataFrame) -> Prepared:
    """Turn one (task, metric) slice of a tidy table into normalised arrays."""
    metric = str(sub["metric"].iloc[0])
    hib = bool(sub["higher_is_better"].iloc[0]) if "higher_is_better" in sub.columns else True
    notes = []
    chance = _median(sub, "chance")
    if chance is None and "chance" not in sub.columns and hib and is_proportion(metric):
        chance = 0.0
        notes.append("no chance column: chance assumed 0")
    elif chance is None:
        notes.append("chance level unknown for this task")
    perfect = _median(sub, "perfect")
    if perfect is None:
        perfect = 1.0 if hib else 0.0
    raw = sub["value"].to_numpy(float)
    scale = perfect - (chance if chance is not None else 0.0)
    if scale == 0:
        scale = 1.0
        notes.append("perfect equals chance: not normalised")
    y = (raw - (chance or 0.0)) / scale
    binomial = is_binomial(metric) and "n" in sub.columns and sub["n"].notna().all()
    n = sub["n"].to_numpy(float) if binomial else None
    loss = sub["loss"].to_numpy(float)
    if binomial:
        # p(1-p)/n at the smoothed (isotonic) proportion: the observed one would give points that
        # happen to fall low a smaller variance and so bias every weighted mean downwards
        smooth = st.isotonic_predict(st.isotonic_fit(-loss, (raw - (chance or 0.0)) / scale), -loss)
        p = np.clip((chance or 0.0) + scale * smooth, 0.5 / n, 1 - 0.5 / n)
        var = p * (1 - p) / n / scale**2
    elif "stderr" in sub.columns and sub["stderr"].notna().all():
        var = (sub["stderr"].to_numpy(float) / scale) ** 2
    else:
        var = np.zeros_like(y)
    codes, n_runs = st.group_codes(sub["model"])
    return Prepared(loss, y, raw, var, n, codes, n_runs, chance, perfect, hib, binomial, notes)


def extra_variance(loss: np.ndarray, y: np.ndarray, var: np.ndarray) -> float:
    """Between-checkpoint variance tau^2 beyond sampling noise, from a monotone fit's residuals."""
    knots = st.isotonic_fit(-loss, y)
    resid = y - st.isotonic_predict(knots, -loss)
    df = len(np.unique(knots[1]))
    dof = max(len(y) - df, 1)
    tau2 = max(0.0, float((resid**2).sum() / dof - var.mean()))
    floor = 1e-8 * max(float(np.var(y)), 1e-12)
    return max(tau2, floor)


# ---------------------------------------------------------------- fits


def _lin2(h: np.ndarray, y: np.ndarray, w: np.ndarray, *, nonneg: bool = False):
    """Weighted fit of y = a + b * h_g for every row g of h at once: (a, b, sse), each (G,)."""
    sw, sy, syy = w.sum(), (w * y).sum(), (w * y * y).sum()
    sh, shh, shy = h @ w, (h * h) @ w, h @ (w * y)
    det = sw * shh - sh * sh
    ok = det > 1e-12 * sw * np.maximum(shh, 1e-300)
    b = np.where(ok, (sw * shy - sh * sy) / np.where(ok, det, 1.0), 0.0)
    if nonneg:
        b = np.maximum(b, 0.0)
    a = (sy - b * sh) / sw
    sse = syy - 2 * a * sy - 2 * b * shy + a * a * sw + 2 * a * b * sh + b * b * shh
    return a, b, np.maximum(sse, 0.0)


def elbow_basis(loss: np.ndarray, eta, p, w=np.inf) -> np.ndarray:
    """The rise of Eq. 3 for each (eta, p, w): u^p (w = inf) or u^p / (u^p + w^p), u = max(0, eta - L);
    shape (len(eta), len(loss))."""
    eta, p, w = (np.atleast_1d(np.asarray(x, float))[:, None] for x in (eta, p, w))
    up = np.maximum(eta - loss[None, :], 0.0) ** p
    if np.isinf(w).all():
        return up
    with np.errstate(invalid="ignore"):  # where w = inf the plain power is used below
        sat = up / (up + w**p)
    return np.where(np.isinf(w), up, sat)


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))  # overflow-free logistic


@dataclasses.dataclass
class Fit:
    name: str
    k: int                 # number of parameters
    sse: float             # weighted residual sum of squares (= -2 log-likelihood + const)
    bic: float
    params: dict

    def predict(self, loss) -> np.ndarray:
        L = np.asarray(loss, float)
        q = self.params
        if self.name == "flat":
            return np.full_like(L, q["c"])
        if self.name == "linear":
            return q["a"] + q["b"] * L
        if self.name == "exponential":
            return q["a"] + q["b"] * np.exp(q["c"] * (q["ref"] - L))
        if self.name == "sigmoid":
            return q["a"] + q["b"] * _sigmoid(q["k"] * (q["m"] - L))
        if self.name in THRESHOLD_FITS:
            return q["c0"] + q["s"] * elbow_basis(L, q["eta"], q["p"], q.get("w", np.inf))[0]
        raise ValueError(self.name)

    def to_dict(self) -> dict:
        return {"k": self.k, "bic": self.bic, "sse": self.sse, "params": dict(self.params)}


def _make(name, k, sse, n, params) -> Fit:
    return Fit(name, k, float(sse), float(sse + k * math.log(n)), {k_: float(v) for k_, v in params.items()})


def _profile(basis, grid: np.ndarray, y, w, *, bounds):
    """Minimise over nonlinear parameters theta (grid, then Nelder-Mead) with the linear part exact."""
    a, b, sse = _lin2(basis(grid), y, w)
    best = int(np.argmin(sse))
    theta0 = grid[best]

    def objective(theta):
        return float(_lin2(basis(np.clip(theta, *bounds)[None, :]), y, w)[2][0])

    res = optimize.minimize(objective, theta0, method="Nelder-Mead",
                            options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 400})
    theta = np.clip(res.x, *bounds)
    if objective(theta) > sse[best]:
        theta = theta0
    a, b, sse = _lin2(basis(theta[None, :]), y, w)
    return theta, float(a[0]), float(b[0]), float(sse[0])


def fit_models(loss, y, w, cfg: EmergenceConfig) -> dict[str, Fit]:
    """Fit Eq. 3 (both forms) and the smooth alternatives; return them by name."""
    n = len(y)
    lo, hi = float(loss.min()), float(loss.max())
    rng_ = hi - lo
    fits = {}
    c = (w * y).sum() / w.sum()
    fits["flat"] = _make("flat", 1, (w * (y - c) ** 2).sum(), n, {"c": c})
    a, b, sse = _lin2(loss[None, :], y, w)
    fits["linear"] = _make("linear", 2, sse[0], n, {"a": a[0], "b": b[0]})

    ref = lo  # exp(c (ref - L)) with c > 0 rises towards low loss; c < 0 saturates there
    cs = np.concatenate([-np.geomspace(10, 0.05, 20), np.geomspace(0.05, 10, 20)]) / rng_
    theta, a, b, sse = _profile(lambda t: np.exp(t[:, :1] * (ref - loss[None, :])), cs[:, None], y, w,
                                bounds=(np.array([-12 / rng_]), np.array([12 / rng_])))
    fits["exponential"] = _make("exponential", 3, sse, n, {"a": a, "b": b, "c": theta[0], "ref": ref})

    kmax = cfg.max_sigmoid_steepness / rng_
    ks, ms = np.geomspace(0.5 / rng_, kmax, 14), np.linspace(lo - 0.25 * rng_, hi + 0.25 * rng_, 40)
    grid = np.array([(k, m) for k in ks for m in ms])
    theta, a, b, sse = _profile(lambda t: _sigmoid(t[:, :1] * (t[:, 1:2] - loss[None, :])), grid, y, w,
                                bounds=(np.array([0.1 / rng_, lo - rng_]), np.array([kmax, hi + rng_])))
    fits["sigmoid"] = _make("sigmoid", 4, sse, n, {"a": a, "b": b, "k": theta[0], "m": theta[1]})

    for name, saturating, k in (("elbow", False, 4), ("elbow_saturating", True, 5)):
        eta, p, ws = elbow_estimates(loss, y[None, :], w[None, :], cfg, saturating=saturating)
        a, b, sse = _lin2(elbow_basis(loss, eta, p, ws), y, w, nonneg=True)
        params = {"c0": a[0], "s": b[0], "eta": eta[0], "p": p[0]} | ({"w": ws[0]} if saturating else {})
        fits[name] = _make(name, k, sse[0], n, params)
    return fits


def elbow_grid(loss, cfg: EmergenceConfig, saturating: bool = False):
    """Candidate thresholds (just above the lowest loss up to `extend` ranges beyond the highest),
    log-powers (uniform, so the grid is regular for the sub-grid interpolation) and saturation widths
    (inf alone for the plain elbow)."""
    lo, hi = float(loss.min()), float(loss.max())
    r = hi - lo
    etas = np.linspace(lo + 0.01 * r, hi + cfg.extend * r, cfg.n_eta)
    ws = r * np.asarray(cfg.saturation, float) if saturating else np.array([np.inf])
    return etas, np.linspace(np.log(cfg.min_power), np.log(cfg.max_power), cfg.n_power), ws


# Least-squares fit of a quadratic a + b u + c v + d u^2 + e v^2 + g uv to a 3 x 3 patch (u, v in -1, 0, 1).
_U, _V = (g.ravel() for g in np.meshgrid([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], indexing="ij"))
_QUAD = np.linalg.pinv(np.column_stack([np.ones(9), _U, _V, _U**2, _V**2, _U * _V]))  # (6, 9)


def elbow_design(loss, cfg: EmergenceConfig, saturating: bool = False):
    """The grid (etas, log-powers, widths) and the basis of every grid point: (G, n), G in
    (w, eta, p) order, so each width's rows are one block."""
    etas, qs, ws = elbow_grid(loss, cfg, saturating)
    S, E, Q = np.meshgrid(ws, etas, qs, indexing="ij")
    return etas, qs, ws, elbow_basis(loss, E.ravel(), np.exp(Q.ravel()), S.ravel())


def elbow_estimates(loss, Y, W, cfg: EmergenceConfig, design=None, *, saturating: bool = False):
    """Eq. 3's (eta, p, w) for each row of Y (values) and W (weights), all rows at once; w is inf for
    the plain elbow.

    y = c0 + s h(L; eta, p, w) is linear in (c0, s) given the rest, so every grid point is scored by a
    few matrix products; the best grid point is then refined in (eta, p) by the peak of a quadratic
    through its 3 x 3 neighbourhood at the best w (eta and p trade off strongly, so a coarse p grid
    alone makes eta jump). The full-data fit and every bootstrap replicate use this same estimator.
    `design` may pass a precomputed `elbow_design(loss, cfg, saturating)`.
    """
    etas, qs, ws, H = design if design is not None else elbow_design(loss, cfg, saturating)
    WY = W * Y
    sw, sy = W.sum(1)[:, None], WY.sum(1)[:, None]
    block = len(etas) * len(qs)
    eta = q = score = k = None
    for kk in range(len(ws)):  # one width at a time: (B, block) arrays, not (B, block x widths)
        eta_k, q_k, score_k = _refined_peak(W, WY, sw, sy, H[kk * block:(kk + 1) * block], etas, qs)
        if score is None:
            eta, q, score, k = eta_k, q_k, score_k, np.zeros(len(Y), dtype=int)
        else:
            better = score_k > score
            eta, q, score = np.where(better, eta_k, eta), np.where(better, q_k, q), np.maximum(score, score_k)
            k = np.where(better, kk, k)
    return eta, np.exp(q), ws[k]


def _refined_peak(W, WY, sw, sy, H, etas, qs):
    """For one width: the best (eta, log p) of each row, refined, and that grid point's score."""
    sh, shh, shy = W @ H.T, W @ (H * H).T, WY @ H.T           # (B, G) each: the whole refit is here
    # With the intercept profiled out, SSE = const - max(Shy_c, 0)^2 / Shh_c (centred sums, slope s >= 0),
    # so the best grid point maximises the second term; in place, as these arrays are large.
    mean_h = np.divide(sh, sw, out=sh)
    tmp = np.multiply(mean_h, mean_h)
    tmp *= sw
    shh -= tmp                                                 # Shh_c = Shh - Sh^2 / Sw
    np.multiply(mean_h, sy, out=tmp)
    shy -= tmp                                                 # Shy_c = Shy - Sh Sy / Sw
    np.maximum(shy, 0.0, out=shy)
    shy *= shy
    shh += 1e-300
    score = np.divide(shy, shh, out=shy).reshape(len(W), len(etas), len(qs))
    best = score.reshape(len(W), -1).argmax(1)
    i, j = np.unravel_index(best, (len(etas), len(qs)))
    ic, jc = np.clip(i, 1, len(etas) - 2), np.clip(j, 1, len(qs) - 2)
    rows = np.arange(len(W))[:, None]
    patch = score[rows, ic[:, None] + _U.astype(int)[None, :], jc[:, None] + _V.astype(int)[None, :]]
    _, b, c, d, e, g = (_QUAD @ patch.T)
    det = 4 * d * e - g * g
    concave = (d < 0) & (e < 0) & (det > 0)                  # a peak, not a saddle or a valley
    safe = np.where(concave, det, 1.0)
    u = np.where(concave, (g * c - 2 * e * b) / safe, i - ic)
    v = np.where(concave, (g * b - 2 * d * c) / safe, j - jc)
    far = (np.abs(u) > 1) | (np.abs(v) > 1)                   # the peak is outside the patch: keep the grid point
    u, v = np.where(far, i - ic, u), np.where(far, j - jc, v)
    eta = np.interp(ic + u, np.arange(len(etas)), etas)
    q = np.interp(jc + v, np.arange(len(qs)), qs)
    return eta, q, score[np.arange(len(W)), i, j]


def bootstrap_eta(prep: Prepared, w: np.ndarray, cfg: EmergenceConfig, rng: np.random.Generator,
                  *, saturating: bool = False) -> np.ndarray:
    """eta refitted in `cfg.bootstrap` resamples of runs and items: shape (B,). `saturating` picks the
    form of Eq. 3 refitted (the one the data chose).

    Runs are resampled whole (multinomial counts become row weights), so checkpoints of one run stay
    together; with fewer than `cfg.min_runs_resampled` runs (a bootstrap over 4 runs has 35 distinct
    resamples and drops the one plateau-carrying run in a third of them) every run is kept and its
    checkpoints are resampled instead. Items are redrawn from Binomial(n, observed value) for count
    metrics, or from N(value, stderr^2) where a stderr is given.
    """
    B = cfg.bootstrap
    y = prep.y
    if prep.n_runs >= cfg.min_runs_resampled:
        counts = st.bootstrap_group_counts(prep.n_runs, B, rng)[:, prep.codes]
    else:  # too few runs to stand for run-to-run variation: keep every run, resample its checkpoints
        counts = np.empty((B, len(y)))
        for g in range(prep.n_runs):
            rows = np.flatnonzero(prep.codes == g)
            counts[:, rows] = rng.multinomial(len(rows), np.full(len(rows), 1 / len(rows)), size=B)
    if prep.binomial:
        k = rng.binomial(prep.n.astype(np.int64)[None, :], np.clip(prep.raw, 0, 1)[None, :], size=(B, len(y)))
        Y = (k / prep.n[None, :] - (prep.chance or 0.0)) / prep.scale
    elif np.any(prep.var > 0):
        Y = y[None, :] + rng.standard_normal((B, len(y))) * np.sqrt(prep.var)[None, :]
    else:
        Y = np.broadcast_to(y, (B, len(y)))
    return elbow_estimates(prep.loss, Y, counts * w[None, :], cfg, saturating=saturating)[0]


# ---------------------------------------------------------------- result


@dataclasses.dataclass
class Region:
    """The points on one side of eta: how many, their weighted mean (normalised) and tests."""

    n_points: int
    n_losses: int
    n_runs: int
    mean: float | None
    se: float | None
    p_above_chance: float | None   # one-sided: mean > 0
    upper: float | None            # one-sided 95% upper bound of the mean
    slope_p: float | None = None   # one-sided: performance rises as loss falls

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def near_chance(self, delta: float) -> bool:
        """Known to be within delta of chance: the upper bound is below delta, and the interval is narrow
        enough (half-width < delta) that an ability of size delta would have shown; a lucky low mean
        from a handful of items does not count."""
        return self.upper is not None and self.upper < delta and self.upper - self.mean < delta

    @property
    def lower(self) -> float | None:
        """The one-sided lower bound of the mean, the mirror of `upper`."""
        return None if self.upper is None else 2 * self.mean - self.upper

    def clearly_above(self, delta: float) -> bool:
        """Known to be more than delta above chance: the lower bound exceeds delta."""
        return self.lower is not None and self.lower > delta


def region(loss, y, w, mask, codes, level: float = 0.95) -> Region:
    m = np.asarray(mask, bool)
    if not m.any():
        return Region(0, 0, 0, None, None, None, None, None)
    mean, se = st.weighted_mean_se(y[m], w[m])
    slope_p = None
    if len(np.unique(loss[m])) >= 3:
        slope, sse = st.wls_slope(loss[m], y[m], w[m])
        slope_p = float(stats.norm.cdf(slope / sse)) if np.isfinite(sse) else None
    return Region(int(m.sum()), int(len(np.unique(loss[m]))), int(len(np.unique(codes[m]))), mean, se,
                  st.z_above(mean, se),
                  mean + stats.norm.ppf(level) * se, slope_p)


@dataclasses.dataclass
class EmergenceResult:
    task: str
    metric: str
    verdict: str
    reasons: list[str]
    eta: float | None                 # the threshold fit's eta (loss units), when it has a rise
    eta_ci: tuple[float, float] | None
    n_points: int
    n_losses: int
    n_runs: int
    chance: float | None
    perfect: float
    higher_is_better: bool
    loss_range: tuple[float, float]
    tau2: float
    trend_p: float | None             # one-sided: performance rises as loss falls (all points)
    delta_bic: float | None           # BIC(best smooth) - BIC(threshold fit): > 0 favours the threshold
    best_smooth: str | None
    threshold_fit: str | None         # the form of Eq. 3 the data chose: "elbow" or "elbow_saturating"
    rival: str | None                 # the best smooth fit that puts the task above chance above eta
    rival_delta_bic: float | None     # BIC(rival) - BIC(threshold fit); None when no smooth fit is a rival
    plateau: Region | None            # points with loss >= eta
    below: Region | None              # points with loss < eta
    peak: Region | None               # the lowest third of the distinct losses below eta (presence)
    high: Region | None               # the highest-loss third of distinct losses
    low: Region | None                # the lowest-loss third
    fits: dict[str, Fit]
    notes: list[str]

    def curve(self, loss) -> np.ndarray | None:
        """The threshold fit (Eq. 3) at `loss`, mapped back to the metric's units (for figures)."""
        if self.threshold_fit is None:
            return None
        y = self.fits[self.threshold_fit].predict(loss)
        return (self.chance or 0.0) + y * (self.perfect - (self.chance or 0.0))

    def to_dict(self) -> dict:
        d = {
            "verdict": self.verdict, "reasons": list(self.reasons), "eta": self.eta,
            "eta_ci": list(self.eta_ci) if self.eta_ci else None, "n_points": self.n_points,
            "n_losses": self.n_losses, "n_runs": self.n_runs, "chance": self.chance,
            "perfect": self.perfect, "higher_is_better": self.higher_is_better,
            "loss_range": list(self.loss_range), "tau2": self.tau2, "trend_p": self.trend_p,
            "delta_bic": self.delta_bic, "best_smooth": self.best_smooth,
            "threshold_fit": self.threshold_fit, "rival": self.rival, "rival_delta_bic": self.rival_delta_bic,
            "fits": {k: f.to_dict() for k, f in self.fits.items()}, "notes": list(self.notes),
        }
        for name in ("plateau", "below", "peak", "high", "low"):
            r = getattr(self, name)
            d[name] = r.to_dict() if r else None
        return d

    def summary(self) -> str:
        def f(x, fmt=".3g"):
            return "-" if x is None else format(x, fmt)

        lines = [f"{self.task} / {self.metric}: {self.verdict.upper()}"]
        if self.eta is not None:
            ci = f" [{f(self.eta_ci[0], '.4g')}, {f(self.eta_ci[1], '.4g')}]" if self.eta_ci else ""
            name = "eta" if self.verdict == "emergent" else "threshold fit's eta (no threshold claimed)"
            lines.append(f"  {name} = {self.eta:.4g}{ci}   loss range "
                         f"{self.loss_range[0]:.4g}-{self.loss_range[1]:.4g}")
        lines.append(f"  {self.n_points} points, {self.n_losses} distinct losses, {self.n_runs} runs; "
                     f"chance {f(self.chance)}, tau^2 {self.tau2:.2g}; trend p {f(self.trend_p, '.2g')}")
        if self.fits:
            bics = ", ".join(f"{k} {v.bic:.1f}" for k, v in self.fits.items())
            lines.append(f"  BIC: {bics}; threshold fit {self.threshold_fit}; best smooth {self.best_smooth}, "
                         f"delta {f(self.delta_bic, '.1f')}; rival {self.rival or 'none'}, "
                         f"delta {f(self.rival_delta_bic, '.1f')}")
        for name in ("plateau", "below", "peak", "high", "low"):
            r = getattr(self, name)
            if r and r.n_points:
                lines.append(f"  {name:7s}: {r.n_points} pts, mean {f(r.mean)} (se {f(r.se, '.2g')}), "
                             f"p(above chance) {f(r.p_above_chance, '.2g')}, trend p {f(r.slope_p, '.2g')}")
        lines += [f"  - {r}" for r in self.reasons + self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------- the analysis


def rivals(fits: dict[str, Fit], loss: np.ndarray, eta: float, cfg: EmergenceConfig) -> dict[str, Fit]:
    """The smooth fits that disagree with a threshold at eta: each puts the task more than `delta` above
    chance somewhere at or above eta. A smooth curve that also sits at chance there (a sigmoid with its
    foot on the chance line, say) says what Eq. 3 says, absent at higher loss and present at lower,
    only with a rounder onset, so it is no evidence against the threshold."""
    above = loss[loss >= eta]
    out = {}
    for name, fit in fits.items():
        if name in THRESHOLD_FITS or name == "flat":
            continue
        if not len(above) or float(np.max(fit.predict(above))) >= cfg.delta:
            out[name] = fit
    return out


def kink_failures(eta, plateau: Region | None, below: Region | None, rival_delta_bic: float | None,
                  rival: str | None, cfg: EmergenceConfig, n_runs: int = 1, delta_bic: float = 0.0,
                  best_smooth: str | None = None) -> list[str]:
    """Why the data show no threshold shape (a flat stretch, then a rise that Eq. 3 describes and no
    rival smooth curve explains as well); empty when they do."""
    if eta is None:
        return ["the threshold fit has no rise"]
    fails = []
    if plateau.n_losses < cfg.min_side:
        fails.append(f"only {plateau.n_losses} distinct losses above eta (need {cfg.min_side})")
    elif plateau.slope_p is not None and plateau.slope_p < cfg.alpha:
        fails.append(f"above eta performance still rises as loss falls (p {plateau.slope_p:.2g})")
    if below.n_losses < cfg.min_side:
        fails.append(f"only {below.n_losses} distinct losses below eta (need {cfg.min_side})")
    for side, r in (("above", plateau), ("below", below)):
        if r.n_points and r.n_runs < min(2, n_runs):  # one model alone on a side: size could explain the jump
            fails.append(f"every point {side} eta comes from one run of {n_runs}")
    if rival is not None and rival_delta_bic < cfg.bic_margin:
        fails.append(f"a smooth {rival}, above chance above eta, fits about as well as the threshold "
                     f"(delta BIC {rival_delta_bic:.1f} < {cfg.bic_margin})")
    elif delta_bic < -cfg.max_bic_deficit:
        fails.append(f"a smooth {best_smooth} fits far better than Eq. 3 (by {-delta_bic:.1f} BIC > "
                     f"{cfg.max_bic_deficit}): the threshold fit describes the rise too poorly to place eta")
    return fails


def chance_failures(plateau: Region, below: Region, peak: Region, cfg: EmergenceConfig) -> list[str]:
    """Why the plateau is not at chance, or the ability not present below eta (empty when both hold):
    absent means known to be within delta of chance, so present means known to be more than delta
    above it, at the lowest losses (`peak`, the lowest third of the distinct losses below eta)."""
    fails = []
    if plateau.p_above_chance < cfg.alpha:
        fails.append(f"above eta the task is above chance (mean {plateau.mean:.3g}, p {plateau.p_above_chance:.2g})")
    elif not plateau.near_chance(cfg.delta):
        fails.append(f"above eta the level is not known to be within {cfg.delta} of chance "
                     f"(mean {plateau.mean:.3g}, upper bound {plateau.upper:.3g})")
    if below.p_above_chance >= cfg.alpha:
        fails.append(f"below eta the task is not significantly above chance (p {below.p_above_chance:.2g})")
    elif not peak.clearly_above(cfg.delta):
        fails.append(f"at the lowest losses the task is not known to be more than {cfg.delta} above chance "
                     f"(mean {peak.mean:.3g}, lower bound {peak.lower:.3g}): too small a rise")
    return fails


def analyze_emergence(sub: pd.DataFrame, cfg: EmergenceConfig | None = None, *, seed: int = 0) -> EmergenceResult:
    """Classify one (task, metric) slice of a tidy table; see the module docstring for the method."""
    cfg = cfg or EmergenceConfig()
    rng = np.random.default_rng(seed)
    prep = prepare(sub)
    loss, y = prep.loss, prep.y
    task, metric = str(sub["task"].iloc[0]), str(sub["metric"].iloc[0])
    distinct = np.unique(loss)
    base = dict(task=task, metric=metric, n_points=len(y), n_losses=len(distinct), n_runs=prep.n_runs,
                chance=prep.chance, perfect=prep.perfect, higher_is_better=prep.higher_is_better,
                loss_range=(float(loss.min()), float(loss.max())), notes=prep.notes)
    if len(distinct) < cfg.min_points:
        return EmergenceResult(verdict="inconclusive", reasons=[f"only {len(distinct)} distinct losses "
                               f"(need {cfg.min_points})"], eta=None, eta_ci=None, tau2=float("nan"),
                               trend_p=None, delta_bic=None, best_smooth=None, threshold_fit=None, rival=None,
                               rival_delta_bic=None, plateau=None, below=None, peak=None,
                               high=None, low=None, fits={}, **base)

    tau2 = extra_variance(loss, y, prep.var)
    w = 1.0 / (prep.var + tau2)
    fits = fit_models(loss, y, w, cfg)
    threshold_fit = min(THRESHOLD_FITS, key=lambda k: fits[k].bic)
    threshold = fits[threshold_fit]
    smooth = {k: v for k, v in fits.items() if k not in THRESHOLD_FITS + ("flat",)}
    best_smooth = min(smooth, key=lambda k: smooth[k].bic)
    delta_bic = smooth[best_smooth].bic - threshold.bic

    slope, se = st.wls_slope(loss, y, w)
    trend_p = float(stats.norm.cdf(slope / se))
    thirds = np.quantile(distinct, [1 / 3, 2 / 3])
    high = region(loss, y, w, loss >= thirds[1], prep.codes, cfg.level)
    low = region(loss, y, w, loss <= thirds[0], prep.codes, cfg.level)

    eta = threshold.params["eta"] if threshold.params["s"] > 0 else None
    plateau = below = peak = rival = rival_delta_bic = None
    if eta is not None:
        plateau = region(loss, y, w, loss >= eta, prep.codes, cfg.level)
        below = region(loss, y, w, loss < eta, prep.codes, cfg.level)
        if below.n_points:
            peak = region(loss, y, w, loss <= np.quantile(distinct[distinct < eta], 1 / 3), prep.codes, cfg.level)
        rival_fits = rivals(fits, loss, eta, cfg)
        if rival_fits:
            rival = min(rival_fits, key=lambda k: rival_fits[k].bic)
            rival_delta_bic = float(rival_fits[rival].bic - threshold.bic)
    saturating = threshold_fit == "elbow_saturating"

    reasons: list[str] = []
    eta_ci, bootstrapped = None, False
    rising = trend_p < cfg.alpha
    kink = kink_failures(eta, plateau, below, rival_delta_bic, rival, cfg, prep.n_runs, delta_bic, best_smooth)
    # "Above chance at the highest losses": above the threshold fit's eta where it has a stretch there, so a
    # noisy plateau at chance is never called smooth; else the highest-loss third of distinct losses.
    if eta is not None and plateau.n_losses >= cfg.min_side:
        top, top_name = plateau, "above eta"
    else:
        top, top_name = high, "highest-loss third"

    if prep.chance is None:
        verdict = "smooth" if rising else "inconclusive"
        reasons.append("no chance level for this metric: emergence cannot be tested")
    elif not rising and low.p_above_chance >= cfg.alpha:
        if low.near_chance(cfg.delta):
            verdict = "not_emerged"
            reasons.append(f"no rise (p {trend_p:.2g}); lowest-loss models within {cfg.delta} of chance "
                           f"(upper bound {low.upper:.3g})")
        else:
            verdict = "inconclusive"
            reasons.append(f"no detectable rise, but too noisy to say the lowest-loss models are at chance "
                           f"(mean {low.mean:.3g}, upper bound {low.upper:.3g}; delta {cfg.delta})")
    elif rising and top.p_above_chance < cfg.alpha and (kink or top.clearly_above(cfg.delta)):
        # present at the highest losses: clearly (more than delta), or significantly where no threshold
        # shape competes; a small offset on an otherwise clean threshold goes to the tests below
        verdict = "smooth"
        reasons.append(f"rising as loss falls (p {trend_p:.2g}) and above chance at the highest losses "
                       f"({top_name}, p {top.p_above_chance:.2g})")
        reasons += [f"no threshold: {m}" for m in kink]
    elif not kink:
        fails = chance_failures(plateau, below, peak, cfg)
        if not fails and cfg.bootstrap > 0:
            eta_ci = st.percentile_ci(bootstrap_eta(prep, w, cfg, rng, saturating=saturating), cfg.level)
            bootstrapped = True
            if eta_ci is None:
                fails.append("no bootstrap replicate gave a finite eta: its interval is unknown")
            elif eta_ci[1] >= loss.max():
                fails.append(f"the eta interval reaches the highest loss ({eta_ci[1]:.4g}): the plateau is not certain")
        if fails:
            verdict = "inconclusive"
            reasons.append("a threshold shape fits, but:")
            reasons += fails
        else:
            verdict = "emergent"
            versus = (f"the threshold beats a {rival} by {rival_delta_bic:.1f} BIC" if rival else
                      f"no smooth fit puts the task more than {cfg.delta} above chance above eta (the best, "
                      f"a {best_smooth}, fits {abs(delta_bic):.1f} BIC {'worse' if delta_bic > 0 else 'better'} "
                      f"than the threshold, telling the same story)")
            reasons.append(f"at chance above eta (p {plateau.p_above_chance:.2g}, upper bound {plateau.upper:.3g}), "
                           f"above chance below it (p {below.p_above_chance:.2g}); " + versus)
    else:
        verdict = "inconclusive"
        if not rising:
            reasons.append(f"above chance but no rise as loss falls (p {trend_p:.2g})")
        else:
            reasons.append(f"rising, but at the highest losses ({top_name}) not above chance "
                           f"(p {top.p_above_chance:.2g}), and no threshold stands out:")
        reasons += kink
    if not bootstrapped and verdict == "inconclusive" and cfg.bootstrap > 0 and eta is not None:
        # still report how uncertain the threshold fit's eta is, as evidence
        eta_ci = st.percentile_ci(bootstrap_eta(prep, w, cfg, rng, saturating=saturating), cfg.level)
    return EmergenceResult(verdict=verdict, reasons=reasons, eta=eta, eta_ci=eta_ci, tau2=tau2, trend_p=trend_p,
                           delta_bic=float(delta_bic), best_smooth=best_smooth, threshold_fit=threshold_fit,
                           rival=rival, rival_delta_bic=rival_delta_bic, plateau=plateau, below=below, peak=peak,
                           high=high, low=low, fits=fits, **base)
