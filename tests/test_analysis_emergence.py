"""Emergence verdicts on planted ladders with a known answer, over several seeds, and the decision rules
one at a time on hand-made evidence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from losslens.analysis.emergence import (
    REASONS,
    EmergenceConfig,
    Evidence,
    Explained,
    Region,
    _lin2,
    analyze_emergence,
    bh_qvalues,
    decide,
    elbow_basis,
    elbow_estimates,
    emergence_test,
    fdr_adjust,
    prepare,
    profile_at,
    profile_widths,
    smooth_bases,
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
    assert r.verdict == "emergent" and r.reason_code == "emergent", r.summary()
    lo, hi = r.eta_ci
    assert lo <= true_eta <= hi, r.summary()
    assert lo <= r.eta <= hi
    assert hi - lo < 0.15 * (sub["loss"].max() - sub["loss"].min())  # and the interval is informative
    assert r.lrt_p < CFG.alpha and r.plateau.p_within(CFG.delta) < CFG.equivalence_alpha
    assert r.peak.p_over(CFG.delta) < CFG.equivalence_alpha


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", ["linear", "sigmoid"])
def test_smooth_shapes_are_smooth_never_emergent(planted, seed, shape):
    r = analyze_emergence(_task(planted[seed], shape), CFG, seed=seed)
    assert r.verdict == "smooth" and r.reason_code == "present_at_highest_loss", r.summary()


@pytest.mark.parametrize("seed", SEEDS)
def test_flat_at_chance_is_not_emerged(planted, seed):
    r = analyze_emergence(_task(planted[seed], "flat"), CFG, seed=seed)
    assert r.verdict == "not_emerged" and r.reason_code == "no_rise_at_chance", r.summary()


def _custom(curve, seed, *, n_items=1000, chance=0.25, **ladder):
    pts = ladder_points(seed=seed, **ladder)
    y = curve(pts["loss"].to_numpy())
    k = np.random.default_rng(seed + 7).binomial(n_items, np.clip(chance + (1 - chance) * y, 0, 1))
    return validate(pts.assign(task="t", metric="acc", value=k / n_items, n=n_items, chance=chance))


def _sigmoid_from_chance(mid, width):
    return lambda L: 1 / (1 + np.exp((L - (L.min() + mid * np.ptp(L))) / (np.ptp(L) / width)))


@pytest.mark.parametrize("seed", range(4))
def test_straight_line_from_chance_and_steep_sigmoid_are_never_emergent(seed):
    def line(L):  # starts exactly at chance at the highest loss: the hardest line to tell from Eq. 3
        return 0.8 * (L.max() - L) / (L.max() - L.min())

    for curve in (line, _sigmoid_from_chance(0.5, 8)):
        r = analyze_emergence(_custom(curve, seed), CFG, seed=seed)
        assert r.verdict != "emergent", r.summary()


@pytest.mark.parametrize("seed", range(3))
def test_wide_sigmoid_from_the_chance_line_is_smooth(seed):
    """Midpoint halfway, width 1/4 of the range: its tail is clearly above chance at the highest losses."""
    r = analyze_emergence(_custom(_sigmoid_from_chance(0.5, 4), seed), CFG, seed=seed)
    assert r.verdict == "smooth", r.summary()


@pytest.mark.parametrize("seed", range(6))
def test_plain_logistic_is_not_emergent(seed):
    """The audit's case (17.5% emergent before): a logistic with its foot on the chance line, width 1/8
    of the range, so it sits within delta of chance over the upper part of the range, yet has no
    threshold: the emergence test's smooth null explains it."""
    def logistic(L):
        t = (L.max() - L) / np.ptp(L)
        return 0.7 / (1 + np.exp(-(t - 0.5) * 8))

    r = analyze_emergence(_custom(logistic, seed, n_items=500), CFG, seed=seed)
    assert r.verdict != "emergent", r.summary()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("width", [6, 8])
@pytest.mark.parametrize("n_items", [100, 1000])
def test_steep_sigmoid_low_in_the_range_is_never_emergent(seed, width, n_items):
    """Midpoint at 0.3 of the range: at chance over the upper half, then a sigmoid (no threshold) as steep
    as the smooth family allows (k x range 8 = max_sigmoid_steepness; a steeper one is a step)."""
    r = analyze_emergence(_custom(_sigmoid_from_chance(0.3, width), seed, n_items=n_items), CFG, seed=seed)
    assert r.verdict != "emergent", r.summary()


