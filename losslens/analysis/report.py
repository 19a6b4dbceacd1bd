"""One call that runs every analysis on a tidy table, and the report that holds the results.

`analyze(table)` runs, per (task, metric): the emergence classification, the same-loss test and (when
the prediction module is installed) the backtest; once per table: the Chinchilla scaling-law fit where
the table has a real pre-training loss (or the source supplies its points), and the source paper's
own target predictions where it made some (OLMo ladder: 7B and 13B; Gadre et al.: the four errors).
`AnalysisReport.to_dict()` is the JSON documented in docs/analysis.md ("JSON output").
"""

from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np
import pandas as pd

from losslens.analysis.emergence import EmergenceConfig, EmergenceResult, analyze_emergence, fdr_adjust
from losslens.analysis.same_loss import SameLossConfig, SameLossResult, analyze_same_loss
from losslens.analysis.table import TidyTable
from losslens.io import write_json


def _optional(module: str, name: str):
    """A function from a sibling analysis module, or None if that module is not installed."""
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        return None


def _jsonable(obj):
    """Plain JSON types: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


@dataclasses.dataclass
class TaskReport:
    task: str
    metric: str
    emergence: EmergenceResult
    same_loss: SameLossResult | None  # None when analyze(same_loss_test=False)
    backtest: object | None = None    # predict.BacktestResult (has .to_dict() and .summary())

    @property
    def verdict(self) -> str:
        return self.emergence.verdict

    def to_dict(self) -> dict:
        e = self.emergence
        emergent = e.verdict == "emergent"
        return {
            "task": self.task, "metric": self.metric, "verdict": e.verdict, "reason_code": e.reason_code,
            "q_value": e.q_value, "error_rates": e.error_rates,
            "eta": e.eta if emergent else None,
            "eta_ci": list(e.eta_ci) if emergent and e.eta_ci else None,
            "spearman": self.same_loss.spearman if self.same_loss else None,
            "pearson": self.same_loss.pearson if self.same_loss else None,
            "same_loss": self.same_loss.to_dict() if self.same_loss else None,
            "backtest": self.backtest.to_dict() if self.backtest is not None else None,
            "emergence": e.to_dict(),
        }

    def summary(self) -> str:
        parts = [self.emergence.summary()] + ([self.same_loss.summary()] if self.same_loss else [])
        if self.backtest is not None:
            parts.append(self.backtest.summary())
        return "\n".join(parts)


@dataclasses.dataclass
class AnalysisReport:
    source: dict
    tasks: list[TaskReport]
    scaling_law: object | None = None   # scaling.ChinchillaFit (has .to_dict() and .summary())
    targets: object | None = None       # the source paper's target predictions (OLMo 7B/13B, Gadre et al.)
    settings: dict = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def task(self, task: str, metric: str | None = None) -> TaskReport:
        for t in self.tasks:
            if t.task == task and (metric is None or t.metric == metric):
                return t
        raise KeyError((task, metric))

    def counts(self) -> dict[str, int]:
        out = {v: 0 for v in ("emergent", "smooth", "not_emerged", "inconclusive")}
        for t in self.tasks:
            out[t.verdict] += 1
        return out

    def to_dict(self) -> dict:
        return _jsonable({
            "tasks": [t.to_dict() for t in self.tasks],
            "scaling_law": self.scaling_law.to_dict() if self.scaling_law is not None else None,
            "targets": self.targets.to_dict() if self.targets is not None else None,
            "source": self.source,
            "settings": self.settings,
            "notes": self.notes,
        })

    def write_json(self, path) -> None:
        write_json(path, self.to_dict())

    def summary(self) -> str:
        src = self.source
        lines = [f"source {src.get('name')}: {src.get('rows')} rows, {src.get('models')} models, "
                 f"{len(self.tasks)} (task, metric) pairs; x-axis: {src.get('x_label')}"]
        lines += [f"  note: {n}" for n in [*src.get("notes", []), *self.notes]]
        lines.append("verdicts: " + ", ".join(f"{k} {v}" for k, v in self.counts().items()))
        lines += [t.summary() for t in self.tasks]
        if self.scaling_law is not None:
            lines.append(self.scaling_law.summary())
        if self.targets is not None:
            lines.append(self.targets.summary())
        return "\n".join(lines)


def scaling_points(table: TidyTable) -> pd.DataFrame | None:
    """The (params, tokens, loss) points a scaling law is fitted to: a source's own, or one per
    checkpoint of a table with a real pre-training loss; None for proxies."""
    if "scaling_points" in table.extras:
        return table.extras["scaling_points"]
    if table.x_kind != "loss" or table.df.empty:
        return None
    return table.df.drop_duplicates(["model", "params", "tokens", "loss"])[["params", "tokens", "loss"]]


# Sources whose paper predicted held-out targets, and the function that repeats that prediction.
TARGETS = {"olmo": "olmo_target_errors", "gadre": "gadre_predictions"}


def analyze_task(job) -> TaskReport:
    """All per-task analyses of one (task, metric) slice (a pure function of its job tuple)."""
    sub, em_cfg, sl_cfg, with_backtest, seed = job
    backtest = _optional("losslens.analysis.predict", "backtest") if with_backtest else None
    same = analyze_same_loss(sub, sl_cfg, seed=seed) if sl_cfg is not None else None
    return TaskReport(str(sub["task"].iloc[0]), str(sub["metric"].iloc[0]),
                      analyze_emergence(sub, em_cfg, seed=seed), same,
                      backtest(sub, seed=seed) if backtest is not None else None)


def analyze(table: TidyTable, *, seed: int = 0, bootstrap: int = 1000, permutations: int = 99,
            backtests: bool = True, scaling_law: bool = True, emergence: EmergenceConfig | None = None,
            same_loss: SameLossConfig | None = None, same_loss_test: bool = True) -> AnalysisReport:
    """Run every analysis on a tidy table; `seed` makes all resampling reproducible (task i, in sorted
    (task, metric) order, uses seed + i). `bootstrap` sets the same-loss and scaling-law resamples; the
    emergence test draws `EmergenceConfig.bootstrap` null replicates (1000: fewer than ~150 could never
    reach alpha = 0.01 after false-discovery-rate control), stopping early where the answer is clear;
    the emergent verdicts are then controlled for the false-discovery rate across all tasks
    (`EmergenceConfig.fdr`).
    `same_loss_test=False` skips the same-loss test (each task's `same_loss` is then None), as
    `backtests` and `scaling_law` skip theirs; the calibration suite uses all three, as none of them
    touches the emergence verdict. One process: 10,000 points take a few seconds
    (bench/analysis_speed.py), and the bootstrap's matrix products already use every core."""
    em_cfg = emergence or EmergenceConfig()  # its own null replicates: a test needs ~1000 to reach alpha / m
    sl_cfg = dataclasses.replace(same_loss or SameLossConfig(), bootstrap=bootstrap, permutations=permutations)
    backtest = _optional("losslens.analysis.predict", "backtest") if backtests else None
    notes = []
    if backtests and backtest is None:
        notes.append("backtests skipped: losslens.analysis.predict is not installed")
    if table.x_kind != "loss":
        notes.append(f"the x-axis is a proxy, not a pre-training loss: {table.x_label}")
    jobs = []
    for i, ((task, metric), sub) in enumerate(table.groups()):
        if np.array_equal(sub["value"].to_numpy(float), sub["loss"].to_numpy(float)):
            # The x-axis against itself (Chinchilla's `pretraining_loss`): every verdict would be a tautology.
            notes.append(f"{task} / {metric} not analysed: its values are the x-axis itself")
            continue
        jobs.append((sub.reset_index(drop=True), em_cfg, sl_cfg if same_loss_test else None,
                     backtest is not None, seed + i))
    tasks = [analyze_task(job) for job in jobs]
    # Benjamini-Hochberg over the emergence tests of every (task, metric) of this analysis
    fdr_adjust([t.emergence for t in tasks], em_cfg)
    law = None
    points = scaling_points(table) if scaling_law else None
    if points is not None and min(points["params"].nunique(), points["tokens"].nunique()) < 3:
        # One model size (or one budget) cannot separate A/N^alpha from E: refuse rather than guess.
        notes.append(f"scaling law not fitted: needs >= 3 distinct model sizes and token counts, has "
                     f"{points['params'].nunique()} and {points['tokens'].nunique()}")
    elif points is not None and len(points) >= 5:
        fit_chinchilla = _optional("losslens.analysis.scaling", "fit_chinchilla")
        if fit_chinchilla is None:
            notes.append("scaling law skipped: losslens.analysis.scaling is not installed")
        else:
            law = fit_chinchilla(points["params"].to_numpy(float), points["tokens"].to_numpy(float),
                                 points["loss"].to_numpy(float), bootstrap=bootstrap, seed=seed,
                                 **table.extras.get("scaling_fit_kwargs", {}))
    targets = None
    if table.source in TARGETS:
        predict_targets = _optional("losslens.analysis.predict", TARGETS[table.source])
        targets = predict_targets(table) if predict_targets is not None else None
    settings = {"seed": seed, "bootstrap": bootstrap, "permutations": permutations,
                "emergence": dataclasses.asdict(em_cfg), "same_loss": dataclasses.asdict(sl_cfg)}
    return AnalysisReport(table.describe(), tasks, law, targets, settings, notes)
