"""The calibration suite (losslens/analysis/calibration.py): planted tasks are what they claim to be,
runs are deterministic whatever the worker count, the error-rate lookup counts right, and on the fast
grid the emergence verdicts meet issue 13's targets (a real check on fixed seeds, not a snapshot)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from losslens.analysis import calibration as cal
from losslens.cli import main


def _cond(**kw):
    base = dict(index=0, stream=9, truth="threshold", shape="linear", items=500, chance=0.25)
    return cal.Condition(**(base | kw))


@pytest.mark.parametrize("shape", cal.SHAPES["threshold"])
def test_planted_threshold_is_exactly_at_chance_above_eta(shape):
    c = _cond(shape=shape, power=2.5, rise=0.5, size_offset=0.03)
    loss = np.linspace(2.5, 6.0, 200)
    z = np.linspace(-0.5, 0.5, 200)
    y, eta = cal.planted_curve(c, loss, z)
    assert eta == pytest.approx(2.5 + c.eta_frac * 3.5)
    assert np.all(y[loss >= eta] == 0.0)
    assert np.all(y[loss < eta] > 0.0)
    assert y[0] == pytest.approx(c.rise + c.size_offset * z[0])


def test_smooth_shapes_are_above_chance_at_the_highest_loss_and_flat_dips_below():
    loss, z = np.linspace(2.5, 6.0, 50), np.zeros(50)
    for shape in cal.SHAPES["smooth"]:
        offset = 0.0 if "logistic" in shape else 0.02   # a logistic's own tail is above chance
        kw = dict(power=7.0, eta_frac=0.3) if shape == "late_logistic" else {}
        y, eta = cal.planted_curve(_cond(truth="smooth", shape=shape, offset=offset, **kw), loss, z)
        assert eta is None and y[-1] > 0 and y[0] > y[-1] + 0.2
        if shape == "late_logistic":   # the hard negative: within delta of chance at the top, rising everywhere
            assert y[-1] < 0.05 * 0.6 and np.all(np.diff(y) < 0)
    y, _ = cal.planted_curve(_cond(truth="flat", shape="dip", offset=0.05), loss, z)
    assert np.all(y == -0.05)


def test_majority_task_rises_only_to_the_constant_answer_and_says_so():
    c = _cond(truth="flat", shape="majority", offset=0.2, chance=0.5, items=1000)
    df, eta = cal.planted_table(c)
    assert eta is None and np.allclose(df["majority"], 0.5 + 0.5 * 0.2)
    lo = df["loss"] <= df["loss"].quantile(0.1)
    assert df.loc[lo, "value"].mean() > 0.55     # above declared chance, at the majority's level
    assert (df["value"] <= 0.6 + 4 * np.sqrt(0.25 / 1000)).all()


def test_same_seed_same_table_and_grids_are_fixed():
    c = _cond(continuous=True, noise=0.02)
    a, eta_a = cal.planted_table(c)
    b, eta_b = cal.planted_table(c)
    pd.testing.assert_frame_equal(a, b)
    assert eta_a == eta_b
    assert not a.equals(cal.planted_table(dataclasses.replace(c, index=1))[0])
    assert cal.grid("independent", 10) == cal.grid("independent", 10)
    g = cal.grid("independent")
    assert sum(x.truth == "threshold" for x in g) == 720 and len(g) == 1440
    assert cal.grid("full", 2) != g[:len(cal.grid("full", 2))]


def test_brier_dip_is_worse_than_the_uniform_guess():
    c = next(c for i in range(20) if (c := _cond(truth="flat", shape="dip", continuous=True, index=i, offset=0.4,
                                                  items=1000)).metric == "brier_sum")
    df, _ = cal.planted_table(c)
    assert df["chance"].iloc[0] == pytest.approx(0.75)
    assert df["value"].mean() == pytest.approx(0.75 + 0.75 * 0.4, abs=0.02)


def test_results_do_not_depend_on_the_worker_count():
    conds = cal.grid("fast")[:10]
    one = cal.run(conds, workers=1, bootstrap=200)
    two = cal.run(conds, workers=2, bootstrap=200)
    pd.testing.assert_frame_equal(one, two)
    assert list(one["index"]) == [c.index for c in conds]


def _rows(truths, verdicts, **kw):
    n = len(truths)
    base = dict(continuous=False, items=500, chance=0.25, metric="acc", n_losses=40, n_runs=6,
                eta_true=np.nan, eta=np.nan,
                ci_lo=np.nan, ci_hi=np.nan, loss_lo=2.0, loss_hi=4.0, rise=0.5, sizes=5, shape="x")
    return pd.DataFrame({"truth": truths, "verdict": verdicts} | {k: [v] * n for k, v in (base | kw).items()})


def test_error_rate_lookup_counts_and_falls_back_to_coarser_cells():
    rows = pd.concat([
        _rows(["smooth"] * 30 + ["flat"] * 10, ["emergent"] * 2 + ["smooth"] * 28 + ["not_emerged"] * 10),
        _rows(["threshold"] * 40, ["emergent"] * 30 + ["smooth"] * 2 + ["inconclusive"] * 8,
              eta_true=3.0, eta=3.0, ci_lo=2.5, ci_hi=3.5),
        _rows(["threshold"] * 5, ["emergent"] * 5, eta_true=3.0, eta=3.0, ci_lo=3.2, ci_hi=3.5, items=100),
    ], ignore_index=True)
    table = cal.rate_table(rows)
    r = cal.error_rates("emergent", items=450, chance=0.25, n_losses=45, n_runs=6, binomial=True, rates=table)
    assert (r["k"], r["n"], r["false_rate"]) == (2, 40, 0.05)
    assert r["coverage"] == 1.0 and r["coverage_n"] == 30
    assert r["text"].startswith("in calibration, 2 of 40 smooth or flat tasks like this one (binomial True, "
                                "items 500, chance 0.25, losses 30-59, runs 5-8) were called emergent (5.0%, 95% CI")
    assert r["false_rate_ci"][0] < 0.05 < r["false_rate_ci"][1]
    r = cal.error_rates("smooth", items=500, chance=0.3, n_losses=45, n_runs=6, binomial=True, rates=table)
    assert (r["k"], r["n"]) == (2, 40)
    r = cal.error_rates("inconclusive", items=500, chance=0.25, n_losses=45, n_runs=6, binomial=True, rates=table)
    assert (r["k"], r["n"], r["flat_rate"]) == (8, 40, 0.0)
    r = cal.error_rates("smooth", items=None, chance=0.25, n_losses=45, n_runs=6, binomial=True, rates=table)
    assert (r["k"], r["n"]) == (2, 45) and "items" not in r["cell"]
    # 100 items holds only 5 thresholds: the lookup drops items (and everything finer) for all 45
    r = cal.error_rates("emergent", items=100, chance=0.25, n_losses=45, n_runs=6, binomial=True, rates=table)
    assert r["cell"] == "binomial True" and r["n"] == 40
    r = cal.error_rates("not_emerged", items=100, chance=0.25, n_losses=45, n_runs=6, binomial=True, rates=table)
    assert r["n"] == 45 and r["false_rate"] == 0.0
    with pytest.raises(ValueError):
        cal.error_rates("maybe", items=1, chance=0, n_losses=1, n_runs=1, binomial=True, rates=table)


def test_shipped_lookup_answers():
    r = cal.error_rates("emergent", items=1000, chance=0.25, n_losses=50, n_runs=10, binomial=True)
    assert r["n"] >= 30 and 0.0 <= r["false_rate"] <= 1.0 and r["text"].startswith("in calibration")


def test_markers_are_replaced_or_appended():
    text = "a\n<!-- x:begin -->\nold\n<!-- x:end -->\nb\n"
    assert cal.replace_between_markers(text, "x", "new\n") == "a\n<!-- x:begin -->\nnew\n<!-- x:end -->\nb\n"
    assert cal.replace_between_markers("a\n", "y", "new").endswith("<!-- y:begin -->\nnew\n<!-- y:end -->\n")


def test_cli_shard_and_bad_flags(tmp_path, capsys):
    assert main(["calibrate", "--grid", "fast", "--reps", "1", "--shard", "0/30", "--bootstrap", "100",
                 "--workers", "1", "--out", str(tmp_path)]) == 0
    part = pd.read_csv(tmp_path / "fast" / "tasks-0-of-30.csv")
    assert list(part["index"]) == [0, 30, 60]
    for args, field in ((["--shard", "3/2"], "--shard"), (["--write-docs"], "--write-docs"),
                        (["--from-shards", "2"], "--from-shards"), (["--workers", "0"], "--workers")):
        assert main(["calibrate", "--out", str(tmp_path), *args]) == 2
        assert field in capsys.readouterr().err


# ---------------------------------------------------------------- the targets, on the fast grid


@pytest.fixture(scope="module")
def fast_rows():
    return cal.run(cal.grid("fast"), workers=2)


def _target(rows, prefix):
    return next(t for t in cal.targets(rows, min_coverage_n=50) if t["target"].startswith(prefix))


def test_fast_grid_has_enough_tasks_for_the_targets(fast_rows):
    thr = fast_rows[fast_rows["truth"] == "threshold"]
    assert len(thr) == 96 and (thr["rise"] >= 0.4).all() and (thr["items"] >= 200).all()
    assert (fast_rows["truth"] != "threshold").sum() == 84


def test_no_smooth_or_flat_task_is_called_emergent(fast_rows):
    t = _target(fast_rows, "false emergent on smooth/flat <= 1% (overall)")
    assert t["holds"], t


def test_flat_tasks_are_not_emerged(fast_rows):
    t = _target(fast_rows, "flat not_emerged")
    assert t["holds"], t


def test_thresholds_are_not_called_smooth(fast_rows):
    t = _target(fast_rows, "thresholds smooth")
    assert t["holds"], t


def test_power_on_clear_thresholds(fast_rows):
    t = _target(fast_rows, "power")
    assert t["holds"], t


def test_eta_interval_coverage(fast_rows):
    r = cal.score(fast_rows)
    cov = r["covered"].dropna()
    assert len(cov) >= 50, "too few emergent verdicts to test coverage"
    assert 0.93 <= cov.mean() <= 0.98, (cov.mean(), len(cov))


def test_eta_interval_width(fast_rows):
    t = _target(fast_rows, "median interval width")
    assert t["holds"], t


def test_tradeoff_reproduces_the_verdicts_at_the_procedures_level(fast_rows):
    """At alpha = 0.01 the counterfactual count is exactly the verdicts' (a one-task analysis's FDR step
    cannot demote p < 0.01); power and false calls can only grow with alpha."""
    to = cal.tradeoff(fast_rows)
    at = to[to["alpha"] == 0.01].iloc[0]
    assert at["power"] == pytest.approx(_target(fast_rows, "power")["value"])
    neg = fast_rows[fast_rows["truth"] != "threshold"]
    assert at["false_k"] == int((neg["verdict"] == "emergent").sum())
    assert to["power"].is_monotonic_increasing and to["false_k"].is_monotonic_increasing
    assert cal.tradeoff(fast_rows.drop(columns=["lrt_p"])).empty   # rows from before the column
