"""The same-loss test (the paper's claim 1): at equal pre-training loss, do model size N or data size D
still explain performance?

Per (task, metric), with runs kept whole in grouped K-fold cross-validation:

    base:  y ~ f(x)               f monotone (isotonic), x = loss (performance falls as loss rises)
    with:  y ~ f(x) + b * z       z = log N, or log D (tokens seen); f and b jointly least squares

The improvement is the relative drop in cross-validated squared error, 1 - MSE_with / MSE_base
(> 0: the covariate predicts held-out runs better). Its interval resamples runs (bootstrap over the
per-run errors); its p-value permutes z across runs (each run keeps its own checkpoint pattern of z,
shifted to another run's level) and recomputes the cross-validated improvement.

"Loss alone explains performance" (`holds`) is an equivalence claim, so it is tested as one: the effect
of doubling N (or D) at equal loss, from y ~ spline(loss) + b z in normalised units, must have its 90%
interval over runs inside +-margin (two one-sided tests); a significant effect outside it fails, and
anything else (too few runs, too little power) is inconclusive, never "holds".

The same machinery with x = -log C (compute C = 6ND) asks whether compute collapses the runs: the paper
found it does not (at equal compute, size still matters), while loss does. `r2_loss` and `r2_compute`
say how much of the variance a monotone function of each axis explains out of sample.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import stats
from scipy.interpolate import BSpline

from losslens.analysis import stats as st
from losslens.analysis.result import Result
from losslens.fmt import num


@dataclasses.dataclass(frozen=True)
class SameLossConfig:
    folds: int = 5
    permutations: int = 99     # at most this many; p-value resolution is 1 / (permutations + 1)
    stop_after: int = 10       # stop permuting once this many permuted improvements reach the observed one
    bootstrap: int = 1000
    level: float = 0.95
    alpha: float = 0.05
    max_iter: int = 30         # root-finding steps for b
    min_runs: int = 4          # fewer runs than this: no test (nothing to hold out)
    # Equivalence (TOST): "loss alone explains performance" is shown when the 1 - 2 x equivalence_alpha
    # bootstrap interval of each covariate's effect lies inside +-margin. The effect is the change in
    # performance per doubling of N (or D) at equal loss, b ln 2 in y ~ spline(loss) + b z, in
    # normalised units (chance 0, perfect 1): margin 0.01 = one point of that scale per doubling.
    margin: float = 0.01
    equivalence_alpha: float = 0.05


def _normalised(sub: pd.DataFrame) -> np.ndarray:
    """Performance with higher = better (so every f is decreasing in loss)."""
    v = sub["value"].to_numpy(float)
    hib = bool(sub["higher_is_better"].iloc[0]) if "higher_is_better" in sub.columns else True
    return v if hib else -v


# ---------------------------------------------------------------- fits


class MonotoneFit:
    """Least squares y ~ f(x) + b z with f non-increasing in x, for a fixed x and many y or z.

    Sorting x happens once here; each fit is then a bincount and one pool-adjacent-violators pass.
    b solves g(b) = z_c . (y - b z_c - f_b) = 0, where f_b is the isotonic fit of y - b z_c; g is
    monotone (the problem is convex), so a safeguarded secant search finds b in a few fits, where
    plain backfitting would need dozens when z and x are correlated (as log N and loss are).
    """

    def __init__(self, x: np.ndarray):
        self.x = x
        self.ux, self.inv = np.unique(x, return_inverse=True)
        self.count = np.bincount(self.inv, minlength=len(self.ux)).astype(float)

    def iso(self, y: np.ndarray) -> np.ndarray:
        """Fitted values of the isotonic fit at the distinct x values."""
        m = np.bincount(self.inv, weights=y, minlength=len(self.ux)) / self.count
        return st.pava_decreasing(m, self.count)

    def fit(self, y: np.ndarray, z: np.ndarray | None = None, *, max_iter: int = 30):
        """Return (fitted values at distinct x, b, mean of z)."""
        if z is None:
            return self.iso(y), 0.0, 0.0
        zm = float(z.mean())
        zc = z - zm
        szz = float(zc @ zc)
        if szz <= 0:
            return self.iso(y), 0.0, zm

        def g(b):
            f = self.iso(y - b * zc)
            return float(zc @ (y - b * zc - f[self.inv])), f

        tol = 1e-4 * (float(np.std(y)) + 1e-12) * np.sqrt(len(z) / szz)  # b to 1e-4 sd(y) per sd(z)
        b, f = _root(g, first_step=lambda g0: g0 / szz, tol=tol, max_iter=max_iter)
        return f, b, zm

    def predict(self, fitted, x_new: np.ndarray, z_new: np.ndarray | None = None) -> np.ndarray:
        f, b, zm = fitted
        out = np.interp(x_new, self.ux, f)
        return out if z_new is None else out + b * (z_new - zm)


def fit_partial(x, y, z=None, *, max_iter: int = 30) -> float:
    """The coefficient b of y ~ f(x) + b z on all the data (f non-increasing)."""
    return MonotoneFit(np.asarray(x, float)).fit(np.asarray(y, float), z, max_iter=max_iter)[1]


def _root(g, first_step, tol: float, max_iter: int):
    """Root of a continuous decreasing g(b), starting at b = 0: secant steps until the root is
    bracketed, then regula falsi with the Illinois fix. g returns (value, payload); returns (b, payload)."""
    b0, (g0, p0) = 0.0, g(0.0)
    if g0 == 0:
        return b0, p0
    b1 = first_step(g0)
    g1, p1 = g(b1)
    for _ in range(max_iter):
        if g1 == 0 or abs(b1 - b0) < tol:
            break
        if g0 * g1 > 0:                                    # not bracketed yet: extrapolate
            step = -g1 * (b1 - b0) / (g1 - g0) if g1 != g0 else b1 - b0
            if step * (b1 - b0) <= 0:                      # wrong way (cannot happen for decreasing g)
                step = b1 - b0
            b0, g0, (b1, (g1, p1)) = b1, g1, (b1 + step, g(b1 + step))
            continue
        # bracketed between b0 and b1: Illinois regula falsi
        b2 = (b0 * g1 - b1 * g0) / (g1 - g0)
        g2, p2 = g(b2)
        if g2 * g1 < 0:
            b0, g0 = b1, g1
        else:
            g0 = g0 / 2
        b1, g1, p1 = b2, g2, p2
    return b1, p1


class Folds:
    """Grouped K-fold split with one `MonotoneFit` per training set, reused by every refit."""

    def __init__(self, x, folds):
        self.parts = [(folds != k, folds == k) for k in np.unique(folds)]
        self.fits = [MonotoneFit(x[train]) for train, _ in self.parts]
        self.x = x

    def errors(self, y, z=None, *, max_iter: int = 30) -> np.ndarray:
        """Out-of-fold squared errors of y ~ f(x) [+ b z] for every point."""
        err = np.empty_like(y)
        for (train, test), mf in zip(self.parts, self.fits):
            fitted = mf.fit(y[train], None if z is None else z[train], max_iter=max_iter)
            pred = mf.predict(fitted, self.x[test], None if z is None else z[test])
            err[test] = (y[test] - pred) ** 2
        return err


def _improvement(e0, e1) -> float:
    s0 = e0.sum()
    return float(1 - e1.sum() / s0) if s0 > 0 else 0.0


def permute_across_runs(z, codes, n_groups, rng) -> np.ndarray:
    """Give each run another run's level of z (its mean), keeping its own within-run pattern."""
    counts = np.bincount(codes, minlength=n_groups)
    level = np.bincount(codes, weights=z, minlength=n_groups) / counts
    return z - level[codes] + level[rng.permutation(n_groups)][codes]


