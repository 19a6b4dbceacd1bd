"""Emergence verdicts on planted ladders with a known answer, over several seeds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from losslens.analysis.emergence import (
    EmergenceConfig,
    Region,
    analyze_emergence,
    bootstrap_eta,
    elbow_estimates,
    kink_failures,
    prepare,
)
from losslens.analysis.synthetic import ladder_points, planted_table, shape_curve
from losslens.analysis.table import validate

SEEDS = range(5)
CFG = EmergenceConfig(bootstrap=400)


def _task(df, name):
    return df[df["task"] == name].reset_index(drop=True)


@pytest.fixture(scope="module")
def planted():
    """Five independent ladders, each with one task of every shape (1000 items, chance 0.25)."""
    return {seed: validate(planted_table(seed=seed, n_items=1000)) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_planted_threshold_is_emergent_and_eta_inside_its_interval(planted, seed):
    sub = _task(planted[seed], "emergent")
    true_eta = sub["loss"].min() + 0.5 * (sub["loss"].max() - sub["loss"].min())  # synthetic.shape_curve's eta
    r = analyze_emergence(sub, CFG, seed=seed)
    assert r.verdict == "emergent", r.summary()
    lo, hi = r.eta_ci
    assert lo <= true_eta <= hi, r.summary()
    assert lo <= r.eta <= hi
    assert hi - lo < 0.25 * (sub["loss"].max() - sub["loss"].min())  # and the interval is informative
    assert r.plateau.p_above_chance > CFG.alpha and r.below.p_above_chance < CFG.alpha
    assert r.delta_bic >= CFG.bic_margin


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", ["linear", "sigmoid"])
def test_smooth_shapes_are_smooth_never_emergent(planted, seed, shape):
    r = analyze_emergence(_task(planted[seed], shape), CFG, seed=seed)
    assert r.verdict == "smooth", r.summary()


@pytest.mark.parametrize("seed", SEEDS)
def test_flat_at_chance_is_not_emerged(planted, seed):
    r = analyze_emergence(_task(planted[seed], "flat"), CFG, seed=seed)
    assert r.verdict == "not_emerged", r.summary()


def _custom(curve, seed, *, n_items=1000, chance=0.25, **ladder):
    pts = ladder_points(seed=seed, **ladder)
    y = curve(pts["loss"].to_numpy())
    k = np.random.default_rng(seed + 7).binomial(n_items, np.clip(chance + (1 - chance) * y, 0, 1))
    return validate(pts.assign(task="t", metric="acc", value=k / n_items, n=n_items, chance=chance))


@pytest.mark.parametrize("seed", range(4))
def test_straight_line_from_chance_and_steep_sigmoid_are_never_emergent(seed):
    def line(L):  # starts exactly at chance at the highest loss: the hardest line to tell from Eq. 3
        return 0.8 * (L.max() - L) / (L.max() - L.min())

    def steep(L):  # a sigmoid whose lower tail sits near chance for a long stretch
        return 1 / (1 + np.exp((L - (L.min() + 0.5 * np.ptp(L))) / (np.ptp(L) / 20)))

    for curve in (line, steep):
        r = analyze_emergence(_custom(curve, seed), CFG, seed=seed)
        assert r.verdict != "emergent", r.summary()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("width", [4, 10, 20])
def test_sigmoid_rising_from_the_chance_line_is_not_emergent(seed, width):
    """A sigmoid with its foot on the chance line (midpoint halfway): its tail is measurably above
    chance where a threshold would need a plateau, so the plateau test refuses a threshold."""
    def sigmoid(L):
        return 1 / (1 + np.exp((L - (L.min() + 0.5 * np.ptp(L))) / (np.ptp(L) / width)))

    r = analyze_emergence(_custom(sigmoid, seed), CFG, seed=seed)
    assert r.verdict == "smooth", r.summary()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("width", [10, 20])
@pytest.mark.parametrize("n_items", [100, 1000])
def test_steep_sigmoid_low_in_the_range_is_never_emergent(seed, width, n_items):
    """Midpoint at 0.3 of the range: the curve is at chance over the upper half, so no smooth fit is a
    rival, yet the sigmoid fits far better than either form of Eq. 3 (by 80-260 BIC): a threshold
    placed by such a poor fit is not trusted."""
    def sigmoid(L):
        return 1 / (1 + np.exp((L - (L.min() + 0.3 * np.ptp(L))) / (np.ptp(L) / width)))

    r = analyze_emergence(_custom(sigmoid, seed, n_items=n_items), CFG, seed=seed)
    assert r.verdict != "emergent", r.summary()


@pytest.mark.parametrize("seed", range(3))
def test_threshold_on_a_small_offset_is_neither_smooth_nor_emergent(seed):
    """A clean threshold whose plateau sits 0.03 above chance (answer bias, say): not emergent (the
    plateau is above chance) and not smooth (not clearly present at the highest losses)."""
    r = analyze_emergence(_custom(lambda L: 0.03 + shape_curve("emergent", L), seed), CFG, seed=seed)
    assert r.verdict == "inconclusive", r.summary()
    assert any("above eta the task is above chance" in m for m in r.reasons), r.summary()


@pytest.mark.parametrize("seed", range(3))
def test_a_rise_too_small_to_be_an_ability_is_not_emergent(seed):
    """At chance, then up by 0.03 (normalised) only: significant with 1000 items, but not known to be
    more than delta above chance, so the ability is not shown to be present."""
    r = analyze_emergence(_custom(lambda L: shape_curve("emergent", L, amplitude=0.03), seed), CFG, seed=seed)
    assert r.verdict == "inconclusive", r.summary()
    assert any("too small a rise" in m for m in r.reasons), r.summary()


def test_kink_failures_names_the_rival_the_poor_fit_and_a_one_run_side():
    cfg = EmergenceConfig()
    side = Region(n_points=8, n_losses=8, n_runs=3, mean=0.0, se=0.01, p_above_chance=0.5, upper=0.016)
    assert kink_failures(2.0, side, side, 5.0, "sigmoid", cfg, 4) == []
    assert "fits about as well" in kink_failures(2.0, side, side, 1.0, "sigmoid", cfg, 4)[0]
    assert "far better than Eq. 3" in kink_failures(2.0, side, side, None, None, cfg, 4, -12.0, "sigmoid")[0]
    lone = dataclasses.replace(side, n_runs=1)
    assert "comes from one run" in kink_failures(2.0, lone, side, None, None, cfg, 4)[0]
    assert kink_failures(2.0, lone, side, None, None, cfg, 1) == []  # one run in all: nothing to compare


def test_saturating_rise_from_chance_is_emergent_with_the_saturating_form():
    """Flat at chance, then a quick rise that levels off at 0.9: Eq. 3 with a ceiling fits it; the
    plain power elbow alone would lose to a sigmoid."""
    def curve(L):
        eta = L.min() + 0.5 * np.ptp(L)
        u = np.maximum(eta - L, 0) / np.ptp(L)
        return 0.9 * u**2 / (u**2 + 0.1**2)

    for seed in range(3):
        r = analyze_emergence(_custom(curve, seed), CFG, seed=seed)
        assert r.verdict == "emergent" and r.threshold_fit == "elbow_saturating", r.summary()
        true_eta = r.loss_range[0] + 0.5 * (r.loss_range[1] - r.loss_range[0])
        assert r.eta_ci[0] <= true_eta <= r.eta_ci[1], r.summary()


@pytest.mark.parametrize("seed", range(3))
def test_too_few_or_too_noisy_points_are_inconclusive(seed):
    def elbow(L):
        return shape_curve("emergent", L)

    few = _custom(elbow, seed, sizes=(5e7, 3e8), checkpoints=3, tokens_per_param=(20,))
    assert analyze_emergence(few, CFG, seed=seed).verdict == "inconclusive"
    noisy = _custom(elbow, seed, n_items=30, sizes=(5e7, 1e8, 3e8), checkpoints=4, tokens_per_param=(20,))
    assert analyze_emergence(noisy, CFG, seed=seed).verdict == "inconclusive"
    flat_noisy = _custom(lambda L: 0 * L, seed, n_items=10, sizes=(5e7, 1e8, 3e8), checkpoints=4,
                         tokens_per_param=(20,))
    assert analyze_emergence(flat_noisy, CFG, seed=seed).verdict == "inconclusive"


@pytest.mark.parametrize("seed", range(3))
def test_continuous_lower_is_better_metric_normalised_and_emergent(seed):
    """Brier (Du's convention: 4-way uniform guess = 0.75, perfect = 0), with a stderr and no n."""
    pts = ladder_points(seed=seed)
    L = pts["loss"].to_numpy()
    y = shape_curve("emergent", L)
    se = 0.004
    brier = 0.75 * (1 - y) + np.random.default_rng(seed).normal(0, se, len(L))
    df = validate(pts.assign(task="t", metric="brier_sum", value=brier, stderr=se, chance=0.75))
    r = analyze_emergence(df, CFG, seed=seed)
    assert not r.higher_is_better and r.perfect == 0.0
    assert r.verdict == "emergent", r.summary()
    true_eta = L.min() + 0.5 * np.ptp(L)
    assert r.eta_ci[0] <= true_eta <= r.eta_ci[1]


def test_same_seed_same_numbers_and_summary_has_evidence(planted):
    sub = _task(planted[0], "emergent")
    a, b = analyze_emergence(sub, CFG, seed=3), analyze_emergence(sub, CFG, seed=3)
    assert a.eta_ci == b.eta_ci and a.to_dict() == b.to_dict()
    text = a.summary()
    for word in ("EMERGENT", "eta", "BIC", "plateau", "p(above chance)"):
        assert word in text


@pytest.mark.parametrize("saturating", [False, True])
def test_vectorised_estimator_matches_one_row_at_a_time(planted, saturating):
    """The bootstrap fits all replicates in one batch; the batch must equal separate fits."""
    sub = _task(planted[1], "emergent")
    prep = prepare(sub)
    rng = np.random.default_rng(0)
    W = rng.integers(0, 3, size=(6, len(prep.y))).astype(float) + 0.01
    Y = prep.y[None, :] + rng.normal(0, 0.01, size=(6, len(prep.y)))
    eta_all, p_all, w_all = elbow_estimates(prep.loss, Y, W, CFG, saturating=saturating)
    assert np.all(np.isfinite(w_all)) == saturating
    for b in range(6):
        eta_b, p_b, w_b = elbow_estimates(prep.loss, Y[b:b + 1], W[b:b + 1], CFG, saturating=saturating)
        assert np.isclose(eta_all[b], eta_b[0]) and np.isclose(p_all[b], p_b[0]) and w_all[b] == w_b[0]
    etas = bootstrap_eta(prep, np.ones_like(prep.y), CFG, np.random.default_rng(1), saturating=saturating)
    assert etas.shape == (CFG.bootstrap,) and np.all(np.isfinite(etas))


def test_chance_unknown_never_claims_emergence():
    df = validate(planted_table({"t": "emergent"}, seed=0).assign(chance=np.nan))
    r = analyze_emergence(df, CFG)
    assert r.chance is None and r.verdict in ("smooth", "inconclusive")
    assert any("chance" in reason for reason in r.reasons)


@pytest.mark.parametrize("seed", range(3))
def test_a_small_ladder_of_three_runs_still_finds_its_threshold(seed):
    """Few runs (as a CPU demo ladder has): the bootstrap keeps every run and resamples checkpoints."""
    def elbow(L):
        return shape_curve("emergent", L)

    df = _custom(elbow, seed, n_items=500, sizes=(3e7, 1e8, 3e8), checkpoints=20, tokens_per_param=(20,))
    r = analyze_emergence(df, CFG, seed=seed)
    assert r.n_runs == 3 and r.verdict == "emergent", r.summary()
    true_eta = df["loss"].min() + 0.5 * np.ptp(df["loss"])
    assert r.eta_ci[0] <= true_eta <= r.eta_ci[1]
    for shape in ("linear", "sigmoid"):
        smooth = _custom(lambda L, shape=shape: shape_curve(shape, L), seed, n_items=500, sizes=(3e7, 1e8, 3e8),
                         checkpoints=20, tokens_per_param=(20,))
        assert analyze_emergence(smooth, CFG, seed=seed).verdict == "smooth"
