"""Emergence (the paper's claims 2 and 3): is a task at chance above a loss threshold eta and present
below it, in a way no smooth curve explains, or does it improve smoothly, or never leave chance?

Per (task, metric), on performance normalised so that chance = 0 and perfect = 1 (chance: the better
of the declared random-guess value and, where the table has one, the best constant answer `majority`):

1. Noise. Each point's sampling variance comes from its items (binomial p(1-p)/n) or its stderr; a
   between-checkpoint variance tau^2 is estimated from the residuals of a monotone (isotonic) fit.
   Weights w = 1 / (sampling variance + tau^2) make every fit a Gaussian likelihood with known
   variances: -2 log L = weighted SSE.
2. Fits. Eq. 3 of Du et al. (flat for L >= eta, a monotone rise below) in two forms, the elbow
   y = c0 + s u^p and the saturating elbow y = c0 + s (1 - exp(-(u / w)^p)), u = max(0, eta - L), s >= 0,
   and the smooth alternatives linear, exponential and sigmoid (no threshold), each with its linear part
   profiled exactly over a grid of its nonlinear parameters (Eq. 3's best point then polished by
   Nelder-Mead).
3. Evidence (`gather_evidence`, one `Evidence`):
   - the emergence test: the likelihood ratio T = SSE(best smooth) - SSE(best Eq. 3) on the grids,
     calibrated by a parametric bootstrap under the smooth null (the best smooth fit plus Gaussian noise
     of the known variances, refitted on the same grids, all replicates in a few matrix products):
     p = (1 + #{T* >= T}) / (B + 1). A smooth curve that sits near chance above eta but rises on a
     trend that the higher-loss points already show is the null, so it is not emergent (claim 3);
   - the equivalence pair at the fitted eta, margin `delta`: *absent* above eta (two one-sided tests:
     the mean is within +-delta of chance) and *present* below it (the lowest third of the distinct
     losses below eta is more than delta above chance); the same two tests on the highest- and
     lowest-loss thirds give `smooth` (present at the highest losses) and `not_emerged` (not present
     at the lowest);
   - the interval of eta by inverting the profile likelihood ratio: every eta whose profile SSE (both
     forms of Eq. 3 profiled out, its ends polished off the grids) lies within chi2_1(95%) x 1.3 =
     4.99, times the residual dispersion and the within-run design effect, of the best; no
     resampling, so it does not move with a seed.
4. Decision (`decide`, a pure function of the evidence): the first test that fails gives the verdict and
   one reason code (`REASONS`); `fdr_adjust` then controls the false-discovery rate of `emergent` across
   the tasks of one analysis (Benjamini-Hochberg q-values).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pandas as pd
from scipy import optimize, stats

from losslens.analysis import stats as st
from losslens.analysis.result import Result
from losslens.analysis.table import is_binomial, is_proportion
from losslens.fmt import num

VERDICTS = ("emergent", "smooth", "not_emerged", "inconclusive")
THRESHOLD_FITS = ("elbow", "elbow_saturating")  # the two forms of Eq. 3; the rest are smooth
SMOOTH_FITS = ("linear", "exponential", "sigmoid")

# Every reason code `decide` can give, with what it means and (inconclusive) what data would settle it.
REASONS = {
    "emergent": "absent above eta, present below it, and no smooth curve explains the data as well",
    "present_at_highest_loss": "smooth: rising and already more than delta above chance at the highest losses",
    "no_rise_at_chance": "not_emerged: the lowest-loss models are known to be within delta of chance",
    "too_few_losses": "too few distinct losses for any verdict: more checkpoints or sizes",
    "no_chance_level": "no chance level for this metric: give a chance (or majority) column",
    "no_rise": "no significant rise as loss falls, yet not known to be at chance: more items per point",
    "too_few_losses_above_eta": "too few distinct losses above eta to show a plateau: checkpoints at higher loss",
    "too_few_losses_below_eta": "too few distinct losses below eta to show the rise: checkpoints at lower loss",
    "one_run_on_a_side": "all points on one side of eta come from one run: model identity could explain the jump",
    "plateau_not_at_chance": ("above eta the task is measurably away from chance (above or below it by more "
                              "than delta)"),
    "plateau_too_noisy": ("above eta the level is not known to within delta of chance: more items or "
                          "checkpoints above eta"),
    "rise_too_small": "below eta the task is known to stay within delta of chance: not an ability",
    "presence_too_noisy": ("below eta the task is not known to be more than delta above chance: more items "
                           "or lower losses"),
    "smooth_alternative_fits": ("a smooth curve (no threshold) explains the data as well as Eq. 3: more "
                                "checkpoints near eta"),
    "test_not_run": "the emergence test needs bootstrap > 0",
    "not_significant_after_fdr": "passes every test, but not after false-discovery-rate control across the analysis",
}


@dataclasses.dataclass(frozen=True)
class EmergenceConfig:
    alpha: float = 0.01        # level of the emergence test (LRT vs the best smooth curve) and the trend test
    equivalence_alpha: float = 0.05  # level of each one-sided test of the equivalence pair (absent/present)
    delta: float = 0.05        # equivalence margin (normalised: a share of the way from chance to perfect)
    fdr: float | None = 0.05   # Benjamini-Hochberg level for emergent across one analysis (None: off)
    min_points: int = 6        # distinct losses needed for any verdict
    min_side: int = 3          # distinct losses needed on each side of eta
    bootstrap: int = 1000      # parametric-bootstrap replicates of the emergence test's null (0: no test)
    level: float = 0.95        # confidence level of the eta interval (profile likelihood)
    critical_factor: float = 1.3   # the interval's cut is chi2_1(level) x this (calibration suite, docs/analysis.md)
    n_eta: int = 160           # eta grid points across [min loss, max loss + extend * range]
    extend: float = 0.5        # how far beyond the highest loss eta may go (a rise with no plateau)
    n_power: int = 9           # grid of the rise's power p, log-uniform over [min_power, max_power]
    min_power: float = 0.25
    max_power: float = 4.0
    profile_powers: int = 25   # finer power grid (and 1.5x as many widths) for the profile likelihood of eta
    # the smooth sigmoid's k * range at most: steeper ones are steps (thresholds). 8 is the audit's "plain
    # logistic"; on the calibration suite 12 cost 11 points of power, 6 let 2% of hard negatives through
    max_sigmoid_steepness: float = 8.0
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
    chance: float | None   # the baseline used: the better of declared chance and majority
    perfect: float
    higher_is_better: bool
    binomial: bool
    notes: list[str]
    chance_source: str | None = None   # "declared", "majority" or "assumed"

    @property
    def scale(self) -> float:
        return self.perfect - (self.chance or 0.0)


def _median(sub: pd.DataFrame, col: str) -> float | None:
    if col not in sub.columns:
        return None
    v = pd.to_numeric(sub[col], errors="coerce").dropna()
    return float(v.median()) if len(v) else None


def baseline(sub: pd.DataFrame, metric: str, hib: bool) -> tuple[float | None, str | None, list[str]]:
    """The random-guess level: the better of the declared `chance` and the best constant answer
    `majority` (a BoolQ model that always says "yes" scores 62%, not 50%)."""
    notes = []
    declared, majority = _median(sub, "chance"), _median(sub, "majority")
    source = "declared" if declared is not None else None
    if declared is None and "chance" not in sub.columns and hib and is_proportion(metric):
        declared, source = 0.0, "assumed"
        notes.append("no chance column: chance assumed 0")
    if majority is not None and (declared is None or (majority > declared if hib else majority < declared)):
        if declared is not None:
            notes.append(f"baseline is the constant answer's {majority:.4g} (majority), not chance {declared:.4g}")
        return majority, "majority", notes
    if declared is None:
        notes.append("chance level unknown for this task")
    return declared, source, notes


def prepare(sub: pd.DataFrame) -> Prepared:
    """Turn one (task, metric) slice of a tidy table into normalised arrays."""
    metric = str(sub["metric"].iloc[0])
    hib = bool(sub["higher_is_better"].iloc[0]) if "higher_is_better" in sub.columns else True
    chance, source, notes = baseline(sub, metric, hib)
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
        # Agresti-Coull centre (k + 2) / (n + 4): near 0 or 1 (exact match on a plateau at chance 0) the
        # plain p(1-p)/n of a smoothed p ~ 0 is far too small for the few counts it rests on
        p = np.clip((chance or 0.0) + scale * smooth, 0.0, 1.0)
        p = (n * p + 2) / (n + 4)
        var = p * (1 - p) / (n + 4) / scale**2
    elif "stderr" in sub.columns and sub["stderr"].notna().all():
        var = (sub["stderr"].to_numpy(float) / scale) ** 2
    else:
        var = np.zeros_like(y)
    codes, n_runs = st.group_codes(sub["model"])
    return Prepared(loss, y, raw, var, n, codes, n_runs, chance, perfect, hib, binomial, notes, source)


def extra_variance(loss: np.ndarray, y: np.ndarray, var: np.ndarray) -> float:
    """Between-checkpoint variance tau^2 beyond sampling noise, from a monotone fit's residuals r: the
    Paule-Mandel estimate, sum r^2 / (var + tau^2) = n - df (df: the fit's distinct levels). Unlike
    mean(r^2) - mean(var) it weighs each point by its own variance, so points with a tiny binomial
    variance (exact match near 0) that scatter by more than it are not hidden behind noisy ones."""
    knots = st.isotonic_fit(-loss, y)
    r2 = (y - st.isotonic_predict(knots, -loss)) ** 2
    dof = max(len(y) - len(np.unique(knots[1])), 1)
    floor = 1e-8 * max(float(np.var(y)), 1e-12)

    def excess(t):
        return float((r2 / (var + t)).sum()) - dof

    if excess(floor) <= 0:
        return floor
    hi = max(float(r2.max()), floor) * 10
    return float(optimize.brentq(excess, floor, hi, xtol=floor)) if excess(hi) < 0 else hi


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


def saturate(z):
    """The saturating rise 1 - exp(-(u / w)^p) from z = p log(u / w) (a Weibull CDF: it starts as
    (u / w)^p and approaches 1 exponentially). It replaced the Hill form u^p / (u^p + w^p) = expit(z)
    on the calibration suite (docs/analysis.md, 'Third pass')."""
    with np.errstate(over="ignore"):
        return -np.expm1(-np.exp(z))


def elbow_basis(loss: np.ndarray, eta, p, w=np.inf) -> np.ndarray:
    """The rise of Eq. 3 for each (eta, p, w): u^p (w = inf) or 1 - exp(-(u / w)^p), u = max(0, eta - L);
    shape (len(eta), len(loss))."""
    eta, p, w = (np.atleast_1d(np.asarray(x, float))[:, None] for x in (eta, p, w))
    with np.errstate(divide="ignore"):  # in logs, one exp per value: u^p = exp(p log u) (0 on the plateau)
        pl = p * np.log(np.maximum(eta - loss[None, :], 0.0))
    inf = np.isinf(w)
    if inf.all():
        return np.exp(pl)
    # 1 - exp(-(u / w)^p) = saturate(p (log u - log w)); where w = inf the plain power
    sat = saturate(pl - p * np.log(np.where(inf, 1.0, w)))
    return sat if not inf.any() else np.where(inf, np.exp(pl), sat)


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


def _nelder_mead(objective, x0, lower, upper, options: dict, simplex=None) -> np.ndarray:
    """Nelder-Mead on `objective` from x0 inside [lower, upper] (clipped); the end point only where it
    is better than x0, so a refinement never makes a fit worse than the grid point it started from."""
    opts = options | ({"initial_simplex": simplex} if simplex is not None else {})
    res = optimize.minimize(lambda x: objective(np.clip(x, lower, upper)), x0, method="Nelder-Mead", options=opts)
    x = np.clip(res.x, lower, upper)
    return x if objective(x) < objective(x0) else x0


def _profile(basis, grid: np.ndarray, y, w, *, bounds):
    """Minimise over nonlinear parameters theta (grid, then Nelder-Mead) with the linear part exact."""
    theta0 = grid[int(np.argmin(_lin2(basis(grid), y, w)[2]))]

    def objective(theta):
        return float(_lin2(basis(theta[None, :]), y, w)[2][0])

    theta = _nelder_mead(objective, theta0, *bounds, {"xatol": 1e-6, "fatol": 1e-10, "maxiter": 400})
    a, b, sse = _lin2(basis(theta[None, :]), y, w)
    return theta, float(a[0]), float(b[0]), float(sse[0])


def fit_models(loss, y, w, cfg: EmergenceConfig, designs: dict | None = None) -> dict[str, Fit]:
    """Fit Eq. 3 (both forms) and the smooth alternatives; return them by name. `designs` may pass
    `{saturating: elbow_design(loss, cfg, saturating)}` computed once for the task."""
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
        design = designs.get(saturating) if designs else None
        eta, p, ws = elbow_estimates(loss, y[None, :], w[None, :], cfg, design, saturating=saturating)
        eta, p, wsat = _polish(loss, y, w, cfg, float(eta[0]), float(p[0]), float(ws[0]))
        a, b, sse = _lin2(elbow_basis(loss, eta, p, wsat), y, w, nonneg=True)
        params = {"c0": a[0], "s": b[0], "eta": eta, "p": p} | ({"w": wsat} if saturating else {})
        fits[name] = _make(name, k, sse[0], n, params)
    return fits


def _polish(loss, y, w, cfg: EmergenceConfig, eta: float, p: float, wsat: float):
    """Nelder-Mead on (eta, log p[, log w]) from the grid estimate, kept only where it lowers the SSE.
    The fit's grids are coarse (9 powers, 5 widths) and eta trades off against both, so the grid's
    best point can sit a few eta steps from the continuous optimum, outside the finer profile's
    interval (a Weibull onset with p 1.5, w 0.15 x range: eta 4.5% of the range too high)."""
    sat = bool(np.isfinite(wsat))
    etas, qs, _ = elbow_grid(loss, cfg)      # the same ranges as the fit's grid and the interval's profile
    ws = profile_widths(loss, cfg)
    x0 = np.array([eta, math.log(p)] + ([math.log(wsat)] if sat else []))
    lower = np.array([etas[0], qs[0]] + ([math.log(ws[0])] if sat else []))
    upper = np.array([etas[-1], qs[-1]] + ([math.log(ws[-1])] if sat else []))

    def sse(x):
        return float(_lin2(elbow_basis(loss, x[0], math.exp(x[1]), math.exp(x[2]) if sat else np.inf), y, w,
                           nonneg=True)[2][0])

    simplex = x0 + np.vstack([np.zeros(len(x0)), np.diag([0.02 * float(np.ptp(loss)), 0.1, 0.1][:len(x0)])])
    x = _nelder_mead(sse, x0, lower, upper, {"xatol": 1e-5, "fatol": 1e-9, "maxiter": 600}, simplex)
    if x is x0:
        return eta, p, wsat
    return float(x[0]), float(math.exp(x[1])), float(math.exp(x[2])) if sat else np.inf


def elbow_grid(loss, cfg: EmergenceConfig, saturating: bool = False):
    """Candidate thresholds (just above the lowest loss up to `extend` ranges beyond the highest),
    log-powers (uniform, so the grid is regular for the sub-grid interpolation) and saturation widths
    (inf alone for the plain elbow)."""
    lo, hi = float(loss.min()), float(loss.max())
    r = hi - lo
    etas = np.linspace(lo + 0.01 * r, hi + cfg.extend * r, cfg.n_eta)
    ws = r * np.asarray(cfg.saturation, float) if saturating else np.array([np.inf])
    return etas, np.linspace(np.log(cfg.min_power), np.log(cfg.max_power), cfg.n_power), ws


def profile_widths(loss, cfg: EmergenceConfig) -> np.ndarray:
    """The saturating form's widths in eta's profile (and the polish's bounds): the fit's 5 are too coarse
    a profile (a jagged profile makes a jagged interval), so 1.5 x `profile_powers` of them, log-spaced
    from half the fit's narrowest to twice its widest."""
    ws = elbow_grid(loss, cfg, True)[2]
    return np.geomspace(min(ws) / 2, max(ws) * 2, 3 * cfg.profile_powers // 2)


# A basis row whose centred sum of squares is below this share of its raw one is constant up to rounding
# (a saturating rise at exactly 1 everywhere): its "fit" is rounding noise, so it explains nothing.
CONSTANT_ROW = 1e-12

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
    alone makes eta jump). `fit_models` then polishes the full-data fit (`_polish`).
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
    flat = shh * CONSTANT_ROW                                  # a row this close to constant explains nothing
    shh -= tmp                                                 # Shh_c = Shh - Sh^2 / Sw
    np.multiply(mean_h, sy, out=tmp)
    shy -= tmp                                                 # Shy_c = Shy - Sh Sy / Sw
    np.maximum(shy, 0.0, out=shy)
    shy *= shy
    shy[shh <= flat] = 0.0   # (a basis saturated to exactly 1 everywhere: rounding, not signal, in Shy_c)
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


# ---------------------------------------------------------------- the emergence test


def smooth_bases(loss: np.ndarray, cfg: EmergenceConfig) -> dict[str, np.ndarray]:
    """The nonlinear grids of the smooth alternatives as bases h (G, n), each fitted as a + b h: a line,
    an exponential exp(c (L_min - L)) (c of either sign: convex or saturating), a sigmoid
    sigmoid(k (m - L)) with k times the loss range at most `max_sigmoid_steepness`."""
    lo, hi = float(loss.min()), float(loss.max())
    r = hi - lo
    cs = np.concatenate([-np.geomspace(10, 0.05, 20), np.geomspace(0.05, 10, 20)]) / r
    ks = np.geomspace(0.5 / r, cfg.max_sigmoid_steepness / r, 14)
    ms = np.linspace(lo - 0.25 * r, hi + 0.25 * r, 40)
    K, M = (g.ravel() for g in np.meshgrid(ks, ms, indexing="ij"))
    return {"linear": loss[None, :], "exponential": np.exp(cs[:, None] * (lo - loss[None, :])),
            "sigmoid": _sigmoid(K[:, None] * (M[:, None] - loss[None, :]))}


STOP_AFTER = 10   # null replicates at least as extreme as the data after which the test stops
CHUNK = 100       # null replicates refitted per batch


class Explained:
    """The weighted sum of squares that y = a + b h explains, for every basis row h of H (G, n) and every
    row of Y (B, n): (B, G); SSE = (centred weighted SS of y) - this; `nonneg` forces b >= 0. The weights
    are fixed, so everything but one matrix product is computed once and every refit of B replicates
    is `Y @ hw.T` plus a few in-place operations."""

    def __init__(self, H: np.ndarray, w: np.ndarray, *, nonneg: bool):
        sw = w.sum()
        self.hw = H * w[None, :]
        self.hm = self.hw.sum(1) / sw
        raw = (self.hw * H).sum(1)
        shh = raw - sw * self.hm**2
        good = shh > CONSTANT_ROW * np.maximum(raw, 1e-300)   # a constant basis row explains nothing
        self.inv = np.where(good, 1.0 / np.where(good, shh, 1.0), 0.0)
        self.w, self.nonneg = w, nonneg

    def __call__(self, Y: np.ndarray) -> np.ndarray:
        shy = Y @ self.hw.T
        shy -= (Y @ self.w)[:, None] * self.hm[None, :]
        if self.nonneg:
            np.maximum(shy, 0.0, out=shy)
        shy *= shy
        shy *= self.inv[None, :]
        return shy


def emergence_test(loss, y, w, cfg: EmergenceConfig, rng: np.random.Generator, thresholds: list[np.ndarray]):
    """Likelihood ratio of Eq. 3 (both forms, on their grids) against the best smooth alternative, and
    its p-value from a parametric bootstrap under that smooth null: (T, p, name of the null).

    T = max(0, SSE(best smooth) - SSE(best Eq. 3)) (weighted: a log-likelihood ratio with known
    variances, one-sided: p = 1 when a smooth curve fits at least as well).
    Replicates are the best smooth fit plus N(0, 1/w) noise, refitted on the same grids, so the test
    asks: could a curve with no threshold have produced a threshold this convincing?"""
    names, bases = zip(*smooth_bases(loss, cfg).items())
    sizes = np.cumsum([0] + [len(b) for b in bases])
    Hs = np.vstack(bases)
    smooth = Explained(Hs, w, nonneg=False)
    thr = [Explained(H, w, nonneg=True) for H in thresholds]

    def stat(Y):
        e_thr = np.max([t(Y).max(1) for t in thr], axis=0)
        e_smooth = smooth(Y)
        return e_thr - e_smooth.max(1), e_smooth.argmax(1)

    T, best = stat(y[None, :])
    T = np.maximum(T, 0.0)  # one-sided: only a better fit of Eq. 3 than of every smooth curve is evidence
    g = int(best[0])
    null = names[int(np.searchsorted(sizes, g, side="right")) - 1]
    if cfg.bootstrap <= 0:
        return float(T[0]), None, null
    a, b, _ = _lin2(Hs[g][None, :], y, w)
    f0 = a[0] + b[0] * Hs[g]
    sd = 1.0 / np.sqrt(w)
    # Sequential Monte Carlo p-value (Besag and Clifford 1991): stop once STOP_AFTER replicates reach T,
    # p = that count / replicates drawn; a clear non-threshold costs one chunk, a threshold all B.
    if T[0] <= 0:  # a smooth curve fits at least as well: every replicate is as extreme
        return 0.0, 1.0, null
    exceed = drawn = 0
    while drawn < cfg.bootstrap and exceed < STOP_AFTER:
        m = min(CHUNK, cfg.bootstrap - drawn)
        t_null = stat(f0[None, :] + rng.standard_normal((m, len(y))) * sd[None, :])[0]
        exceed += int((t_null >= T[0] - 1e-9 * abs(T[0])).sum())
        drawn += m
    p = exceed / drawn if exceed >= STOP_AFTER else (1 + exceed) / (drawn + 1)
    return float(T[0]), float(p), null


def dispersion(resid: np.ndarray, codes: np.ndarray, k: int) -> float:
    """How much wider than its known noise the fit's standardised residuals r = (y - fit) sqrt(w) are:
    the residual dispersion sum r^2 / (n - k) (at least 1), times the design effect of checkpoints of
    one run that err together, 1 + (m - 1) rho (m: points per run; rho: the within-run correlation of r,
    from misfit, a size offset at equal loss, or items shared by a run's checkpoints)."""
    n = len(resid)
    phi = max(1.0, float((resid**2).sum()) / max(n - k, 1))
    s1 = np.bincount(codes, weights=resid)
    s2 = np.bincount(codes, weights=resid**2)
    m = np.bincount(codes).astype(float)
    pairs = float((m * (m - 1)).sum())
    if pairs <= 0:
        return phi
    rho = float((s1**2 - s2).sum()) / pairs / max(float((resid**2).mean()), 1e-300)
    return phi * max(1.0, 1.0 + (n / len(m) - 1) * min(rho, 1.0))


def profile_at(loss, y, w, cfg: EmergenceConfig, eta: float) -> float:
    """Eq. 3's SSE at a fixed eta, minimised over the rest in both forms: each form's best point of the
    profile's grids (p; p x w), then Nelder-Mead in (log p[, log w]) from it. At 1,000 items and 100+
    points the grids alone overstate the SSE away from the optimum (a step of p moves it by more than
    the cut), so an interval read off them is too narrow (calibration: 82.5% coverage in one cell)."""
    qs = np.linspace(np.log(cfg.min_power), np.log(cfg.max_power), cfg.profile_powers)
    ws = profile_widths(loss, cfg)
    syy = float((w * (y - (w * y).sum() / w.sum()) ** 2).sum())
    with np.errstate(divide="ignore"):
        up = np.exp(np.exp(qs)[:, None] * np.log(np.maximum(eta - loss, 0.0))[None, :])   # (Q, n): u^p
    sat = -np.expm1(-up[:, None, :] * (ws[None, :, None] ** -np.exp(qs)[:, None, None]))  # (Q, W, n)
    best = np.inf
    for H, shape in ((up, (len(qs),)), (sat.reshape(-1, len(loss)), (len(qs), len(ws)))):
        explained = Explained(H, w, nonneg=True)(y[None, :])[0]
        g = int(explained.argmax())
        x0 = np.array([qs[g]] if len(shape) == 1 else [qs[g // len(ws)], math.log(ws[g % len(ws)])])
        lower, upper = np.array([qs[0], math.log(ws[0])][:len(x0)]), np.array([qs[-1], math.log(ws[-1])][:len(x0)])

        def sse(x):
            wv = math.exp(x[1]) if len(x) > 1 else np.inf
            return float(_lin2(elbow_basis(loss, eta, math.exp(x[0]), wv), y, w, nonneg=True)[2][0])

        x = _nelder_mead(sse, x0, lower, upper, {"xatol": 1e-3, "fatol": 1e-6, "maxiter": 200})
        best = min(best, syy - float(explained[g]), sse(x))
    return best


def _polished_edge(f, inside: float, step: float, limit: float, tol: float) -> float:
    """The outermost root of f (<= 0 inside) on the way from `inside` (f <= 0) towards `limit`: steps of
    1, 2, 4, ... `step` until f > 0 (or `limit`), then bisection to `tol`, the end interpolated."""
    a, fa = inside, f(inside)
    d = step
    while True:
        b = a + d if (limit - a - d) * step > 0 else limit
        fb = f(b)
        if fb > 0:
            break
        if b == limit:
            return limit
        a, fa, d = b, fb, 2 * d
    while abs(b - a) > tol:
        m = 0.5 * (a + b)
        fm = f(m)
        if fm > 0:
            b, fb = m, fm
        else:
            a, fa = m, fm
    return a + (b - a) * (-fa) / (fb - fa)


def eta_interval(loss, y, w, cfg: EmergenceConfig, *, eta_hat: float, phi: float = 1.0,
                 sse_min: float | None = None):
    """The `level` interval of eta by inverting the profile likelihood ratio: every eta whose SSE,
    minimised over the rest of Eq. 3 in both its forms (c0, s >= 0, p on a fine grid, and for the
    saturating form w on a fine grid; the form itself is profiled out like any other nuisance), lies
    within chi2_1(level) x `critical_factor` x `phi` (`dispersion`) of the minimum; the hull where the
    profile has several dips. The eta grid is scanned, then (unless the hull spans an eighth of the grid
    or more) rescanned 40 times finer around it, the ends interpolated; then each end is moved to where
    the polished profile (`profile_at`: the grids' best point refined by Nelder-Mead) crosses the cut,
    measured from `sse_min` (the fitted forms' SSE) where that is lower than the grid's. Deterministic."""
    etas = elbow_grid(loss, cfg)[0]
    qs = np.linspace(np.log(cfg.min_power), np.log(cfg.max_power), cfg.profile_powers)
    ws = profile_widths(loss, cfg)
    syy = float((w * (y - (w * y).sum() / w.sum()) ** 2).sum())
    # chi2_1 is the kink's asymptotic cut (a continuous threshold, Hansen 2017); the factor is measured on
    # the calibration suite, where onsets outside Eq. 3's family (a smoothstep) need the extra width
    crit = cfg.critical_factor * float(stats.chi2.ppf(cfg.level, 1))

    def profile_sse(grid):
        with np.errstate(divide="ignore"):
            logu = np.log(np.maximum(grid[:, None] - loss[None, :], 0.0))        # (E, n), -inf on the plateau
        prof = np.full(len(grid), -np.inf)
        for q in qs:
            up = np.exp(np.exp(q) * logu)                   # u^p: the elbow's basis
            # 1 - exp(-(u/w)^p) from u^p x w^-p: one exponential per value (expm1) instead of two
            for H in [up] + [-np.expm1(-up * wv ** -np.exp(q)) for wv in ws]:
                prof = np.maximum(prof, Explained(H, w, nonneg=True)(y[None, :])[0])
        return syy - prof

    sse = profile_sse(etas)
    inside = np.flatnonzero((sse - sse.min()) / phi <= crit)
    i, j = max(int(inside[0]) - 1, 0), min(int(inside[-1]) + 1, len(etas) - 1)
    if j - i > len(etas) // 8:  # a wide interval (an eighth of the grid or more) needs no finer scan
        fine, sse_f = etas, sse
    else:
        fine = np.linspace(etas[i], etas[j], 40 * (j - i) + 1)
        sse_f = profile_sse(fine)
    lr = (sse_f - min(sse.min(), sse_f.min())) / phi - crit   # <= 0 inside the interval
    inside = np.flatnonzero(lr <= 0)
    if not len(inside):
        return min(float(fine[0]), eta_hat), max(float(fine[-1]), eta_hat)
    i, j = int(inside[0]), int(inside[-1])

    def cross(a, b):  # where lr crosses 0 between grid points a (outside) and b (inside)
        return float(fine[b] + (fine[a] - fine[b]) * (-lr[b]) / (lr[a] - lr[b]))

    lo = cross(i - 1, i) if i > 0 else float(fine[0])
    hi = cross(j + 1, j) if j < len(fine) - 1 else float(fine[-1])
    # The grid profile only bounds the true one from above, so each end is pushed out where the
    # polished profile (`profile_at`) is still inside the cut: walk out, then bisect to 1/16 of a step.
    m = min(float(sse.min()), float(sse_f.min()), np.inf if sse_min is None else sse_min)
    step = float(etas[1] - etas[0])

    @functools.cache
    def lr_at(eta):
        return (profile_at(loss, y, w, cfg, eta) - m) / phi - crit

    ends = []
    for edge, grid_inside, limit, sign in ((lo, fine[i], etas[0], -1.0), (hi, fine[j], etas[-1], 1.0)):
        # start from the grid's end, or its last point inside; neither inside (the polished minimum is
        # lower than the grid's): keep the grid's end
        start = None if edge == limit else next((e for e in (edge, float(grid_inside)) if lr_at(e) <= 0), None)
        ends.append(edge if start is None else _polished_edge(lr_at, start, sign * step, float(limit), step / 16))
    return min(ends[0], eta_hat), max(ends[1], eta_hat)


# ---------------------------------------------------------------- regions and their tests


@dataclasses.dataclass
class Region:
    """The points of one loss range: how many, their weighted mean (normalised) and tests."""

    n_points: int
    n_losses: int
    n_runs: int
    mean: float | None
    se: float | None
    p_above_chance: float | None   # one-sided: mean > 0
    upper: float | None            # one-sided `level` upper bound of the mean
    slope_p: float | None = None   # one-sided: performance rises as loss falls

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def lower(self) -> float | None:
        """The one-sided lower bound of the mean, the mirror of `upper`."""
        return None if self.upper is None else 2 * self.mean - self.upper

    def _cdf(self, x: float) -> float:  # P(a normal estimate <= mean | true value x)
        if self.mean is None:
            return float("nan")
        if not self.se or not np.isfinite(self.se):
            return 1.0 if self.mean >= x else 0.0
        return float(stats.norm.cdf((self.mean - x) / self.se))

    def p_over(self, delta: float) -> float:
        """One-sided p of H1: mean > delta."""
        return 1.0 - self._cdf(delta) if self.mean is not None else 1.0

    def p_under(self, delta: float) -> float:
        """One-sided p of H1: mean < delta."""
        return self._cdf(delta) if self.mean is not None else 1.0

    def p_within(self, delta: float) -> float:
        """Two one-sided tests (TOST) of H1: -delta < mean < delta: the larger of the two p-values."""
        return max(self.p_over(-delta), self.p_under(delta))


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
                  st.z_above(mean, se), mean + stats.norm.ppf(level) * se, slope_p)


# ---------------------------------------------------------------- evidence


@dataclasses.dataclass
class Evidence:
    """Everything the decision looks at, for one (task, metric); normalised units."""

    task: str
    metric: str
    n_points: int
    n_losses: int
    n_runs: int
    chance: float | None              # the baseline used (metric units)
    chance_source: str | None         # declared | majority | assumed
    perfect: float
    higher_is_better: bool
    binomial: bool
    items: float | None               # median items per point (count metrics)
    loss_range: tuple[float, float]
    notes: list[str]
    tau2: float = float("nan")
    trend_p: float | None = None      # one-sided: performance rises as loss falls (all points)
    fits: dict = dataclasses.field(default_factory=dict)
    threshold_fit: str | None = None  # the form of Eq. 3 with the lower BIC
    best_smooth: str | None = None    # the smooth fit with the lowest BIC
    delta_bic: float | None = None    # BIC(best smooth) - BIC(threshold fit): > 0 favours the threshold
    eta: float | None = None          # the threshold fit's eta, when it has a rise
    eta_ci: tuple[float, float] | None = None  # profile-likelihood interval
    dispersion: float | None = None   # residual dispersion x within-run design effect, widening eta_ci
    lrt: float | None = None          # SSE(best smooth) - SSE(Eq. 3), on the grids
    lrt_p: float | None = None        # its parametric-bootstrap p-value under the smooth null
    lrt_null: str | None = None       # the smooth family of that null
    plateau: Region | None = None     # loss >= eta
    below: Region | None = None       # loss < eta
    peak: Region | None = None        # the lowest third of the distinct losses below eta (presence)
    high: Region | None = None        # the highest-loss third of distinct losses
    low: Region | None = None         # the lowest-loss third
    top: Region | None = None         # "the highest losses": the plateau if it spans min_side losses, else high
    top_name: str = "highest-loss third"


def gather_evidence(sub: pd.DataFrame, cfg: EmergenceConfig, rng: np.random.Generator) -> Evidence:
    """Fits, tests and the eta interval of one (task, metric) slice; see the module docstring."""
    prep = prepare(sub)
    loss, y = prep.loss, prep.y
    distinct = np.unique(loss)
    ev = Evidence(task=str(sub["task"].iloc[0]), metric=str(sub["metric"].iloc[0]), n_points=len(y),
                  n_losses=len(distinct), n_runs=prep.n_runs, chance=prep.chance, chance_source=prep.chance_source,
                  perfect=prep.perfect, higher_is_better=prep.higher_is_better, binomial=prep.binomial,
                  items=float(np.median(prep.n)) if prep.n is not None else None,
                  loss_range=(float(loss.min()), float(loss.max())), notes=prep.notes)
    if len(distinct) < cfg.min_points:
        return ev
    ev.tau2 = extra_variance(loss, y, prep.var)
    w = 1.0 / (prep.var + ev.tau2)
    designs = {s: elbow_design(loss, cfg, s) for s in (False, True)}
    ev.fits = fit_models(loss, y, w, cfg, designs)
    ev.threshold_fit = min(THRESHOLD_FITS, key=lambda k: ev.fits[k].bic)
    ev.best_smooth = min(SMOOTH_FITS, key=lambda k: ev.fits[k].bic)
    threshold = ev.fits[ev.threshold_fit]
    ev.delta_bic = float(ev.fits[ev.best_smooth].bic - threshold.bic)
    slope, se = st.wls_slope(loss, y, w)
    ev.trend_p = float(stats.norm.cdf(slope / se))
    thirds = np.quantile(distinct, [1 / 3, 2 / 3])
    ev.high = region(loss, y, w, loss >= thirds[1], prep.codes, cfg.level)
    ev.low = region(loss, y, w, loss <= thirds[0], prep.codes, cfg.level)
    ev.top = ev.high
    if threshold.params["s"] > 0:
        ev.eta = threshold.params["eta"]
        ev.plateau = region(loss, y, w, loss >= ev.eta, prep.codes, cfg.level)
        ev.below = region(loss, y, w, loss < ev.eta, prep.codes, cfg.level)
        if ev.below.n_points:
            ev.peak = region(loss, y, w, loss <= np.quantile(distinct[distinct < ev.eta], 1 / 3), prep.codes,
                             cfg.level)
        resid = (y - threshold.predict(loss)) * np.sqrt(w)
        ev.dispersion = dispersion(resid, prep.codes, threshold.k)
        ev.eta_ci = eta_interval(loss, y, w, cfg, eta_hat=ev.eta, phi=ev.dispersion,
                                 sse_min=min(ev.fits[k].sse for k in THRESHOLD_FITS))
        if ev.plateau.n_losses >= cfg.min_side:
            ev.top, ev.top_name = ev.plateau, "above eta"
    ev.lrt, ev.lrt_p, ev.lrt_null = emergence_test(loss, y, w, cfg, rng, [d[3] for d in designs.values()])
    return ev


# ---------------------------------------------------------------- decision


def decide(ev: Evidence, cfg: EmergenceConfig) -> tuple[str, str, list[str]]:
    """The verdict, its reason code (`REASONS`) and the sentences behind it: a pure function of the
    evidence. Questions in order; the first that settles the task gives the verdict."""
    d, ea, a = cfg.delta, cfg.equivalence_alpha, cfg.alpha
    inc = "inconclusive"
    if ev.n_losses < cfg.min_points:
        return inc, "too_few_losses", [f"only {ev.n_losses} distinct losses (need {cfg.min_points}): more checkpoints "
                                        f"or model sizes would settle it"]
    rising = ev.trend_p < a
    if ev.chance is None:
        why = ["no chance level for this metric: emergence cannot be tested (give a chance or majority column)"]
        if rising:
            return "smooth", "no_chance_level", why + [f"rising as loss falls (p {ev.trend_p:.2g})"]
        return inc, "no_chance_level", why
    low, top = ev.low, ev.top
    if low.p_under(d) < ea:
        return "not_emerged", "no_rise_at_chance", [
            f"the lowest-loss third is known to be below delta {d} above chance (mean {low.mean:.3g}, "
            f"p {low.p_under(d):.2g}): the ability never appears in this loss range"]
    if rising and top.p_over(d) < ea:
        return "smooth", "present_at_highest_loss", [
            f"rising as loss falls (p {ev.trend_p:.2g}) and already more than delta {d} above chance at the "
            f"highest losses ({ev.top_name}: mean {top.mean:.3g}, p {top.p_over(d):.2g})"]
    if not rising or ev.eta is None:
        return inc, "no_rise", [f"no significant rise as loss falls (p {ev.trend_p:.2g}), but the lowest-loss "
                                f"models are not known to be within {d} of chance (mean {low.mean:.3g}, se "
                                f"{low.se:.2g}): more items per point would settle it"]
    pl, be, pk = ev.plateau, ev.below, ev.peak
    if pl.n_losses < cfg.min_side:
        return inc, "too_few_losses_above_eta", [
            f"only {pl.n_losses} distinct losses above eta {ev.eta:.4g} (need {cfg.min_side}): a plateau at "
            f"chance is not shown; checkpoints at higher loss would settle it"]
    if be.n_losses < cfg.min_side:
        return inc, "too_few_losses_below_eta", [
            f"only {be.n_losses} distinct losses below eta {ev.eta:.4g} (need {cfg.min_side}): checkpoints at "
            f"lower loss would settle it"]
    for side, r in (("above", pl), ("below", be)):
        if r.n_runs < min(2, ev.n_runs):
            return inc, "one_run_on_a_side", [f"every point {side} eta comes from one run of {ev.n_runs}: "
                                              "model identity, not loss, could explain the jump; checkpoints of "
                                              "other runs there would settle it"]
    if pl.p_within(d) >= ea:
        away = pl.p_over(d) < ea or pl.p_under(-d) < ea
        return inc, "plateau_not_at_chance" if away else "plateau_too_noisy", [
            f"above eta the level is {'measurably more than' if away else 'not known to be within'} {d} "
            f"{'away from' if away else 'of'} chance (mean {pl.mean:.3g}, se {pl.se:.2g}, TOST p "
            f"{pl.p_within(d):.2g})" + ("" if away else ": more items or checkpoints above eta")]
    if pk.p_over(d) >= ea:
        small = pk.p_under(d) < ea
        return inc, "rise_too_small" if small else "presence_too_noisy", [
            f"at the lowest losses below eta the task is "
            f"{'known to stay within' if small else 'not known to be more than'} "
            f"{d} above chance (mean {pk.mean:.3g}, se {pk.se:.2g})"
            + ("" if small else ": more items, or checkpoints at lower loss")]
    if ev.lrt_p is None:
        return inc, "test_not_run", ["absent above eta and present below it, but the emergence test was not run "
                                     "(bootstrap 0): rerun with bootstrap > 0"]
    if ev.lrt_p >= a:
        return inc, "smooth_alternative_fits", [
            f"absent above eta and present below it, but a smooth {ev.lrt_null} (no threshold) explains the "
            f"data about as well (likelihood ratio {ev.lrt:.3g}, bootstrap p {ev.lrt_p:.2g} >= {a}): more "
            f"checkpoints around eta would tell them apart"]
    return "emergent", "emergent", [
        f"at chance above eta (mean {pl.mean:.3g}, TOST p {pl.p_within(d):.2g} for +-{d}), more than {d} above "
        f"it at the lowest losses (mean {pk.mean:.3g}, p {pk.p_over(d):.2g}), and Eq. 3 beats every smooth "
        f"curve (likelihood ratio {ev.lrt:.3g} against a {ev.lrt_null}, bootstrap p {ev.lrt_p:.2g})"]


# ---------------------------------------------------------------- result


def _rate_chance(e) -> float | None:
    """Chance as a share of perfect for the calibration lookup (a Brier guess (k-1)/k is 1/k)."""
    if e.chance is None:
        return None
    return e.chance if e.higher_is_better else max(0.0, 1.0 - e.chance)


def lookup_error_rates(e) -> dict | None:
    """This verdict's measured error rates from the calibration suite, if it is installed and shipped."""
    try:
        from losslens.analysis.calibration import error_rates
    except ImportError:
        return None
    try:
        return error_rates(e.verdict, items=e.items, chance=_rate_chance(e), n_losses=e.n_losses,
                           n_runs=e.n_runs, binomial=e.binomial)
    except (OSError, ValueError, KeyError):
        return None


@dataclasses.dataclass(repr=False)
class EmergenceResult(Result, Evidence):
    """The evidence with its verdict, reason code, sentences, q-value and measured error rates; in a
    notebook, `to_frame()`, a short repr, an HTML view and `plot(data)` (losslens.analysis.result)."""

    verdict: str = "inconclusive"
    reason_code: str = "too_few_losses"
    reasons: list[str] = dataclasses.field(default_factory=list)
    q_value: float | None = None      # Benjamini-Hochberg over the analysis (set by fdr_adjust)
    error_rates: dict | None = None   # calibration.error_rates(verdict, ...) for a task like this one

    @property
    def rival(self) -> str | None:
        """The smooth alternative Eq. 3 was tested against (the null of the emergence test)."""
        return self.lrt_null

    @property
    def rival_delta_bic(self) -> float | None:
        if self.lrt_null is None or self.threshold_fit is None:
            return None
        return float(self.fits[self.lrt_null].bic - self.fits[self.threshold_fit].bic)

    def curve(self, loss) -> np.ndarray | None:
        """The threshold fit (Eq. 3) at `loss`, mapped back to the metric's units (for figures)."""
        if self.threshold_fit is None:
            return None
        y = self.fits[self.threshold_fit].predict(loss)
        return (self.chance or 0.0) + y * (self.perfect - (self.chance or 0.0))

    def to_dict(self) -> dict:
        d = {"verdict": self.verdict, "reason_code": self.reason_code, "reasons": list(self.reasons),
             "q_value": self.q_value, "error_rates": self.error_rates}
        for f in dataclasses.fields(Evidence):
            v = getattr(self, f.name)
            if isinstance(v, Region):
                v = v.to_dict()
            elif f.name == "fits":
                v = {k: fit.to_dict() for k, fit in v.items()}
            elif isinstance(v, tuple):
                v = list(v)
            d[f.name] = v
        d.pop("top")
        d.update(rival=self.rival, rival_delta_bic=self.rival_delta_bic)
        return d

    def rows(self) -> list[dict]:
        """One row: verdict, reason code, eta and its interval (emergent only), the test's p and q, and
        the measured rate of this verdict being wrong for a task like this one (calibration)."""
        emergent = self.verdict == "emergent"
        lo, hi = self.eta_ci if emergent and self.eta_ci else (None, None)
        rates = self.error_rates or {}
        return [{"task": self.task, "metric": self.metric, "verdict": self.verdict, "reason_code": self.reason_code,
                 "eta": self.eta if emergent else None, "eta_lo": lo, "eta_hi": hi, "lrt_p": self.lrt_p,
                 "q_value": self.q_value, "error_rate": rates.get("false_rate"),
                 "error_rate_n": rates.get("n"), "error_rate_text": rates.get("text")}]

    def _repr_items(self) -> dict:
        items = {"task": self.task, "metric": self.metric, "verdict": self.verdict, "reason": self.reason_code}
        if self.verdict == "emergent":
            items.update(eta=self.eta, eta_ci=list(self.eta_ci) if self.eta_ci else None)
        return items

    def plot(self, data: pd.DataFrame, x_label: str = "loss"):
        """Performance against loss for `data`, the (task, metric) slice this was computed from, with eta,
        its interval and the Eq. 3 fit when emergent (the report's figure)."""
        from types import SimpleNamespace

        from losslens.analysis import figures

        return figures.draw_task(data, SimpleNamespace(emergence=self, task=self.task, metric=self.metric), x_label)

    def summary(self) -> str:
        f = num
        lines = [f"{self.task} / {self.metric}: {self.verdict.upper()} ({self.reason_code})"]
        if self.eta is not None:
            ci = f" [{f(self.eta_ci[0], '.4g')}, {f(self.eta_ci[1], '.4g')}]" if self.eta_ci else ""
            name = "eta" if self.verdict == "emergent" else "threshold fit's eta (no threshold claimed)"
            lines.append(f"  {name} = {self.eta:.4g}{ci}   loss range "
                         f"{self.loss_range[0]:.4g}-{self.loss_range[1]:.4g}")
        lines.append(f"  {self.n_points} points, {self.n_losses} distinct losses, {self.n_runs} runs; "
                     f"chance {f(self.chance)} ({self.chance_source or '-'}), tau^2 {self.tau2:.2g}; "
                     f"trend p {f(self.trend_p, '.2g')}")
        if self.fits:
            bics = ", ".join(f"{k} {v.bic:.1f}" for k, v in self.fits.items())
            lines.append(f"  BIC: {bics}; threshold fit {self.threshold_fit}; best smooth {self.best_smooth}, "
                         f"delta {f(self.delta_bic, '.1f')}")
            lines.append(f"  emergence test: likelihood ratio {f(self.lrt)} vs a smooth {self.lrt_null}, "
                         f"bootstrap p {f(self.lrt_p, '.2g')}, q {f(self.q_value, '.2g')}")
        for name in ("plateau", "below", "peak", "high", "low"):
            r = getattr(self, name)
            if r and r.n_points:
                lines.append(f"  {name:7s}: {r.n_points} pts, mean {f(r.mean)} (se {f(r.se, '.2g')}), "
                             f"p(above chance) {f(r.p_above_chance, '.2g')}, trend p {f(r.slope_p, '.2g')}")
        lines += [f"  - {r}" for r in self.reasons + self.notes]
        if self.error_rates:
            lines.append(f"  - {self.verdict}: {self.error_rates.get('text', '')}")
        return "\n".join(lines)


# ---------------------------------------------------------------- the analysis


def analyze_emergence(sub: pd.DataFrame, cfg: EmergenceConfig | None = None, *, seed: int = 0) -> EmergenceResult:
    """Classify one (task, metric) slice of a tidy table; see the module docstring for the method."""
    cfg = cfg or EmergenceConfig()
    ev = gather_evidence(sub, cfg, np.random.default_rng(seed))
    verdict, code, reasons = decide(ev, cfg)
    result = EmergenceResult(**{f.name: getattr(ev, f.name) for f in dataclasses.fields(Evidence)},
                             verdict=verdict, reason_code=code, reasons=reasons, q_value=ev.lrt_p)
    result.error_rates = lookup_error_rates(result)
    return result


def bh_qvalues(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of independent or positively dependent tests."""
    p = np.asarray(p, float)
    if not len(p):
        return p
    order = np.argsort(p)
    q = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = np.minimum(q, 1.0)
    return out


def fdr_adjust(results: list[EmergenceResult], cfg: EmergenceConfig) -> None:
    """Control the false-discovery rate of `emergent` across the tasks and metrics of one analysis: each
    result gets the Benjamini-Hochberg q-value of its emergence test (tasks the test could not run on
    count with p = 1), and an emergent verdict whose q exceeds `cfg.fdr` becomes inconclusive."""
    p = [r.lrt_p if r.lrt_p is not None else 1.0 for r in results]
    for r, q in zip(results, bh_qvalues(p)):
        r.q_value = float(q)
        if cfg.fdr is not None and r.verdict == "emergent" and q > cfg.fdr:
            r.verdict, r.reason_code = "inconclusive", "not_significant_after_fdr"
            r.reasons = r.reasons + [f"q {q:.2g} > {cfg.fdr} after Benjamini-Hochberg over {len(results)} "
                                     f"(task, metric) pairs: more items or checkpoints would settle it"]
            r.error_rates = lookup_error_rates(r)
