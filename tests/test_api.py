"""The notebook API: any table in, configs honoured exactly (every field reaches the analysis), results
as frames, HTML, short reprs and JSON, and the [analysis] settings as validated data."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import types

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from conftest import run_cli

from losslens.analysis import EmergenceConfig, SameLossConfig, analyze, pipeline, scaling
from losslens.analysis.scaling import ScalingLawConfig
from losslens.analysis.settings import AnalysisConfig, load_analysis_config
from losslens.analysis.synthetic import ladder_points, planted_table
from losslens.analysis.table import as_table
from losslens.errors import InputError
from losslens.ladder.config import load_ladder_config

POINTS = ladder_points(sizes=(2e7, 5e7, 1.2e8, 3e8), checkpoints=5, tokens_per_param=(5, 20))


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return planted_table({"jump": "emergent", "line": "linear"}, points=POINTS, n_items=1000, seed=0)


@pytest.fixture(scope="module")
def report(df):
    return analyze(df, seed=0, bootstrap=50, permutations=9)


# ------------------------------------------------------------------ inputs


def test_a_dataframe_csv_and_store_give_the_same_table(df, tmp_path):
    csv, db = tmp_path / "t.csv", tmp_path / "t.db"
    df.to_csv(csv, index=False)
    with sqlite3.connect(db) as con:
        df.to_sql("tidy", con, index=False)
    tables = [as_table(df), as_table(csv), as_table(str(db))]
    assert [t.source for t in tables] == ["dataframe", "csv", "db"]
    for t in tables[1:]:
        pd.testing.assert_frame_equal(t.df[tables[0].df.columns], tables[0].df, check_dtype=False)
    assert as_table(tables[1]) is tables[1]


@pytest.mark.parametrize("change, field, message", [
    (lambda d: d.drop(columns="loss"), "loss", "missing required column"),
    (lambda d: d.assign(params="big"), "params", "not a number"),
    (lambda d: d.assign(value=d["value"] + 2), "value", "outside \\[0, 1\\]"),
])
def test_a_bad_dataframe_is_one_error_naming_the_column(df, change, field, message):
    with pytest.raises(InputError, match=message) as err:
        analyze(change(df))
    assert err.value.field == field and str(err.value).startswith(f"DataFrame: {field}: ")


def test_a_missing_path_or_a_wrong_type_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        analyze(tmp_path / "none.csv")
    with pytest.raises(TypeError, match="DataFrame"):
        analyze([1, 2, 3])


# ------------------------------------------------------------------ configs reach the analysis


def _changed(value):
    """A different value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 3
    if isinstance(value, float):
        return value / 2 if value else 0.5
    if isinstance(value, tuple):
        return tuple(v / 2 for v in value)
    raise TypeError(value)


@pytest.fixture
def seen(monkeypatch):
    """Record the config every per-task analysis and the scaling fit receive (the fakes do no work)."""
    got = {}

    def fake_emergence(sub, cfg, *, seed):
        got["emergence"] = cfg
        return types.SimpleNamespace(verdict="inconclusive", eta=None)  # what analyze_task reads

    def fake_same_loss(sub, cfg, *, seed):
        got["same_loss"] = cfg

    def fake_fit(params, tokens, loss, **kwargs):
        got["scaling"] = kwargs

    monkeypatch.setattr(pipeline, "analyze_emergence", fake_emergence)
    monkeypatch.setattr(pipeline, "fdr_adjust", lambda results, cfg: None)
    monkeypatch.setattr(pipeline, "analyze_same_loss", fake_same_loss)
    monkeypatch.setattr(scaling, "fit_chinchilla", fake_fit)
    return got


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(EmergenceConfig)])
def test_every_emergence_field_reaches_the_analysis(df, seen, field):
    cfg = dataclasses.replace(EmergenceConfig(), **{field: _changed(getattr(EmergenceConfig(), field))})
    analyze(df, emergence=cfg, backtests=False)
    assert seen["emergence"] == cfg and getattr(seen["emergence"], field) == getattr(cfg, field)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(SameLossConfig)])
def test_every_same_loss_field_reaches_the_analysis(df, seen, field):
    cfg = dataclasses.replace(SameLossConfig(), **{field: _changed(getattr(SameLossConfig(), field))})
    analyze(df, same_loss=cfg, backtests=False)
    assert seen["same_loss"] == cfg


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ScalingLawConfig)])
def test_every_scaling_law_field_reaches_the_fit(df, seen, field):
    cfg = dataclasses.replace(ScalingLawConfig(), **{field: _changed(getattr(ScalingLawConfig(), field))})
    analyze(df, scaling=cfg, backtests=False)
    assert seen["scaling"] == {"seed": 0, **dataclasses.asdict(cfg)}