@pytest.mark.parametrize("seed", range(3))
def test_threshold_on_an_offset_within_delta_is_emergent_and_beyond_delta_is_not(seed):
    """The equivalence margin is the rule: a plateau 0.02 above chance is at chance within delta 0.05; one
    0.12 above it is present at the highest losses."""
    small = analyze_emergence(_custom(lambda L: 0.02 + shape_curve("emergent", L), seed), CFG, seed=seed)
    assert small.verdict == "emergent", small.summary()
    big = analyze_emergence(_custom(lambda L: 0.12 + shape_curve("emergent", L), seed), CFG, seed=seed)
    assert big.verdict == "smooth" and big.reason_code == "present_at_highest_loss", big.summary()


@pytest.mark.parametrize("seed", range(3))
def test_a_rise_too_small_to_be_an_ability_is_not_emerged(seed):
    """At chance, then up by 0.03 (normalised) only: significant with 1000 items, but known to stay
    within delta of chance, so the ability never appears."""
    r = analyze_emergence(_custom(lambda L: shape_curve("emergent", L, amplitude=0.03), seed), CFG, seed=seed)
    assert r.verdict == "not_emerged" and r.reason_code == "no_rise_at_chance", r.summary()


@pytest.mark.parametrize("seed", range(3))
def test_a_plateau_below_chance_is_not_at_chance(seed):
    """The audit's Brier case: a plateau at 1.05 against a uniform guess's 0.75, then falling through
    chance. The plateau is measurably below chance, so no threshold at its edge is claimed."""
    pts = ladder_points(seed=seed)
    L = pts["loss"].to_numpy()
    y = -0.4 + 1.1 * shape_curve("emergent", L, amplitude=1.0)
    brier = 0.75 * (1 - y) + np.random.default_rng(seed).normal(0, 0.004, len(L))
    r = analyze_emergence(validate(pts.assign(task="t", metric="brier_sum", value=brier, stderr=0.004,
                                              chance=0.75)), CFG, seed=seed)
    assert r.verdict == "inconclusive" and r.reason_code == "plateau_not_at_chance", r.summary()


@pytest.mark.parametrize("seed", range(2))
def test_majority_baseline_replaces_chance_where_it_is_better(seed):
    """BoolQ-like: chance 0.5, but always answering "yes" scores 0.62. A flat task at 0.62 is not emerged
    against the majority baseline (smooth-looking "present" against chance), and a threshold rising
    from 0.62 is emergent against it."""
    def at_majority(extra):
        def curve(L):  # normalised against the declared chance 0.5: the majority is 0.24
            return 0.24 + extra * shape_curve("emergent", L)
        return curve

    flat = _custom(at_majority(0.0), seed, chance=0.5)
    assert analyze_emergence(flat, CFG, seed=seed).verdict != "not_emerged"
    r = analyze_emergence(flat.assign(majority=0.62), CFG, seed=seed)
    assert r.verdict == "not_emerged" and r.chance == 0.62 and r.chance_source == "majority", r.summary()
    rise = _custom(at_majority(0.7), seed, chance=0.5).assign(majority=0.62)
    r = analyze_emergence(rise, CFG, seed=seed)
    assert r.verdict == "emergent" and r.chance == 0.62, r.summary()
    # a majority below the declared chance changes nothing
    assert prepare(rise.assign(majority=0.3)).chance == 0.5


def _onset(L):
    eta = L.min() + 0.5 * np.ptp(L)
    return np.maximum(eta - L, 0) / np.ptp(L)


def _exponential_approach(L):
    return 0.9 * -np.expm1(-_onset(L) / 0.1)


def _hill(L):
    return 0.9 * _onset(L) ** 2 / (_onset(L) ** 2 + 0.1**2)


def test_saturating_rise_from_chance_is_emergent_with_the_saturating_form():
    """Flat at chance, then a quick rise that levels off at 0.9: Eq. 3 with a ceiling fits it, whether the
    rise approaches its ceiling exponentially (the saturating form's own shape) or as a Hill curve
    u^2 / (u^2 + w^2); for the first, the eta interval holds the true eta and the estimate lies in it."""
    for seed in range(3):
        for curve in (_exponential_approach, _hill):
            r = analyze_emergence(_custom(curve, seed), CFG, seed=seed)
            assert r.verdict == "emergent" and r.threshold_fit == "elbow_saturating", r.summary()
            if curve is _exponential_approach:
                true_eta = r.loss_range[0] + 0.5 * (r.loss_range[1] - r.loss_range[0])
                assert r.eta_ci[0] <= true_eta <= r.eta_ci[1], r.summary()
                assert r.eta_ci[0] < r.eta < r.eta_ci[1], r.summary()  # the estimate inside its own interval


