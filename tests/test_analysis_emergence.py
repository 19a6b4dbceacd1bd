"""Emergence verdicts on planted ladders with a known answer, over several seeds."""

from __future__ import annotations

import numpy as np
import pytest

from losslens.analysis.emergence import EmergenceConfig, analyze_emergence, bootstrap_eta, elbow_estimates, prepare
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
    """Its foot is on the chance line, so it is no rival of Eq. 3; but its tail is measurably above
    chance (a width of range/20 is still 0.02 at a quarter range above the midpoint), so the plateau
    test refuses a threshold."""
    def sigmoid(L):
        return 1 / (1 + np.exp((L - (L.min() + 0.5 * np.ptp(L))) / (np.ptp(L) / width)))

    r = analyze_emergence(_custom(sigmoid, seed), CFG, seed=seed)
    assert r.verdict == "smooth", r.summary()


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


def test_vectorised_estimator_matches_one_row_at_a_time(planted):
    """The bootstrap fits all replicates in one batch; the batch must equal separate fits."""
    sub = _task(planted[1], "emergent")
    prep = prepare(sub)
    rng = np.random.default_rng(0)
    W = rng.integers(0, 3, size=(6, len(prep.y))).astype(float) + 0.01
    Y = prep.y[None, :] + rng.normal(0, 0.01, size=(6, len(prep.y)))
    eta_all, p_all, _ = elbow_estimates(prep.loss, Y, W, CFG)
    for b in range(6):
        eta_b, p_b, _ = elbow_estimates(prep.loss, Y[b:b + 1], W[b:b + 1], CFG)
        assert np.isclose(eta_all[b], eta_b[0]) and np.isclose(p_all[b], p_b[0])
    etas = bootstrap_eta(prep, np.ones_like(prep.y), CFG, np.random.default_rng(1))
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
        smooth = _custom(lambda L: shape_curve(shape, L), seed, n_items=500, sizes=(3e7, 1e8, 3e8),
                         checkpoints=20, tokens_per_param=(20,))
        assert analyze_emergence(smooth, CFG, seed=seed).verdict == "smooth"
