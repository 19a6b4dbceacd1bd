"""One call that runs every analysis on a tidy table, and the report that holds the results.

`analyze(table)` runs, per (task, metric): the emergence classification, the same-loss test and (when
the prediction module is installed) the backtest; once per table: the Chinchilla scaling-law fit where
the table has a real pre-training loss (or the source supplies its points), and the source paper's
own target predictions where it made some (OLMo ladder: 7B and 13B; Gadre et al.: the four errors).
`AnalysisReport.to_dict()` is the JSON documented in docs/analysis.md ("JSON output").
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import importlib
import multiprocessing
import os
import sys

import numpy as np
import pandas as pd

from losslens.analysis.emergence import EmergenceConfig, EmergenceResult, analyze_emergence, fdr_adjust
from losslens.analysis.result import Result
from losslens.analysis.same_loss import SameLossConfig, SameLossResult, analyze_same_loss
from losslens.analysis.scaling import ScalingLawConfig
from losslens.analysis.table import TidyTable, as_table
from losslens.io import jsonable, write_json


def _optional(module: str, name: str):
    """A function from a sibling analysis module, or None if that module is not installed."""
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        return None


def _emergence_columns(e) -> dict:
    """Verdict, and eta with its interval when emergent (as the JSON's top level); then whatever else the
    emergence result's own `rows()` adds."""
    emergent = e.verdict == "emergent"
    ci = e.eta_ci if emergent and e.eta_ci else (None, None)
    cols = {"verdict": e.verdict, "eta": e.eta if emergent else None, "eta_lo": ci[0], "eta_hi": ci[1]}
    own = type(e).rows if isinstance(e, Result) and type(e).rows is not Result.rows else None
    if own is not None:
        cols.update({k: v for k, v in own(e)[0].items() if k not in cols and k not in ("task", "metric")})
    return cols


# The columns Jupyter shows for a report (to_frame() has them all): the verdict table of `losslens analyze`.
SHOWN = ("task", "metric", "verdict", "eta", "eta_lo", "eta_hi", "spearman", "same_loss_holds",
         "log_params_improvement", "log_params_p", "compute_collapses", "backtest", "backtest_mae")


@dataclasses.dataclass(repr=False)
class TaskReport(Result):
    task: str
    metric: str
    emergence: EmergenceResult
    same_loss: SameLossResult | None  # None when analyze(same_loss_test=False)
    backtest: object | None = None    # predict.BacktestResult (has .to_dict() and .summary())
    onset: object | None = None       # predict.EmergenceScale: N and compute at eta (emergent, with a law)
    data: pd.DataFrame | None = dataclasses.field(default=None, compare=False)  # the slice analysed (for plot)
    x_label: str = "loss"             # what the x-axis is (the table's `x_label`)

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
            "onset": self.onset.to_dict() if self.onset is not None else None,
            "emergence": e.to_dict(),
        }

    def rows(self) -> list[dict]:
        row = {"task": self.task, "metric": self.metric, **_emergence_columns(self.emergence)}
        if self.same_loss is not None:
            same = {k: v for k, v in self.same_loss.rows()[0].items() if k not in ("task", "metric")}
            row["same_loss_holds"] = same.pop("holds")
            row.update(same)
        if self.backtest is not None:
            bt = {k: v for k, v in self.backtest.rows()[0].items() if k not in ("task", "metric")}
            row["backtest"] = bt.pop("verdict")
            row.update({f"backtest_{k}": v for k, v in bt.items()})
        return [row]

    def _html_frame(self) -> pd.DataFrame:
        frame = self.to_frame()
        return frame[[c for c in SHOWN if c in frame.columns]]

    def _repr_items(self) -> dict:
        items = {"task": self.task, "metric": self.metric, "verdict": self.verdict}
        if self.verdict == "emergent":
            items["eta"] = self.emergence.eta
        return items

    def summary(self) -> str:
        parts = [self.emergence.summary()] + ([self.same_loss.summary()] if self.same_loss else [])
        if self.backtest is not None:
            parts.append(self.backtest.summary())
        if self.onset is not None:
            parts.append(self.onset.summary())
        return "\n".join(parts)

    def plot(self, kind: str = "loss"):
        """The report's figure of this (task, metric): `loss` (performance vs the x-axis, eta and the
        Eq. 3 fit when emergent), `compute` (vs C = 6ND) or `backtest` (fit above the cut, prediction below)."""
        from losslens.analysis import figures

        if self.data is None:
            raise ValueError(f"{self.task} / {self.metric}: no data attached (made outside analyze())")
        if kind == "loss":
            return figures.draw_task(self.data, self, self.x_label)
        if kind == "compute":
            return figures.draw_compute(self.data, self)
        if kind == "backtest":
            if self.backtest is None:
                raise ValueError(f"{self.task} / {self.metric}: no backtest was run")
            return self.backtest.plot(self.data, x_label=self.x_label)
        raise ValueError(f"kind must be 'loss', 'compute' or 'backtest', got {kind!r}")


