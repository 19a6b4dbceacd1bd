"""Predicting task performance: backtests from higher-loss models, Bhagia et al.'s two-step ladder
prediction, and the reproduction of Gadre et al.'s chained loss -> error predictions.

Backtest (`backtest`): can the performance of the lowest-loss models be predicted from the others?
Fit on the points with loss above a cut, predict the points at or below it. For an emergent task the
cut is its eta (`eta=`, passed by `analysis.pipeline.analyze_task`), so the fit sees only the models
with higher loss than the threshold: this is the paper's claim 3, "not predictable from the
performance trend of higher-loss models", tested per emergent task. Otherwise the default cut is the
1/3 quantile of the distinct losses (the lowest-loss third is held out). Candidate curves of value
against loss, fitted by least squares on the fit set: constant, linear, and a sigmoid
c + a / (1 + exp(k (L - L0))) (k >= 0; the sign of a sets the direction); the one with the lowest
AICc is used. Verdict "predictable" when the mean absolute error on the held-out points is at most
the tolerance max(2 sigma, 0.1 R), where both sigma and R come from the fit set alone (the held-out
points are what is being predicted, so they must not widen the yardstick): sigma is the noise, the
larger of the chosen fit's residual SD and, for count metrics (`table.is_binomial`) with a known item
count n, the binomial SD sqrt(p (1 - p) / n) of the fitted values (root mean square); R is the range
of the fit set's values. Predictions of proportions (`table.is_proportion`) are clipped to [0, 1]. A
task flat at chance above the cut that rises below it is therefore "not_predictable": its high-loss
models say nothing about the rise.

Two-step prediction (`fit_two_step`, Bhagia et al. 2024): step 1 fits the task loss (bits per byte
of the correct answer) from (N, D) with the Chinchilla form, as the paper's code does
(`scaling.fit_chinchilla_bounded`: Huber on log L, E >= 0, L-BFGS-B from the paper's start);
step 2 fits Acc(L) = a / (1 + exp(-k (L - L0))) + b on (task loss, accuracy) pairs of the
ladder's checkpoints, as the paper's code: least squares with bounds -1 <= a <= 0, L0 >= 0, k >= 0,
0 <= b <= 1, start (chance - 1, 0.9, 3, 1), and two anchor points (L = 0, maximum) and
(L = max observed, chance). `olmo_target_errors` runs it on the OLMo ladder for the 7B and 13B targets.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit

from losslens.analysis.result import Result
from losslens.analysis.scaling import (
    ChinchillaFit,
    GadreErrorFit,
    GadreLossFit,
    fit_chinchilla,
    fit_chinchilla_bounded,
    fit_gadre_error,
    fit_gadre_loss,
    one_blas_thread,
)
from losslens.analysis.table import is_binomial, is_proportion

CUT_QUANTILE = 1 / 3     # default cut: this quantile of the distinct losses (the lowest third is held out)
NOISE_MULTIPLE = 2.0     # tolerance: this many noise SDs ...
RANGE_FRACTION = 0.1     # ... or this fraction of the observed range, whichever is larger


# --- backtest ---------------------------------------------------------------------------------------

def _sigmoid_down(x, c, a, k, x0):
    """c + a / (1 + exp(k (x - x0))): moves by a as x decreases through x0 (k >= 0)."""
    return c + a * expit(-k * (x - x0))


def _sigmoid_jac(x, c, a, k, x0):
    s = expit(-k * (x - x0))
    ds = s * (1 - s)
    return np.column_stack([np.ones_like(x), s, -a * ds * (x - x0), a * ds * k])


def _fit_sigmoid(x: np.ndarray, y: np.ndarray):
    """Least-squares c + a / (1 + exp(k (x - L0))): for fixed (k, L0) the curve is linear in (c, a),
    so (c, a) are solved in closed form over a grid of (k, L0) and the best point is refined by
    curve_fit. Returns (params, SSR) or None."""
    span = np.ptp(x)
    k = np.geomspace(0.5, 200.0, 25)[:, None, None] / span
    x0 = np.linspace(x.min() - 0.5 * span, x.max() + 0.5 * span, 31)[None, :, None]
    S = expit(-k * (x - x0)).reshape(-1, len(x))
    Sc = S - S.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    var = np.einsum("gi,gi->g", Sc, Sc)
    cov = Sc @ yc
    ok = var > 1e-12 * len(x)
    ssr = np.where(ok, yc @ yc - cov**2 / np.where(ok, var, 1.0), np.inf)
    g = int(np.argmin(ssr))
    if not np.isfinite(ssr[g]):
        return None
    a = cov[g] / var[g]
    kk, xx = np.broadcast_to(k, (25, 31, 1)).ravel()[g], np.broadcast_to(x0, (25, 31, 1)).ravel()[g]
    p0 = np.array([y.mean() - a * S[g].mean(), a, kk, xx])
    best = (p0, float(ssr[g]))
    lower = [-np.inf, -np.inf, 0.0, x.min() - 2 * span]
    upper = [np.inf, np.inf, 400.0 / span, x.max() + 2 * span]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            p, _ = curve_fit(_sigmoid_down, x, y, p0=np.clip(p0, lower, upper), jac=_sigmoid_jac,
                             bounds=(lower, upper), maxfev=400)
        refined = float(np.sum((y - _sigmoid_down(x, *p)) ** 2))
        if np.isfinite(refined) and refined < best[1]:
            best = (p, refined)
    except (RuntimeError, ValueError):  # keep the grid optimum
        pass
    return best


def _fit_forms(x: np.ndarray, y: np.ndarray) -> dict:
    """Least-squares fits of the candidate forms: name -> (predict function, n_params, SSR, params)."""
    n = len(x)
    forms = {"constant": (lambda t, c=float(np.mean(y)): np.full(np.shape(t), c), 1,
                          float(np.sum((y - y.mean()) ** 2)), {"c": float(np.mean(y))})}
    if n >= 3 and np.ptp(x) > 0:
        slope, icept = np.polyfit(x, y, 1)
        forms["linear"] = (lambda t, s=slope, i=icept: i + s * np.asarray(t), 2,
                           float(np.sum((y - (icept + slope * x)) ** 2)),
                           {"intercept": float(icept), "slope": float(slope)})
    if n >= 6 and np.ptp(x) > 0:
        fit = _fit_sigmoid(x, y)
        if fit is not None:
            p, ssr = fit
            forms["sigmoid"] = (lambda t, p=p: _sigmoid_down(np.asarray(t, float), *p), 4, ssr,
                                dict(zip(("c", "a", "k", "L0"), map(float, p))))
    return forms


def _aicc(ssr: float, n: int, k: int) -> float:
    if n - k - 1 <= 0:
        return np.inf
    return n * np.log(max(ssr, 1e-300) / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


@dataclasses.dataclass(frozen=True, repr=False)
class BacktestResult(Result):
    task: str
    metric: str
    verdict: str          # "predictable", "not_predictable", or "inconclusive" (too few points)
    cut: float            # fit on loss > cut, predict loss <= cut
    cut_rule: str
    n_fit: int
    n_test: int
    form: str | None      # the chosen curve: constant, linear or sigmoid
    params: dict
    mae: float | None     # mean absolute error on the held-out points
    max_error: float | None
    tolerance: float | None
    noise: float | None
    value_range: float    # of the fit set's values
    reason: str
    test_loss: np.ndarray = dataclasses.field(default=None, repr=False, compare=False)
    test_value: np.ndarray = dataclasses.field(default=None, repr=False, compare=False)
    test_pred: np.ndarray = dataclasses.field(default=None, repr=False, compare=False)

    def summary(self) -> str:
        if self.mae is None:
            return f"backtest {self.task}/{self.metric}: {self.verdict} ({self.reason})"
        return (f"backtest {self.task}/{self.metric}: {self.verdict} - fit {self.form} on {self.n_fit} points with "
                f"loss > {self.cut:.4g} ({self.cut_rule}), predicted {self.n_test} below: MAE {self.mae:.3g}, "
                f"max {self.max_error:.3g}, tolerance {self.tolerance:.3g} (noise {self.noise:.3g}, "
                f"range {self.value_range:.3g})")

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("verdict", "cut", "cut_rule", "n_fit", "n_test", "form", "params",
                                               "mae", "max_error", "tolerance", "noise", "value_range", "reason")}

    def rows(self) -> list[dict]:
        return [{"task": self.task, "metric": self.metric, "verdict": self.verdict, "cut": self.cut,
                 "n_fit": self.n_fit, "n_test": self.n_test, "form": self.form, "mae": self.mae,
                 "max_error": self.max_error, "tolerance": self.tolerance}]

    def _repr_items(self) -> dict:
        return {"task": self.task, "metric": self.metric, "verdict": self.verdict, "mae": self.mae,
                "tolerance": self.tolerance}

    def plot(self, data=None, *, x_label: str = "loss"):
        """The held-out points, their predictions and (with the slice `data`) the points fitted above the cut."""
        from losslens.analysis import figures

        return figures.draw_backtest(data, self, x_label)


@one_blas_thread
def backtest(sub: pd.DataFrame, *, cut: float | None = None, eta: float | None = None,
             seed: int = 0) -> BacktestResult:
    """Backtest one (task, metric) slice of a tidy table; see the module docstring for the criterion.

    `eta` (an emergent task's threshold) sets the cut: fit above eta, predict at and below it. Else
    `cut`, else the 1/3 quantile of the distinct losses. The fits are deterministic; `seed` is accepted
    so every per-task analysis takes the same arguments."""
    task = str(sub["task"].iloc[0]) if "task" in sub and len(sub) else ""
    metric = str(sub["metric"].iloc[0]) if "metric" in sub and len(sub) else ""
    x = sub["loss"].to_numpy(float)
    y = sub["value"].to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n_items = sub["n"].to_numpy(float)[ok] if "n" in sub else np.full(len(x), np.nan)
    if eta is not None and np.isfinite(eta):
        cut, rule = float(eta), "eta (the emergence threshold)"
    elif cut is None:
        distinct = np.unique(x)
        cut = float(np.quantile(distinct, CUT_QUANTILE)) if len(distinct) else np.nan
        rule = f"{CUT_QUANTILE:.3g} quantile of the distinct losses"
    else:
        rule = "given"
    fit, test = x > cut, x <= cut
    n_fit, n_test = int(fit.sum()), int(test.sum())
    value_range = float(np.ptp(y[fit])) if n_fit else 0.0   # the fit set's range: held-out points set no yardstick
    base = dict(task=task, metric=metric, cut=float(cut), cut_rule=rule, n_fit=n_fit, n_test=n_test,
                value_range=value_range)
    if n_fit < 3 or n_test < 1 or np.unique(x[fit]).size < 3:
        return BacktestResult(verdict="inconclusive", form=None, params={}, mae=None, max_error=None, tolerance=None,
                              noise=None, reason=f"need >= 3 distinct losses above the cut and >= 1 below "
                              f"(have {n_fit} above, {n_test} below)", **base)
    forms = _fit_forms(x[fit], y[fit])
    form = min(forms, key=lambda f: _aicc(forms[f][2], n_fit, forms[f][1]))
    predict, k, ssr, params = forms[form]
    pred = predict(x[test])
    if is_proportion(metric):  # predictions cannot leave [0, 1]
        pred = np.clip(pred, 0.0, 1.0)
    err = np.abs(pred - y[test])
    noise = float(np.sqrt(ssr / max(n_fit - k, 1)))
    n_fit_items = n_items[fit]
    if is_binomial(metric) and np.all(np.isfinite(n_fit_items) & (n_fit_items > 0)):
        # Root mean square of each point's own binomial SD, not divided by sqrt(points): checkpoints
        # scored on the same items share their item sample, so averaging does not shrink this noise.
        p = np.clip(y[fit], 0.0, 1.0)
        noise = max(noise, float(np.sqrt(np.mean(p * (1 - p) / n_fit_items))))
    tolerance = max(NOISE_MULTIPLE * noise, RANGE_FRACTION * value_range)
    mae = float(err.mean())
    verdict = "predictable" if mae <= tolerance else "not_predictable"
    reason = (f"held-out MAE {mae:.3g} {'<=' if mae <= tolerance else '>'} tolerance {tolerance:.3g} "
              f"= max({NOISE_MULTIPLE:g} x noise, {RANGE_FRACTION:g} x range), both from the fit set")
    return BacktestResult(verdict=verdict, form=form, params=params, mae=mae, max_error=float(err.max()),
                          tolerance=float(tolerance), noise=noise, reason=reason, test_loss=x[test],
                          test_value=y[test], test_pred=pred, **base)


# --- where an ability appears: eta through the scaling law -----------------------------------------

TOKENS_PER_PARAM = 20.0   # Chinchilla-optimal budget: D = 20 N


@dataclasses.dataclass(frozen=True)
class EmergenceScale:
    """The model size N (and compute C = 6 N D, D = tokens_per_param x N) at which the fitted law's loss
    L(N, D) reaches an emergent task's eta: the paper's Eq. 5 with the Chinchilla law in place of Eq. 4."""

    task: str
    metric: str
    eta: float
    tokens_per_param: float
    params: float | None          # N with L(N, tokens_per_param N) = eta; None if the law never gets there
    tokens: float | None
    compute: float | None
    params_ci: tuple | None       # from eta's interval (its upper end gives the smaller N), point law
    compute_ci: tuple | None
    params_ci_with_law: tuple | None   # the same ends through every bootstrap refit of the law (2.5-97.5%)
    compute_ci_with_law: tuple | None
    reason: str = ""

    def summary(self) -> str:
        if self.params is None:
            return f"onset {self.task}/{self.metric}: {self.reason}"

        def ci(c):
            return f" [{c[0]:.3g}, {c[1]:.3g}]" if c else ""
        return (f"onset {self.task}/{self.metric}: loss reaches eta {self.eta:.4g} at N {self.params:.3g}"
                f"{ci(self.params_ci)} (with the law's bootstrap{ci(self.params_ci_with_law) or ' -'}), "
                f"D = {self.tokens_per_param:g} N, compute {self.compute:.3g}{ci(self.compute_ci)} FLOPs")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("params_ci", "compute_ci", "params_ci_with_law", "compute_ci_with_law"):
            d[k] = list(d[k]) if d[k] else None
        return d


def size_at_loss(law_params: np.ndarray, eta: np.ndarray, tokens_per_param: float) -> np.ndarray:
    """N solving E + A/N^alpha + B/(k N)^beta = eta for each row (A, B, E, alpha, beta) and eta (broadcast):
    bisection in log N over [1, 1e30] (L falls monotonically in N); NaN where eta <= E (never reached) or
    even N = 1 is below eta."""
    A, B, E, alpha, beta = (np.asarray(law_params, float)[..., i] for i in range(5))
    eta = np.asarray(eta, float)

    def loss(logn):
        return E + A * np.exp(-alpha * logn) + B * np.exp(-beta * (logn + np.log(tokens_per_param)))

    lo, hi = np.zeros(np.broadcast(A, eta).shape), np.full(np.broadcast(A, eta).shape, np.log(1e30))
    ok = (loss(lo) > eta) & (loss(hi) < eta)
    for _ in range(80):  # interval of 69 nats halved 80 times: far below float precision
        mid = (lo + hi) / 2
        above = loss(mid) > eta
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return np.where(ok, np.exp((lo + hi) / 2), np.nan)


def emergence_scale(law, task: str, metric: str, eta: float, eta_ci=None, *,
                    tokens_per_param: float = TOKENS_PER_PARAM) -> EmergenceScale:
    """Where an emergent ability appears in model size and compute, from its eta and a fitted Chinchilla
    law (`scaling.ChinchillaFit`). Intervals: eta's interval through the point law, and through each of
    the law's bootstrap refits (`law.samples`) when it has them."""
    point = np.array([law.A, law.B, law.E, law.alpha, law.beta])
    n = float(size_at_loss(point, eta, tokens_per_param))
    base = dict(task=task, metric=metric, eta=float(eta), tokens_per_param=float(tokens_per_param))
    if not np.isfinite(n):
        why = (f"never: eta {eta:.4g} is at or below the law's irreducible loss E {law.E:.4g}" if eta <= law.E
               else f"eta {eta:.4g} is above the law's loss at N = 1")
        return EmergenceScale(**base, params=None, tokens=None, compute=None, params_ci=None, compute_ci=None,
                              params_ci_with_law=None, compute_ci_with_law=None, reason=why)

    def compute(N):
        return 6.0 * tokens_per_param * np.asarray(N, float) ** 2

    params_ci = ci_law = None
    if eta_ci is not None and all(v is not None and np.isfinite(v) for v in eta_ci):
        ends = size_at_loss(point, np.array([max(eta_ci), min(eta_ci)]), tokens_per_param)  # high eta: small N
        params_ci = (float(ends[0]), float(ends[1])) if np.isfinite(ends[0]) else None
        if params_ci is not None and not np.isfinite(ends[1]):
            params_ci = (float(ends[0]), float("inf"))
        samples = getattr(law, "samples", None)
        if samples is not None and len(samples):
            lo = size_at_loss(samples, max(eta_ci), tokens_per_param)
            hi = size_at_loss(samples, min(eta_ci), tokens_per_param)
            hi = np.where(np.isnan(hi) & np.isfinite(lo), np.inf, hi)  # eta's low end never reached: no bound
            if np.isfinite(lo).sum() >= 10:
                ci_law = (float(np.nanquantile(lo, 0.025)), float(np.nanquantile(hi, 0.975)))
    return EmergenceScale(**base, params=n, tokens=tokens_per_param * n, compute=float(compute(n)),
                          params_ci=params_ci, compute_ci=tuple(map(float, compute(params_ci))) if params_ci else None,
                          params_ci_with_law=ci_law,
                          compute_ci_with_law=tuple(map(float, compute(ci_law))) if ci_law else None)


# --- two-step prediction (Bhagia et al. 2024) -------------------------------------------------------

def accuracy_sigmoid(L, a, L0, k, b):
    """Acc(L) = a / (1 + exp(-k (L - L0))) + b; with a < 0 accuracy falls from b towards a + b as L grows."""
    return a * expit(k * (np.asarray(L, float) - L0)) + b


@dataclasses.dataclass(frozen=True)
class SigmoidFit:
    a: float
    L0: float
    k: float
    b: float
    n_points: int
    rmse: float

    def predict(self, task_loss) -> np.ndarray:
        return accuracy_sigmoid(task_loss, self.a, self.L0, self.k, self.b)

    def summary(self) -> str:
        return (f"Acc(L) = {self.a:.3f} / (1 + exp(-{self.k:.3f} (L - {self.L0:.3f}))) + {self.b:.3f}  "
                f"({self.n_points} points, rmse {self.rmse:.3g})")

    def to_dict(self) -> dict:
        return {"form": "Acc(L) = a / (1 + exp(-k (L - L0))) + b", "a": self.a, "L0": self.L0, "k": self.k,
                "b": self.b, "n_points": self.n_points, "rmse": self.rmse}


@one_blas_thread
def fit_accuracy_sigmoid(task_loss, accuracy, *, chance: float, maximum: float = 1.0) -> SigmoidFit:
    """Step 2 of Bhagia et al.: the bounded sigmoid with the two anchor points (see the module docstring)."""
    x = np.asarray(task_loss, float).ravel()
    y = np.asarray(accuracy, float).ravel()
    if len(x) != len(y) or len(x) < 4:
        raise ValueError(f"need >= 4 (task loss, accuracy) pairs of equal length; got {len(x)} and {len(y)}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("task loss and accuracy must be finite")
    xa, ya = np.append(x, [0.0, x.max()]), np.append(y, [maximum, chance])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        p, _ = curve_fit(accuracy_sigmoid, xa, ya, p0=[chance - 1.0, 0.9, 3.0, 1.0],
                         bounds=([-1.0, 0.0, 0.0, 0.0], [0.0, np.inf, np.inf, 1.0]), maxfev=500000)
    rmse = float(np.sqrt(np.mean((y - accuracy_sigmoid(x, *p)) ** 2)))
    return SigmoidFit(*(float(v) for v in p), n_points=len(x), rmse=rmse)


@dataclasses.dataclass(frozen=True)
class TwoStepFit:
    step1: ChinchillaFit  # task loss from (N, D)
    step2: SigmoidFit     # accuracy from task loss

    def predict(self, N, D) -> tuple[np.ndarray, np.ndarray]:
        """(predicted task loss, predicted accuracy) at model size N and tokens D."""
        task_loss = self.step1.predict(N, D)
        return task_loss, self.step2.predict(task_loss)

    def summary(self) -> str:
        s1 = self.step1
        return (f"step 1: task loss = {s1.E:.4g} + {s1.A:.4g}/N^{s1.alpha:.4g} + {s1.B:.4g}/D^{s1.beta:.4g} "
                f"({s1.n_points} points)\nstep 2: {self.step2.summary()}")

    def to_dict(self) -> dict:
        return {"step1": self.step1.to_dict(), "step2": self.step2.to_dict()}


def fit_two_step(params, tokens, task_loss, step2_task_loss, step2_accuracy, *, chance: float,
                 maximum: float = 1.0, step1: str = "bounded") -> TwoStepFit:
    """Fit both steps: (params, tokens, task_loss) are the ladder runs' final points for step 1;
    (step2_task_loss, step2_accuracy) the checkpoints' pairs for step 2.

    step1="bounded" (default) is the paper's own fit (`scaling.fit_chinchilla_bounded`: E >= 0 linear,
    one L-BFGS-B start); "grid" uses `scaling.fit_chinchilla` (log-space E, 4,500 starts, no bootstrap).
    """
    if step1 == "bounded":
        law = fit_chinchilla_bounded(params, tokens, task_loss)
    elif step1 == "grid":
        law = fit_chinchilla(params, tokens, task_loss, bootstrap=0)
    else:
        raise ValueError(f"step1 must be 'bounded' or 'grid', not {step1!r}")
    return TwoStepFit(law, fit_accuracy_sigmoid(step2_task_loss, step2_accuracy, chance=chance, maximum=maximum))


@dataclasses.dataclass(frozen=True)
class TargetPrediction:
    task: str
    target: str
    params: float
    tokens: float
    task_loss: float
    task_loss_pred: float
    accuracy: float
    accuracy_pred: float

    @property
    def abs_error(self) -> float:
        """Absolute error of the predicted accuracy, in points (0-100)."""
        return 100.0 * abs(self.accuracy_pred - self.accuracy)


@dataclasses.dataclass(frozen=True)
class OlmoTargetErrors:
    predictions: list       # TargetPrediction per (task, target)
    fits: dict              # task -> TwoStepFit
    moving_avg: int
    claim_tasks: tuple = ("mmlu", "hellaswag", "piqa", "socialiqa")  # "within 2 points" in Bhagia et al.

    def error(self, task: str, target: str) -> float:
        return next(p.abs_error for p in self.predictions if p.task == task and p.target == target)

    def summary(self) -> str:
        targets = list(dict.fromkeys(p.target for p in self.predictions))
        lines = [f"OLMo ladder -> targets, two-step prediction (step 1 on the mean task loss of each ladder run's "
                 f"last {self.moving_avg} evals); absolute accuracy error in points",
                 f"  {'task':<14}" + "".join(f"{t + ' actual':>15}{'predicted':>11}{'error':>8}" for t in targets)]
        for task in dict.fromkeys(p.task for p in self.predictions):
            row = f"  {task:<14}"
            for t in targets:
                p = next(q for q in self.predictions if q.task == task and q.target == t)
                row += f"{100 * p.accuracy:>15.1f}{100 * p.accuracy_pred:>11.1f}{p.abs_error:>8.2f}"
            lines.append(row)
        within = [t for t in self.claim_tasks if all(p.abs_error <= 2.0 for p in self.predictions if p.task == t)]
        missed = [t for t in self.claim_tasks if t not in within and any(p.task == t for p in self.predictions)]
        lines.append(f"  Bhagia et al.'s claim, within 2 points on {', '.join(self.claim_tasks)} for both targets: "
                     f"holds here for {', '.join(within) or 'none'}"
                     + (f"; not for {', '.join(missed)}" if missed else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"moving_avg": self.moving_avg,
                "predictions": [{**dataclasses.asdict(p), "abs_error_points": p.abs_error} for p in self.predictions],
                "fits": {task: fit.to_dict() for task, fit in self.fits.items()}}


def _accuracy_metric(df: pd.DataFrame, task: str) -> str:
    metrics = set(df.loc[df["task"] == task, "metric"])
    for m in ("acc_norm", "acc"):
        if m in metrics:
            return m
    raise ValueError(f"task {task!r} has no accuracy metric (acc_norm or acc)")


@one_blas_thread
def olmo_target_errors(table, *, moving_avg: int = 5, tasks=None) -> OlmoTargetErrors:
    """Predict the OLMo 7B and 13B targets' accuracies from the ladder runs (the table from
    `sources.olmo.load`); per task and target the absolute error, as in Bhagia et al.

    Step 1 fits each ladder run's final task loss, averaged over its last `moving_avg` evals (the
    paper's scripts' `--moving_avg`; 1 = the last row only), at its final token count. Step 2 uses every
    ladder checkpoint. Each target is its file's last row: N from the paper's configs, D its tokens.
    """
    extras = table.extras
    if "paper_ladder" not in extras or "paper_targets" not in extras:
        raise ValueError("not an OLMo ladder table: load it with losslens.analysis.sources.olmo")
    df = table.df
    ladder = [m for m in extras["paper_ladder"] if m in set(df["model"])]
    targets = {label: stem for label, stem in extras["paper_targets"].items() if stem in set(df["model"])}
    if len(ladder) < 5 or not targets:
        raise ValueError(f"need the ladder runs and targets of the paper's configuration; have {len(ladder)} runs "
                         f"and targets {list(targets)}")
    predictions, fits = [], {}
    for task in tasks or extras["paper_tasks"]:
        rows = df[df["task"] == task]
        acc_metric = _accuracy_metric(df, task)
        pairs = (rows[rows["metric"] == "bpb"][["model", "params", "tokens", "value"]]
                 .merge(rows[rows["metric"] == acc_metric][["model", "tokens", "value", "chance"]],
                        on=["model", "tokens"], suffixes=("_loss", "_acc"))
                 .sort_values(["model", "tokens"], kind="stable"))
        lad = pairs[pairs["model"].isin(ladder)]
        finals = lad.groupby("model", sort=False).agg(
            params=("params", "first"), tokens=("tokens", "last"),
            task_loss=("value_loss", lambda v: v.iloc[-moving_avg:].mean()))
        fit = fit_two_step(finals["params"], finals["tokens"], finals["task_loss"], lad["value_loss"],
                           lad["value_acc"], chance=float(lad["chance"].iloc[0]))
        fits[task] = fit
        for label, stem in targets.items():
            last = pairs[pairs["model"] == stem].iloc[-1]
            loss_pred, acc_pred = fit.predict(last["params"], last["tokens"])
            predictions.append(TargetPrediction(task, label, float(last["params"]), float(last["tokens"]),
                                                float(last["value_loss"]), float(loss_pred),
                                                float(last["value_acc"]), float(acc_pred)))
    return OlmoTargetErrors(predictions, fits, moving_avg)


# --- Gadre et al. 2024: chained loss -> top-1 error predictions -------------------------------------

SMALL_SHAPES = ("d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8")
GADRE_TARGETS = (("open_lm_1b", 32.0), ("open_lm_7b", 1.0))  # (shape, Chinchilla multiplier); M = 20 x multiplier


@dataclasses.dataclass(frozen=True)
class GadrePredictions:
    loss_fit: GadreLossFit
    error_fit: GadreErrorFit
    rows: list  # dict per target: model, params, M, loss, loss_pred, loss_rel_error, error, error_pred, error_rel_error
    train: str
    downstream: str

    def summary(self) -> str:
        lines = [f"Gadre et al. reproduction (train {self.train}, loss = C4 eval, downstream = {self.downstream}):",
                 f"  {self.loss_fit.summary()}", f"  {self.error_fit.summary()}"]
        for r in self.rows:
            lines.append(f"  {r['model']} (M={r['M']:g}): loss {r['loss']:.4f} predicted {r['loss_pred']:.4f} "
                         f"(relative error {100 * r['loss_rel_error']:.4f}%), top-1 error {r['error']:.4f} "
                         f"predicted {r['error_pred']:.4f} ({100 * r['error_rel_error']:.4f}%)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"train": self.train, "downstream": self.downstream, "loss_law": self.loss_fit.to_dict(),
                "error_law": self.error_fit.to_dict(), "targets": self.rows}


@one_blas_thread
def gadre_predictions(table, *, train: str = "rpj", downstream: str = "avg_17_subset") -> GadrePredictions:
    """Gadre et al.'s Figure 1: fit the loss law on 5 small models (the 4 small shapes at M = 20 and
    d=96 at M = 320), the error law on those plus the 1.4B at M = 20, and predict loss and error of the
    1.4B at M = 640 and the 6.9B at M = 20, the predicted loss feeding the error law."""
    models = table.extras.get("models")
    if models is None:
        raise ValueError("not a Gadre table: load it with losslens.analysis.sources.gadre")
    err_col = {"avg_17_subset": "err_avg_17_subset", "avg_46": "err_avg_46"}[downstream]
    m = models[models["dataset"] == train]
    small = m["shape"].isin(SMALL_SHAPES) & (m["multiplier"] == 1.0)
    loss_pts = m[small | ((m["shape"] == SMALL_SHAPES[0]) & (m["multiplier"] == 16.0))]
    error_pts = pd.concat([loss_pts, m[(m["shape"] == "open_lm_1b") & (m["multiplier"] == 1.0)]])
    if len(loss_pts) != 5 or len(error_pts) != 6:
        raise ValueError(f"expected 5 loss-fit and 6 error-fit models for {train!r}; "
                         f"found {len(loss_pts)} and {len(error_pts)}")
    loss_pts = loss_pts.assign(compute=loss_pts["params"] * loss_pts["tokens"]).sort_values("compute")
    loss_fit = fit_gadre_loss(loss_pts["params"], loss_pts["M"], loss_pts["loss"])
    error_fit = fit_gadre_error(error_pts["loss"], error_pts[err_col])
    rows = []
    for shape, mult in GADRE_TARGETS:
        t = m[(m["shape"] == shape) & (m["multiplier"] == mult)]
        if len(t) != 1:
            raise ValueError(f"no single {train} model {shape} at multiplier {mult}")
        t = t.iloc[0]
        loss_pred = float(loss_fit.predict(t["params"], t["M"]))
        err_pred = float(error_fit.predict(loss_pred))
        rows.append({"model": t["model"], "params": float(t["params"]), "M": float(t["M"]), "loss": float(t["loss"]),
                     "loss_pred": loss_pred, "loss_rel_error": abs(loss_pred - t["loss"]) / t["loss"],
                     "error": float(t[err_col]), "error_pred": err_pred,
                     "error_rel_error": abs(err_pred - t[err_col]) / t[err_col]})
    return GadrePredictions(loss_fit, error_fit, rows, train, downstream)
