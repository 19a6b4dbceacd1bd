"""The calibration suite: how often is each emergence verdict, and each eta interval, wrong?

Planted ladders with a known answer go through `losslens.analysis.analyze`, the code path users get
(emergence exactly as users get it; the same-loss test, backtests and scaling law are skipped, as
they do not touch the verdict), and the verdicts are scored against the truth:

    truth      shapes (normalised performance y: chance 0, perfect 1; u = (eta - L) / (eta - L_min))
    threshold  exactly 0 for L >= eta, below it rise * g(u):  linear g = u;  power g = u^p, p in
               0.5-3;  saturating g = (1 - exp(-4u)) / (1 - exp(-4));  s_shaped g = 3u^2 - 2u^3 (a
               smoothstep: its foot sits on chance at eta)
    smooth     above chance everywhere, by `offset` (0.02-0.1; 0-0.1 for the logistic) at the highest
               loss, then offset + rise * g(t), t = (L_max - L) / range: linear g = t; logistic (no
               threshold) g = sigmoid(8 (t - 0.5)); exponential (convex) g = (e^(kt) - 1) / (e^k - 1)
    flat       0 everywhere; `dip`: a plateau slightly *below* chance (0.02-0.1; for a Brier score
               up to 0.4, e.g. 1.05 against the uniform guess's 0.75)

A condition (`Condition`) fixes the ladder (sizes 3-6, token budgets 1-2, checkpoints 5-15; the
losses follow synthetic.py's Chinchilla law), items per point, chance, the metric (counts: acc /
exact_match, binomial; continuous: correct_choice_prob, f1 or brier_sum with a stderr), the shape,
between-checkpoint noise (sd up to 0.02) and a small size offset at equal loss. Every random draw
comes from the condition's own seed, so the same grid gives the same table on any number of workers.

Grids (`grid(name, reps)`): "full", a stratified factorial over (truth/shape, items, chance) with the
other factors cycled through balanced draws; "independent", random conditions drawn like issue 13's
audit (720 thresholds, 720 smooth or flat) from a separate seed stream; "fast", a small subset for
the tests. `run(conditions)` returns one row per task; `summarize(rows)` the per-cell rates, power,
false-emergent rate, coverage with binomial 95% intervals, interval width and bias; `rate_table(rows)`
the error-rate lookup shipped as calibration_rates.json and read by `error_rates(verdict, ...)`.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from losslens.analysis.synthetic import ladder_points

TRUTHS = ("threshold", "smooth", "flat")
SHAPES = {"threshold": ("linear", "power", "saturating", "s_shaped"),
          "smooth": ("linear", "logistic", "exponential", "late_logistic"),
          "flat": ("flat", "dip", "majority")}
ITEMS = (100, 200, 500, 1000)
CHANCES = (0.0, 0.25, 0.5)
RATES_PATH = Path(__file__).with_name("calibration_rates.json")


@dataclasses.dataclass(frozen=True)
class Condition:
    """One planted task: a ladder, a metric and a shape. `index` and `stream` make its seed."""

    index: int
    stream: int
    truth: str                  # threshold | smooth | flat
    shape: str                  # see SHAPES
    items: int                  # items per point (n for counts; sets the stderr of continuous metrics)
    chance: float               # guessing level as a share of perfect (1 / options); 0 for generation
    continuous: bool = False    # a continuous metric with a stderr instead of a count
    sizes: int = 5
    budgets: int = 1            # token budgets per size (runs per size)
    checkpoints: int = 10
    rise: float = 0.6           # normalised gain from eta (or the highest loss) to the lowest loss
    power: float = 1.0          # threshold "power" shape's p; the exponential's curvature
    eta_frac: float = 0.45      # true eta as a share of the loss range above the lowest loss
    offset: float = 0.0         # smooth: above chance at the highest loss; flat "dip": below it
    noise: float = 0.0          # sd of extra between-checkpoint noise (normalised units)
    size_offset: float = 0.0    # performance gap between the largest and smallest model at equal loss

    @property
    def seed(self) -> np.random.SeedSequence:
        return np.random.SeedSequence([self.stream, self.index])

    @property
    def metric(self) -> str:
        if not self.continuous:
            return "exact_match" if self.chance == 0 else "acc"
        if self.chance == 0:
            return "f1"
        return "brier_sum" if self.seed.generate_state(1)[0] % 2 else "correct_choice_prob"


# ---------------------------------------------------------------- planting


def ladder(c: Condition, rng: np.random.Generator) -> pd.DataFrame:
    """synthetic.py's Chinchilla-law ladder: `sizes` sizes from 20M to 1B, `budgets` budgets each."""
    sizes = tuple(np.geomspace(2e7, 1e9, c.sizes))
    tpp = (20,) if c.budgets == 1 else (8, 40)
    return ladder_points(sizes, c.checkpoints, tpp, seed=int(rng.integers(2**31)))


