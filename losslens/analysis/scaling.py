"""Scaling laws: Chinchilla's L(N, D) fitted as Hoffmann et al. / Besiroglu et al., and Gadre et al.'s forms.

Chinchilla (Hoffmann et al. 2022, refitted by Besiroglu et al. 2024 on Epoch's digitised runs):

    L(N, D) = E + A / N^alpha + B / D^beta,   A = e^a, B = e^b, E = e^e

is fitted in log space: minimise the SUM over points of Huber_delta(LSE(a - alpha log N,
b - beta log D, e) - log L), delta = 1e-3, by L-BFGS from every start of the grid alpha, beta in
{0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25} (4,500 starts), keeping the best.

How it stays fast (<= 5 s on 2 cores for the 240 Epoch points, bootstrap included):
1. Screen: all 4,500 starts run together through `lbfgs.minimize_batched` with L-BFGS-B's default
   stopping rule (and at most 500 iterations each), the objective and its analytic gradient
   evaluated for every start in one array pass.
2. Polish: the 8 best end points continue with a strict, purely relative stopping rule (the Huber
   sum is ~1e-3, below L-BFGS-B's absolute floor of 1, so the default rule stops early near the
   optimum); the best of them is the fit.
3. Bootstrap: resample the points with replacement (as multiplicity weights), refit every resample
   at once from the full-data optimum with the strict rule, and take percentile intervals. Epoch's
   own bootstrap also refits each resample from a single start (Hoffmann's estimates); the grid is
   not rerun per resample. On Epoch's data this reproduces their 95% intervals (docs/analysis-laws.md).

Gadre et al. (2024), with M = D / N tokens per parameter:

    L(N, M) = a N^eta + b 6^(eta/2) (M N)^eta + E            (`powlaw_ours` in mlfoundations/scaling)
    Err(L)  = eps - k exp(-gamma L)                            (top-1 error from loss)

fitted as their code does: least squares (`curve_fit`) from the start grid a, b in {1e2, 3e2, 1e3,
3e3}, eta in {-0.1, -0.3}, E in {0, 1, 2, 10}, keeping the lowest residual; the error law from
curve_fit's default start.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit, minimize
from threadpoolctl import ThreadpoolController

from losslens.analysis.lbfgs import minimize_batched
from losslens.analysis.result import Result

# The start grid of Hoffmann et al. as run by Besiroglu et al. ("Replicate exactly").
CHINCHILLA_GRID = {
    "alpha": np.arange(0.0, 2.5, 0.5),
    "beta": np.arange(0.0, 2.5, 0.5),
    "e": np.arange(-1.0, 1.5, 0.5),
    "a": np.arange(0.0, 30.0, 5.0),
    "b": np.arange(0.0, 30.0, 5.0),
}
PARAM_NAMES = ("A", "B", "E", "alpha", "beta")
POLISH_STARTS = 8   # screened end points polished with the strict stopping rule
SCREEN_MAXITER = 500  # iterations per start while screening (99% of starts stop before 250)
STRICT_FTOL = 1e-12  # relative decrease below which a polished or bootstrap fit has converged
_CHUNK = 128         # rows of starts per array pass: keeps the (rows x points) temporaries in cache


@functools.cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread(func):
    """Run `func` with BLAS and LAPACK on one thread. These fits make thousands of tiny BLAS calls
    (inside scipy's L-BFGS-B and least squares); OpenBLAS's thread pool turns each into milliseconds
    of busy-waiting when the cores are shared (the OLMo ladder prediction: 66 s instead of 4 s)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with _threadpools().limit(limits=1, user_api="blas"):
            return func(*args, **kwargs)
    return wrapper


def chinchilla_grid() -> np.ndarray:
    """The 4,500 starts as rows (a, b, e, alpha, beta)."""
    g = CHINCHILLA_GRID
    rows = [(a, b, e, al, be) for al, be, e, a, b in itertools.product(g["alpha"], g["beta"], g["e"], g["a"], g["b"])]
    return np.array(rows, dtype=float)


def huber_lse_objective(X: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                        weights: np.ndarray | None = None, delta: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Sum of Huber(LSE(a - alpha log N, b - beta log D, e) - log L) and its gradient, per row of X.

    X is (P, 5) with rows (a, b, e, alpha, beta); `weights` is None (every point once) or (P, n)
    point multiplicities (bootstrap). Returns f (P,) and the gradient (P, 5). Rows whose prediction
    overflows get f = inf, which the line search rejects.
    """
    f = np.empty(len(X))
    g = np.empty((len(X), 5))
    for lo in range(0, len(X), _CHUNK):
        hi = min(lo + _CHUNK, len(X))
        w = None if weights is None else weights[lo:hi]
        f[lo:hi], g[lo:hi] = _huber_lse_chunk(X[lo:hi], log_n, log_d, log_l, w, delta)
    return f, g


def _huber_lse_chunk(X, log_n, log_d, log_l, w, delta):
    # In-place arithmetic on (rows x points) arrays: this function is the whole cost of the fit.
    a, b, e, alpha, beta = (X[:, j, None] for j in range(5))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        t_n = np.multiply(alpha, -log_n)
        t_n += a
        np.exp(t_n, out=t_n)             # A / N^alpha
        t_d = np.multiply(beta, -log_d)
        t_d += b
        np.exp(t_d, out=t_d)             # B / D^beta
        E = np.exp(e)
        pred = t_n + t_d
        pred += E
        r = np.log(pred)
        r -= log_l                       # residual in log space
        c = np.clip(r, -delta, delta)    # Huber's psi(r)
        r -= 0.5 * c
        r *= c                           # Huber(r): r^2/2 inside delta, delta (|r| - delta/2) outside
        c /= pred                        # d Huber / d pred
        if w is not None:
            r *= w
            c *= w
        f = r.sum(axis=1)
        t_n *= c
        t_d *= c
        grad = np.column_stack([t_n.sum(1), t_d.sum(1), c.sum(1) * E[:, 0], -(t_n @ log_n), -(t_d @ log_d)])
    bad = ~np.isfinite(f)
    f[bad] = np.inf
    grad[bad] = 0.0
    return f, grad


def _check_points(*arrays, names, min_points):
    arrays = [np.asarray(x, dtype=float).ravel() for x in arrays]
    if len({len(x) for x in arrays}) != 1:
        raise ValueError(f"{', '.join(names)} must have the same length; got {[len(x) for x in arrays]}")
    for name, x in zip(names, arrays):
        if not np.all(np.isfinite(x)) or np.any(x <= 0):
            raise ValueError(f"{name} must be finite and > 0")
    if len(arrays[0]) < min_points:
        raise ValueError(f"need at least {min_points} points, got {len(arrays[0])}")
    return arrays


@dataclasses.dataclass(frozen=True)
class ScalingLawConfig:
    """Settings of the Chinchilla fit `analyze` runs (`fit_chinchilla`'s keyword arguments but the seed)."""

    bootstrap: int = 1000      # resamples of the points for the intervals (0: none)
    huber_delta: float = 1e-3  # Huber loss threshold on log L (Hoffmann et al.)
    ci_level: float = 0.95     # level of the percentile intervals


@dataclasses.dataclass(frozen=True, repr=False)
class ChinchillaFit(Result):
    """L(N, D) = E + A / N^alpha + B / D^beta with bootstrap percentile intervals `ci`."""

    A: float
    B: float
    E: float
    alpha: float
    beta: float
    ci: dict            # name -> (lo, hi) at `ci_level`; empty without bootstrap
    n_points: int
    objective: float    # the minimised Huber sum
    starts: int         # grid starts run
    starts_at_best: int  # screened starts that ended within 1e-6 (relative) of the best objective
    bootstrap: int      # resamples requested
    bootstrap_failed: int  # resamples whose refit did not end finite (left out of `ci`)
    seed: int
    huber_delta: float = 1e-3
    ci_level: float = 0.95
    # the bootstrap refits, (B, 5) columns A, B, E, alpha, beta
    samples: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    def predict(self, N, D) -> np.ndarray:
        N, D = np.asarray(N, float), np.asarray(D, float)
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    @property
    def n_opt_exponent(self) -> float:
        """a = beta / (alpha + beta): the compute-optimal N grows as C^a (Epoch: 0.513)."""
        return self.beta / (self.alpha + self.beta)

    def compute_optimal(self, C) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) minimising L at compute C = 6 N D (Hoffmann et al., Appendix D.2)."""
        C = np.asarray(C, float)
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        a = self.n_opt_exponent
        return G * (C / 6.0) ** a, (C / 6.0) ** (1.0 - a) / G

    def summary(self) -> str:
        lines = [f"Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta, {self.n_points} points "
                 f"(Huber delta {self.huber_delta:g} on log L; L-BFGS from {self.starts} starts, "
                 f"{self.starts_at_best} reached the best objective {self.objective:.5e})"]
        pct = f"{100 * self.ci_level:g}%"
        values = dict(zip(PARAM_NAMES, (self.A, self.B, self.E, self.alpha, self.beta)))
        values["n_opt_exponent"] = self.n_opt_exponent
        for name, v in values.items():
            ci = self.ci.get(name)
            ci_txt = f"   {pct} CI [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
            lines.append(f"  {name:<15}{v:>10.4g}{ci_txt}")
        if self.bootstrap:
            failed = f", {self.bootstrap_failed} failed" if self.bootstrap_failed else ""
            lines.append(f"  intervals: {self.bootstrap} bootstrap resamples of the points{failed}, seed {self.seed}")
        return "\n".join(lines)

    def rows(self) -> list[dict]:
        """One row per parameter (A, B, E, alpha, beta, n_opt_exponent): value and interval."""
        values = dict(zip(PARAM_NAMES, (self.A, self.B, self.E, self.alpha, self.beta)))
        values["n_opt_exponent"] = self.n_opt_exponent
        return [{"parameter": k, "value": v, "lo": self.ci.get(k, (None, None))[0],
                 "hi": self.ci.get(k, (None, None))[1]} for k, v in values.items()]

    def _repr_items(self) -> dict:
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "B": self.B, "beta": self.beta,
                "n_points": self.n_points}

    def plot(self, points):
        """Losses against compute with the law along five model sizes and its compute-optimal frontier;
        `points` is a DataFrame with params, tokens and loss columns (the points fitted)."""
        from losslens.analysis import figures

        return figures.draw_scaling_law(points, self)

    def to_dict(self) -> dict:
        return {
            "form": "L(N, D) = E + A / N^alpha + B / D^beta",
            "A": self.A, "B": self.B, "E": self.E, "alpha": self.alpha, "beta": self.beta,
            "n_opt_exponent": self.n_opt_exponent,
            "ci": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ci.items()},
            "ci_level": self.ci_level,
            "n_points": self.n_points,
            "objective": self.objective,
            "huber_delta": self.huber_delta,
            "starts": self.starts,
            "starts_at_best": self.starts_at_best,
            "bootstrap": self.bootstrap,
            "bootstrap_failed": self.bootstrap_failed,
            "seed": self.seed,
        }


def _untransform(X: np.ndarray) -> np.ndarray:
    """Rows (a, b, e, alpha, beta) -> (A, B, E, alpha, beta)."""
    return np.column_stack([np.exp(X[:, :3]), X[:, 3:]])


@one_blas_thread
def fit_chinchilla(params, tokens, loss, *, bootstrap: int = 1000, seed: int = 0, huber_delta: float = 1e-3,
                   ci_level: float = 0.95) -> ChinchillaFit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta to points (N, D, L); see the module docstring for the method.

    `bootstrap` resamples give percentile intervals at `ci_level`; the same `seed` gives the same numbers.
    """
    N, D, L = _check_points(params, tokens, loss, names=("params", "tokens", "loss"), min_points=5)
    log_n, log_d, log_l = np.log(N), np.log(D), np.log(L)

    def objective(weights):
        return lambda X, rows: huber_lse_objective(X, log_n, log_d, log_l,
                                                   None if weights is None else weights[rows], huber_delta)

    starts = chinchilla_grid()
    screened = minimize_batched(objective(None), starts, maxiter=SCREEN_MAXITER)
    order = np.argsort(screened.fun)
    best_screened = screened.fun[order[0]]
    if not np.isfinite(best_screened):
        raise ValueError("no start of the grid reached a finite objective")
    at_best = int(np.sum(screened.fun <= best_screened + 1e-6 * abs(best_screened)))
    polished = minimize_batched(objective(None), screened.x[order[:POLISH_STARTS]], ftol=STRICT_FTOL, ftol_floor=0.0)
    k = int(np.argmin(polished.fun))
    best_x, best_f = polished.x[k], float(polished.fun[k])

    ci, samples, failed = {}, None, 0
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        n = len(L)
        picks = rng.integers(0, n, size=(bootstrap, n))
        weights = np.zeros((bootstrap, n))
        np.add.at(weights, (np.repeat(np.arange(bootstrap), n), picks.ravel()), 1.0)
        refit = minimize_batched(objective(weights), np.tile(best_x, (bootstrap, 1)),
                                 ftol=STRICT_FTOL, ftol_floor=0.0)
        ok = np.isfinite(refit.fun) & np.all(np.isfinite(refit.x), axis=1)
        failed = int(np.sum(~ok))
        samples = _untransform(refit.x[ok])
        tail = 100 * (1 - ci_level) / 2
        lo, hi = np.percentile(samples, [tail, 100 - tail], axis=0)
        ci = {name: (float(low), float(high)) for name, low, high in zip(PARAM_NAMES, lo, hi)}
        a_opt = samples[:, 4] / (samples[:, 3] + samples[:, 4])
        ci["n_opt_exponent"] = tuple(float(v) for v in np.percentile(a_opt, [tail, 100 - tail]))

    A, B, E, alpha, beta = (float(v) for v in _untransform(best_x[None, :])[0])
    return ChinchillaFit(A=A, B=B, E=E, alpha=alpha, beta=beta, ci=ci, n_points=len(L), objective=best_f,
                         starts=len(starts), starts_at_best=at_best, bootstrap=bootstrap,
                         bootstrap_failed=failed, seed=seed, huber_delta=huber_delta, ci_level=ci_level,
                         samples=samples)


BOUNDED_P0 = (3.0, 6.0, 0.1, 0.2, 1.0)  # (a, b, alpha, beta, E): the start in OLMo's step1.py
BOUNDED_EXTRA_STARTS = [(a, b, al, be, E) for a in (3.0, 8.0) for b in (6.0, 12.0) for al in (0.1, 0.4)
                        for be in (0.2, 0.6) for E in (0.0, 1.0)]


@one_blas_thread
def fit_chinchilla_bounded(params, tokens, loss, *, p0=BOUNDED_P0, huber_delta: float = 1e-3) -> ChinchillaFit:
    """Bhagia et al.'s step-1 variant of the Chinchilla fit (OLMo's `get_coefficients_huber`).

    L = e^a / N^alpha + e^b / D^beta + E with E entering linearly and every parameter >= 0 (a task
    loss in bits per byte can have a floor near 0, which the log-space E = e^e of `fit_chinchilla`
    only approaches as e -> -inf); the same Huber(delta) on log L - log prediction; L-BFGS-B with the
    paper's tolerances from their start `p0`. Their single start can end in a poor local minimum on
    other data, so 32 more starts (BOUNDED_EXTRA_STARTS) run too and the lowest objective wins; on the
    OLMo ladder the paper's start is already the best. No bootstrap.
    """
    N, D, L = _check_points(params, tokens, loss, names=("params", "tokens", "loss"), min_points=5)
    log_n, log_d, log_l = np.log(N), np.log(D), np.log(L)

    def objective(p):
        a, b, alpha, beta, E = p
        t_n, t_d = np.exp(a - alpha * log_n), np.exp(b - beta * log_d)
        pred = t_n + t_d + E
        r = np.log(pred) - log_l
        c = np.clip(r, -huber_delta, huber_delta)
        w = c / pred
        grad = [np.sum(w * t_n), np.sum(w * t_d), -np.sum(w * t_n * log_n), -np.sum(w * t_d * log_d), np.sum(w)]
        f = float(np.sum(c * (r - 0.5 * c)))
        return (f, np.array(grad)) if np.isfinite(f) else (np.inf, np.zeros(5))

    best = None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for start in [tuple(p0), *BOUNDED_EXTRA_STARTS]:
            res = minimize(objective, np.asarray(start, float), jac=True, method="L-BFGS-B", bounds=[(0, None)] * 5,
                           options={"ftol": 0.0, "gtol": 1e-10, "maxiter": 100000})
            if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
    if best is None:
        raise ValueError("the bounded Chinchilla fit reached no finite objective")
    a, b, alpha, beta, E = (float(v) for v in best.x)
    return ChinchillaFit(A=float(np.exp(a)), B=float(np.exp(b)), E=E, alpha=alpha, beta=beta, ci={}, n_points=len(L),
                         objective=float(best.fun), starts=1 + len(BOUNDED_EXTRA_STARTS), starts_at_best=1,
                         bootstrap=0, bootstrap_failed=0, seed=0, huber_delta=huber_delta)


# --- Gadre et al. 2024 ------------------------------------------------------------------------------

GADRE_LOSS_GRID = {"a": (1e2, 3e2, 1e3, 3e3), "b": (1e2, 3e2, 1e3, 3e3), "eta": (-0.1, -0.3),
                   "E": (0.0, 1.0, 2.0, 10.0)}


def gadre_loss_law(N, M, a, b, eta, E):
    """L(N, M) = a N^eta + b 6^(eta/2) (M N)^eta + E; M = D / N tokens per parameter."""
    N, M = np.asarray(N, float), np.asarray(M, float)
    return a * N**eta + b * 6.0 ** (eta / 2) * (M * N) ** eta + E


def gadre_error_law(L, k, gamma, eps):
    """Err(L) = eps - k exp(-gamma L)."""
    return eps - k * np.exp(-gamma * np.asarray(L, float))


@dataclasses.dataclass(frozen=True)
class GadreLossFit:
    a: float
    b: float
    eta: float
    E: float
    n_points: int
    rmse: float  # root mean squared residual of the fit (nats/token)

    def predict(self, N, M) -> np.ndarray:
        return gadre_loss_law(N, M, self.a, self.b, self.eta, self.E)

    def summary(self) -> str:
        return (f"Gadre loss law L(N, M) = {self.a:.4g} N^{self.eta:.4g} + {self.b:.4g} 6^(eta/2) (M N)^eta "
                f"+ {self.E:.4g}  ({self.n_points} points, rmse {self.rmse:.3g})")

    def to_dict(self) -> dict:
        return {"form": "L(N, M) = a N^eta + b 6^(eta/2) (M N)^eta + E", "a": self.a, "b": self.b,
                "eta": self.eta, "E": self.E, "n_points": self.n_points, "rmse": self.rmse}


@dataclasses.dataclass(frozen=True)
class GadreErrorFit:
    k: float
    gamma: float
    eps: float
    n_points: int
    rmse: float

    def predict(self, loss) -> np.ndarray:
        return gadre_error_law(loss, self.k, self.gamma, self.eps)

    def summary(self) -> str:
        return (f"Gadre error law Err(L) = {self.eps:.4g} - {self.k:.4g} exp(-{self.gamma:.4g} L)  "
                f"({self.n_points} points, rmse {self.rmse:.3g})")

    def to_dict(self) -> dict:
        return {"form": "Err(L) = eps - k exp(-gamma L)", "k": self.k, "gamma": self.gamma, "eps": self.eps,
                "n_points": self.n_points, "rmse": self.rmse}


def _curve_fit(f, x, y, p0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        popt, _ = curve_fit(f, x, y, p0=p0, maxfev=10000)
    return popt


@one_blas_thread
def fit_gadre_loss(params, tokens_per_param, loss) -> GadreLossFit:
    """Fit Gadre et al.'s loss law to (N, M, L) points from their start grid; keep the lowest residual."""
    N, M, L = _check_points(params, tokens_per_param, loss, names=("params", "tokens_per_param", "loss"), min_points=4)
    x = np.vstack([N, M])
    law = lambda x, a, b, eta, E: gadre_loss_law(x[0], x[1], a, b, eta, E)  # noqa: E731
    best, best_res = None, np.inf
    g = GADRE_LOSS_GRID
    for p0 in itertools.product(g["a"], g["b"], g["eta"], g["E"]):
        try:
            popt = _curve_fit(law, x, L, list(p0))
        except RuntimeError:  # curve_fit gave up from this start
            continue
        res = float(np.sum((L - law(x, *popt)) ** 2))
        if np.isfinite(res) and res < best_res:
            best, best_res = popt, res
    if best is None:
        raise ValueError("the Gadre loss law did not converge from any start")
    return GadreLossFit(*(float(v) for v in best), n_points=len(L), rmse=float(np.sqrt(best_res / len(L))))


@one_blas_thread
def fit_gadre_error(loss, error) -> GadreErrorFit:
    """Fit Err(L) = eps - k exp(-gamma L) by least squares from curve_fit's default start, as Gadre et al."""
    L, err = _check_points(loss, error, names=("loss", "error"), min_points=3)
    try:
        k, gamma, eps = _curve_fit(lambda t, k, gamma, eps: gadre_error_law(t, k, gamma, eps), L, err, None)
    except RuntimeError as exc:
        raise ValueError(f"the Gadre error law did not converge: {exc}") from None
    rmse = float(np.sqrt(np.mean((err - gadre_error_law(L, k, gamma, eps)) ** 2)))
    return GadreErrorFit(float(k), float(gamma), float(eps), n_points=len(L), rmse=rmse)