def _run_levels_differ(z, codes, n_groups) -> bool:
    """Whether the runs' mean levels of z differ (so that permuting them across runs moves z)."""
    level = np.bincount(codes, weights=z, minlength=n_groups) / np.bincount(codes, minlength=n_groups)
    return bool(np.ptp(level) > 1e-9 * (float(np.std(z)) + 1e-300))


# ---------------------------------------------------------------- result


@dataclasses.dataclass
class CovariateTest:
    """Does covariate `name` explain held-out performance beyond a monotone function of `axis`?"""

    axis: str
    name: str
    improvement: float                         # 1 - MSE_with / MSE_base, cross-validated
    ci: tuple[float, float] | None
    p_value: float | None
    mse_base: float
    mse_with: float
    coef: float                                # b on the whole data (per unit of the covariate)
    significant: bool
    # the equivalence test (loss axis only; None on the compute axis or without a bootstrap)
    effect: float | None = None                # per doubling of the covariate at equal loss, normalised
    effect_ci: tuple[float, float] | None = None   # its 1 - 2 alpha bootstrap interval over runs (TOST)
    margin: float | None = None
    equivalent: bool | None = None             # effect_ci inside +-margin
    power: float | None = None                 # chance of showing equivalence were the true effect 0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ci"] = list(self.ci) if self.ci else None
        d["effect_ci"] = list(self.effect_ci) if self.effect_ci else None
        return d

    def line(self) -> str:
        ci = f"[{self.ci[0]:+.3f}, {self.ci[1]:+.3f}]" if self.ci else "[-]"
        p = "-" if self.p_value is None else f"{self.p_value:.3f}"
        out = (f"{self.axis} + {self.name}: improvement {self.improvement:+.3f} {ci}, p {p}, "
               f"coef {self.coef:+.3g}{'  *' if self.significant else ''}")
        if self.effect is not None:
            eci = f"[{self.effect_ci[0]:+.3f}, {self.effect_ci[1]:+.3f}]" if self.effect_ci else "[-]"
            pw = "-" if self.power is None else f"{self.power:.2f}"
            verdict = {True: "equivalent", False: "not shown equivalent"}.get(self.equivalent, "untested")
            out += f"; effect {self.effect:+.3f} {eci} vs +-{self.margin:g}: {verdict} (power {pw})"
        return out


