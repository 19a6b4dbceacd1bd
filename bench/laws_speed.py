"""How long the scaling-law fits and predictions take (issue 4: each fit <= 5 s on 2 cores).

    python bench/laws_speed.py [--repeat 3]

Times, on ../shared/data: the Chinchilla grid fit of Epoch's 240 points (4,500 starts) without and
with 1,000 bootstrap resamples, the Gadre et al. reproduction, the OLMo ladder two-step prediction of
the 7B and 13B targets (8 tasks), and one backtest of a 10,000-point planted task. Reports the best
wall time of `--repeat` runs and the CPU time of that run, and checks the answers (speed bought with
wrong numbers does not count).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from losslens.analysis.predict import backtest, gadre_predictions, olmo_target_errors
from losslens.analysis.scaling import fit_chinchilla
from losslens.analysis.sources import load_source
from losslens.analysis.synthetic import ladder_points, planted_table

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def timed(fn, repeat: int):
    best = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        if best is None or wall < best[0]:
            best = (wall, cpu, out)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M')}")
    pts = load_source("chinchilla", DATA / "epoch_chinchilla").extras["scaling_points"]
    args_ = (pts["params"], pts["tokens"], pts["loss"])
    for b in (0, 1000):
        wall, cpu, fit = timed(lambda b=b: fit_chinchilla(*args_, bootstrap=b, seed=0), args.repeat)
        assert abs(fit.A / 477.84 - 1) < 0.005 and abs(fit.beta / 0.3672 - 1) < 0.005
        print(f"chinchilla grid fit, 240 points, bootstrap {b:4d}: {wall:6.2f} s wall, {cpu:6.2f} s CPU")
    gadre = load_source("gadre", DATA / "gadre_overtraining")
    wall, cpu, res = timed(lambda: gadre_predictions(gadre), args.repeat)
    assert f"{100 * res.rows[0]['loss_rel_error']:.4f}" == "0.7103"
    print(f"gadre reproduction (two laws, two targets):     {wall:6.2f} s wall, {cpu:6.2f} s CPU")
    olmo = load_source("olmo", DATA / "olmo_ladder")
    wall, cpu, res = timed(lambda: olmo_target_errors(olmo), args.repeat)
    assert res.error("mmlu", "7B-4T") < 2
    print(f"olmo two-step prediction, 8 tasks x 2 targets:  {wall:6.2f} s wall, {cpu:6.2f} s CPU")
    points = ladder_points(sizes=np.geomspace(2e7, 8e8, 25), checkpoints=50,
                           tokens_per_param=(5, 20, 80, 160, 320, 640, 1280, 2560))
    table = planted_table({"t": "sigmoid"}, points=points, seed=0)
    wall, cpu, res = timed(lambda: backtest(table), args.repeat)
    assert res.verdict == "predictable"
    print(f"backtest, {len(table)} points:                    {wall:6.2f} s wall, {cpu:6.2f} s CPU")


if __name__ == "__main__":
    main()