def test_analyze_bootstrap_no_longer_overwrites_a_config(df, seen):
    analyze(df, emergence=EmergenceConfig(bootstrap=7), backtests=False)
    assert seen["emergence"].bootstrap == 7                      # the bug: it was 1000
    assert seen["same_loss"].bootstrap == 1000 and seen["same_loss"].permutations == 99
    analyze(df, bootstrap=5, permutations=3, backtests=False)    # the shorthands fill in configs not passed
    assert (seen["same_loss"].bootstrap, seen["same_loss"].permutations, seen["scaling"]["bootstrap"]) == (5, 3, 5)
    # ... but never the emergence test's null replicates: too few could never reach alpha after FDR control
    assert seen["emergence"].bootstrap == EmergenceConfig().bootstrap
    analyze(df, bootstrap=5, emergence=EmergenceConfig(bootstrap=7), backtests=False)
    assert seen["emergence"].bootstrap == 7
    with pytest.raises(ValueError, match="bootstrap=5 disagrees with SameLossConfig\\(bootstrap=7\\)"):
        analyze(df, bootstrap=5, same_loss=SameLossConfig(bootstrap=7))
    analyze(df, bootstrap=7, same_loss=SameLossConfig(bootstrap=7), backtests=False)  # agreeing is fine


def test_configs_change_the_numbers(df):
    """Observable effects, no patching: 0 resamples give no intervals (and no emergence test, whose null
    is resampled), and the settings are recorded."""
    r = analyze(df, emergence=EmergenceConfig(bootstrap=0), same_loss=SameLossConfig(bootstrap=0, permutations=0),
                scaling=ScalingLawConfig(bootstrap=0), backtests=False)
    assert all(t.emergence.lrt_p is None and t.verdict != "emergent" for t in r.tasks)
    assert all(c.ci is None and c.p_value is None for t in r.tasks for c in t.same_loss.tests)
    assert r.scaling_law.ci == {} and r.scaling_law.bootstrap == 0
    assert r.settings["emergence"]["bootstrap"] == 0 and r.settings["scaling_law"]["bootstrap"] == 0


# ------------------------------------------------------------------ results


def test_report_frame_has_one_row_per_task_with_verdict_eta_and_interval(report):
    frame = report.to_frame()
    assert list(frame["task"]) == ["jump", "line"] and list(frame["verdict"]) == ["emergent", "smooth"]
    jump = frame.iloc[0]
    assert jump["eta_lo"] <= jump["eta"] <= jump["eta_hi"]
    assert jump["eta"] == report.task("jump").emergence.eta
    assert pd.isna(frame.iloc[1]["eta"])  # no eta claimed for a smooth task
    for col in ("same_loss_holds", "log_params_improvement", "log_params_p", "compute_collapses", "backtest",
                "backtest_mae", "backtest_tolerance"):
        assert col in frame.columns, col
    assert frame.iloc[0]["backtest"] == report.task("jump").backtest.verdict


def test_every_result_has_a_frame_a_short_repr_html_and_json(report):
    t = report.task("jump")
    for result in (report, t, t.same_loss, t.backtest, report.scaling_law):
        text = repr(result)
        assert text.startswith(type(result).__name__ + "(") and len(text) < 200 and "\n" not in text
        assert isinstance(result.to_frame(), pd.DataFrame) and len(result.to_frame()) >= 1
        assert "<table" in result._repr_html_()
        assert json.loads(result.to_json()) == json.loads(json.dumps(pipeline.jsonable(result.to_dict())))
        assert result.summary()
    assert "verdict='emergent'" in repr(t) and "emergent=1" in repr(report)
    assert list(report.scaling_law.to_frame()["parameter"]) == ["A", "B", "E", "alpha", "beta", "n_opt_exponent"]


def test_plots_are_the_reports_figures(report):
    try:
        fig = report.plot("jump")
        ax = fig.axes[0]
        assert ax.get_title() == "jump: emergent" and ax.xaxis_inverted()
        assert any("eta" in label for label in ax.get_legend_handles_labels()[1])
        assert report.plot("line", "acc", kind="compute").axes[0].get_xscale() == "log"
        assert report.plot("jump", kind="backtest").axes[0].get_title().startswith("jump: ")
        assert report.plot_scaling_law().axes[0].get_xscale() == "log"
        t = report.task("line")
        assert len(t.same_loss.plot(t.data).axes) >= 2
        with pytest.raises(ValueError, match="kind"):
            report.plot("jump", kind="nope")
        with pytest.raises(KeyError):
            report.plot("nope")
    finally:
        plt.close("all")


# ------------------------------------------------------------------ settings as data