@dataclasses.dataclass(repr=False)
class SameLossResult(Result):
    task: str
    metric: str
    n_points: int
    n_runs: int
    spearman: float | None           # loss vs value (the paper's Table 2)
    pearson: float | None
    spearman_compute: float | None   # log compute vs value
    pearson_compute: float | None
    r2_loss: float | None            # out-of-sample R^2 of a monotone f(loss)
    r2_compute: float | None         # ... of a monotone f(log compute)
    tests: list[CovariateTest]
    holds: bool | None               # True: equivalence shown (each effect of N, D within the margin);
                                     # False: one adds significantly and is not equivalent; None: untested
                                     # or inconclusive (underpowered: see `reason`)
    compute_excess: float | None     # CV error of f(compute) over that of f(loss), minus 1 (> 0: loss is better)
    compute_excess_ci: tuple[float, float] | None
    compute_collapses: bool | None   # False: compute fits held-out runs significantly worse than loss,
                                     # or N adds significantly beyond compute
    reason: str = ""

    def test(self, axis: str, name: str) -> CovariateTest | None:
        return next((t for t in self.tests if t.axis == axis and t.name == name), None)

    def to_dict(self) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "tests"}
        d["tests"] = [t.to_dict() for t in self.tests]
        d["compute_excess_ci"] = list(self.compute_excess_ci) if self.compute_excess_ci else None
        return d

    def rows(self) -> list[dict]:
        """One row: correlations, `holds`, each covariate's improvement and p (`log_params_...`; those on
        the compute axis start `compute_`), and whether compute collapses the runs."""
        row = {"task": self.task, "metric": self.metric, "n_points": self.n_points, "n_runs": self.n_runs,
               "holds": self.holds, "spearman": self.spearman, "pearson": self.pearson}
        for t in self.tests:
            prefix = t.name if t.axis == "loss" else f"{t.axis}_{t.name}"
            lo, hi = t.ci or (None, None)
            row.update({f"{prefix}_improvement": t.improvement, f"{prefix}_lo": lo, f"{prefix}_hi": hi,
                        f"{prefix}_p": t.p_value, f"{prefix}_significant": t.significant})
        lo, hi = self.compute_excess_ci or (None, None)
        row.update({"compute_excess": self.compute_excess, "compute_excess_lo": lo, "compute_excess_hi": hi,
                    "compute_collapses": self.compute_collapses})
        return [row]

    def _repr_items(self) -> dict:
        return {"task": self.task, "metric": self.metric, "holds": self.holds,
                "compute_collapses": self.compute_collapses, "n_runs": self.n_runs}

    def plot(self, data):
        """Performance against loss and against compute, side by side, for the slice `data` this was
        computed from: at equal loss, do the runs of different sizes fall on one curve?"""
        from losslens.analysis import figures

        return figures.draw_same_loss(data, self)

    def summary(self) -> str:
        def f(v):
            return num(v, "+.3f")

        lines = [f"{self.task} / {self.metric}: same-loss "
                 f"{'holds' if self.holds else 'fails' if self.holds is False else 'not shown'}"
                 f" ({self.n_points} points, {self.n_runs} runs)",
                 f"  loss:    spearman {f(self.spearman)}  pearson {f(self.pearson)}  CV R^2 {f(self.r2_loss)}",
                 f"  compute: spearman {f(self.spearman_compute)}  pearson {f(self.pearson_compute)}  "
                 f"CV R^2 {f(self.r2_compute)}",
                 f"  compute vs loss: held-out error {f(self.compute_excess)} relative "
                 + (f"[{self.compute_excess_ci[0]:+.3f}, {self.compute_excess_ci[1]:+.3f}]"
                    if self.compute_excess_ci else "[-]")
                 + f" -> compute {'collapses' if self.compute_collapses else 'does not collapse'} the runs"]
        lines += [f"  {t.line()}" for t in self.tests]
        if self.reason:
            lines.append(f"  - {self.reason}")
        return "\n".join(lines)