@dataclasses.dataclass(repr=False)
class AnalysisReport(Result):
    source: dict
    tasks: list[TaskReport]
    scaling_law: object | None = None   # scaling.ChinchillaFit (has .to_dict() and .summary())
    targets: object | None = None       # the source paper's target predictions (OLMo 7B/13B, Gadre et al.)
    settings: dict = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    table: TidyTable | None = dataclasses.field(default=None, compare=False)  # what was analysed (for plot)

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
        return jsonable({
            "tasks": [t.to_dict() for t in self.tasks],
            "scaling_law": self.scaling_law.to_dict() if self.scaling_law is not None else None,
            "targets": self.targets.to_dict() if self.targets is not None else None,
            "source": self.source,
            "settings": self.settings,
            "notes": self.notes,
        })

    def rows(self) -> list[dict]:
        return [row for t in self.tasks for row in t.rows()]

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows())
        return frame if len(frame) else pd.DataFrame(columns=["task", "metric", "verdict", "eta", "eta_lo", "eta_hi"])

    def _html_frame(self) -> pd.DataFrame:
        frame = self.to_frame()
        return frame[[c for c in SHOWN if c in frame.columns]]

    def _repr_items(self) -> dict:
        return {"source": self.source.get("name"), "tasks": len(self.tasks),
                **{k: v for k, v in self.counts().items() if v},
                "scaling_law": self.scaling_law is not None}

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

    def plot(self, task: str, metric: str | None = None, kind: str = "loss"):
        """The report's figure of one (task, metric) as a matplotlib Figure; `kind` as `TaskReport.plot`."""
        return self.task(task, metric).plot(kind)

    def plot_scaling_law(self):
        """Losses against compute with the fitted law along five model sizes (the report's figure)."""
        if self.scaling_law is None or self.table is None:
            raise ValueError("no scaling law was fitted" + ("" if self.scaling_law is None else " (no table)"))
        return self.scaling_law.plot(scaling_points(self.table))


def scaling_points(table: TidyTable) -> pd.DataFrame | None:
    """The (params, tokens, loss) points a scaling law is fitted to: a source's own, or one per
    checkpoint of a table with a real pre-training loss; None for proxies."""
    if "scaling_points" in table.extras:
        return table.extras["scaling_points"]
    if table.x_kind != "loss" or table.df.empty:
        return None
    return table.df.drop_duplicates(["model", "params", "tokens", "loss"])[["params", "tokens", "loss"]]


def default_workers(n_jobs: int) -> int:
    """Worker processes for `n_jobs` (task, metric) pairs: one per available core (at most 8) once
    there are 8 pairs or more, on Linux (fork); elsewhere, and below 8 pairs, this process alone."""
    if n_jobs < 8 or not sys.platform.startswith("linux"):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8, n_jobs // 4))


