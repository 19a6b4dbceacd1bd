"""How long the full analysis takes on 10,000 (checkpoint, task) points with 1,000 bootstrap resamples.

    python bench/analysis_speed.py [--tasks 25] [--runs 20] [--checkpoints 20] [--bootstrap 1000]

A planted ladder (runs x checkpoints, one row per checkpoint and task; the shapes cycle through
emergent, linear, sigmoid, flat) is analysed by `losslens.analysis.analyze` (emergence with the eta
bootstrap, the same-loss test with its bootstrap and permutations); then, if ../shared/data is there,
the real Pythia table (about 9,200 points). Target (issue 4): <= 20 s on 2 cores. Prints one line per
measurement and checks that every planted verdict came out as planted (speed bought with wrong answers
does not count).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from losslens.analysis.emergence import (
    EmergenceConfig,
    Explained,
    _lin2,
    analyze_emergence,
    elbow_design,
    extra_variance,
    prepare,
)
from losslens.analysis.pipeline import analyze
from losslens.analysis.same_loss import SameLossConfig, analyze_same_loss
from losslens.analysis.sources import load_source
from losslens.analysis.synthetic import SHAPES, ladder_points, planted_table
from losslens.analysis.table import TidyTable, validate

PYTHIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pythia_evals"
EXPECTED = {"emergent": "emergent", "linear": "smooth", "sigmoid": "smooth", "flat": "not_emerged"}


def build(tasks: int, runs: int, checkpoints: int, seed: int = 0) -> TidyTable:
    sizes = np.geomspace(2e7, 8e8, runs // 2)
    pts = ladder_points(sizes=sizes, checkpoints=checkpoints, tokens_per_param=(10, 40), seed=seed)
    shapes = {f"task{i:02d}-{SHAPES[i % 4]}": SHAPES[i % 4] for i in range(tasks)}
    return TidyTable(validate(planted_table(shapes, points=pts, seed=seed)), source="bench")


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def baseline_ratio(sub, n_boot: int) -> None:
    """The emergence test's null replicates of one task scored on Eq. 3's grids (both forms), batched
    (`Explained`: one matrix product per grid for all replicates) versus the same weighted fits done one
    replicate at a time (`_lin2` over the grid): same replicates, same statistics, different speed."""
    cfg = EmergenceConfig(bootstrap=n_boot)
    prep = prepare(sub)
    w = 1.0 / (prep.var + extra_variance(prep.loss, prep.y, prep.var))
    H = np.vstack([elbow_design(prep.loss, cfg, s)[3] for s in (False, True)])  # built once for both
    Y = prep.y[None, :] + np.random.default_rng(0).standard_normal((n_boot, len(prep.y))) / np.sqrt(w)
    t = time.perf_counter()
    batched = Explained(H, w, nonneg=True)(Y).max(1)
    t_batch = time.perf_counter() - t
    k = min(n_boot, 50)  # the loop is timed on the first k replicates and scaled to all of them
    t = time.perf_counter()
    looped = []
    for b in range(k):
        syy = (w * (Y[b] - (w * Y[b]).sum() / w.sum()) ** 2).sum()
        looped.append(syy - _lin2(H, Y[b], w, nonneg=True)[2].min())
    t_loop = (time.perf_counter() - t) * n_boot / k
    same = np.allclose(batched[:k], looped, rtol=1e-6)
    print(f"emergence-test null of one task ({len(sub)} points, {n_boot} replicates, {len(H)} grid points): "
          f"batched {t_batch:.3f} s, one at a time {t_loop:.2f} s (timed on {k}) -> {t_loop / t_batch:.0f}x "
          f"faster (same statistics: {same})")


def timed(fn):
    """(fn(), wall seconds, CPU seconds of this process and of the worker processes it waited for)."""
    def cpu():
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    t, c = time.perf_counter(), cpu()
    out = fn()
    return out, time.perf_counter() - t, cpu() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=25)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--checkpoints", type=int, default=20)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--permutations", type=int, default=99)
    args = ap.parse_args()
    table = build(args.tasks, args.runs, args.checkpoints)
    n = len(table.df)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"table: {n} (checkpoint, task) points = {args.tasks} tasks x {n // args.tasks} checkpoints "
          f"({args.runs} runs); bootstrap {args.bootstrap}, permutations <= {args.permutations}")

    groups = [sub.reset_index(drop=True) for _, sub in table.groups()]
    t = time.perf_counter()
    for i, sub in enumerate(groups):
        analyze_emergence(sub, EmergenceConfig(bootstrap=args.bootstrap), seed=i)
    t_em = time.perf_counter() - t
    t = time.perf_counter()
    for i, sub in enumerate(groups):
        analyze_same_loss(sub, SameLossConfig(bootstrap=args.bootstrap, permutations=args.permutations), seed=i)
    t_sl = time.perf_counter() - t
    print(f"emergence only:              {t_em:6.2f} s wall")
    print(f"same-loss only:              {t_sl:6.2f} s wall")
    baseline_ratio(groups[0], args.bootstrap)

    for workers in (1, None):  # one process, then the default (one worker process per core)
        report, dt, cpu = timed(lambda w=workers: analyze(table, bootstrap=args.bootstrap, backtests=False,
                                                          permutations=args.permutations, scaling_law=False,
                                                          workers=w))
        wrong = [x.task for x in report.tasks if x.verdict != EXPECTED[x.task.split("-")[1]]]
        print(f"full analyze, workers={workers!s:4}: {dt:6.2f} s wall, {cpu:6.2f} s CPU   (target <= 20 s wall: "
              f"{'PASS' if dt <= 20 else 'FAIL'}); verdicts as planted: "
              f"{len(report.tasks) - len(wrong)}/{len(report.tasks)}" + (f" (wrong: {wrong})" if wrong else ""))
    if PYTHIA.is_dir():  # a real table of similar size, where many same-loss effects are not null
        real = load_source("pythia", PYTHIA)
        _, dt, cpu = timed(lambda: analyze(real, bootstrap=args.bootstrap, permutations=args.permutations,
                                           backtests=False, scaling_law=False))
        print(f"full analyze, Pythia evals:  {dt:6.2f} s wall, {cpu:6.2f} s CPU   ({len(real.df)} points, "
              f"{len(list(real.groups()))} (task, metric) pairs; target <= 20 s wall: "
              f"{'PASS' if dt <= 20 else 'FAIL'})")
    print(f"load average after: {os.getloadavg()[0]:.1f} (other processes on the machine inflate wall times)")

if __name__ == "__main__":
    main()
