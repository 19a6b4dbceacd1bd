"""OLMo 2 model ladder (../shared/data/olmo_ladder/peteish-moreeval; Bhagia et al. 2024).

In-loop evaluations of small "ladder" runs (190M-3.2B parameters at 0.5-10x Chinchilla-optimal
tokens) and of the 7B and 13B targets, one CSV row per checkpoint. For each task the files log
- the task loss: bits per byte of the correct answer's continuation, ranked-classification (RC)
  format, 5-shot (`eval/downstream_bpb/..._bpb`) -> metric "bpb" (lower is better);
- the accuracy (`..._len_norm`, length-normalised; boolq: `..._acc`) -> metric "acc_norm" / "acc";
- the `..._soft` column -> metric "soft_choice_prob". It is NOT the probability the model puts on the
  correct choice: OLMo's evaluator takes a softmax over the choices' per-character log-likelihoods
  (length-normalised scores), which squashes the mass towards uniform (on PIQA it stays near 0.5
  while accuracy reaches 82%), so it is labelled as what it is and kept apart from losslens's own
  `correct_choice_prob` (sum-of-token log-likelihoods, normalised over the choices).

Tasks (the paper's 8, with the split it uses, plus boolq and winogrande): mmlu (test split, the 4
category columns averaged with weights stem 0.215, humanities 0.335, social_sciences 0.219,
other 0.231), hellaswag (val), arc_challenge (test), arc_easy (test), piqa (val), csqa (val),
socialiqa (val), openbookqa (test), boolq (val), winogrande (val). Chance: 1/#choices (as the
paper's code: piqa 0.5, socialiqa 1/3, csqa 0.2, the others 0.25; boolq and winogrande 0.5).
`majority` (the best constant answer's accuracy): boolq 0.622 (its validation set is BoolQ's dev set,
62.2% "yes": Clark et al. 2019, Table 3), empty elsewhere.

`loss` is NOT a pre-training loss (the files log none): it is the held-out language-modelling loss
on one validation set, `loss_set` (default "c4_en": eval/c4_en-validation/CrossEntropyLoss, nats/token),
whose text is not OLMo 2's training mix. The table is therefore marked as a proxy x-axis.

tokens: `throughput/total_tokens`, or `_step x batch_size_in_tokens` where that column is missing
(the 13B files); step-0 rows (no tokens seen) are dropped. params: the `n` of the paper's configs.

`runs="paper"` (default) loads the paper's configuration: the 16 ladder runs 190M/370M/760M/1.3B x
{1, 2, 5, 10}xC and the two targets (peteish7_eval_anneal, peteish13_eval_final); `runs="all"` loads
every CSV of the folder (adds 0.5xC, the 1xC reruns, 3.2B, and the targets' full trajectories).
`extras` names the ladder runs and the targets for `losslens.analysis.predict.olmo_target_errors`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from losslens.analysis.table import TidyTable, validate
from losslens.errors import InputError

FOLDER = "peteish-moreeval"
SIZES = {"190M": 190_354_176, "370M": 371_262_464, "760M": 758_220_288, "1B": 1_279_395_840, "3B": 3_169_537_280}
TARGETS = {  # file stem -> (label, N)
    "peteish7_eval_anneal": ("7B-4T", 6_887_575_552), "peteish7_eval_full": ("7B-4T full", 6_887_575_552),
    "peteish13_eval_final": ("13B-5T", 13_202_396_160), "peteish13_eval_full": ("13B-5T full", 13_202_396_160),
}
PAPER_LADDER = [f"{s}-{m}xC" for s in ("190M", "370M", "760M", "1B") for m in (1, 2, 5, 10)]
PAPER_TARGETS = {"7B-4T": "peteish7_eval_anneal", "13B-5T": "peteish13_eval_final"}
MMLU_WEIGHTS = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}
# task -> (column stem, accuracy suffix, chance)
TASKS = {
    "mmlu": ("mmlu_{}_test", "len_norm", 0.25),
    "hellaswag": ("hellaswag_val", "len_norm", 0.25),
    "arc_challenge": ("arc_challenge_test", "len_norm", 0.25),
    "arc_easy": ("arc_easy_test", "len_norm", 0.25),
    "piqa": ("piqa_val", "len_norm", 0.5),
    "csqa": ("csqa_val", "len_norm", 0.2),
    "socialiqa": ("socialiqa_val", "len_norm", 1 / 3),
    "openbookqa": ("openbookqa_test", "len_norm", 0.25),
    "boolq": ("boolq_val", "acc", 0.5),
    "winogrande": ("winogrande_val", "len_norm", 0.5),
}
PAPER_TASKS = ("mmlu", "hellaswag", "arc_challenge", "arc_easy", "piqa", "csqa", "socialiqa", "openbookqa")
METRICS = {  # metric -> column pattern from (stem, accuracy suffix)
    "bpb": "eval/downstream_bpb/{stem}_rc_5shot_bpb",
    "acc": "eval/downstream/{stem}_rc_5shot_{suffix}",
    "soft_choice_prob": "eval/downstream_soft/{stem}_rc_5shot_soft",  # softmax of per-char log-likelihoods
}
# Accuracy of the best constant answer where the split's label balance is published (see the docstring).
MAJORITY = {"boolq": 0.622}
LOSS_SETS = ("c4_en", "dolma_books", "dolma_common-crawl", "dolma_pes2o", "dolma_reddit", "dolma_stack",
             "dolma_wiki", "ice", "m2d2_s2orc", "pile", "wikitext_103")
_LADDER_NAME = re.compile(r"^(190M|370M|760M|1B|3B)-[0-9.]+xC(-rerun)?$")


def _column(frame: pd.DataFrame, col: str, file: Path) -> np.ndarray:
    if col not in frame.columns:
        raise InputError(file, "missing column", field=col)
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values)
    if bad.any():
        lines = ", ".join(str(i + 2) for i in np.flatnonzero(bad)[:8])
        raise InputError(file, f"not a finite number at lines {lines}", field=col)
    return values


def _task_metric(frame: pd.DataFrame, task: str, metric: str, file: Path) -> np.ndarray:
    stem, suffix, _ = TASKS[task]
    suffix = suffix if metric == "acc" else None
    if task == "mmlu":  # the paper's weighted average of the four category columns
        total = sum(MMLU_WEIGHTS.values())
        return sum(w * _column(frame, METRICS[metric].format(stem=stem.format(cat), suffix=suffix), file)
                   for cat, w in MMLU_WEIGHTS.items()) / total
    return _column(frame, METRICS[metric].format(stem=stem, suffix=suffix), file)


def read_run(file: Path, model: str, params: int, loss_set: str = "c4_en") -> pd.DataFrame:
    """One run's CSV as tidy rows (all tasks and metrics)."""
    try:
        frame = pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(file, f"not a readable CSV ({str(err).splitlines()[0]})") from None
    if "throughput/total_tokens" in frame.columns:
        tokens = _column(frame, "throughput/total_tokens", file)
    else:
        tokens = _column(frame, "_step", file) * _column(frame, "batch_size_in_tokens", file)
    step = _column(frame, "_step", file) if "_step" in frame.columns else np.full(len(frame), np.nan)
    loss = _column(frame, f"eval/{loss_set}-validation/CrossEntropyLoss", file)
    seen = tokens > 0
    tasks, metrics, values, chances, majorities = [], [], [], [], []
    for task, (_, suffix, chance) in TASKS.items():
        for metric in METRICS:
            tasks.append(task)
            metrics.append({"acc": "acc_norm" if suffix == "len_norm" else "acc"}.get(metric, metric))
            values.append(_task_metric(frame, task, metric, file)[seen])
            chances.append(np.nan if metric == "bpb" else chance)
            majorities.append(MAJORITY.get(task, np.nan) if metric == "acc" else np.nan)
    rows, k = int(seen.sum()), len(values)
    return pd.DataFrame({
        "model": model, "params": float(params), "tokens": np.tile(tokens[seen], k), "step": np.tile(step[seen], k),
        "loss": np.tile(loss[seen], k), "task": np.repeat(tasks, rows), "metric": np.repeat(metrics, rows),
        "value": np.concatenate(values), "chance": np.repeat(chances, rows),
        "majority": np.repeat(majorities, rows),
    })


