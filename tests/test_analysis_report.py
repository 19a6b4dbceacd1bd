"""`analyze` as a library call: the report's JSON, determinism, and the published sources wired through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from losslens.analysis import analyze
from losslens.analysis.sources import load_source
from losslens.analysis.synthetic import planted_table
from losslens.analysis.table import TidyTable, validate
from losslens.cli import main

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def table() -> TidyTable:
    return TidyTable(validate(planted_table(seed=2)), source="planted")


def test_report_json_round_trip_and_determinism(table, tmp_path):
    a = analyze(table, seed=5, bootstrap=100, permutations=9)
    b = analyze(table, seed=5, bootstrap=100, permutations=9)
    assert a.to_dict() == b.to_dict()
    c = analyze(table, seed=6, bootstrap=100, permutations=9)
    assert c.to_dict() != a.to_dict()  # the seed is used (the null replicates, the same-loss resampling) ...
    assert c.task("emergent").emergence.eta_ci == a.task("emergent").emergence.eta_ci  # ... not by the interval
    e = a.task("emergent").emergence
    assert e.reason_code == "emergent" and e.q_value <= 0.05 and e.q_value >= e.lrt_p
    assert a.counts() == {"emergent": 1, "smooth": 2, "not_emerged": 1, "inconclusive": 0}
    path = tmp_path / "r.json"
    a.write_json(path)
    doc = json.loads(path.read_text())
    assert doc == json.loads(json.dumps(a.to_dict()))
    assert [t["task"] for t in doc["tasks"]] == ["emergent", "flat", "linear", "sigmoid"]
    text = a.summary()
    assert "verdicts: emergent 1, smooth 2, not_emerged 1, inconclusive 0" in text and "same-loss holds" in text


def test_worker_processes_give_the_same_report(table):
    """The (task, metric) pairs shared among worker processes: the same numbers as one process, and
    progress still reaches every pair."""
    seen = []
    one = analyze(table, seed=5, bootstrap=100, permutations=9, workers=1)
    two = analyze(table, seed=5, bootstrap=100, permutations=9, workers=2,
                  progress=lambda done, total, what: seen.append(done))
    assert one.to_dict() == two.to_dict()
    assert sorted(seen) == list(range(len(seen))) and len(seen) == 2 * len(one.tasks) + 1  # + the scaling law


def test_a_real_loss_gets_a_scaling_law_and_a_proxy_never_does(table):
    report = analyze(table, bootstrap=0, permutations=0)
    assert report.scaling_law is not None and report.scaling_law.n_points == table.df.drop_duplicates(
        ["model", "tokens"]).shape[0]
    proxy = TidyTable(table.df, source="planted", x_kind="proxy", x_label="a stand-in")
    report = analyze(proxy, bootstrap=0, permutations=0)
    assert report.scaling_law is None
    assert any("proxy" in n for n in report.notes)


@pytest.mark.skipif(not (DATA / "epoch_chinchilla").is_dir(), reason="needs ../shared/data")
def test_chinchilla_source_puts_the_law_and_its_intervals_under_scaling_law(tmp_path, capsys):
    out = tmp_path / "chin.json"
    assert main(["analyze", "--source", "chinchilla", str(DATA / "epoch_chinchilla"), "--json", str(out),
                 "--bootstrap", "200", "--permutations", "0"]) == 0
    doc = json.loads(out.read_text())
    law = doc["scaling_law"]
    assert law["n_points"] == 240  # Epoch's 5 highest losses dropped
    # the pseudo-task pretraining_loss is the x-axis itself: no tautological verdict on it
    assert doc["tasks"] == [] and any("x-axis itself" in n for n in doc["notes"])
    for name, ref in {"A": 477.84, "B": 2143.86, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}.items():
        assert law[name] == pytest.approx(ref, rel=0.005)
        lo, hi = law["ci"][name]
        assert lo < law[name] < hi
    assert "Chinchilla law" in capsys.readouterr().out


@pytest.mark.skipif(not (DATA / "gadre_overtraining").is_dir(), reason="needs ../shared/data")
def test_gadre_source_prints_a_verdict_for_each_of_the_46_tasks(capsys):
    assert main(["analyze", "--source", "gadre", str(DATA / "gadre_overtraining"),
                 "--bootstrap", "50", "--permutations", "0"]) == 0
    out = capsys.readouterr().out
    table = load_source("gadre", DATA / "gadre_overtraining")
    tasks = sorted(set(table.df.loc[table.df["metric"] == "acc", "task"]))
    assert len(tasks) == 46
    rows = [line for line in out.splitlines() if line.startswith("│")]
    for task in tasks:
        assert any(line.split("│")[1].strip() == task for line in rows), task
    assert "0.7103%" in out and "0.0464%" in out  # the Gadre reproduction rides along under targets


def test_no_scaling_law_from_a_single_model_size():
    import pandas as pd

    from losslens.analysis.pipeline import analyze
    from losslens.analysis.table import TidyTable

    rows = [{"model": "one", "params": 1e6, "tokens": t, "loss": 4.0 - 0.3 * i, "task": "x", "metric": "acc",
             "value": 0.25 + 0.05 * i, "n": 200, "chance": 0.25} for i, t in enumerate([1e5, 2e5, 4e5, 8e5, 1.6e6])]
    report = analyze(TidyTable(pd.DataFrame(rows), source="csv", path="t.csv"), bootstrap=50, permutations=9)
    assert report.scaling_law is None
    assert any("scaling law not fitted" in n for n in report.notes)
