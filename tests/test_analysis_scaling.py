"""Scaling laws: the Chinchilla grid fit reproduces Epoch's numbers, recovers planted laws, and the
Gadre et al. forms reproduce the paper's four relative errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

from losslens.analysis.lbfgs import minimize_batched
from losslens.analysis.predict import gadre_predictions
from losslens.analysis.scaling import (
    ChinchillaFit,
    chinchilla_grid,
    fit_chinchilla,
    fit_chinchilla_bounded,
    fit_gadre_error,
    fit_gadre_loss,
    gadre_error_law,
    gadre_loss_law,
    huber_lse_objective,
)
from losslens.analysis.sources import chinchilla, gadre

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _planted_points(seed=0, noise=0.003, law=(400.0, 1200.0, 1.7, 0.33, 0.30)):
    """A grid of (N, D) with a known law and multiplicative noise on L."""
    rng = np.random.default_rng(seed)
    A, B, E, alpha, beta = law
    N = np.repeat(np.geomspace(5e7, 1e10, 8), 6)
    D = N * np.tile(np.geomspace(2, 200, 6), 8)
    L = (E + A / N**alpha + B / D**beta) * np.exp(noise * rng.standard_normal(len(N)))
    return N, D, L


@pytest.fixture(scope="module")
def epoch_fit() -> ChinchillaFit:
    points = chinchilla.load(DATA / "epoch_chinchilla").extras["scaling_points"]
    return fit_chinchilla(points["params"], points["tokens"], points["loss"], bootstrap=1000, seed=0)


def test_epoch_grid_fit_reproduces_besiroglu(epoch_fit):
    # "Replicate exactly" fit of data_analysis.ipynb (cell 18): each within 0.5%.
    reference = {"A": 477.84, "B": 2143.86, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}
    assert epoch_fit.n_points == 240
    for name, ref in reference.items():
        assert getattr(epoch_fit, name) == pytest.approx(ref, rel=0.005), name
    assert epoch_fit.objective == pytest.approx(1.01827e-3, rel=1e-5)
    assert epoch_fit.starts == 4500 and epoch_fit.starts_at_best > 100


def test_epoch_bootstrap_intervals_match(epoch_fit):
    # Epoch's 95% bootstrap intervals (cell 26), within 0.01.
    for name, (lo, hi) in {"alpha": (0.317, 0.373), "beta": (0.331, 0.415)}.items():
        got = epoch_fit.ci[name]
        assert got[0] == pytest.approx(lo, abs=0.01) and got[1] == pytest.approx(hi, abs=0.01), (name, got)
    assert epoch_fit.ci["E"] == pytest.approx((1.769, 1.871), abs=0.01)
    assert epoch_fit.n_opt_exponent == pytest.approx(0.513, abs=0.005)  # Epoch's a = beta / (alpha + beta)
    assert epoch_fit.bootstrap_failed == 0 and epoch_fit.samples.shape == (1000, 5)
    assert epoch_fit.ci["alpha"][0] < epoch_fit.alpha < epoch_fit.ci["alpha"][1]


def test_fit_report_is_json_and_readable(epoch_fit):
    d = json.loads(json.dumps(epoch_fit.to_dict()))
    assert d["ci"]["beta"] == list(epoch_fit.ci["beta"]) and d["n_points"] == 240
    text = epoch_fit.summary()
    for word in ("477.8", "alpha", "95% CI", "1000 bootstrap", "4500 starts"):
        assert word in text
    assert epoch_fit.predict(1e9, 2e10) == pytest.approx(
        epoch_fit.E + epoch_fit.A / 1e9**epoch_fit.alpha + epoch_fit.B / 2e10**epoch_fit.beta)


def test_compute_optimal_minimises_loss_at_fixed_compute(epoch_fit):
    C = 5.76e23  # Chinchilla's budget
    n_opt, d_opt = epoch_fit.compute_optimal(C)
    assert 6 * n_opt * d_opt == pytest.approx(C)
    # the numerical minimum of L along the iso-compute line D = C / (6 N) is the closed form's
    log_n = np.linspace(np.log(n_opt) - 1, np.log(n_opt) + 1, 20001)
    losses = epoch_fit.predict(np.exp(log_n), C / (6 * np.exp(log_n)))
    assert np.exp(log_n[np.argmin(losses)]) == pytest.approx(n_opt, rel=1e-3)


@pytest.fixture(scope="module")
def planted_fit() -> ChinchillaFit:
    return fit_chinchilla(*_planted_points(seed=1), bootstrap=200, seed=3)


def test_planted_law_recovered_and_covered(planted_fit):
    fit = planted_fit
    truth = dict(A=400.0, B=1200.0, E=1.7, alpha=0.33, beta=0.30)
    assert fit.E == pytest.approx(1.7, rel=0.03)
    assert fit.alpha == pytest.approx(0.33, abs=0.03) and fit.beta == pytest.approx(0.30, abs=0.03)
    for name in ("E", "alpha", "beta"):
        lo, hi = fit.ci[name]
        assert lo <= truth[name] <= hi, (name, lo, hi)
    N, D, L = _planted_points(seed=1)
    assert np.allclose(fit.predict(N, D), L, rtol=0.01)


def test_same_seed_same_numbers_other_seed_other_resamples(planted_fit):
    again = fit_chinchilla(*_planted_points(seed=1), bootstrap=200, seed=3)
    assert again.to_dict() == planted_fit.to_dict()
    other = fit_chinchilla(*_planted_points(seed=1), bootstrap=200, seed=4)
    assert other.A == planted_fit.A  # the point fit does not depend on the seed ...
    assert other.ci != planted_fit.ci  # ... the resamples do


def test_no_bootstrap_no_intervals():
    bare = fit_chinchilla(*_planted_points(seed=1)[:3], bootstrap=0)
    assert bare.ci == {} and bare.samples is None and "CI" not in bare.summary()


@pytest.mark.parametrize("args, words", [
    (([1e8, 2e8], [1e9, 2e9], [3.0, 2.9]), "at least 5"),
    (([1e8] * 6, [1e9] * 5, [3.0] * 6), "same length"),
    (([1e8] * 6, [1e9] * 6, [3.0, 2.9, -1, 2.5, 2.4, 2.3]), "loss must be finite and > 0"),
    (([1e8] * 6, [np.nan] * 6, [3.0] * 6), "tokens must be finite"),
])
def test_bad_points_raise(args, words):
    with pytest.raises(ValueError, match=words):
        fit_chinchilla(*args, bootstrap=0)


def test_objective_gradient_matches_finite_differences():
    N, D, L = _planted_points()
    X = np.array([[6.0, 7.0, 0.5, 0.35, 0.3], [3.0, 9.0, 0.2, 0.2, 0.5]])
    w = np.random.default_rng(0).integers(0, 3, size=(2, len(N))).astype(float)
    f, g = huber_lse_objective(X, np.log(N), np.log(D), np.log(L), w)
    eps = 1e-6
    for j in range(5):
        step = np.zeros(5)
        step[j] = eps
        fp, _ = huber_lse_objective(X + step, np.log(N), np.log(D), np.log(L), w)
        fm, _ = huber_lse_objective(X - step, np.log(N), np.log(D), np.log(L), w)
        assert np.allclose((fp - fm) / (2 * eps), g[:, j], rtol=1e-4, atol=1e-9)


def test_grid_is_hoffmanns():
    grid = chinchilla_grid()
    assert grid.shape == (4500, 5)
    assert sorted(set(grid[:, 0])) == [0, 5, 10, 15, 20, 25] and sorted(set(grid[:, 2])) == [-1, -0.5, 0, 0.5, 1]
    assert sorted(set(grid[:, 3])) == [0, 0.5, 1, 1.5, 2]


def test_batched_lbfgs_agrees_with_scipy_on_rosenbrock():
    def rosen(X, rows):
        x, y = X[:, 0], X[:, 1]
        f = (1 - x) ** 2 + 100 * (y - x**2) ** 2
        g = np.column_stack([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])
        return f, g
    starts = np.array([[-1.2, 1.0], [0.0, 0.0], [2.0, 3.0], [-0.5, 2.0]])
    res = minimize_batched(rosen, starts, ftol=1e-15, ftol_floor=0.0)
    for x0, x in zip(starts, res.x):
        ref = minimize(lambda p: rosen(p[None], None)[0][0], x0, jac=lambda p: rosen(p[None], None)[1][0],
                       method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-10})
        assert np.allclose(x, ref.x, atol=1e-4) and np.allclose(x, [1, 1], atol=1e-4)


def test_bounded_variant_keeps_parameters_nonnegative():
    N, D, L = _planted_points(law=(50.0, 300.0, 0.05, 0.25, 0.28))
    fit = fit_chinchilla_bounded(N, D, L)
    assert min(fit.E, fit.alpha, fit.beta) >= 0 and fit.starts == 33
    assert np.allclose(fit.predict(N, D), L, rtol=0.02)


# --- Gadre et al. -------------------------------------------------------------------------------------

def test_gadre_reproduces_four_relative_errors():
    result = gadre_predictions(gadre.load(DATA / "gadre_overtraining"))
    (one_b, seven_b) = result.rows
    assert one_b["model"] == "rpj-open_lm_1b-32.0" and seven_b["model"] == "rpj-open_lm_7b-1.0"
    got = [one_b["loss_rel_error"], seven_b["loss_rel_error"], one_b["error_rel_error"], seven_b["error_rel_error"]]
    want = [0.7103e-2, 0.7320e-2, 3.6365e-2, 0.0464e-2]  # scaling_explorer.ipynb, cell 2
    for g, w in zip(got, want):
        assert float(f"{g:.3g}") == float(f"{w:.3g}"), (g, w)
    lf, ef = result.loss_fit, result.error_fit
    assert (lf.a, lf.b, lf.eta, lf.E) == pytest.approx((166.21, 366.69, -0.27285, 1.83665), rel=1e-4)
    assert (ef.k, ef.gamma, ef.eps) == pytest.approx((2.2065, 0.71459, 0.85699), rel=1e-4)
    assert "0.7103%" in result.summary() and json.dumps(result.to_dict())


def test_gadre_laws_recover_planted_parameters():
    N = np.repeat([1e7, 8e7, 1.5e8, 4e8], 3)
    M = np.tile([20.0, 80.0, 320.0], 4)
    L = gadre_loss_law(N, M, 150.0, 400.0, -0.28, 1.9)
    fit = fit_gadre_loss(N, M, L)
    assert fit.predict(1.4e9, 640) == pytest.approx(gadre_loss_law(1.4e9, 640, 150.0, 400.0, -0.28, 1.9), rel=1e-3)
    loss = np.linspace(2.5, 5.5, 8)
    err = gadre_error_law(loss, 2.0, 0.7, 0.86)
    efit = fit_gadre_error(loss, err)
    assert (efit.k, efit.gamma, efit.eps) == pytest.approx((2.0, 0.7, 0.86), rel=1e-3)
    with pytest.raises(ValueError, match="at least 4"):
        fit_gadre_loss(N[:3], M[:3], L[:3])