@pytest.mark.xfail(strict=True, reason="known limitation (docs/analysis.md, 'Third pass'): a Hill-shaped onset "
                   "is outside Eq. 3's two forms, and at 1000 items its interval lies below the true foot")
def test_hill_shaped_onset_interval_holds_the_true_eta():
    covered = 0
    for seed in range(3):
        r = analyze_emergence(_custom(_hill, seed), CFG, seed=seed)
        true_eta = r.loss_range[0] + 0.5 * (r.loss_range[1] - r.loss_range[0])
        covered += r.eta_ci[0] <= true_eta <= r.eta_ci[1]
    assert covered >= 2


@pytest.mark.parametrize("seed", range(3))
def test_too_few_or_too_noisy_points_are_inconclusive_and_say_why(seed):
    def elbow(L):
        return shape_curve("emergent", L)

    few = analyze_emergence(_custom(elbow, seed, sizes=(5e7, 3e8), checkpoints=3, tokens_per_param=(20,)), CFG)
    assert few.verdict == "inconclusive" and few.reason_code in ("too_few_losses_above_eta", "too_few_losses_below_eta",
                                                                 "one_run_on_a_side"), few.summary()
    fewer = analyze_emergence(_custom(elbow, seed, sizes=(5e7, 3e8), checkpoints=2, tokens_per_param=(20,)), CFG)
    assert fewer.verdict == "inconclusive" and fewer.reason_code == "too_few_losses"
    noisy = _custom(elbow, seed, n_items=30, sizes=(5e7, 1e8, 3e8), checkpoints=4, tokens_per_param=(20,))
    r = analyze_emergence(noisy, CFG, seed=seed)
    assert r.verdict == "inconclusive" and r.reason_code in REASONS, r.summary()
    flat_noisy = _custom(lambda L: 0 * L, seed, n_items=10, sizes=(5e7, 1e8, 3e8), checkpoints=4,
                         tokens_per_param=(20,))
    r = analyze_emergence(flat_noisy, CFG, seed=seed)  # 10 items: at best known not to be present
    assert r.verdict in ("inconclusive", "not_emerged"), r.summary()
    if r.verdict == "inconclusive":
        assert r.reason_code == "no_rise" and "more items" in r.reasons[0], r.summary()


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


def test_same_seed_same_numbers_and_the_interval_ignores_the_seed(planted):
    sub = _task(planted[0], "emergent")
    a, b = analyze_emergence(sub, CFG, seed=3), analyze_emergence(sub, CFG, seed=3)
    assert a.to_dict() == b.to_dict()
    others = [analyze_emergence(sub, dataclasses.replace(CFG, bootstrap=n), seed=s) for s, n in ((4, 400), (5, 1000))]
    for o in others:  # the profile interval has no resampling, and the verdict holds at every seed and count
        assert o.eta_ci == a.eta_ci and o.verdict == a.verdict
    text = a.summary()
    for word in ("EMERGENT (emergent)", "eta", "BIC", "plateau", "likelihood ratio", "bootstrap p"):
        assert word in text
    d = a.to_dict()
    assert {"reason_code", "q_value", "error_rates", "lrt", "lrt_p", "lrt_null", "chance_source"} <= set(d)


def _low_noise_onset(curve, seed, se=0.004):
    """A continuous metric with a small known standard error (near noise-free) on a 120-point ladder."""
    pts = ladder_points(seed=seed)
    v = 0.25 + 0.75 * curve(pts["loss"].to_numpy()) + se * np.random.default_rng(seed + 7).standard_normal(len(pts))
    return validate(pts.assign(task="t", metric="correct_choice_prob", value=v, stderr=se, chance=0.25))


def test_off_grid_onset_with_little_noise_interval_holds_the_true_eta():
    """In-family onsets whose p (1.7) and w (0.13 x range) lie between the profile's grid points: at this
    precision a grid step of p moves the SSE by more than the cut, so an interval read off the grids alone
    is too narrow (it held the true eta on 4 of these 8); the polished profile's ends hold it."""
    def power(L):
        return 0.8 * (_onset(L) / 0.5) ** 1.7

    def weibull(L):
        return 0.9 * -np.expm1(-(_onset(L) / 0.13) ** 1.6)

    covered = 0
    for curve in (power, weibull):
        for seed in range(4):
            r = analyze_emergence(_low_noise_onset(curve, seed), CFG, seed=seed)
            true_eta = r.loss_range[0] + 0.5 * (r.loss_range[1] - r.loss_range[0])
            assert r.verdict == "emergent", r.summary()
            covered += r.eta_ci[0] <= true_eta <= r.eta_ci[1]
    assert covered >= 7


