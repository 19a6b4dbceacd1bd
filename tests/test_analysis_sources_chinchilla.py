"""The Epoch Chinchilla loader: one row per run, the loss as its own task, Epoch's 240 fit points;
malformed files fail with one line naming the file and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from losslens.analysis.sources import chinchilla, load_source
from losslens.errors import InputError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "epoch_chinchilla"


def test_loads_every_run_and_epochs_fit_points():
    table = load_source("chinchilla", DATA)
    df = table.df
    assert len(df) == 245 and df["model"].nunique() == 245
    assert set(df["task"]) == {"pretraining_loss"} and set(df["metric"]) == {"loss"}
    assert (df["value"] == df["loss"]).all() and not df["higher_is_better"].any()
    raw = pd.read_csv(DATA / chinchilla.FILE)
    assert np.allclose(df["tokens"], raw["Training FLOP"] / (6 * raw["Model Size"]))  # D = C / 6N
    points = table.extras["scaling_points"]
    assert len(points) == 240 and points["loss"].max() < np.sort(raw["loss"])[-5]
    assert table.x_kind == "loss" and "240 of 245" in table.notes[0]


def test_drop_highest_option():
    assert len(chinchilla.load(DATA, drop_highest="0").extras["scaling_points"]) == 245
    with pytest.raises(InputError, match="drop_highest"):
        chinchilla.load(DATA, drop_highest="many")


@pytest.mark.parametrize("mutate, field, words", [
    (lambda d: d.drop(columns=["loss"]), "loss", ["missing column"]),
    (lambda d: d.assign(**{"Model Size": np.where(d.index == 3, -5.0, d["Model Size"])}), "Model Size",
     ["> 0", "lines 5"]),
    (lambda d: d.assign(**{"Training FLOP": d["Training FLOP"].astype(object).where(d.index != 0, "n/a")}),
     "Training FLOP", ["lines 2"]),
])
def test_malformed_csv_names_file_and_column(tmp_path, mutate, field, words):
    path = tmp_path / "runs.csv"
    mutate(pd.read_csv(DATA / chinchilla.FILE)).to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        chinchilla.load(path)
    assert str(path) in str(err.value) and err.value.field == field
    for word in words:
        assert word in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        chinchilla.load(tmp_path)
