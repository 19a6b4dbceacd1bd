"""The OLMo ladder loader: the paper's 16 runs and 2 targets, three metrics per task, tokens from
steps where the file has no token count; a proxy x-axis; malformed files name file and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from losslens.analysis.sources import load_source, olmo
from losslens.errors import InputError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "olmo_ladder"
RUNS = DATA / olmo.FOLDER


@pytest.fixture(scope="module")
def table():
    return load_source("olmo", DATA)


def test_paper_configuration(table):
    df = table.df
    assert set(df["model"]) == set(olmo.PAPER_LADDER) | {"peteish7_eval_anneal", "peteish13_eval_final"}
    assert table.extras["targets"] == {"7B-4T": "peteish7_eval_anneal", "13B-5T": "peteish13_eval_final"}
    assert set(df["task"]) == set(olmo.TASKS) and set(df["metric"]) == {"bpb", "acc_norm", "acc", "soft_choice_prob"}
    assert table.x_kind == "proxy" and "not OLMo 2's training loss" in table.x_label
    raw = pd.read_csv(RUNS / "190M-1xC.csv")
    run = df[(df["model"] == "190M-1xC") & (df["task"] == "piqa") & (df["metric"] == "bpb")]
    assert len(run) == len(raw) and np.allclose(run["value"], raw["eval/downstream_bpb/piqa_val_rc_5shot_bpb"])
    assert np.allclose(run["loss"], raw["eval/c4_en-validation/CrossEntropyLoss"])
    assert (run["params"] == 190_354_176).all()
    acc = df[(df["task"] == "csqa") & (df["metric"] == "acc_norm")]
    assert (acc["chance"] == 0.2).all() and acc["higher_is_better"].all()
    # the `soft` column is labelled as what it is: a squashed softmax, not losslens's correct_choice_prob
    soft = df[(df["model"] == "190M-1xC") & (df["task"] == "piqa") & (df["metric"] == "soft_choice_prob")]
    assert np.allclose(soft["value"], raw["eval/downstream_soft/piqa_val_rc_5shot_soft"])
    # the best constant answer: BoolQ's dev set is 62.2% "yes"; unknown (empty) elsewhere
    assert (df.loc[(df["task"] == "boolq") & (df["metric"] == "acc"), "majority"] == 0.622).all()
    assert df.loc[df["task"] != "boolq", "majority"].isna().all()


def test_mmlu_is_the_weighted_category_average(table):
    raw = pd.read_csv(RUNS / "peteish7_eval_anneal.csv").iloc[-1]
    w = olmo.MMLU_WEIGHTS
    want = sum(w[c] * raw[f"eval/downstream/mmlu_{c}_test_rc_5shot_len_norm"] for c in w) / sum(w.values())
    got = table.df[(table.df["model"] == "peteish7_eval_anneal") & (table.df["task"] == "mmlu")
                   & (table.df["metric"] == "acc_norm")]["value"]
    assert got.iloc[0] == pytest.approx(want) and want == pytest.approx(0.4901, abs=1e-4)


def test_tokens_from_steps_and_step_zero_dropped(tmp_path):
    for name in ("190M-0.5xC.csv", "peteish13_eval_full.csv"):
        (tmp_path / name).symlink_to(RUNS / name)
    t = olmo.load(tmp_path, runs="all")
    assert set(t.df["model"]) == {"190M-0.5xC", "peteish13_eval_full"}
    raw = pd.read_csv(RUNS / "peteish13_eval_full.csv")
    thirteen = t.df[(t.df["model"] == "peteish13_eval_full") & (t.df["task"] == "piqa") & (t.df["metric"] == "bpb")]
    assert len(thirteen) == len(raw) - 1  # the step-0 row
    assert np.allclose(thirteen["tokens"], (raw["_step"] * raw["batch_size_in_tokens"])[1:])
    assert t.extras["targets"] == {"13B-5T full": "peteish13_eval_full"}


def test_options_are_checked():
    with pytest.raises(InputError, match="runs"):
        olmo.load(DATA, runs="some")
    with pytest.raises(InputError, match="loss_set"):
        olmo.load(DATA, loss_set="books")


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.drop(columns=["eval/downstream_bpb/hellaswag_val_rc_5shot_bpb"]),
     "eval/downstream_bpb/hellaswag_val_rc_5shot_bpb"),
    (lambda d: d.assign(**{"throughput/total_tokens": d["throughput/total_tokens"].astype(object)
                           .where(d.index != 4, "?")}), "throughput/total_tokens"),
])
def test_malformed_run_names_file_and_column(tmp_path, mutate, field):
    path = tmp_path / "190M-2xC.csv"
    mutate(pd.read_csv(RUNS / "190M-2xC.csv")).to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        olmo.load(tmp_path, runs="all")
    assert str(path) in str(err.value) and err.value.field == field


def test_missing_paper_run(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        olmo.load(tmp_path)
