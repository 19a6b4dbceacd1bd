"""`losslens analyze` end to end: the JSON and figures on a planted table; bad input exits 2 in one line.

One case runs the console script in a fresh process, as a user would; the rest call `losslens.cli.main`
in-process (the same code path, without paying for a new interpreter each time)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from losslens.analysis.synthetic import planted_table
from losslens.cli import main

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAST = ("--bootstrap", "100", "--permutations", "9")
TASK_KEYS = {"task", "metric", "verdict", "reason_code", "q_value", "error_rates", "eta", "eta_ci", "spearman", "pearson",
             "same_loss", "backtest", "emergence"}


@pytest.fixture(scope="module")
def planted_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("planted") / "planted.csv"
    planted_table(seed=0).to_csv(path, index=False)
    return path


def test_analyze_csv_writes_json_and_figures(planted_csv, tmp_path):
    out, figs = tmp_path / "out.json", tmp_path / "figs"
    proc = run_cli("analyze", "--csv", planted_csv, "--json", out, "--figures", figs, *FAST, check=True)
    assert "emergent" in proc.stdout and "verdicts: emergent 1, smooth 2, not_emerged 1" in proc.stdout
    doc = json.loads(out.read_text())
    assert set(doc) >= {"tasks", "scaling_law", "source", "settings"}
    by_task = {t["task"]: t for t in doc["tasks"]}
    assert {k: v["verdict"] for k, v in by_task.items()} == {
        "emergent": "emergent", "flat": "not_emerged", "linear": "smooth", "sigmoid": "smooth"}
    for t in doc["tasks"]:
        assert set(t) >= TASK_KEYS
        assert set(t["same_loss"]) >= {"holds", "tests", "compute_collapses", "r2_loss", "r2_compute"}
    em = by_task["emergent"]
    lo, hi = em["eta_ci"]
    assert lo <= em["eta"] <= hi and by_task["linear"]["eta"] is None and by_task["linear"]["eta_ci"] is None
    assert doc["source"]["name"] == "csv" and doc["source"]["x_kind"] == "loss"
    assert doc["settings"]["seed"] == 0 and doc["settings"]["bootstrap"] == 100
    pngs = sorted(p.name for p in figs.glob("*.png"))
    assert "emergent-acc.png" in pngs and "emergent-acc-compute.png" in pngs and len(pngs) >= 8
    assert all((figs / p).stat().st_size > 5000 for p in pngs)


def _bad(tmp_path, name, df) -> Path:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def table():
    return planted_table({"t": "linear"}, seed=0).head(30)


@pytest.mark.parametrize("case, field, words", [
    ("missing", "loss", ["missing required column", "loss"]),
    ("negative", "loss", ["> 0", "lines 5"]),
    ("nan", "loss", ["finite", "lines 3"]),
    ("proportion", "value", ["proportion", "lines 2, 4"]),
    ("few", "loss", ["task 'tiny'", "2 distinct loss"]),
])
def test_bad_csv_exits_2_with_one_line(tmp_path, capsys, table, case, field, words):
    df = {
        "missing": lambda: table.drop(columns=["loss"]),
        "negative": lambda: table.assign(loss=np.where(np.arange(30) == 3, -2.0, table["loss"])),
        "nan": lambda: table.assign(loss=np.where(np.arange(30) == 1, np.nan, table["loss"])),
        "proportion": lambda: table.assign(value=np.where(np.isin(np.arange(30), [0, 2]), 1.5, table["value"])),
        "few": lambda: __import__("pandas").concat([table, table.head(2).assign(task="tiny")]),
    }[case]()
    path = _bad(tmp_path, f"{case}.csv", df)
    if case == "missing":
        proc = run_cli("analyze", "--csv", path, *FAST)
        code, err = proc.returncode, proc.stderr
    else:
        code, err = _main(capsys, "analyze", "--csv", path, *FAST)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert str(path) in lines[0] and f": {field}: " in lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def _main(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_other_bad_inputs_exit_2(tmp_path, capsys):
    db = tmp_path / "results.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE runs (id INTEGER)")
    for args, words in [
        (("--csv", tmp_path / "nope.csv"), "no such file"),
        (("--db", db), "no table or view 'tidy' or 'metrics'"),
        (("--source", "nope", tmp_path), "unknown source"),
        (("--source", "pythia", tmp_path / "missing"), "no such file"),
        (("--csv", tmp_path / "nope.csv", "--bootstrap", "-1"), "--bootstrap: must be >= 0"),
    ]:
        code, err = _main(capsys, "analyze", *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert words in err


@pytest.mark.skipif(not (DATA / "obsscaling").is_dir(), reason="needs ../shared/data")
def test_obsscaling_source_says_its_axis_is_a_proxy(tmp_path, capsys):
    out = tmp_path / "obs.json"
    capsys.readouterr()
    assert main(["analyze", "--source", "obsscaling", str(DATA / "obsscaling"), "--json", str(out),
                 "--bootstrap", "100", "--permutations", "9"]) == 0
    stdout = capsys.readouterr().out
    assert "(proxy)" in stdout and "Chinchilla-law loss" in stdout
    doc = json.loads(out.read_text())
    assert doc["source"]["x_kind"] == "proxy" and len(doc["tasks"]) == 22
    assert doc["scaling_law"] is None  # a proxy is never fitted as if it were a loss