def planted_curve(c: Condition, loss: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, float | None]:
    """Normalised performance at each loss (z: standardised log size, for the size offset) and the true
    eta (None unless a threshold)."""
    lo, hi = float(loss.min()), float(loss.max())
    eta = lo + c.eta_frac * (hi - lo)
    u = np.clip((eta - loss) / (eta - lo), 0.0, 1.0)   # 0 above eta, 1 at the lowest loss
    if c.truth == "threshold":
        g = {"linear": lambda: u, "power": lambda: u ** c.power,
             "saturating": lambda: (1 - np.exp(-4 * u)) / (1 - math.exp(-4)),
             "s_shaped": lambda: u * u * (3 - 2 * u)}[c.shape]()
        # the size offset scales the rise only, so every model sits exactly at chance above eta
        return g * (c.rise + c.size_offset * z), eta
    if c.truth == "smooth":
        t = (hi - loss) / (hi - lo)           # 0 at the highest loss, 1 at the lowest
        if c.shape == "linear":
            g = t
        elif c.shape == "logistic":            # midpoint mid-range, width 1/8 of the range: no threshold,
            g = 1 / (1 + np.exp(-(t - 0.5) * 8))   # its own tail ~0.02 * rise above chance at the top
        elif c.shape == "late_logistic":       # the hard negative: a logistic (steepness `power` x range,
            # 6-8) centred 0.2-0.45 of the range above the lowest loss, offset 0, so its tail at the top is
            # 0.3-3.6% of its rise: within delta of chance over the high losses, yet no threshold anywhere
            g = 1 / (1 + np.exp(-(t - (1 - c.eta_frac)) * c.power))
        else:                                  # exponential, convex
            k = 1 + 2 * c.power
            g = np.expm1(k * t) / math.expm1(k)
        return c.offset + c.rise * g + c.size_offset * z, None
    if c.shape == "majority":                  # rises as a threshold would, but only from declared chance to
        return c.offset * u, None               # the constant answer's level (`offset`: its share of perfect)
    return np.full_like(loss, -c.offset if c.shape == "dip" else 0.0), None


def planted_table(c: Condition) -> tuple[pd.DataFrame, float | None]:
    """The tidy table of one condition and its true eta."""
    rng = np.random.default_rng(c.seed)
    pts = ladder(c, rng)
    loss = pts["loss"].to_numpy()
    logn = np.log(pts["params"].to_numpy())
    z = (logn - logn.mean()) / max(np.ptp(logn), 1e-12)
    y, eta = planted_curve(c, loss, z)
    y = y + c.noise * rng.standard_normal(len(y))
    df = pts.assign(task=f"{c.truth}-{c.shape}-{c.index}", metric=c.metric)
    if not c.continuous:
        p = np.clip(c.chance + (1 - c.chance) * y, 0.0, 1.0)
        df = df.assign(value=rng.binomial(c.items, p) / c.items, n=c.items, chance=c.chance)
        if c.shape == "majority":
            df = df.assign(majority=c.chance + (1 - c.chance) * c.offset)
    elif c.metric == "brier_sum":              # lower is better: perfect 0, uniform guess (k-1)/k
        k = round(1 / c.chance)
        guess = (k - 1) / k
        se = np.full(len(y), 0.45 / math.sqrt(c.items))
        value = np.clip(guess - guess * y + se * rng.standard_normal(len(y)), 0.0, 2.0)
        df = df.assign(value=value, stderr=se, chance=guess)
    else:                                      # correct_choice_prob or f1: higher is better, in [0, 1]
        se = np.full(len(y), 0.3 / math.sqrt(c.items))
        value = np.clip(c.chance + (1 - c.chance) * y + se * rng.standard_normal(len(y)), 0.0, 1.0)
        df = df.assign(value=value, stderr=se, chance=c.chance)
    return df, eta


# ---------------------------------------------------------------- grids


