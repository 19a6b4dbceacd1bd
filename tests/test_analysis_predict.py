"""Prediction: backtests tell smooth tasks from planted emergent ones; the two-step ladder prediction
reproduces Bhagia et al. on the OLMo ladder as far as it does (asserted as measured, misses included)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from losslens.analysis.predict import accuracy_sigmoid, backtest, fit_accuracy_sigmoid, fit_two_step, olmo_target_errors
from losslens.analysis.sources import olmo
from losslens.analysis.synthetic import ladder_points, planted_table

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEEDS = range(5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", ["linear", "sigmoid"])
def test_smooth_tasks_are_predictable(shape, seed):
    result = backtest(planted_table({"t": shape}, seed=seed), seed=seed)
    assert result.verdict == "predictable", result.summary()
    assert result.n_fit > result.n_test > 10 and result.mae < 0.03


@pytest.mark.parametrize("seed", SEEDS)
def test_planted_emergent_task_is_not_predictable_from_above_eta(seed):
    pts = ladder_points(seed=seed)
    lo, hi = pts["loss"].min(), pts["loss"].max()
    eta = lo + 0.25 * (hi - lo)
    table = planted_table({"t": "emergent"}, seed=seed, points=pts, eta=eta)
    result = backtest(table, cut=lo + 0.4 * (hi - lo), seed=seed)  # every fitted point is flat at chance
    assert result.verdict == "not_predictable", result.summary()
    assert result.form == "constant" and result.mae > 3 * result.tolerance
    # the same task is predictable once the cut lies below eta: the rise is then in the fit set
    assert backtest(table, cut=lo + 0.1 * (hi - lo), seed=seed).mae < result.mae


@pytest.mark.parametrize("seed", SEEDS)
def test_flat_task_is_predictable(seed):
    result = backtest(planted_table({"t": "flat"}, seed=seed), seed=seed)
    assert result.verdict == "predictable" and result.form == "constant"


def test_backtest_report_and_inconclusive():
    table = planted_table({"t": "linear"}, seed=0)
    result = backtest(table)
    d = json.loads(json.dumps(result.to_dict()))
    assert d["verdict"] == "predictable" and d["cut_rule"].startswith("0.333 quantile")
    assert set(d) >= {"cut", "n_fit", "n_test", "form", "mae", "max_error", "tolerance", "noise", "value_range"}
    distinct = np.unique(table["loss"])
    assert result.cut == pytest.approx(np.quantile(distinct, 1 / 3))
    assert (result.test_loss <= result.cut).all() and len(result.test_pred) == result.n_test
    assert "MAE" in result.summary() and "predictable" in result.summary()
    few = backtest(table.nsmallest(4, "loss"))
    assert few.verdict == "inconclusive" and few.mae is None and "need" in few.summary()


@pytest.mark.parametrize("seed", SEEDS)
def test_backtest_at_eta_tests_claim_3(seed):
    """With the emergence threshold as the cut (as analyze() passes it), a planted threshold is not
    predictable from the models above it, and smooth linear and logistic trends still are."""
    pts = ladder_points(seed=seed)
    lo, hi = pts["loss"].min(), pts["loss"].max()
    eta = lo + 0.3 * (hi - lo)  # the sigmoid's midpoint (0.5) is then below the cut: a real extrapolation
    emergent = backtest(planted_table({"t": "emergent"}, seed=seed, points=pts, eta=eta), eta=eta)
    assert emergent.verdict == "not_predictable" and emergent.cut == eta, emergent.summary()
    assert emergent.cut_rule.startswith("eta") and emergent.mae > 3 * emergent.tolerance
    for shape in ("linear", "sigmoid"):
        smooth = backtest(planted_table({"t": shape}, seed=seed, points=pts), eta=eta)
        assert smooth.verdict == "predictable" and smooth.mae < 0.04, smooth.summary()
    # eta=None (a task that is not emergent) falls back to the default cut
    assert backtest(planted_table({"t": "linear"}, seed=seed, points=pts), eta=None).cut_rule.startswith("0.333")


def test_tolerance_comes_from_the_fit_set_only():
    """Held-out points are what is predicted: making them noisier (fewer items, scattered values)
    changes the error, never the yardstick. Before this rule, their binomial SD widened the tolerance."""
    table = planted_table({"t": "sigmoid"}, seed=2, n_items=200)
    first = backtest(table)
    held = table["loss"] <= first.cut
    rng = np.random.default_rng(0)
    noisy = table.assign(n=np.where(held, 4, table["n"]),
                         value=np.where(held, rng.integers(0, 5, len(table)) / 4, table["value"]))
    second = backtest(noisy)
    assert second.n_test == first.n_test and second.mae > 2 * first.mae
    assert second.tolerance == first.tolerance and second.noise == first.noise
    assert second.value_range == first.value_range == pytest.approx(np.ptp(table.loc[~held, "value"]))


def test_analyze_passes_eta_to_the_backtest_of_emergent_tasks():
    from losslens.analysis.pipeline import analyze
    from losslens.analysis.table import TidyTable, validate

    df = validate(planted_table({"e": "emergent", "s": "linear"}, seed=0))
    report = analyze(TidyTable(df), bootstrap=50, permutations=0, scaling_law=False)
    e, s = report.task("e"), report.task("s")
    assert e.verdict == "emergent", e.summary()
    assert e.backtest.cut == e.emergence.eta and e.backtest.verdict == "not_predictable"
    assert s.verdict == "smooth" and s.backtest.cut_rule.startswith("0.333") and s.backtest.verdict == "predictable"


def test_binomial_noise_widens_the_tolerance():
    # 40 items per point: sqrt(p(1-p)/n) ~ 0.08 sets the tolerance, not the fit's residuals
    table = planted_table({"t": "sigmoid"}, seed=1, n_items=40)
    result = backtest(table)
    assert result.noise > 0.05 and result.tolerance == pytest.approx(2 * result.noise)


# --- two-step prediction -----------------------------------------------------------------------------

def test_accuracy_sigmoid_recovered():
    x = np.linspace(0.6, 1.6, 40)
    y = accuracy_sigmoid(x, -0.6, 1.1, 6.0, 0.85)
    fit = fit_accuracy_sigmoid(x, y, chance=0.25)
    assert fit.predict(0.8) == pytest.approx(accuracy_sigmoid(0.8, -0.6, 1.1, 6.0, 0.85), abs=0.01)
    assert -1 <= fit.a <= 0 and 0 <= fit.b <= 1 and fit.n_points == 40


def test_two_step_recovers_a_planted_ladder():
    rng = np.random.default_rng(0)
    N = np.repeat([2e8, 4e8, 8e8, 1.5e9], 4)
    D = N * np.tile([20, 40, 100, 200], 4)
    task_loss = 0.3 + 30 / N**0.2 + 200 / D**0.25
    fit = fit_two_step(N, D, task_loss, task_loss + 0.003 * rng.standard_normal(16),
                       accuracy_sigmoid(task_loss, -0.7, 1.0, 5.0, 0.95), chance=0.25)
    loss_pred, acc_pred = fit.predict(7e9, 4e12)
    truth = 0.3 + 30 / 7e9**0.2 + 200 / 4e12**0.25
    assert loss_pred == pytest.approx(truth, rel=0.02)
    assert acc_pred == pytest.approx(accuracy_sigmoid(truth, -0.7, 1.0, 5.0, 0.95), abs=0.02)
    assert "step 1" in fit.summary() and json.dumps(fit.to_dict())
    with pytest.raises(ValueError, match="step1"):
        fit_two_step(N, D, task_loss, task_loss, task_loss, chance=0.25, step1="other")


@pytest.fixture(scope="module")
def olmo_result():
    return olmo_target_errors(olmo.load(DATA / "olmo_ladder"))


def test_olmo_ladder_targets_as_measured(olmo_result):
    """Bhagia et al.: within 2 points on MMLU, HellaSwag, PIQA and Social IQa for both targets.

    Measured here (step 1 on the mean of each ladder run's last 5 evals, the scripts' --moving_avg 5):
    MMLU 1.2 / 0.8, PIQA 1.4 / 1.5, HellaSwag 1.2 / 2.02, Social IQa 1.7 / 3.4 points (7B / 13B).
    The claim holds for MMLU and PIQA; HellaSwag-13B misses by 0.02 points and Social IQa-13B by 1.4,
    the latter from step 1 (task loss predicted 0.992 bpb, actual 0.955). See docs/analysis-laws.md.
    """
    err = olmo_result.error
    for task in ("mmlu", "piqa"):
        assert err(task, "7B-4T") <= 2.0 and err(task, "13B-5T") <= 2.0, task
    assert err("hellaswag", "7B-4T") <= 2.0 and 2.0 < err("hellaswag", "13B-5T") < 2.1
    assert err("socialiqa", "7B-4T") <= 2.0 and 3.0 < err("socialiqa", "13B-5T") < 3.8
    others = [err(t, g) for t in ("arc_challenge", "arc_easy", "csqa", "openbookqa") for g in ("7B-4T", "13B-5T")]
    assert 5.0 < np.mean(others) < 8.0  # the paper: "average absolute error 6.9" on these four
    text = olmo_result.summary()
    assert "holds here for mmlu, piqa; not for hellaswag, socialiqa" in text and "13B-5T" in text


def test_olmo_targets_ground_truth(olmo_result):
    # SOURCE.md: last row of each target file, (task bpb, accuracy)
    truth = {("mmlu", "7B-4T"): (0.7770, 0.4901), ("hellaswag", "7B-4T"): (0.6732, 0.8135),
             ("socialiqa", "13B-5T"): (0.9551, 0.6269), ("arc_easy", "13B-5T"): (0.5153, 0.8695)}
    got = {(p.task, p.target): p for p in olmo_result.predictions}
    for key, (bpb, acc) in truth.items():
        assert got[key].task_loss == pytest.approx(bpb, abs=1e-4) and got[key].accuracy == pytest.approx(acc, abs=1e-4)
    assert got["mmlu", "7B-4T"].tokens == pytest.approx(3.945e12, rel=1e-3)
    assert got["mmlu", "13B-5T"].tokens == pytest.approx(5.0e12, rel=1e-3)
    d = json.loads(json.dumps(olmo_result.to_dict()))
    assert len(d["predictions"]) == 16 and d["moving_avg"] == 5


def test_olmo_target_errors_needs_an_olmo_table():
    from losslens.analysis.table import TidyTable
    with pytest.raises(ValueError, match="OLMo"):
        olmo_target_errors(TidyTable(pd.DataFrame()))


# --- where an ability appears: eta through the law ------------------------------------------------------

def test_emergence_scale_solves_the_law_at_eta():
    from losslens.analysis.predict import emergence_scale, size_at_loss
    from losslens.analysis.scaling import ChinchillaFit
    from losslens.analysis.synthetic import LAW

    law = ChinchillaFit(A=LAW["A"], B=LAW["B"], E=LAW["E"], alpha=LAW["alpha"], beta=LAW["beta"], ci={},
                        n_points=0, objective=0.0, starts=0, starts_at_best=0, bootstrap=0, bootstrap_failed=0,
                        seed=0)
    eta = float(law.predict(1e8, 2e9))
    s = emergence_scale(law, "t", "acc", eta, (eta - 0.05, eta + 0.05))
    assert s.params == pytest.approx(1e8, rel=1e-6) and s.tokens == pytest.approx(2e9, rel=1e-6)
    assert s.compute == pytest.approx(6 * 1e8 * 2e9, rel=1e-5)
    lo, hi = s.params_ci
    assert lo < s.params < hi and law.predict(lo, 20 * lo) == pytest.approx(eta + 0.05)  # high eta: smaller N
    assert s.params_ci_with_law is None  # a law without bootstrap refits
    assert s.to_dict()["compute_ci"] == [pytest.approx(6 * 20 * lo**2), pytest.approx(6 * 20 * hi**2)]
    never = emergence_scale(law, "t", "acc", LAW["E"] - 0.01)
    assert never.params is None and "irreducible" in never.reason and "never" in never.summary()
    rows = np.array([[LAW["A"], LAW["B"], LAW["E"], LAW["alpha"], LAW["beta"]]] * 3)
    assert size_at_loss(rows, eta, 20.0) == pytest.approx([1e8] * 3, rel=1e-6)


def test_analyze_reports_where_an_emergent_ability_appears():
    from losslens.analysis.pipeline import analyze
    from losslens.analysis.table import TidyTable, validate

    df = validate(planted_table({"e": "emergent", "s": "linear"}, seed=0))
    report = analyze(TidyTable(df), bootstrap=50, permutations=0)
    e = report.task("e")
    assert e.verdict == "emergent" and report.scaling_law is not None
    onset = e.onset
    law = report.scaling_law
    assert law.predict(onset.params, 20 * onset.params) == pytest.approx(e.emergence.eta, rel=1e-6)
    assert onset.params_ci[0] < onset.params < onset.params_ci[1]
    lo, hi = onset.params_ci_with_law  # the law's bootstrap widens eta's interval, never narrows it
    assert lo <= onset.params_ci[0] * 1.001 and hi >= onset.params_ci[1] * 0.999
    assert report.task("s").onset is None
    d = e.to_dict()["onset"]
    assert set(d) >= {"params", "params_ci", "compute", "compute_ci", "tokens_per_param", "params_ci_with_law"}
    assert "onset e/acc" in report.summary()