# ---------------------------------------------------------------- the analysis


def covariate_test(axis_name, x, y, z, name, codes, n_groups, folds: Folds, base_err, cfg: SameLossConfig,
                   rng: np.random.Generator, *, scale: float | None = None) -> CovariateTest:
    """The cross-validated improvement (interval, permutation p) of adding z; with `scale` (the
    metric's chance-to-perfect distance) also the equivalence test of its effect."""
    err = folds.errors(y, z, max_iter=cfg.max_iter)
    imp = _improvement(base_err, err)
    e0 = np.bincount(codes, weights=base_err, minlength=n_groups)
    e1 = np.bincount(codes, weights=err, minlength=n_groups)
    ci = c = None
    if cfg.bootstrap > 0:
        c = st.bootstrap_group_counts(n_groups, cfg.bootstrap, rng)
        s0 = c @ e0
        ci = st.percentile_ci(1 - (c @ e1) / np.where(s0 > 0, s0, np.nan), cfg.level)
    p = None
    # Permuting moves only each run's level of z. When every run has the same level (all runs share one
    # checkpoint schedule, as Pythia's log D), a permutation changes nothing and p would be 1 whatever
    # the data: there is no permutation null, so p stays None and the interval alone decides.
    if cfg.permutations > 0 and _run_levels_differ(z, codes, n_groups):
        # Sequential Monte Carlo p-value (Besag & Clifford 1991): stop once `cfg.stop_after` permuted
        # improvements reach the observed one; p is then (that count) / (permutations run), else the
        # usual (1 + count) / (1 + permutations). Clear nulls stop early, clear effects run them all.
        hits = done = 0
        while done < cfg.permutations and hits < cfg.stop_after:
            zp = permute_across_runs(z, codes, n_groups, rng)
            hits += _improvement(base_err, folds.errors(y, zp, max_iter=cfg.max_iter)) >= imp
            done += 1
        p = hits / done if hits >= cfg.stop_after else (1 + hits) / (1 + done)
    coef = fit_partial(x, y, z, max_iter=cfg.max_iter)
    significant = (p is None or p < cfg.alpha) and (ci is None or ci[0] > 0) and imp > 0
    test = CovariateTest(axis_name, name, imp, ci, p, float(base_err.mean()), float(err.mean()), coef,
                         bool(significant))
    if scale is not None:
        equivalence(test, x, y, z, codes, c, cfg, scale)
    return test


def spline_basis(x: np.ndarray, knots: int = 4) -> np.ndarray:
    """Cubic B-spline basis of x with `knots` interior knots at its quantiles (columns sum to 1)."""
    lo, hi = float(x.min()), float(x.max())
    inner = np.unique(np.quantile(x, np.linspace(0, 1, knots + 2)[1:-1]))
    t = np.r_[[lo] * 4, inner[(inner > lo) & (inner < hi)], [hi] * 4]
    return BSpline.design_matrix(np.clip(x, lo, hi), t, 3).toarray()