def _condition(stream: int, index: int, c: dict, j: int) -> Condition:
    """A task of a cell: `c` fixes the cell's factors; the rest come from the task's own generator
    (seeded by stream and index), so a grid with fewer reps is a subset of one with more. `j` (the
    task's rank in its cell) cycles sizes, budgets and checkpoints evenly."""
    rng = np.random.default_rng([stream, index, 1])
    c = dict(c)
    c.setdefault("sizes", 3 + j % 4)
    c.setdefault("budgets", 1 + (j // 4) % 2)
    c.setdefault("checkpoints", (5, 10, 15)[j % 3])
    c.setdefault("continuous", bool(rng.random() < 0.25))
    c["rise"] = float(rng.uniform(0.25, 0.8))
    c["power"] = float(rng.uniform(0.5, 3.0)) if c["shape"] in ("power", "exponential") else 1.0
    c["eta_frac"] = float(rng.uniform(0.3, 0.6))
    c["noise"] = float(rng.uniform(0.0, 0.02))
    c["size_offset"] = float(rng.uniform(0.0, 0.03)) if c["truth"] != "flat" else 0.0
    if c["truth"] == "smooth":  # a line or convex curve from chance at L_max would be a threshold at L_max
        c["offset"] = 0.0 if c["shape"] == "late_logistic" else float(
            rng.uniform(0.0 if c["shape"] == "logistic" else 0.02, 0.1))
    if c["shape"] == "late_logistic":       # steepness x range and midpoint (share of the range above L_min)
        c["power"], c["eta_frac"] = float(rng.uniform(6.0, 8.0)), float(rng.uniform(0.2, 0.45))
    if c["shape"] == "majority":            # a count metric: the table's `majority` column is what is tested
        c["continuous"], c["offset"] = False, float(rng.uniform(0.1, 0.3))
    cond = Condition(index=index, stream=stream, **c)
    if cond.shape == "dip":     # a Brier plateau may sit far below the uniform guess (1.05 vs 0.75)
        cond = dataclasses.replace(cond, offset=float(rng.uniform(0.02, 0.4 if cond.metric == "brier_sum" else 0.1)))
    return cond


def _cells():
    """(truth, shape, items, chance) of every cell of the full grid, in a fixed order."""
    return [(t, s, i, ch) for t, shapes in SHAPES.items() for s in shapes for i in ITEMS for ch in CHANCES]


def full_grid(reps: int = 60, stream: int = 1) -> list[Condition]:
    """Every (truth, shape) x items x chance cell: `reps` tasks per threshold cell and 2/3 as many per
    smooth or flat cell (there are 5 such shapes to 4 onsets); task j of cell k has index 1000 k + j."""
    out = []
    for k, (truth, shape, items, chance) in enumerate(_cells()):
        n = reps if truth == "threshold" else max(1, math.ceil(reps * 2 / 3))
        for j in range(n):
            out.append(_condition(stream, 1000 * k + j, dict(truth=truth, shape=shape, items=items,
                                                             chance=chance), j))
    return out


def independent_grid(n: int = 720, stream: int = 2) -> list[Condition]:
    """Random conditions drawn like issue 13's audit: n planted thresholds and n smooth or flat tasks
    (even indices thresholds, odd ones smooth or flat), every factor drawn independently per task."""
    out = []
    for k in range(2 * n):
        rng = np.random.default_rng([stream, k, 0])
        truth = "threshold" if k % 2 == 0 else ("smooth" if k % 4 == 1 else "flat")
        c = dict(truth=truth, shape=str(rng.choice(SHAPES[truth])), items=int(rng.choice(ITEMS)),
                 chance=float(rng.choice(CHANCES)), sizes=int(rng.integers(3, 7)),
                 budgets=int(rng.integers(1, 3)), checkpoints=int(rng.integers(5, 16)),
                 continuous=bool(rng.random() < 0.25))
        out.append(_condition(stream, k, c, k))
    return out


def fast_grid(reps: int = 2, stream: int = 3) -> list[Condition]:
    """The tests' subset: items >= 200, sizes >= 4, rise >= 0.4 for the thresholds (the power target's
    region), every shape, about a quarter of them continuous metrics; 90 tasks a rep."""
    out = []
    for j in range(reps * 12):
        for truth, shapes in SHAPES.items():
            for shape in shapes:
                if truth == "threshold" or j % 2 == 0:
                    c = dict(truth=truth, shape=shape, items=(200, 500, 1000)[j % 3],
                             chance=CHANCES[(j // 3) % 3], sizes=4 + (j + j // 3) % 3)
                    cond = _condition(stream, len(out), c, j)
                    if truth == "threshold":
                        rise = np.random.default_rng([stream, cond.index, 2]).uniform(0.4, 0.8)
                        cond = dataclasses.replace(cond, rise=float(rise))
                    out.append(cond)
    return out


GRIDS = {"fast": fast_grid, "full": full_grid, "independent": independent_grid}
DEFAULT_REPS = {"fast": 2, "full": 60, "independent": 720}


def grid(name: str, reps: int | None = None) -> list[Condition]:
    return GRIDS[name](DEFAULT_REPS[name] if reps is None else reps)


# ---------------------------------------------------------------- running


def run_one(c: Condition, bootstrap: int = 1000) -> dict:
    """Plant one task, analyse it as a user's table, score the verdict."""
    from losslens.analysis.pipeline import analyze
    from losslens.analysis.table import TidyTable, validate

    df, eta_true = planted_table(c)
    table = TidyTable(validate(df), source="calibration")
    seed = int(c.seed.generate_state(1)[0])
    report = analyze(table, seed=seed, bootstrap=bootstrap, backtests=False, scaling_law=False,
                     same_loss_test=False)
    e = report.tasks[0].emergence
    lo, hi = e.loss_range
    row = dataclasses.asdict(c) | {"metric": c.metric, "verdict": e.verdict, "eta_true": eta_true,
                                   "eta": e.eta, "ci_lo": None, "ci_hi": None, "n_losses": e.n_losses,
                                   "n_runs": e.n_runs, "loss_lo": lo, "loss_hi": hi,
                                   "reason_code": e.reason_code, "lrt_p": e.lrt_p,
                                   "reason": e.reasons[0] if e.reasons else ""}
    if e.eta_ci is not None:
        row["ci_lo"], row["ci_hi"] = map(float, e.eta_ci)
    return row


def _run_chunk(args) -> list[dict]:
    from threadpoolctl import threadpool_limits

    chunk, bootstrap = args
    with threadpool_limits(1):
        return [run_one(c, bootstrap) for c in chunk]


def run(conditions: list[Condition], *, workers: int = 2, bootstrap: int = 1000, progress=None) -> pd.DataFrame:
    """Analyse every condition (in `workers` processes); one row per task, in condition order."""
    chunks = [conditions[i:i + 8] for i in range(0, len(conditions), 8)]
    rows: list[list[dict]] = [None] * len(chunks)
    if workers <= 1:
        for i, ch in enumerate(chunks):
            rows[i] = _run_chunk((ch, bootstrap))
            if progress:
                progress(sum(len(r) for r in rows if r), len(conditions))
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with cf.ProcessPoolExecutor(workers) as pool:
            futures = {pool.submit(_run_chunk, (ch, bootstrap)): i for i, ch in enumerate(chunks)}
            for fut in cf.as_completed(futures):
                rows[futures[fut]] = fut.result()
                if progress:
                    progress(sum(len(r) for r in rows if r), len(conditions))
    return pd.DataFrame([r for ch in rows for r in ch])


# ---------------------------------------------------------------- scoring


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """The Wilson score interval of a binomial proportion (scipy)."""
    from scipy import stats

    if n == 0:
        return None, None
    ci = stats.binomtest(int(k), int(n)).proportion_ci(level, method="wilson")
    return float(ci.low), float(ci.high)


def score(rows: pd.DataFrame) -> pd.DataFrame:
    """Per-task scores: covered (given emergent with an interval), width and bias as shares of the range."""
    r = rows.copy()
    span = (r["loss_hi"] - r["loss_lo"]).where(lambda s: s > 0)
    has_ci = r["ci_lo"].notna() & r["eta_true"].notna() & (r["verdict"] == "emergent")
    r["covered"] = np.where(has_ci, (r["ci_lo"] <= r["eta_true"]) & (r["eta_true"] <= r["ci_hi"]), np.nan)
    r["width"] = np.where(has_ci, (r["ci_hi"] - r["ci_lo"]) / span, np.nan)
    r["bias"] = np.where((r["verdict"] == "emergent") & r["eta_true"].notna() & r["eta"].notna(),
                         (r["eta"] - r["eta_true"]) / span, np.nan)
    r["items_b"] = r["items"].map(items_bucket)
    r["rise_b"] = pd.cut(r["rise"], [0, 0.4, 0.6, 1.0], labels=["0.25-0.4", "0.4-0.6", "0.6-0.8"]).astype(str)
    return r


def cell_stats(g: pd.DataFrame) -> dict:
    """Rates of one group of tasks (one truth or several), with Wilson 95% intervals."""
    n = len(g)
    counts = g["verdict"].value_counts()
    out = {"n": n} | {f"rate_{v}": counts.get(v, 0) / n for v in
                      ("emergent", "smooth", "not_emerged", "inconclusive")}
    thr = g[g["truth"] == "threshold"]
    neg = g[g["truth"] != "threshold"]
    flat = g[g["truth"] == "flat"]
    def prop(name, sub, verdict):
        k = int((sub["verdict"] == verdict).sum())
        lo, hi = wilson(k, len(sub))
        out.update({name: k / len(sub) if len(sub) else None, f"{name}_k": k, f"{name}_n": len(sub),
                    f"{name}_lo": lo, f"{name}_hi": hi})
    prop("power", thr, "emergent")
    prop("false_emergent", neg, "emergent")
    prop("false_smooth", thr, "smooth")
    prop("not_emerged", flat, "not_emerged")
    cov = thr["covered"].dropna()
    lo, hi = wilson(int(cov.sum()), len(cov))
    out.update({"coverage": float(cov.mean()) if len(cov) else None, "coverage_k": int(cov.sum()),
                "coverage_n": len(cov),
                "coverage_lo": lo, "coverage_hi": hi,
                "width": float(thr["width"].median()) if thr["width"].notna().any() else None,
                "bias": float(thr["bias"].median()) if thr["bias"].notna().any() else None})
    return out


VIEWS = {
    "cells": ["truth", "shape", "items", "chance"],          # the main cells
    "coverage": ["items", "shape", "chance"],               # thresholds only: the coverage target's cells
    "power_curve": ["rise_b", "items", "sizes"],            # thresholds only
    "by_truth": ["truth"],
    "by_items": ["truth", "items"],
}


def summarize(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every view of `VIEWS` as a DataFrame of `cell_stats`."""
    r = score(rows)
    out = {}
    for name, keys in VIEWS.items():
        sub = r[r["truth"] == "threshold"] if name in ("coverage", "power_curve") else r
        recs = [dict(zip(keys, k if isinstance(k, tuple) else (k,))) | cell_stats(g)
                for k, g in sub.groupby(keys, sort=True)]
        out[name] = pd.DataFrame(recs)
    out["overall"] = pd.DataFrame([{"all": "all"} | cell_stats(r)])
    out["tradeoff"] = tradeoff(rows)
    return out


CELL = ("truth", "shape", "items", "chance")   # a condition cell of the per-cell targets


def in_power_region(r: pd.DataFrame) -> pd.Series:
    """The tasks issue 13's power target is about: planted thresholds, rise >= 0.4, items >= 200, sizes >= 4."""
    return (r["truth"] == "threshold") & (r["rise"] >= 0.4) & (r["items"] >= 200) & (r["sizes"] >= 4)


def significantly_above_1pct(called: pd.Series) -> bool:
    """A cell's false-emergent count significantly above 1% (one-sided binomial test at 5%)."""
    from scipy import stats

    return stats.binomtest(int(called.sum()), len(called), 0.01, alternative="greater").pvalue < 0.05


def targets(rows: pd.DataFrame, min_coverage_n: int = 50) -> list[dict]:
    """Issue 13's targets, each with its measured value and whether it holds."""
    r = score(rows)
    thr, neg, flat = r[r["truth"] == "threshold"], r[r["truth"] != "threshold"], r[r["truth"] == "flat"]
    out = []

    def add(name, value, n, holds, where=""):
        holds = None if holds is None else bool(holds)     # None: not testable here, or information only
        out.append({"target": name, "where": where, "value": value, "n": int(n), "holds": holds})

    cells = (neg["verdict"] == "emergent").groupby([neg[k] for k in CELL])
    worst = cells.mean()
    add("false emergent on smooth/flat <= 1% (overall)", float((neg["verdict"] == "emergent").mean()), len(neg),
        (neg["verdict"] == "emergent").mean() <= 0.01)
    # With 40 tasks a cell one false call is 2.5%: a cell fails when its count is significantly above 1%
    # (one-sided binomial test at 5%), not when its point estimate is.
    above = cells.apply(significantly_above_1pct)
    add("false emergent <= 1% in every cell (max over cells; holds unless a cell is significantly above 1%)",
        float(worst.max()), len(neg), not above.any(),
        f"worst: {' / '.join(str(x.item() if hasattr(x, 'item') else x) for x in worst.idxmax())}; "
        f"{int(above.sum())} of {len(above)} cells significantly above 1%")
    big = thr[in_power_region(thr)]
    p = float((big["verdict"] == "emergent").mean()) if len(big) else float("nan")
    add("power >= 80% (rise >= 0.4, items >= 200, sizes >= 4)", p, len(big), p >= 0.8)
    f = flat[flat["items"] >= 200]
    v = float((f["verdict"] == "not_emerged").mean()) if len(f) else float("nan")
    add("flat not_emerged >= 80% (items >= 200)", v, len(f), v >= 0.8)
    v = float((thr["verdict"] == "smooth").mean())
    add("thresholds smooth <= 1%", v, len(thr), v <= 0.01)
    cov = thr.dropna(subset=["covered"]).groupby(["items", "shape", "chance"])["covered"]
    big_cells = cov.agg(["mean", "sum", "size"]).query("size >= @min_coverage_n")
    if len(big_cells):
        # At ~50 calls a cell, an exactly 95% interval lands outside 93-98% about half the time: a cell
        # fails when its coverage's Wilson 95% interval misses 93-98% entirely, not when its point does.
        ci = [wilson(int(k), n) for k, n in zip(big_cells["sum"], big_cells["size"])]
        bad = [(lo > 0.98 or hi < 0.93) for lo, hi in ci]
        points = int(((big_cells["mean"] < 0.93) | (big_cells["mean"] > 0.98)).sum())
        names = [" / ".join(map(str, k)) for k, b in zip(big_cells.index, bad) if b]
        listed = f" ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})" if names else ""
        add(f"coverage 93-98% in every (items, shape, chance) cell with >= {min_coverage_n} emergent "
            "(holds unless a cell's Wilson interval misses 93-98%)",
            float(big_cells["mean"].min()), int(big_cells["size"].sum()), not any(bad),
            f"{sum(bad)} of {len(big_cells)} cells inconsistent with 93-98%{listed}; {points} outside by "
            "point estimate; range "
            f"{big_cells['mean'].min():.3f}-{big_cells['mean'].max():.3f}")
    else:
        add(f"coverage 93-98% in every (items, shape, chance) cell with >= {min_coverage_n} emergent", None, 0,
            None, "not testable: no such cell")
    pooled = thr["covered"].dropna()
    add("coverage pooled over all thresholds called emergent (information)",
        float(pooled.mean()) if len(pooled) else None, len(pooled), None)
    w = thr[thr["items"] >= 500]["width"].dropna()
    v = float(w.median()) if len(w) else float("nan")
    add("median interval width <= 15% of the loss range (items >= 500)", v, len(w), v <= 0.15)
    return out


ALPHAS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
REACHED_TEST = ("emergent", "smooth_alternative_fits", "not_significant_after_fdr")


def tradeoff(rows: pd.DataFrame, alphas=ALPHAS) -> pd.DataFrame:
    """Power against false emergent as the emergence test's level moves, every other rule unchanged:
    a task would be called emergent at level a when it passed every earlier test (`REACHED_TEST`) and
    its bootstrap p < a (the FDR step, which on a one-task analysis only binds above its level, is left
    out). Rows from before the p-value column (no `lrt_p`) give an empty table."""
    if "lrt_p" not in rows or "reason_code" not in rows:
        return pd.DataFrame()
    r = score(rows)
    reached = r["reason_code"].isin(REACHED_TEST) & r["lrt_p"].notna()
    big = in_power_region(r)
    neg = r["truth"] != "threshold"
    out = []
    for a in alphas:
        called = reached & (r["lrt_p"] < a)
        cells = called[neg].groupby([r.loc[neg, k] for k in CELL])
        above = cells.apply(significantly_above_1pct)
        out.append({"alpha": a, "power": float(called[big].mean()) if big.any() else None,
                    "power_all": float(called[r["truth"] == "threshold"].mean()),
                    "false_k": int(called[neg].sum()), "false_n": int(neg.sum()),
                    "worst_cell": float(cells.mean().max()) if neg.any() else None,
                    "cells_above": int(above.sum())})
    return pd.DataFrame(out)


# ---------------------------------------------------------------- the error-rate lookup


def items_bucket(n) -> int:
    return min(ITEMS, key=lambda b: abs(math.log(max(float(n), 1.0) / b)))


CHANCE_BUCKETS = (0.0, 0.25, 0.5, 0.75)   # of the chance column as the analysis sees it (Brier k=4: 0.75)


def chance_bucket(chance: float | None) -> float:
    return min(CHANCE_BUCKETS, key=lambda b: abs((chance or 0.0) - b))


def losses_bucket(n_losses: int) -> str:
    return "<30" if n_losses < 30 else ("30-59" if n_losses < 60 else ">=60")


def runs_bucket(n_runs: int) -> str:
    return "<=4" if n_runs <= 4 else ("5-8" if n_runs <= 8 else ">=9")


RATE_KEYS = ("binomial", "items", "chance", "losses", "runs")   # dropped from the right when a cell is thin


def rate_table(rows: pd.DataFrame, grids: str = "") -> dict:
    """Verdict counts by truth in every cell of RATE_KEYS, plus interval coverage: the shipped lookup."""
    r = score(rows)
    brier = r["metric"] == "brier_sum"        # its chance column is the uniform guess's (k-1)/k
    table_chance = r["chance"].where(~brier, 1 - r["chance"])
    r = r.assign(binomial=~r["continuous"].astype(bool), items=r["items"].map(items_bucket),
                 chance=table_chance.map(chance_bucket), losses=r["n_losses"].map(losses_bucket),
                 runs=r["n_runs"].map(runs_bucket))
    counts = []
    for key, g in r.groupby(list(RATE_KEYS) + ["truth", "verdict"], sort=True):
        counts.append([*key, len(g)])
    cov = []
    for key, g in r.dropna(subset=["covered"]).groupby(list(RATE_KEYS), sort=True):
        cov.append([*key, int(g["covered"].sum()), len(g)])
    return {"keys": list(RATE_KEYS), "counts": [_plain(c) for c in counts], "coverage": [_plain(c) for c in cov],
            "tasks": int(len(r)), "grids": grids, "note": "counts of verdicts by truth from `losslens calibrate`; "
            "see docs/analysis.md, 'Calibration'"}


def _plain(row):
    return [x.item() if hasattr(x, "item") else x for x in row]


def rates_json(table: dict) -> str:
    """The lookup as JSON text with one cell per line (small, and a diff shows which cells moved)."""
    head = {k: v for k, v in table.items() if k not in ("counts", "coverage")}
    parts = [json.dumps(head)[:-1]]
    for key in ("counts", "coverage"):
        rows = ",\n  ".join(json.dumps(r) for r in table[key])
        parts.append(f', "{key}": [\n  {rows}\n]')
    return "".join(parts) + "}\n"


@lru_cache(maxsize=4)
def _load_rates(path: str) -> dict:
    return json.loads(Path(path).read_text())


def error_rates(verdict: str, *, items, chance, n_losses: int, n_runs: int, binomial: bool,
                min_n: int = 30, rates: dict | None = None) -> dict:
    """How often planted tasks like this one got `verdict` when it was wrong, from the shipped lookup.

    The cell is the finest of (binomial, items, chance, losses, runs) buckets that holds at least
    `min_n` tasks of the truth the rate is about; coarser cells drop features from the right. `items`
    None (a continuous metric: no item count) matches any; `chance` is the table's chance column.

        emergent     false_rate = P(emergent | smooth or flat), and the eta interval's coverage
        smooth       false_rate = P(smooth | threshold)
        not_emerged  false_rate = P(not_emerged | threshold)
        inconclusive false_rate = P(inconclusive | threshold); also P(inconclusive | flat)
    """
    table = rates if rates is not None else _load_rates(str(RATES_PATH))
    want = dict(binomial=bool(binomial), items=items_bucket(items) if items else None,  # None: any
                chance=chance_bucket(chance), losses=losses_bucket(int(n_losses)), runs=runs_bucket(int(n_runs)))
    keys = table["keys"]
    negatives = {"emergent": ("smooth", "flat"), "smooth": ("threshold",), "not_emerged": ("threshold",),
                 "inconclusive": ("threshold",)}
    if verdict not in negatives:
        raise ValueError(f"unknown verdict {verdict!r}")
    about = negatives[verdict]

    def tally(depth, truths, verdict_=None):
        k = n = 0
        for row in table["counts"]:
            cell, truth, v, c = row[:len(keys)], row[len(keys)], row[len(keys) + 1], row[-1]
            if truth in truths and matches(cell, depth):
                n += c
                k += c if v == (verdict_ or verdict) else 0
        return k, n

    def matches(cell, depth):
        return all(want[keys[i]] is None or cell[i] == want[keys[i]] for i in range(depth))

    depth = len(keys)
    while depth > 0 and tally(depth, about)[1] < min_n:
        depth -= 1
    k, n = tally(depth, about)
    cell = ", ".join(f"{keys[i]} {want[keys[i]]}" for i in range(depth) if want[keys[i]] is not None)
    cell = cell or "all tasks"
    rate = k / n if n else None
    lo, hi = wilson(k, n) if n else (None, None)
    truth_words = {"emergent": "smooth or flat tasks", "smooth": "planted thresholds",
                   "not_emerged": "planted thresholds", "inconclusive": "planted thresholds"}[verdict]
    ci = "" if rate is None else f"{100 * rate:.1f}%, 95% CI {100 * lo:.1f}-{100 * hi:.1f}%"
    out = {"verdict": verdict, "false_rate": rate, "false_rate_ci": [lo, hi], "k": k, "n": n, "cell": cell,
           "text": f"in calibration, {k} of {n} {truth_words} like this one ({cell}) were called {verdict} ({ci})"}
    if verdict == "emergent":
        ck = cn = 0
        for row in table["coverage"]:
            if matches(row, depth):
                ck, cn = ck + row[-2], cn + row[-1]
        out.update(coverage=ck / cn if cn else None, coverage_n=cn)
        if cn:
            out["text"] += f"; the 95% eta interval held the true eta in {100 * ck / cn:.0f}% of {cn} emergent calls"
    if verdict == "inconclusive":
        fk, fn = tally(depth, ("flat",))
        out.update(flat_rate=fk / fn if fn else None, flat_n=fn)
        if fn:
            out["text"] += f", and {100 * fk / fn:.0f}% of flat tasks"
    return out


# ---------------------------------------------------------------- output


def _fmt(x, spec=".3f"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _pct_ci(d, name):
    if not d.get(f"{name}_n") or _fmt(d.get(name)) == "-":
        return "-"
    lo, hi, k, n = (d[f"{name}_{x}"] for x in ("lo", "hi", "k", "n"))
    return f"{100 * d[name]:.1f} [{100 * lo:.0f}, {100 * hi:.0f}] ({k}/{n})"


def markdown(summary: dict[str, pd.DataFrame], target_rows: list[dict], title: str) -> str:
    """The summary tables as markdown: targets, per truth, the coverage cells and the power curve."""
    lines = [f"**{title}**", "", "| target | value | n | holds | where |", "|---|---|---|---|---|"]
    for t in target_rows:
        holds = "n/a" if t["holds"] is None else ("yes" if t["holds"] else "NO")
        lines.append(f"| {t['target']} | {_fmt(t['value'])} | {t['n']} | {holds} | {t['where']} |")
    lines += ["", "Verdicts by truth and items (rates in %; coverage: [Wilson 95%] (k/n)):", "",
              "| truth | tasks | emergent | smooth | not_emerged | inconclusive | coverage | median width "
              "| median bias |",
              "|---|---|---|---|---|---|---|---|---|"]
    for _, d in summary["by_items"].iterrows():
        d = d.to_dict()
        lines.append(f"| {d['truth']} items {d['items']} | {d['n']} | {100 * d['rate_emergent']:.1f} | "
                     f"{100 * d['rate_smooth']:.1f} | {100 * d['rate_not_emerged']:.1f} | "
                     f"{100 * d['rate_inconclusive']:.1f} | {_pct_ci(d, 'coverage')} | {_fmt(d['width'], '.3f')} | "
                     f"{_fmt(d['bias'], '+.3f')} |")
    lines += ["", "Thresholds by (items, onset shape, chance): power, coverage of the 95% eta interval, "
              "median width and bias (shares of the loss range):", "",
              "| items | shape | chance | n | power % | false smooth % | coverage % | width | bias |",
              "|---|---|---|---|---|---|---|---|---|"]
    for _, d in summary["coverage"].iterrows():
        d = d.to_dict()
        lines.append(f"| {d['items']} | {d['shape']} | {d['chance']:g} | {d['n']} | {_pct_ci(d, 'power')} | "
                     f"{100 * d['false_smooth']:.1f} | {_pct_ci(d, 'coverage')} | {_fmt(d['width'])} "
                     f"| {_fmt(d['bias'], '+.3f')} |")
    lines += ["", "Smooth and flat by (shape, items): false emergent and not_emerged:", "",
              "| truth | shape | items | n | false emergent % | not_emerged % | inconclusive % |",
              "|---|---|---|---|---|---|---|"]
    neg = summary["cells"][summary["cells"]["truth"] != "threshold"]
    for (truth, shape, items), g in neg.groupby(["truth", "shape", "items"], sort=True):
        k, n = int(g["false_emergent_k"].sum()), int(g["n"].sum())
        ne = int((g["rate_not_emerged"] * g["n"]).round().sum())
        inc = int((g["rate_inconclusive"] * g["n"]).round().sum())
        lo, hi = wilson(k, n)
        lines.append(f"| {truth} | {shape} | {items} | {n} | {100 * k / n:.1f} [{100 * lo:.0f}, {100 * hi:.0f}] | "
                     f"{100 * ne / n:.1f} | {100 * inc / n:.1f} |")
    lines += ["", "Power curve (thresholds; % emergent by rise, items and sizes):", ""]
    pc = summary["power_curve"]
    if len(pc):
        piv = pc.pivot_table(index=["rise_b", "items"], columns="sizes", values="power")
        lines.append("| rise | items | " + " | ".join(f"{s} sizes" for s in piv.columns) + " |")
        lines.append("|---|---|" + "---|" * len(piv.columns))
        for (rise, items), vals in piv.iterrows():
            lines.append(f"| {rise} | {items} | " + " | ".join(_fmt(100 * v, ".0f") for v in vals) + " |")
    to = summary.get("tradeoff")
    if to is not None and len(to):
        from losslens.analysis.emergence import EmergenceConfig

        lines += ["", "Trade-off: power against false emergent as the emergence test's level alpha moves (every "
                  "other rule unchanged; a task counts at level a when it passed every earlier test and its "
                  f"bootstrap p < a; the procedure's alpha is {EmergenceConfig().alpha:g}):", "",
                  "| alpha | power (rise >= 0.4, items >= 200, sizes >= 4) | power, all thresholds | false emergent "
                  "| worst cell | cells significantly above 1% |", "|---|---|---|---|---|---|"]
        for _, d in to.iterrows():
            lines.append(f"| {d['alpha']:g} | {_fmt(100 * d['power'], '.1f')} | {100 * d['power_all']:.1f} | "
                         f"{int(d['false_k'])}/{int(d['false_n'])} | {100 * d['worst_cell']:.1f}% | "
                         f"{int(d['cells_above'])} |")
    return "\n".join(lines) + "\n"


def write_results(rows: pd.DataFrame, out: str | Path, name: str) -> dict:
    """tasks.csv, cells.csv, summary.json and summary.md under `out`/`name`; returns the summary."""
    from losslens.io import atomic_open, write_json, write_text
    from losslens.io import jsonable as _jsonable

    out = Path(out) / name
    summary = summarize(rows)
    tgt = targets(rows)
    with atomic_open(out / "tasks.csv") as f:
        rows.to_csv(f, index=False)
    with atomic_open(out / "cells.csv") as f:
        summary["cells"].to_csv(f, index=False)
    write_json(out / "summary.json", _jsonable({"grid": name, "tasks": len(rows), "targets": tgt,
                                                **{k: v.to_dict("records") for k, v in summary.items()}}))
    md = markdown(summary, tgt, f"grid {name}: {len(rows)} planted tasks")
    write_text(out / "summary.md", md)
    return {"summary": summary, "targets": tgt, "markdown": md}


def replace_between_markers(text: str, marker: str, body: str) -> str:
    """Replace what lies between `<!-- marker:begin -->` and `<!-- marker:end -->` (added at the end
    if the markers are missing)."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + begin + "\n" + body.rstrip("\n") + "\n" + end + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + begin + "\n" + body.rstrip("\n") + "\n" + end + "\n"
