"""ObsScaling benchmark tables (../shared/data/obsscaling; Ruan, Maddison, Hashimoto 2024).

About 150 public base models from many families, one row each, with N, D and compute but no
pre-training loss: models differ in data and tokenizer, so no loss would be comparable anyway. The
`loss` column is therefore a labelled proxy, the loss Hoffmann et al.'s published law predicts from
(N, D): L = 1.69 + 406.4 / N^0.34 + 410.7 / D^0.28, a monotone combination of size and data. Models
without a published data size are dropped (the count is in the notes).

Tables used: base_llm_benchmark_eval.csv (8 benchmarks), base_llm_emergent_capability_eval.csv (the
Wei et al. emergent BIG-bench tasks) and base_llm_leaderboard_v2_eval.csv, joined on `Model`;
`version="2024-05-31"` reads the paper-era files in v2024-05-31/ (no leaderboard v2 there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from losslens.analysis.sources.pythia import hoffmann_loss
from losslens.analysis.table import TidyTable, validate
from losslens.errors import InputError

# column -> (metric, chance, items); chance NaN where a format has no single random baseline,
# items are the public eval-set sizes where one set is scored (None: unknown or not a count).
BENCHMARKS = {
    "MMLU": ("acc", 0.25, 14042), "ARC-C": ("acc", 0.25, 1172), "HellaSwag": ("acc", 0.25, 10042),
    "Winograd": ("acc", 0.5, 1267), "TruthfulQA": ("mc2", np.nan, None), "GSM8K": ("exact_match", 0.0, 1319),
    "XWinograd": ("acc", 0.5, None), "HumanEval": ("pass@1", 0.0, 164),
    "leaderboard_bbh": ("acc", np.nan, None), "leaderboard_gpqa": ("acc", 0.25, None),
    "leaderboard_ifeval": ("acc", 0.0, None), "leaderboard_math_hard": ("exact_match", 0.0, None),
    "leaderboard_mmlu_pro": ("acc", 0.1, None), "leaderboard_musr": ("acc", np.nan, None),
}
EMERGENT_CHANCE = {"parsinlu_qa": 0.25}  # 4-way multiple choice; the generation tasks have chance 0
FILES = ("base_llm_benchmark_eval.csv", "base_llm_emergent_capability_eval.csv", "base_llm_leaderboard_v2_eval.csv")


def _emergent_column(col: str) -> tuple[str, str, float]:
    """'arithmetic_3ds_2_acc' -> ('arithmetic_3ds_2shot', 'acc', chance)."""
    for metric in ("exact_match", "acc", "bleu"):
        if col.endswith("_" + metric):
            stem = col[: -len(metric) - 1]
            task, _, shots = stem.rpartition("_")
            return f"{task}_{shots}shot", metric, EMERGENT_CHANCE.get(task, 0.0)
    raise ValueError(col)


def load(path: str | Path, *, version: str = "latest") -> TidyTable:
    path = Path(path)
    folder = path / "v2024-05-31" if version == "2024-05-31" else path
    if version not in ("latest", "2024-05-31"):
        raise InputError(path, f"unknown version {version!r}; choose latest or 2024-05-31", field="version")
    base_file = folder / FILES[0]
    if not base_file.is_file():
        raise InputError(base_file, "no such file (expected the ObsScaling benchmark table)")
    base = pd.read_csv(base_file)
    known = base["Pretraining Data Size (T)"].notna() & base["Model Size (B)"].notna()
    notes = ["ObsScaling publishes no pre-training loss; models differ in data and tokenizer",
             f"{int((~known).sum())} of {len(base)} models without a published data size dropped"]
    base = base[known]
    meta = pd.DataFrame({"model": base["Model"], "family": base["Model Family"],
                         "params": base["Model Size (B)"] * 1e9, "tokens": base["Pretraining Data Size (T)"] * 1e12})
    frames = []
    for file in FILES[1:]:
        if (folder / file).is_file():
            frames.append(pd.read_csv(folder / file))
    rows = []

    def add(model_col, values, task, metric, chance, items):
        ok = values.notna()
        part = pd.DataFrame({"Model": model_col[ok], "task": task, "metric": metric, "value": values[ok],
                             "chance": chance, "n": np.nan if items is None else float(items)})
        rows.append(part)

    for col, (metric, chance, items) in BENCHMARKS.items():
        for table in [base, *frames]:
            if col in table.columns:
                add(table["Model"], table[col], col, metric, chance, items)
    for table in frames:
        for col in table.columns:
            if col == "Model" or col in BENCHMARKS:
                continue
            task, metric, chance = _emergent_column(col)
            values = table[col] / 100.0 if metric == "bleu" else table[col]  # BLEU is on a 0-100 scale
            add(table["Model"], values, task, metric, chance, None)
    long = pd.concat(rows, ignore_index=True).merge(meta, left_on="Model", right_on="model").drop(columns="Model")
    long["loss"] = hoffmann_loss(long["params"], long["tokens"])
    label = "Chinchilla-law loss L(N, D), Hoffmann et al.'s published fit (proxy: ObsScaling has no loss)"
    return TidyTable(validate(long, folder), source="obsscaling", path=str(path), x_kind="proxy", x_label=label,
                     notes=notes)
