"""The same-loss test: size adds nothing when performance is a function of loss, and is caught when it does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import isotonic_regression

from losslens.analysis.same_loss import MonotoneFit, SameLossConfig, analyze_same_loss, permute_across_runs
from losslens.analysis.synthetic import LAW, ladder_points, planted_table
from losslens.analysis.table import validate

CFG = SameLossConfig(bootstrap=300, permutations=49)


@pytest.mark.parametrize("seed", range(3))
def test_loss_alone_explains_performance(seed):
    df = validate(planted_table({"t": "linear"}, seed=seed))
    r = analyze_same_loss(df, CFG, seed=seed)
    assert r.holds is True, r.summary()
    size = r.test("loss", "log_params")
    assert size.p_value > CFG.alpha and size.improvement < 0.05
    assert r.spearman < -0.95 and r.r2_loss > 0.9


@pytest.mark.parametrize("seed", range(3))
def test_size_beyond_loss_is_detected(seed):
    df = validate(planted_table({"t": "linear"}, size_effect=0.03, seed=seed))
    r = analyze_same_loss(df, CFG, seed=seed)
    size = r.test("loss", "log_params")
    assert r.holds is False and size.significant, r.summary()
    assert size.p_value < CFG.alpha and size.ci[0] > 0
    assert size.coef == pytest.approx(0.03 * 0.75, rel=0.3)  # planted per unit log N, in raw accuracy


def test_monotone_fit_with_covariate_is_the_least_squares_optimum():
    rng = np.random.default_rng(0)
    x = rng.random(200)
    z = 2 * x + rng.normal(0, 0.3, 200)          # correlated with x, as log N is with loss
    y = -x**2 + 0.4 * z + rng.normal(0, 0.05, 200)
    mf = MonotoneFit(x)
    f, b, zm = mf.fit(y, z)
    zc = z - zm

    def sse(bb):
        return float(((y - bb * zc - mf.iso(y - bb * zc)[mf.inv]) ** 2).sum())

    assert sse(b) <= min(sse(b + d) for d in (-1e-2, -1e-3, 1e-3, 1e-2)) + 1e-9
    assert b == pytest.approx(0.4, abs=0.1)
    ux = np.unique(x)
    assert np.allclose(mf.iso(y), isotonic_regression(y[np.argsort(x)], increasing=False).x)
    assert np.all(np.diff(f) <= 1e-12) and len(f) == len(ux)


def test_permutation_moves_whole_runs():
    codes = np.repeat(np.arange(4), 3)
    z = np.array([1, 2, 3, 11, 12, 13, 21, 22, 23, 31, 32, 33], float)
    zp = permute_across_runs(z, codes, 4, np.random.default_rng(0))
    for g in range(4):
        assert np.allclose(np.diff(zp[codes == g]), 1.0)     # each run keeps its own pattern
    assert sorted(zp[1::3]) == [2, 12, 22, 32]               # levels are exchanged between runs


def test_too_few_runs_is_untested_not_a_guess():
    df = validate(planted_table({"t": "linear"}, seed=0))
    few = df[df["model"].isin(df["model"].unique()[:3])]
    r = analyze_same_loss(few, CFG)
    assert r.holds is None and r.tests == [] and "runs" in r.reason


@pytest.mark.parametrize("seed", range(3))
def test_compute_does_not_collapse_runs_that_loss_collapses(seed):
    """Runs of one size at very different token budgets: equal compute, different loss (the paper's
    Figure 1 vs 2): loss collapses them, compute leaves significantly more held-out error."""
    pts = ladder_points(tokens_per_param=(2, 20, 200), seed=seed)
    df = validate(planted_table({"t": "linear"}, points=pts, seed=seed))
    r = analyze_same_loss(df, CFG, seed=seed)
    assert r.holds is True and r.compute_collapses is False, r.summary()
    assert r.compute_excess_ci[0] > 0 and r.r2_compute < r.r2_loss


def test_fast_pava_equals_scipys_public_isotonic_regression():
    from losslens.analysis.stats import pava_decreasing

    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 50, 300):
        y, w = rng.normal(size=n), rng.random(n) + 0.1
        assert np.allclose(pava_decreasing(y, w), isotonic_regression(y, weights=w, increasing=False).x)


def _shared_schedule(seed: int, runs: int = 16, checkpoints: int = 10):
    """Runs of different sizes that all log the same token counts (as Pythia): log D has one level."""
    rng = np.random.default_rng(seed)
    rows = []
    for N in np.geomspace(2e7, 1e10, runs):
        for step in range(1, checkpoints + 1):
            D = 1e9 * 2.0 ** step
            L = LAW["E"] + LAW["A"] / N ** LAW["alpha"] + LAW["B"] / D ** LAW["beta"]
            rows.append((f"n{N:.2e}", N, D, step, L * (1 + 0.005 * rng.standard_normal())))
    return pd.DataFrame(rows, columns=["model", "params", "tokens", "step", "loss"])


@pytest.mark.parametrize("seed", range(2))
def test_tokens_on_a_shared_schedule_are_tested_by_the_interval(seed):
    """All runs share one checkpoint schedule: permuting log D across runs is a no-op (p was always 1),
    so p is None and the interval decides: a planted effect of D beyond loss is found, none is not."""
    pts = _shared_schedule(seed)
    df = validate(planted_table({"t": "sigmoid"}, points=pts, seed=seed))
    tokens = analyze_same_loss(df, CFG, seed=seed).test("loss", "log_tokens")
    assert tokens.p_value is None and not tokens.significant, tokens.line()
    logd = np.log(df["tokens"])
    planted = df.assign(value=np.clip(df["value"] + 0.02 * (logd - logd.mean()), 0, 1))
    r = analyze_same_loss(validate(planted), CFG, seed=seed)
    tokens = r.test("loss", "log_tokens")
    assert tokens.p_value is None and tokens.significant and r.holds is False, tokens.line()
    assert r.test("loss", "log_params").p_value is not None  # sizes differ between runs: permuted as before


# ---------------------------------------------------------------- equivalence (TOST)

FOUR_RUNS = dict(sizes=(2e7, 5e7, 1.2e8, 3e8), tokens_per_param=(20,))


def _six_points(pts) -> float:
    """planted_table's size_effect (normalised units per unit log N) for a 6-point gap in raw accuracy
    (chance 0.25) between the largest and smallest model at equal loss."""
    return 0.06 / (np.ptp(np.log(pts["params"])) * 0.75)


def test_a_six_point_size_effect_never_holds_with_four_runs():
    """The audit's case: 6 accuracy points between the largest and smallest of 4 runs at equal loss.
    "Not significant" used to read as "holds" (97.5% of the time); equivalence is never shown."""
    calls = {True: 0, False: 0, None: 0}
    for seed in range(20):
        pts = ladder_points(**FOUR_RUNS, seed=seed)
        df = validate(planted_table({"t": "linear"}, points=pts, size_effect=_six_points(pts), seed=seed))
        r = analyze_same_loss(df, CFG, seed=seed)
        calls[r.holds] += 1
        size = r.test("loss", "log_params")
        assert size.equivalent is not True, size.line()
        if r.holds is None:
            assert "inconclusive" in r.reason and "log_params effect" in r.reason
    assert calls[True] == 0, calls


def test_no_effect_with_enough_runs_holds_by_equivalence():
    """15 runs, performance a function of loss alone: each effect's 90% interval lies within the
    margin (0.01 per doubling), with high power; the planted 6-point effect on the same ladder fails."""
    held = 0
    for seed in range(5):
        pts = ladder_points(seed=seed)
        r = analyze_same_loss(validate(planted_table({"t": "linear"}, points=pts, seed=seed)), CFG, seed=seed)
        held += r.holds is True
        for t in r.tests:
            if t.axis == "loss":
                assert t.margin == CFG.margin and abs(t.effect) < CFG.margin and t.power > 0.8, t.line()
            else:
                assert t.effect is None and t.equivalent is None  # compute axis: no equivalence claim
        sized = validate(planted_table({"t": "linear"}, points=pts, size_effect=_six_points(pts), seed=seed))
        r6 = analyze_same_loss(sized, CFG, seed=seed)
        size = r6.test("loss", "log_params")
        assert r6.holds is False and size.significant and not size.equivalent, size.line()
        assert size.effect == pytest.approx(0.08 / np.log2(np.ptp(pts["params"]) / 2e7 + 1), rel=0.35)
    assert held >= 4


def test_equivalence_fields_reach_the_json():
    r = analyze_same_loss(validate(planted_table({"t": "linear"}, seed=0)), CFG, seed=0)
    d = r.to_dict()
    t = next(t for t in d["tests"] if t["axis"] == "loss")
    assert {"effect", "effect_ci", "margin", "equivalent", "power"} <= set(t)
    assert isinstance(t["effect_ci"], list) and t["effect_ci"][0] <= t["effect"] <= t["effect_ci"][1]
    assert "effect" in r.summary() and "power" in r.summary()