def test_sub_tables_win_over_the_shorthand(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text("[analysis]\nseed = 3\nbootstrap = 50\npermutations = 9\nbacktests = false\n"
                    "[analysis.emergence]\nbootstrap = 7\nalpha = 0.05\n"
                    "[analysis.same_loss]\nfolds = 4\n[analysis.scaling_law]\nhuber_delta = 0.01\n")
    kw = load_analysis_config(path).analyze_kwargs()
    assert kw["seed"] == 3 and kw["backtests"] is False
    assert kw["emergence"] == EmergenceConfig(bootstrap=7, alpha=0.05)
    assert kw["same_loss"] == SameLossConfig(bootstrap=50, permutations=9, folds=4)
    assert kw["scaling"] == ScalingLawConfig(bootstrap=50, huber_delta=0.01)
    assert AnalysisConfig().analyze_kwargs()["emergence"] == EmergenceConfig()


@pytest.mark.parametrize("text, field, message", [
    ("[analysis.emergence]\nalphx = 0.1\n", "analysis.emergence.alphx", "unknown key"),
    ("[analysis.emergence]\nalpha = 'low'\n", "analysis.emergence.alpha", "expected a number"),
    ("[analysis.emergence]\nalpha = 1.5\n", "analysis.emergence.alpha", "must be in \\(0, 1\\), got 1.5"),
    ("[analysis.emergence]\nsaturation = [0.1, -1]\n", "analysis.emergence.saturation[1]", "positive"),
    ("[analysis.same_loss]\nfolds = 0\n", "analysis.same_loss.folds", "at least 1"),
    ("[analysis.same_loss]\npermutations = -1\n", "analysis.same_loss.permutations", "at least 0"),
    ("[analysis.scaling_law]\nhuber_delta = 0\n", "analysis.scaling_law.huber_delta", "positive"),
    ("[analysis]\nbootstrap = -2\n", "analysis.bootstrap", "at least 0"),
    ("[analysis.emergence]\ndelta = nan\n", "analysis.emergence.delta", "finite"),
    ("[analysis]\nemergence = 3\n", "analysis.emergence", "expected a table"),
    ("[analysis]\nseed = 0\n[other]\nx = 1\n", "other", "unknown key"),
])
def test_bad_settings_name_the_file_and_the_field(tmp_path, text, field, message):
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        load_analysis_config(path)
    assert err.value.field == field and err.value.path == str(path)


def test_ladder_config_carries_the_analysis_tables(tmp_path):
    path = tmp_path / "ladder.toml"
    path.write_text("[data]\nvocab_size = 512\n[data.world]\nsize_mb = 0.3\n"
                    "[grid]\nmodels = ['nano']\ntokens = [12800]\n[train]\nbatch_size = 8\nseq_len = 64\n"
                    "[analysis]\nbootstrap = 200\n[analysis.same_loss]\npermutations = 19\n")
    kw = load_ladder_config(path).analysis.analyze_kwargs()
    assert kw["same_loss"] == SameLossConfig(bootstrap=200, permutations=19)
    assert kw["emergence"].bootstrap == 200
    path.write_text(path.read_text() + "[analysis.emergence]\nmin_sidde = 2\n")
    with pytest.raises(InputError, match="unknown key") as err:
        load_ladder_config(path)
    assert err.value.field == "analysis.emergence.min_sidde"


def test_cli_config_is_used_and_a_bad_one_is_one_line_exit_2(df, tmp_path):
    csv, good, bad, out = tmp_path / "t.csv", tmp_path / "good.toml", tmp_path / "bad.toml", tmp_path / "o.json"
    df.to_csv(csv, index=False)
    good.write_text("[analysis]\nbootstrap = 0\npermutations = 0\n[analysis.emergence]\nbootstrap = 5\n"
                    "[analysis.same_loss]\nalpha = 0.01\n")
    run_cli("analyze", "--csv", csv, "--config", good, "--seed", "2", "--json", out, check=True)
    settings = json.loads(out.read_text())["settings"]
    assert settings["seed"] == 2 and settings["emergence"]["bootstrap"] == 5
    assert settings["same_loss"]["alpha"] == 0.01 and settings["same_loss"]["bootstrap"] == 0
    bad.write_text("[analysis.same_loss]\nalpha = 'x'\n")
    proc = run_cli("analyze", "--csv", csv, "--config", bad)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"losslens analyze: error: {bad}: analysis.same_loss.alpha: expected a number, "
                                   "got str 'x'")


def test_an_emergence_result_is_a_notebook_result(df):
    """The emergence part of the API: a frame row with verdict, reason, eta interval, p, q and the
    calibration's error rate; a short repr; Jupyter HTML; the report's figure."""
    from losslens.analysis.emergence import analyze_emergence

    sub = df[df["task"] == "jump"].reset_index(drop=True)
    e = analyze_emergence(sub, EmergenceConfig(), seed=0)
    frame = e.to_frame()
    assert list(frame.columns[:7]) == ["task", "metric", "verdict", "reason_code", "eta", "eta_lo", "eta_hi"]
    assert {"lrt_p", "q_value", "error_rate", "error_rate_text"} <= set(frame.columns)
    row = frame.iloc[0]
    assert row["verdict"] == e.verdict and row["reason_code"] == e.reason_code
    if e.verdict == "emergent":
        assert row["eta_lo"] <= row["eta"] <= row["eta_hi"]
    assert repr(e).startswith("EmergenceResult(task='jump'") and len(repr(e)) < 200
    assert "<table" in e._repr_html_() and json.loads(e.to_json())["verdict"] == e.verdict
    fig = e.plot(sub)
    assert fig.axes and fig.axes[0].get_title().startswith("jump")