def test_polished_profile_is_never_above_the_grid_profile(planted):
    """profile_at minimises from the grid's best point, so it can only lower the grid's SSE at that eta."""
    prep = prepare(_task(planted[0], "emergent"))
    w = 1 / np.maximum(prep.var, 1e-6)
    qs = np.linspace(np.log(CFG.min_power), np.log(CFG.max_power), CFG.profile_powers)
    ws = profile_widths(prep.loss, CFG)
    syy = float((w * (prep.y - (w * prep.y).sum() / w.sum()) ** 2).sum())
    for eta in np.quantile(prep.loss, [0.3, 0.5, 0.7, 0.9]):
        grid_best = max(Explained(elbow_basis(prep.loss, np.full(len(ws), eta), np.exp(q), ws), w, nonneg=True)(
            prep.y[None, :])[0].max() for q in qs)
        assert profile_at(prep.loss, prep.y, w, CFG, float(eta)) <= syy - grid_best + 1e-9


@pytest.mark.parametrize("saturating", [False, True])
def test_vectorised_estimator_matches_one_row_at_a_time(planted, saturating):
    """Every batch fit must equal separate fits."""
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


def test_batched_explained_sum_of_squares_equals_each_weighted_fit(planted):
    """The emergence test refits B replicates by one matrix product; it must equal _lin2's SSE."""
    prep = prepare(_task(planted[2], "sigmoid"))
    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 2.0, len(prep.y))
    H = smooth_bases(prep.loss, CFG)["sigmoid"][::37]
    Y = prep.y[None, :] + rng.normal(0, 0.05, (3, len(prep.y)))
    e = Explained(H, w, nonneg=False)(Y)
    for b in range(3):
        syy = (w * (Y[b] - (w * Y[b]).sum() / w.sum()) ** 2).sum()
        assert np.allclose(syy - e[b], _lin2(H, Y[b], w)[2], rtol=1e-8, atol=1e-8)


def test_emergence_test_is_calibrated_under_a_smooth_null():
    """p-values of data drawn from a smooth curve (no threshold) are roughly uniform: few below 0.1."""
    cfg = dataclasses.replace(CFG, bootstrap=200)
    pts = ladder_points(sizes=(3e7, 1e8, 3e8, 1e9), checkpoints=8, tokens_per_param=(20,), seed=0)
    loss = pts["loss"].to_numpy()
    curve = 0.7 / (1 + np.exp(-((loss.max() - loss) / np.ptp(loss) - 0.5) * 8))
    w = np.full(len(loss), 1 / 0.03**2)
    ps = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        y = curve + rng.normal(0, 0.03, len(loss))
        from losslens.analysis.emergence import elbow_design
        designs = [elbow_design(loss, cfg, s)[3] for s in (False, True)]
        ps.append(emergence_test(loss, y, w, cfg, rng, designs)[1])
    ps = np.array(ps)
    assert (ps < 0.1).mean() <= 0.25 and (ps < 0.01).sum() <= 2, ps
    # and a real threshold is rejected against it
    y = 0.7 * np.maximum(0, (loss.min() + 0.5 * np.ptp(loss) - loss) / (0.5 * np.ptp(loss)))
    y = y + np.random.default_rng(99).normal(0, 0.03, len(loss))
    assert emergence_test(loss, y, w, cfg, np.random.default_rng(0), designs)[1] < 0.01


def test_chance_unknown_never_claims_emergence():
    df = validate(planted_table({"t": "emergent"}, seed=0).assign(chance=np.nan))
    r = analyze_emergence(df, CFG)
    assert r.chance is None and r.verdict in ("smooth", "inconclusive") and r.reason_code == "no_chance_level"


@pytest.mark.parametrize("seed", range(3))
def test_a_small_ladder_of_three_runs_still_finds_its_threshold(seed):
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


# ---------------------------------------------------------------- decide(), one rule at a time


def _region(mean, se=0.01, n_losses=8, n_runs=3):
    return Region(n_points=n_losses, n_losses=n_losses, n_runs=n_runs, mean=mean, se=se,
                  p_above_chance=None, upper=None)


BASE = Evidence(task="t", metric="acc", n_points=40, n_losses=40, n_runs=4, chance=0.25, chance_source="declared",
                perfect=1.0, higher_is_better=True, binomial=True, items=500.0, loss_range=(2.0, 4.0), notes=[],
                tau2=1e-5, trend_p=1e-6, eta=3.0, eta_ci=(2.9, 3.1), lrt=40.0, lrt_p=0.001, lrt_null="sigmoid",
                plateau=_region(0.0), below=_region(0.3), peak=_region(0.5), high=_region(0.0), low=_region(0.5),
                top=_region(0.0), top_name="above eta")


