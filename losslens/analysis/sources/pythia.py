"""Pythia v1 evals by checkpoint (../shared/data/pythia_evals; Biderman et al. 2023).

Pythia publishes no pre-training loss, so the `loss` column is a labelled proxy (`proxy=`):

- "lambada" (default): LAMBADA-OpenAI target-word NLL, log(ppl), zero-shot, at the same (model, step).
  A real language-modelling loss on held-out text, but of one task; LAMBADA's own accuracy is then
  left out of the tasks (it would be plotted against itself).
- "chinchilla": the loss Hoffmann et al.'s published law predicts from (N, D),
  L = 1.69 + 406.4 / N^0.34 + 410.7 / D^0.28: a monotone stand-in for compute, not a measurement.

Step 0 (no tokens seen) is dropped: it has no compute and no defined log D.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from losslens.analysis.table import TidyTable, validate
from losslens.errors import InputError

FILE = "pythia_v1_evals_by_checkpoint.csv"
# Random-guess accuracy of each task's format (lm-eval legacy tasks).
CHANCE = {"arc_easy": 0.25, "arc_challenge": 0.25, "piqa": 0.5, "winogrande": 0.5, "wsc": 0.5,
          "sciq": 0.25, "logiqa": 0.25, "mmlu_macro_avg": 0.25, "lambada_openai": 0.0}
HOFFMANN = dict(E=1.69, A=406.4, alpha=0.34, B=410.7, beta=0.28)
PROXIES = ("lambada", "chinchilla")


def hoffmann_loss(params, tokens) -> np.ndarray:
    """Hoffmann et al. (2022)'s published fit L(N, D): a labelled proxy where no loss was published."""
    h = HOFFMANN
    return h["E"] + h["A"] / np.asarray(params, float) ** h["alpha"] + h["B"] / np.asarray(tokens, float) ** h["beta"]


def _items(acc: pd.Series, stderr: pd.Series) -> float:
    """Items behind a binomial accuracy, from the harness's stderr sqrt(p(1-p)/(n-1))."""
    ok = stderr > 0
    n = acc[ok] * (1 - acc[ok]) / stderr[ok] ** 2 + 1
    return float(np.round(n.median())) if len(n) else np.nan


def load(path: str | Path, *, proxy: str = "lambada") -> TidyTable:
    path = Path(path)
    file = path / FILE if path.is_dir() else path
    if proxy not in PROXIES:
        raise InputError(path, f"unknown proxy {proxy!r}; choose from {', '.join(PROXIES)}", field="proxy")
    if not file.is_file():
        raise InputError(file, "no such file (expected the Pythia evals CSV)")
    raw = pd.read_csv(file)
    raw = raw[raw["tokens_seen"] > 0]
    lam = raw[(raw["task"] == "lambada_openai") & (raw["num_fewshot"] == 0)]
    lam_nll = np.log(lam.set_index(["model", "step"])["ppl"])
    rows = []
    for (task, shots), sub in raw.groupby(["task", "num_fewshot"], sort=True):
        if proxy == "lambada" and task == "lambada_openai":
            continue
        name = task if shots == 0 else f"{task}_{shots}shot"
        for metric in ("acc", "acc_norm"):
            if sub[metric].isna().all():
                continue
            part = sub[sub[metric].notna()]
            rows.append(pd.DataFrame({
                "model": part["model"], "params": part["params_total"].astype(float),
                "tokens": part["tokens_seen"].astype(float), "step": part["step"], "task": name,
                "metric": metric, "value": part[metric], "stderr": part[f"{metric}_stderr"],
                "n": _items(part[metric], part[f"{metric}_stderr"]), "chance": CHANCE.get(task, np.nan),
                "family": np.where(part["deduped"] == 1, "pile-deduped", "pile"),
            }))
    df = pd.concat(rows, ignore_index=True)
    notes = ["Pythia publishes no pre-training loss"]
    if proxy == "lambada":
        key = pd.MultiIndex.from_frame(df[["model", "step"]])
        df["loss"] = lam_nll.reindex(key).to_numpy()
        missing = df["loss"].isna()
        if missing.any():
            notes.append(f"{int(missing.sum())} rows without a zero-shot LAMBADA eval at their step dropped")
            df = df[~missing]
        label = "LAMBADA target-word NLL, log(ppl) (proxy: Pythia publishes no pre-training loss)"
        notes.append("lambada_openai accuracy left out: it is measured on the proxy's own text")
    else:
        df["loss"] = hoffmann_loss(df["params"], df["tokens"])
        label = "Chinchilla-law loss L(N, D), Hoffmann et al.'s published fit (proxy for compute)"
    notes.append("step 0 (no tokens seen) dropped")
    return TidyTable(validate(df, file), source="pythia", path=str(path), x_kind="proxy", x_label=label,
                     notes=notes)