def _in_worker(fn, *args):
    """Run fn(*args) in a pool worker with one BLAS thread, so the workers do not oversubscribe the cores."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(*args)


def _map(fn, argss: list[tuple], pool, progress=None):
    """[fn(*a) for a in argss], in `pool` if given; progress(i) as each one finishes. The results do not
    depend on the pool: every call is a pure function of its arguments (its seed among them)."""
    if pool is None:
        out = []
        for i, a in enumerate(argss):
            if progress is not None:
                progress(i, a)
            out.append(fn(*a))
        return out
    futures = {pool.submit(_in_worker, fn, *a): i for i, a in enumerate(argss)}
    out = [None] * len(argss)
    for done, fut in enumerate(cf.as_completed(futures)):
        if progress is not None:
            progress(done, argss[futures[fut]])
        out[futures[fut]] = fut.result()
    return out


# Sources whose paper predicted held-out targets, and the function that repeats that prediction.
TARGETS = {"olmo": "olmo_target_errors", "gadre": "gadre_predictions"}


def _emergence_job(sub, cfg, seed) -> EmergenceResult:
    return analyze_emergence(sub, cfg, seed=seed)


def analyze_task(job, emergence: EmergenceResult) -> TaskReport:
    """The per-task analyses after emergence (a pure function of its job tuple and verdict): the
    same-loss test, and the backtest, which for an emergent task (claim 3) fits only the models
    above eta and predicts those below it."""
    sub, _, sl_cfg, with_backtest, seed, x_label = job
    backtest = _optional("losslens.analysis.predict", "backtest") if with_backtest else None
    eta = emergence.eta if emergence.verdict == "emergent" else None
    same = analyze_same_loss(sub, sl_cfg, seed=seed) if sl_cfg is not None else None
    return TaskReport(str(sub["task"].iloc[0]), str(sub["metric"].iloc[0]), emergence, same,
                      backtest(sub, eta=eta, seed=seed) if backtest is not None else None, data=sub, x_label=x_label)


def resolve_configs(bootstrap: int | None = None, permutations: int | None = None, *,
                    emergence: EmergenceConfig | None = None, same_loss: SameLossConfig | None = None,
                    scaling: ScalingLawConfig | None = None,
                    ) -> tuple[EmergenceConfig, SameLossConfig, ScalingLawConfig]:
    """The configs `analyze` runs with. A config passed in is used exactly as it is; `bootstrap` and
    `permutations` are shorthands that fill in the same-loss and scaling-law configs not passed. Both
    for the same config, disagreeing, is an error rather than a silent choice. The emergence test's
    null replicates are its own (`EmergenceConfig.bootstrap`, 1000): with fewer than ~150 no task
    could reach alpha = 0.01 after false-discovery-rate control, so a small shorthand meant for the
    intervals must not reach it."""
    def one(cls, given, **short):
        short = {k: v for k, v in short.items() if v is not None}
        if given is None:
            return cls(**short)
        clash = {k: (v, getattr(given, k)) for k, v in short.items() if getattr(given, k) != v}
        if clash:
            k, (v, own) = next(iter(clash.items()))
            raise ValueError(f"{k}={v} disagrees with {cls.__name__}({k}={own}): set it in one place")
        return given
    return (one(EmergenceConfig, emergence),
            one(SameLossConfig, same_loss, bootstrap=bootstrap, permutations=permutations),
            one(ScalingLawConfig, scaling, bootstrap=bootstrap))


def analyze(table, *, seed: int = 0, bootstrap: int | None = None, permutations: int | None = None,
            backtests: bool = True, scaling_law: bool = True, emergence: EmergenceConfig | None = None,
            same_loss: SameLossConfig | None = None, scaling: ScalingLawConfig | None = None,
            same_loss_test: bool = True, workers: int | None = None, progress=None) -> AnalysisReport:
    """Run every analysis on a tidy table: a `TidyTable`, a pandas DataFrame, or a CSV or SQLite store
    path (`as_table`; a bad column is one `InputError` naming it).

    `emergence`, `same_loss` and `scaling` configs are used exactly as passed; `bootstrap` (default
    1000) and `permutations` (default 99) set the same-loss and scaling-law configs not passed
    (`resolve_configs`). `seed` makes all resampling reproducible (task i, in sorted (task, metric)
    order, uses seed + i). The emergent verdicts are controlled for the false-discovery rate across
    all tasks of the analysis (`EmergenceConfig.fdr`) before the backtests use them.
    `same_loss_test=False` skips the same-loss test (each task's `same_loss` is then None), as
    `backtests` and `scaling_law` skip theirs; the calibration suite uses all three, as none of them
    touches the emergence verdict.
    `progress(done, total, what)`, if given, is called as each (task, metric) pair is analysed
    (`losslens.progress.Steps` is one). `workers` processes share the (task, metric) pairs (None:
    `default_workers`, one per core from 8 pairs up; 1: this process only); the numbers do not depend
    on it, as each pair's analysis is a pure function of its data and seed (bench/analysis_speed.py:
    10,000 points)."""
    table = as_table(table)
    em_cfg, sl_cfg, law_cfg = resolve_configs(bootstrap, permutations, emergence=emergence, same_loss=same_loss,
                                              scaling=scaling)
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
                     backtest is not None, seed + i, table.x_label))
    total = 2 * len(jobs) + bool(scaling_law)

    def step(offset, what, sub_of):
        if progress is None:
            return None
        return lambda done, a: progress(offset + done, total,
                                        f"{what}{sub_of(a)['task'].iloc[0]} / {sub_of(a)['metric'].iloc[0]}")

    n_workers = default_workers(len(jobs)) if workers is None else max(1, int(workers))
    # fork (Linux): workers start at once and need no `if __name__ == "__main__"` guard in the caller's
    # script; they run numpy and scipy only, never the parent's torch threads
    start = "fork" if sys.platform.startswith("linux") else "spawn"
    pool = (cf.ProcessPoolExecutor(min(n_workers, len(jobs)), mp_context=multiprocessing.get_context(start))
            if n_workers > 1 and len(jobs) > 1 else None)
    try:
        verdicts = _map(_emergence_job, [(job[0], em_cfg, job[4]) for job in jobs], pool,
                        step(0, "emergence ", lambda a: a[0]))
        fdr_adjust(verdicts, em_cfg)  # Benjamini-Hochberg over every (task, metric) of this analysis
        tasks = _map(analyze_task, [(job, e) for job, e in zip(jobs, verdicts)], pool,
                     step(len(jobs), "", lambda a: a[0][0])) if jobs else []
    finally:
        if pool is not None:
            pool.shutdown()
    if progress is not None:
        progress(2 * len(jobs), 2 * len(jobs) + bool(scaling_law), "scaling law")
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
                                 points["loss"].to_numpy(float), seed=seed, **dataclasses.asdict(law_cfg))
    scale = _optional("losslens.analysis.predict", "emergence_scale") if law is not None else None
    for t in tasks if scale is not None else []:
        if t.verdict == "emergent" and t.emergence.eta is not None:  # where the ability appears (Eq. 5)
            t.onset = scale(law, t.task, t.metric, t.emergence.eta, t.emergence.eta_ci)
    targets = None
    if table.source in TARGETS:
        predict_targets = _optional("losslens.analysis.predict", TARGETS[table.source])
        targets = predict_targets(table) if predict_targets is not None else None
    settings = {"seed": seed, "bootstrap": sl_cfg.bootstrap, "permutations": sl_cfg.permutations,
                "emergence": dataclasses.asdict(em_cfg), "same_loss": dataclasses.asdict(sl_cfg),
                "scaling_law": dataclasses.asdict(law_cfg)}
    return AnalysisReport(table.describe(), tasks, law, targets, settings, notes, table=table)