def load(path: str | Path, *, runs: str = "paper", loss_set: str = "c4_en") -> TidyTable:
    path = Path(path)
    folder = path / FOLDER if (path / FOLDER).is_dir() else path
    if not folder.is_dir():
        raise InputError(path, f"not a folder (expected the OLMo ladder folder with {FOLDER}/)")
    if runs not in ("paper", "all"):
        raise InputError(path, f"unknown run set {runs!r}; choose paper or all", field="runs")
    if loss_set not in LOSS_SETS:
        raise InputError(path, f"unknown validation set {loss_set!r}; choose from {', '.join(LOSS_SETS)}",
                         field="loss_set")
    if runs == "paper":
        stems = PAPER_LADDER + list(PAPER_TARGETS.values())
    else:
        stems = sorted(p.stem for p in folder.glob("*.csv") if _LADDER_NAME.match(p.stem) or p.stem in TARGETS)
    parts, ladder, targets = [], [], {}
    for stem in stems:
        file = folder / f"{stem}.csv"
        if not file.is_file():
            raise InputError(file, "no such file (a run of the OLMo ladder's paper configuration)")
        if stem in TARGETS:
            label, params = TARGETS[stem]
            targets[label] = stem
        else:
            params = SIZES[stem.split("-")[0]]
            ladder.append(stem)
        parts.append(read_run(file, stem, params, loss_set))
    df = pd.concat(parts, ignore_index=True)
    df["family"] = np.where(df["model"].isin(ladder), "olmo2-ladder", "olmo2-target")
    df["higher_is_better"] = df["metric"] != "bpb"
    notes = [f"loss = {loss_set} validation loss: the files log no pre-training loss",
             f"{len(ladder)} ladder runs, targets: {', '.join(targets) or 'none'}; step-0 rows dropped"]
    return TidyTable(validate(df, folder), source="olmo", path=str(path), x_kind="proxy",
                     x_label=f"{loss_set} validation loss (nats/token), a held-out LM loss, not OLMo 2's training loss",
                     notes=notes,
                     extras={"ladder": ladder, "paper_ladder": list(PAPER_LADDER), "targets": targets,
                             "paper_targets": dict(PAPER_TARGETS), "paper_tasks": list(PAPER_TASKS)})
