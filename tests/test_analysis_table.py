"""The tidy table: validation errors name the column and rows; CSV, SQLite and published-table loaders."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from losslens.analysis.sources import load_source
from losslens.analysis.synthetic import planted_table
from losslens.analysis.table import read_csv, read_db, validate
from losslens.errors import InputError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _table():
    return planted_table({"t": "linear"}, seed=0).head(24)


def test_valid_table_is_normalised():
    df = validate(_table().assign(higher_is_better="true"))
    assert df["higher_is_better"].dtype == bool and df["higher_is_better"].all()
    brier = validate(_table().assign(metric="brier_sum", value=0.5))
    assert not brier["higher_is_better"].any()  # inferred from the metric's name


@pytest.mark.parametrize("mutate, field, words", [
    (lambda d: d.drop(columns=["loss", "tokens"]), "tokens", ["missing", "loss", "tokens"]),
    (lambda d: d.assign(loss=np.where(d.index == 3, -1.0, d["loss"])), "loss", ["> 0", "rows 3"]),
    (lambda d: d.assign(loss=np.where(d.index == 5, np.nan, d["loss"])), "loss", ["finite", "rows 5"]),
    (lambda d: d.assign(loss=np.where(d.index == 6, np.inf, d["loss"])), "loss", ["rows 6"]),
    (lambda d: d.assign(value=np.where(d.index.isin([2, 9]), 1.2, d["value"])), "value",
     ["acc", "proportion", "[0, 1]", "rows 2, 9"]),
    (lambda d: d.assign(params=d["params"].astype(object).where(d.index != 4, "big")), "params",
     ["not a number", "rows 4"]),
    (lambda d: d.assign(n=2.5), "n", ["whole number"]),
    (lambda d: d.assign(model=d["model"].where(d.index != 1, "")), "model", ["empty", "rows 1"]),
])
def test_bad_tables_raise_one_input_error(mutate, field, words):
    with pytest.raises(InputError) as err:
        validate(mutate(_table()), "t.csv")
    assert err.value.field == field
    text = str(err.value)
    assert text.startswith("t.csv: ") and "\n" not in text
    for word in words:
        assert word in text, text


def test_a_task_needs_three_distinct_losses():
    df = _table()
    short = pd.concat([df, df.head(2).assign(task="tiny")], ignore_index=True)
    with pytest.raises(InputError, match=r"task 'tiny' \(metric acc\) has 2 distinct loss.*rows 24, 25") as err:
        validate(short, "t.csv")
    assert err.value.field == "loss"


def test_csv_errors_name_file_lines(tmp_path):
    path = tmp_path / "bad.csv"
    _table().assign(loss=np.where(np.arange(24) == 0, 0.0, _table()["loss"])).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"bad\.csv: loss: .*lines 2$"):
        read_csv(path)
    with pytest.raises(InputError, match="no such file"):
        read_csv(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="not a readable CSV"):
        read_csv(tmp_path / "empty.csv")


def test_csv_round_trip(tmp_path):
    path = tmp_path / "ok.csv"
    planted_table(seed=1).to_csv(path, index=False)
    table = read_csv(path)
    assert table.source == "csv" and table.x_kind == "loss" and len(table.df) == 480
    assert [key for key, _ in table.groups()] == [("emergent", "acc"), ("flat", "acc"), ("linear", "acc"),
                                                   ("sigmoid", "acc")]


def test_db_reads_tidy_view_or_metrics_table(tmp_path):
    df = _table()
    db = tmp_path / "r.db"
    with sqlite3.connect(db) as con:
        df.to_sql("metrics", con, index=False)
    assert len(read_db(db).df) == 24
    db2 = tmp_path / "view.db"
    with sqlite3.connect(db2) as con:
        df.drop(columns=["loss"]).to_sql("metrics", con, index=False)
        df[["model", "tokens", "loss"]].drop_duplicates().to_sql("checkpoints", con, index=False)
        con.execute("CREATE VIEW tidy AS SELECT m.*, c.loss FROM metrics m JOIN checkpoints c "
                    "USING (model, tokens)")
    assert read_db(db2).df["loss"].notna().all()
    bad = tmp_path / "bad.db"
    with sqlite3.connect(bad) as con:
        con.execute("CREATE TABLE runs (id INTEGER)")
    with pytest.raises(InputError, match="no table or view 'tidy' or 'metrics'.*found tables: runs"):
        read_db(bad)
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all " * 100)
    with pytest.raises(InputError, match="not a readable SQLite file"):
        read_db(junk)


def test_unknown_source_is_a_user_error(tmp_path):
    with pytest.raises(InputError, match="unknown source 'nope'"):
        load_source("nope", tmp_path)


@pytest.mark.skipif(not (DATA / "pythia_evals").is_dir(), reason="needs ../shared/data")
def test_pythia_loader_labels_its_proxy_and_matches_reference_values():
    table = load_source("pythia", DATA / "pythia_evals")
    assert table.x_kind == "proxy" and "LAMBADA" in table.x_label
    df = table.df
    assert "lambada_openai" not in set(df["task"])  # its own text is the x-axis
    last = df[(df["step"] == 143000) & (df["task"] == "piqa") & (df["metric"] == "acc")].set_index("model")
    assert last.loc["pythia-70m", "value"] == pytest.approx(0.5947, abs=1e-4)   # SOURCE.md reference
    assert last.loc["pythia-12b", "value"] == pytest.approx(0.7601, abs=1e-4)
    assert last.loc["pythia-12b", "loss"] == pytest.approx(np.log(3.92), abs=0.01)  # LAMBADA ppl 3.92
    assert (df["tokens"] > 0).all() and set(df["chance"].dropna()) <= {0.25, 0.5}
    assert df.loc[df["task"] == "arc_challenge", "n"].iloc[0] == 1172  # items recovered from the stderr
    compute = load_source("pythia", DATA / "pythia_evals", proxy="chinchilla")
    assert "Chinchilla" in compute.x_label and "lambada_openai" in set(compute.df["task"])


@pytest.mark.skipif(not (DATA / "obsscaling").is_dir(), reason="needs ../shared/data")
def test_obsscaling_loader_uses_a_labelled_proxy():
    table = load_source("obsscaling", DATA / "obsscaling")
    assert table.x_kind == "proxy" and "Chinchilla-law" in table.x_label
    df = table.df
    llama = df[(df["model"] == "meta-llama/Llama-2-7b-hf") & (df["task"] == "MMLU")].iloc[0]
    assert llama["params"] == 7e9 and llama["tokens"] == 2e12
    assert llama["value"] == pytest.approx(0.43796, abs=1e-5)
    assert df["value"].between(0, 1).all()  # BLEU rescaled from 0-100
    assert {"arithmetic_3ds_2shot", "word_unscrambling_2shot", "leaderboard_gpqa"} <= set(df["task"])
    assert any("dropped" in n for n in table.notes)
    old = load_source("obsscaling", DATA / "obsscaling", version="2024-05-31")
    assert old.df["model"].nunique() < df["model"].nunique()


def test_db_from_the_results_store_with_and_without_a_heldout_corpus(tmp_path):
    """The store's own `tidy` view feeds the analysis; --loss-corpus swaps in a held-out loss."""
    from losslens.store import MetricRow, Store

    df = planted_table({"t": "linear"}, seed=0)
    db = tmp_path / "results.db"
    with Store(db) as st:
        for (model, params), run in df.groupby(["model", "params"]):
            rid = st.upsert_run(model, params=int(params))
            for row in run.itertuples():
                ck = st.upsert_checkpoint(rid, step=int(row.step), tokens=int(row.tokens), loss=row.loss)
                st.upsert_heldout(ck, corpus="other", nats_per_token=row.loss + 0.1, bits_per_byte=None,
                                  n_tokens=1000, n_bytes=None)
                st.upsert_metrics(ck, [MetricRow(row.task, row.metric, row.value, n=int(row.n),
                                                 chance=row.chance)])
    table = read_db(db)
    assert len(table.df) == len(df) and table.df["higher_is_better"].all()
    other = read_db(db, loss_corpus="other")
    assert "held-out loss on other" in other.x_label
    assert np.allclose(np.sort(other.df["loss"]), np.sort(df["loss"] + 0.1))
    with pytest.raises(InputError, match="no held-out loss on corpus 'nope'"):
        read_db(db, loss_corpus="nope")