@pytest.mark.parametrize("change, code", [
    ({}, "emergent"),
    ({"n_losses": 5}, "too_few_losses"),
    ({"chance": None}, "no_chance_level"),
    ({"low": _region(0.01)}, "no_rise_at_chance"),
    ({"low": _region(-0.3)}, "no_rise_at_chance"),                      # a dip below chance never emerged
    ({"top": _region(0.12)}, "present_at_highest_loss"),
    ({"top": _region(0.12), "trend_p": 0.3}, "no_rise"),               # present but not rising: not smooth
    ({"trend_p": 0.3}, "no_rise"),
    ({"plateau": _region(0.0, n_losses=2)}, "too_few_losses_above_eta"),
    ({"below": _region(0.3, n_losses=2)}, "too_few_losses_below_eta"),
    ({"below": _region(0.3, n_runs=1)}, "one_run_on_a_side"),
    ({"plateau": _region(-0.2)}, "plateau_not_at_chance"),             # two-sided: below chance is not chance
    ({"plateau": _region(0.09)}, "plateau_not_at_chance"),
    ({"plateau": _region(0.0, se=0.05)}, "plateau_too_noisy"),
    ({"peak": _region(0.02)}, "rise_too_small"),
    ({"peak": _region(0.1, se=0.05)}, "presence_too_noisy"),
    ({"lrt_p": 0.2}, "smooth_alternative_fits"),
    ({"lrt_p": None}, "test_not_run"),
])
def test_decide_gives_each_reason_code(change, code):
    verdict, got, reasons = decide(dataclasses.replace(BASE, **change), EmergenceConfig())
    assert got == code and code in REASONS and reasons
    want = {"emergent": "emergent", "present_at_highest_loss": "smooth", "no_rise_at_chance": "not_emerged"}
    assert verdict == want.get(code, "smooth" if code == "no_chance_level" else "inconclusive")


def test_decide_uses_its_config():
    """Every threshold of the decision is the config's: a wider delta, a stricter alpha."""
    ev = dataclasses.replace(BASE, plateau=_region(0.07))
    assert decide(ev, EmergenceConfig())[1] == "plateau_not_at_chance"
    assert decide(ev, EmergenceConfig(delta=0.1))[1] == "emergent"
    assert decide(BASE, EmergenceConfig(alpha=0.0005))[1] == "smooth_alternative_fits"
    noisy = dataclasses.replace(BASE, plateau=_region(0.0, se=0.028))
    assert decide(noisy, EmergenceConfig())[1] == "emergent"
    assert decide(noisy, EmergenceConfig(equivalence_alpha=0.01))[1] == "plateau_too_noisy"
    assert decide(dataclasses.replace(BASE, plateau=_region(0.0, n_losses=4)), EmergenceConfig(min_side=5))[1] == \
        "too_few_losses_above_eta"


def test_benjamini_hochberg_and_the_fdr_demotion():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.9])
    # hand-computed: p * m / rank, then the running minimum from the top
    assert np.allclose(bh_qvalues(p), [0.005, 0.02, 0.05125, 0.05125, 0.9])
    assert np.allclose(bh_qvalues(p[::-1]), bh_qvalues(p)[::-1])
    from losslens.analysis.emergence import EmergenceResult
    fields = {f.name: getattr(BASE, f.name) for f in dataclasses.fields(Evidence)}
    results = [EmergenceResult(**(fields | {"lrt_p": q}), verdict="emergent", reason_code="emergent")
               for q in (0.001, 0.009)] + [EmergenceResult(**(fields | {"lrt_p": 1.0}), verdict="smooth",
                                                           reason_code="present_at_highest_loss")
                                           for _ in range(18)]
    fdr_adjust(results, EmergenceConfig())  # m = 20: q = 0.001 * 20 = 0.02 and 0.009 * 20 / 2 = 0.09
    assert results[0].verdict == "emergent" and results[0].q_value == pytest.approx(0.02)
    assert results[1].verdict == "inconclusive" and results[1].reason_code == "not_significant_after_fdr"
    assert results[1].q_value == pytest.approx(0.09)
    fdr_adjust(results[1:2] + results[:1], EmergenceConfig(fdr=None))  # off: q reported, nothing demoted
    assert results[0].verdict == "emergent" and results[0].q_value == pytest.approx(0.002)
    assert all(r.verdict == "smooth" for r in results[2:])
