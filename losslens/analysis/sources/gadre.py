"""Gadre et al. (2024) over-training testbed (../shared/data/gadre_overtraining; mlfoundations/scaling).

104 open_lm models (11M-6.9B parameters, token multipliers M = D/N from 5 to 640, trained on C4,
RedPajama or RefinedWeb), each with 8 loss evaluations and 46 downstream accuracies. Read from
`gadre_models_flat.csv` (one row per model, joined from exp_data/models/*.json and
exp_data/evals/*_heavy.json following the repository's `parse_model_json`) plus
`exp_data/eval_metadata.csv` (random baseline and item count of each task).

Tidy rows: per model, the 46 tasks with metric "acc" (chance = the metadata's random baseline, n =
its #datapoints), and two aggregates with metric "top1_error": "avg_46" (mean of 1 - acc over the 46
tasks) and "avg_17_subset" (the paper's 17-task subset). family = training set. `majority`: the
accuracy of always giving the most frequent answer, for the tasks whose label balance is published
(`MAJORITY`: BoolQ 0.622, PubMedQA 0.552), else empty.

`loss` is the mean next-token loss (nats/token) on a held-out evaluation split, `loss_split`
(default "c4_val", the paper's "C4 eval"). It is a real language-modelling loss of every model on the
same text, but not each model's own pre-training loss: held-out and in-distribution only for the
C4-trained models. Other splits: openlm, paloma_c4_en, paloma_redpajama, paloma_falcon-refinedweb,
paloma_ptb, paloma_dolma_100_programing_languages, val_de-en_100.

`extras["models"]` has one row per model (shape, multiplier, M, loss, errors) for the Gadre-law
reproduction (`losslens.analysis.predict.gadre_predictions`); `extras["scaling_points"]` holds the
models of one training set (`train`, default "rpj", the paper's Figure 1 setting) for the Chinchilla
fit, since one law across three training sets would mix data distributions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from losslens.analysis.table import TidyTable, validate
from losslens.errors import InputError

FILE = "gadre_models_flat.csv"
METADATA = Path("exp_data") / "eval_metadata.csv"
SPLITS = ("c4_val", "openlm", "paloma_c4_en", "paloma_redpajama", "paloma_falcon-refinedweb", "paloma_ptb",
          "paloma_dolma_100_programing_languages", "val_de-en_100")
MODEL_COLUMNS = ("name", "dataset_name", "model_name", "N_params", "D_tokens", "chinchilla_multiplier",
                 "token_multiplier_M", "err_avg_46", "err_avg_17_subset")
AGGREGATES = {"avg_46": "err_avg_46", "avg_17_subset": "err_avg_17_subset"}
# Accuracy of the best constant answer (column `majority`), where the data set's label balance is published
# for the split Gadre et al. score (eval_metadata.csv's item counts identify the split). The declared
# "Random baseline" of these tasks is below it, so a model that always says "yes" would look able.
MAJORITY = {
    # BoolQ dev set, 3,270 questions, 62.2% "yes" (2,033): Clark et al. 2019, "BoolQ: Exploring the
    # Surprising Difficulty of Natural Yes/No Questions", NAACL, Table 3 ("Majority" baseline 62.17).
    "boolq": 0.622,
    # PubMedQA PQA-L, 1,000 expert-labelled questions: yes 55.2%, no 33.8%, maybe 11.0%: Jin et al. 2019,
    # "PubMedQA: A Dataset for Biomedical Research Question Answering", EMNLP, Sec. 3 / Table 2 (majority 55.2).
    "pubmed_qa_labeled": 0.552,
}


def _read_csv(file: Path) -> pd.DataFrame:
    if not file.is_file():
        raise InputError(file, "no such file")
    try:
        return pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(file, f"not a readable CSV ({str(err).splitlines()[0]})") from None


def _numeric(frame: pd.DataFrame, col: str, file: Path, *, positive: bool = False) -> np.ndarray:
    if col not in frame.columns:
        raise InputError(file, "missing column", field=col)
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values) | ((values <= 0) if positive else False)
    if bad.any():
        lines = ", ".join(str(i + 2) for i in np.flatnonzero(bad)[:8])
        raise InputError(file, f"must be a finite number{' > 0' if positive else ''}; bad at lines {lines}", field=col)
    return values


def load(path: str | Path, *, loss_split: str = "c4_val", train: str = "rpj") -> TidyTable:
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    file = folder / FILE if path.is_dir() else path
    if loss_split not in SPLITS:
        raise InputError(path, f"unknown split {loss_split!r}; choose from {', '.join(SPLITS)}", field="loss_split")
    flat = _read_csv(file)
    meta_file = folder / METADATA
    meta = _read_csv(meta_file)
    for col in ("Eval Task", "#datapoints", "Random baseline"):
        if col not in meta.columns:
            raise InputError(meta_file, "missing column", field=col)
    for col in ("name", "dataset_name", "model_name"):
        if col not in flat.columns:
            raise InputError(file, "missing column", field=col)

    loss_col = f"loss_{loss_split}"
    models = pd.DataFrame({
        "model": flat["name"].astype(str), "dataset": flat["dataset_name"].astype(str),
        "shape": flat["model_name"].astype(str),
        "params": _numeric(flat, "N_params", file, positive=True),
        "tokens": _numeric(flat, "D_tokens", file, positive=True),
        "multiplier": _numeric(flat, "chinchilla_multiplier", file, positive=True),
        "M": _numeric(flat, "token_multiplier_M", file, positive=True),
        "loss": _numeric(flat, loss_col, file, positive=True),
    })
    for col in AGGREGATES.values():
        models[col] = _numeric(flat, col, file)

    tasks = [c[len("acc_"):] for c in flat.columns if c.startswith("acc_")]
    if not tasks:
        raise InputError(file, "no accuracy columns (acc_<task>)", field="acc_*")
    meta = meta.set_index("Eval Task")
    unknown = [t for t in tasks if t not in meta.index]
    if unknown:
        raise InputError(meta_file, f"no row for task(s) {', '.join(unknown)}", field="Eval Task")
    base = models[["model", "params", "tokens", "loss"]].assign(family=models["dataset"])
    parts = []
    for task in tasks:
        parts.append(base.assign(task=task, metric="acc", value=_numeric(flat, f"acc_{task}", file),
                                 chance=float(meta.loc[task, "Random baseline"]) / 100.0,
                                 n=float(meta.loc[task, "#datapoints"]), higher_is_better=True,
                                 majority=MAJORITY.get(task, np.nan)))
    for task, col in AGGREGATES.items():
        parts.append(base.assign(task=task, metric="top1_error", value=models[col], chance=np.nan, n=np.nan,
                                 higher_is_better=False, majority=np.nan))
    df = pd.concat(parts, ignore_index=True)

    trained = models[models["dataset"] == train]
    if trained.empty:
        raise InputError(file, f"no models trained on {train!r}; training sets: "
                         f"{', '.join(sorted(models['dataset'].unique()))}", field="train")
    notes = [f"loss = {loss_split} eval loss: held-out, in-distribution only for C4-trained models",
             f"scaling law fitted to the {len(trained)} models trained on {train}"]
    return TidyTable(validate(df, file), source="gadre", path=str(path), x_kind="loss",
                     x_label=f"{loss_split} evaluation loss (nats/token)", notes=notes,
                     extras={"models": models,
                             "scaling_points": trained[["params", "tokens", "loss"]].reset_index(drop=True)})