def effect_per_doubling(x, y, z, weights: np.ndarray) -> np.ndarray:
    """b in y ~ spline(x) + b z by weighted least squares, for each row of `weights` (B, n), times ln 2.
    A smooth f, unlike the isotonic one, leaves b identified in every resample: an isotonic f can absorb
    z wherever runs do not overlap in loss, and b is then any value of an interval."""
    X = np.column_stack([spline_basis(x), z - z.mean()])
    n, k = X.shape
    # X'WX and X'Wy for every resample at once: two matrix products over the rows.
    XtWX = (weights @ (X[:, :, None] * X[:, None, :]).reshape(n, k * k)).reshape(-1, k, k)
    XtWy = weights @ (X * y[:, None])
    ev = np.linalg.eigvalsh(XtWX)
    ok = ev[:, 0] > 1e-10 * np.maximum(ev[:, -1], 1e-300)  # a resample with one level of z (or too few
    out = np.full(len(weights), np.nan)                     # losses) says nothing about b
    if ok.any():
        out[ok] = np.linalg.solve(XtWX[ok], XtWy[ok][:, :, None])[:, -1, 0]
    return out * np.log(2.0)


def equivalence(test: CovariateTest, x, y, z, codes, counts, cfg: SameLossConfig, scale: float) -> None:
    """Two one-sided tests (Schuirmann 1987) on the effect per doubling of the covariate at equal loss,
    in normalised units (b ln 2 / scale, b from y ~ spline(loss) + b z): equivalent when its
    1 - 2 alpha interval lies inside +-margin. The interval resamples runs whole (the same resamples as
    the improvement's): checkpoints of one run, scored on the same items, are not independent, so the
    run is the unit. Power: the chance that an estimate with this spread shows equivalence when the
    true effect is 0, 2 Phi(margin / se - z_{1-alpha}) - 1."""
    test.margin = cfg.margin
    test.effect = float(effect_per_doubling(x, y, z, np.ones((1, len(y))))[0] / scale)
    if counts is None or not np.isfinite(test.effect):
        return
    boot = effect_per_doubling(x, y, z, counts[:, codes]) / scale
    test.effect_ci = st.percentile_ci(boot, 1 - 2 * cfg.equivalence_alpha)
    finite = boot[np.isfinite(boot)]
    if test.effect_ci is None or len(finite) < max(10, len(boot) // 2):
        test.effect_ci = None  # most resamples cannot estimate the effect: no interval to trust
        return
    test.equivalent = bool(-cfg.margin < test.effect_ci[0] and test.effect_ci[1] < cfg.margin)
    se = float(np.std(finite, ddof=1))
    z_a = float(stats.norm.isf(cfg.equivalence_alpha))
    test.power = float(max(0.0, 2 * stats.norm.cdf(cfg.margin / se - z_a) - 1)) if se > 0 else 1.0


def _scale(sub: pd.DataFrame) -> float:
    """The metric's chance-to-perfect distance (normalised units), or its observed range without a chance."""
    chance = pd.to_numeric(sub["chance"], errors="coerce").iloc[0] if "chance" in sub.columns else np.nan
    hib = bool(sub["higher_is_better"].iloc[0]) if "higher_is_better" in sub.columns else True
    perfect = pd.to_numeric(sub["perfect"], errors="coerce").iloc[0] if "perfect" in sub.columns else np.nan
    perfect = (1.0 if hib else 0.0) if not np.isfinite(perfect) else float(perfect)
    scale = abs(perfect - chance) if np.isfinite(chance) else float(np.ptp(sub["value"].to_numpy(float)))
    return scale if scale > 0 else 1.0


def _holds(loss_tests: list[CovariateTest], cfg: SameLossConfig) -> tuple[bool | None, str]:
    """Equivalence shown for every covariate: holds; one significant and not equivalent: fails; else
    not shown (inconclusive, with the power that says why)."""
    if not loss_tests:
        return None, "no covariate varies (one model size and one token count)"
    if all(t.equivalent for t in loss_tests):
        return True, ""
    if any(t.significant and not t.equivalent for t in loss_tests):
        return False, ""
    open_ = [t for t in loss_tests if not t.equivalent]
    parts = []
    for t in open_:
        eci = f"[{t.effect_ci[0]:+.3f}, {t.effect_ci[1]:+.3f}]" if t.effect_ci else "no interval"
        pw = "-" if t.power is None else f"{t.power:.2f}"
        parts.append(f"{t.name} effect {t.effect:+.3f} {eci} (power {pw})")
    return None, (f"inconclusive: equivalence within +-{cfg.margin:g} not shown for " + "; ".join(parts)
                  + " - more runs (sizes, budgets) or items would settle it")


def analyze_same_loss(sub: pd.DataFrame, cfg: SameLossConfig | None = None, *, seed: int = 0) -> SameLossResult:
    """Run the same-loss test on one (task, metric) slice of a tidy table."""
    cfg = cfg or SameLossConfig()
    rng = np.random.default_rng(seed)
    task, metric = str(sub["task"].iloc[0]), str(sub["metric"].iloc[0])
    loss = sub["loss"].to_numpy(float)
    value = sub["value"].to_numpy(float)
    logn = np.log(sub["params"].to_numpy(float))
    logd = np.log(sub["tokens"].to_numpy(float))
    logc = np.log(6.0) + logn + logd
    y = _normalised(sub)
    codes, n_groups = st.group_codes(sub["model"])
    sp, pe = st.correlations(loss, value)
    spc, pec = st.correlations(logc, value)
    base = dict(task=task, metric=metric, n_points=len(y), n_runs=n_groups, spearman=sp, pearson=pe,
                spearman_compute=spc, pearson_compute=pec)
    if n_groups < cfg.min_runs:
        return SameLossResult(**base, r2_loss=None, r2_compute=None, tests=[], holds=None,
                              compute_excess=None, compute_excess_ci=None, compute_collapses=None,
                              reason=f"only {n_groups} runs (need {cfg.min_runs}): nothing to hold out")
    fold_of = st.grouped_folds(codes, n_groups, min(cfg.folds, n_groups), rng)
    var = float(((y - y.mean()) ** 2).mean())
    tests = []
    r2, run_err = {}, {}
    scale = _scale(sub)
    for axis_name, x, covariates in (("loss", loss, (("log_params", logn), ("log_tokens", logd))),
                                     ("compute", -logc, (("log_params", logn),))):
        folds = Folds(x, fold_of)
        base_err = folds.errors(y, max_iter=cfg.max_iter)
        r2[axis_name] = float(1 - base_err.mean() / var) if var > 0 else None
        run_err[axis_name] = np.bincount(codes, weights=base_err, minlength=n_groups)
        for name, z in covariates:
            if np.ptp(z) == 0:
                continue  # one size only: nothing to test
            tests.append(covariate_test(axis_name, x, y, z, name, codes, n_groups, folds, base_err, cfg, rng,
                                        scale=scale if axis_name == "loss" else None))
    # Does compute collapse the runs as well as loss does? Compare the two axes' held-out errors,
    # paired by run, with a bootstrap over runs.
    e_loss, e_comp = run_err["loss"], run_err["compute"]
    excess = float(e_comp.sum() / e_loss.sum() - 1) if e_loss.sum() > 0 else None
    excess_ci = None
    if cfg.bootstrap > 0 and excess is not None:
        c = st.bootstrap_group_counts(n_groups, cfg.bootstrap, rng)
        s_loss = c @ e_loss
        excess_ci = st.percentile_ci((c @ e_comp) / np.where(s_loss > 0, s_loss, np.nan) - 1, cfg.level)
    holds, reason = _holds([t for t in tests if t.axis == "loss"], cfg)
    compute_worse = excess_ci is not None and excess_ci[0] > 0
    return SameLossResult(**base, r2_loss=r2["loss"], r2_compute=r2["compute"], tests=tests, holds=holds,
                          compute_excess=excess, compute_excess_ci=excess_ci,
                          compute_collapses=not (compute_worse or any(t.significant for t in tests
                                                                      if t.axis == "compute")),
                          reason=reason)
