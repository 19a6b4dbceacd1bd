"""The Gadre et al. loader: 104 models x (46 tasks + 2 error aggregates), chance and item counts from
the metadata, values that agree with the original exp_data JSON files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from losslens.analysis.sources import gadre, load_source
from losslens.errors import InputError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gadre_overtraining"
# The paper's 17-task subset (SUBSET in mlfoundations/scaling constants.py, listed in SOURCE.md).
SUBSET = ["bigbench_operators", "pubmed_qa_labeled", "hellaswag_zeroshot", "boolq", "arc_easy", "coqa",
          "bigbench_dyck_languages", "lambada_openai", "bigbench_novel_concepts", "winograd",
          "bigbench_cs_algorithms", "commonsense_qa", "bigbench_qa_wikidata", "hellaswag", "copa", "squad", "piqa"]


@pytest.fixture(scope="module")
def table():
    return load_source("gadre", DATA)


def test_shape_and_metadata(table):
    df = table.df
    assert df["model"].nunique() == 104 and df["task"].nunique() == 48 and len(df) == 104 * 48
    hs = df[df["task"] == "hellaswag"]
    assert (hs["chance"] == 0.25).all() and (hs["n"] == 10042).all() and (hs["metric"] == "acc").all()
    # best constant answer where the label balance is published (BoolQ dev 62.2% yes, PubMedQA-L 55.2% yes)
    majority = df.groupby("task")["majority"].first()
    assert majority["boolq"] == 0.622 and majority["pubmed_qa_labeled"] == 0.552
    assert majority.drop(["boolq", "pubmed_qa_labeled"]).isna().all() and hs["majority"].isna().all()
    err = df[df["task"] == "avg_17_subset"]
    assert (err["metric"] == "top1_error").all() and not err["higher_is_better"].any()
    assert set(df["family"]) == {"c4_original", "rpj", "rw_original"}
    assert len(table.extras["scaling_points"]) == 35 and len(table.extras["models"]) == 104


def test_values_agree_with_exp_data_json(table):
    name = "rpj-d=96_l=8_h=4-1.0"
    model = json.loads((DATA / "exp_data" / "models" / f"{name}.json").read_text())
    evals = json.loads((DATA / "exp_data" / "evals" / f"evaluation_{name}_heavy.json").read_text())
    rows = table.df[table.df["model"] == name].set_index("task")
    c4 = [r["loss"] for r in model["results"] if r["val_data"][0].split("/")[-2] == "c4_val"]
    assert rows["loss"].iloc[0] == pytest.approx(c4[0])
    assert rows["params"].iloc[0] == model["hyperparameters"]["params"]
    assert rows["tokens"].iloc[0] == model["hyperparameters"]["tokens"]
    icl = evals["eval_metrics"]["icl"]
    for task in ("hellaswag", "arc_easy", "bigbench_operators", "winogrande"):
        assert rows.loc[task, "value"] == pytest.approx(icl[task])
    assert rows.loc["avg_17_subset", "value"] == pytest.approx(np.mean([1 - icl[t] for t in SUBSET]))


def test_loss_split_option():
    t = gadre.load(DATA, loss_split="paloma_ptb")
    flat = pd.read_csv(DATA / gadre.FILE)
    assert np.allclose(np.sort(t.df["loss"].unique()), np.sort(flat["loss_paloma_ptb"].unique()))
    with pytest.raises(InputError, match="unknown split"):
        gadre.load(DATA, loss_split="wiki")
    with pytest.raises(InputError, match="train"):
        gadre.load(DATA, train="books")


def _copy(tmp_path: Path, flat: pd.DataFrame) -> Path:
    (tmp_path / "exp_data").mkdir()
    shutil.copy(DATA / "exp_data" / "eval_metadata.csv", tmp_path / "exp_data" / "eval_metadata.csv")
    flat.to_csv(tmp_path / gadre.FILE, index=False)
    return tmp_path


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.drop(columns=["loss_c4_val"]), "loss_c4_val"),
    (lambda d: d.assign(N_params=np.where(d.index == 2, 0, d["N_params"])), "N_params"),
    (lambda d: d.assign(acc_hellaswag=d["acc_hellaswag"].astype(object).where(d.index != 1, "x")), "acc_hellaswag"),
])
def test_malformed_flat_csv_names_file_and_column(tmp_path, mutate, field):
    folder = _copy(tmp_path, mutate(pd.read_csv(DATA / gadre.FILE)))
    with pytest.raises(InputError) as err:
        gadre.load(folder)
    assert str(folder / gadre.FILE) in str(err.value) and err.value.field == field


def test_task_without_metadata(tmp_path):
    folder = _copy(tmp_path, pd.read_csv(DATA / gadre.FILE).assign(acc_made_up=0.5))
    with pytest.raises(InputError, match="made_up") as err:
        gadre.load(folder)
    assert "eval_metadata.csv" in str(err.value)
