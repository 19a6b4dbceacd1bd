"""A small but realistic results store for the report tests: a planted ladder written through
`losslens.store.Store` with per-genre held-out losses, and the world manifest the study reads.

3 model sizes x 2 token budgets, 6 checkpoints each. Tasks (each taught by its own genre):
`exam` (multiple choice, emergent: acc, correct_choice_prob, brier_sum), `cloze` (multiple choice,
smooth: acc, correct_choice_prob) and `arith` (generation, emergent exact match, smooth edit distance).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from losslens.analysis.synthetic import ladder_points, shape_curve
from losslens.store import MetricRow, Store

GENRES = {"exam": ("exam", 1.10, 30_000, 0.30), "stories": ("cloze", 0.95, 60_000, 0.28),
          "arith": ("arith", 1.05, 20_000, 0.40)}   # genre: (task, loss factor, val bytes, tokens per byte)
TASK_TYPES = {"exam": "multiple_choice", "cloze": "multiple_choice", "arith": "generation"}
SIZES = (3e6, 1e7, 3e7)


def write_world(world_dir: Path) -> Path:
    """world.json (the task -> genre map) and val/<genre>.txt files of the sizes the weights use."""
    (world_dir / "val").mkdir(parents=True, exist_ok=True)
    for genre, (_, _, n_bytes, _) in GENRES.items():
        (world_dir / "val" / f"{genre}.txt").write_bytes(b"x" * n_bytes)
    tasks = [{"name": task, "genre": genre, "type": TASK_TYPES[task], "chance": 0.25 if task != "arith" else 0.0}
             for genre, (task, *_) in GENRES.items()]
    (world_dir / "world.json").write_text(json.dumps({"format": 1, "tasks": tasks}, indent=2))
    return world_dir


def _metrics(task: str, loss: float, lo: float, hi: float, rng) -> list[MetricRow]:
    arr = np.array([loss, lo, hi])
    if task == "cloze":
        y = float(shape_curve("linear", arr)[0])
    else:
        y = float(shape_curve("emergent", arr, eta=lo + 0.55 * (hi - lo), amplitude=0.8)[0])
    if task == "arith":
        n = 300
        em = rng.binomial(n, y) / n
        smooth = float(shape_curve("linear", arr)[0])
        dist = 6.0 * (1 - 0.8 * smooth) + 0.05 * rng.standard_normal()
        return [MetricRow(task, "exact_match", em, n=n, chance=0.0),
                MetricRow(task, "token_edit_distance", max(dist, 0.0), stderr=0.05, higher_is_better=False,
                          perfect=0.0)]
    n = 400
    p = 0.25 + 0.75 * y
    acc = rng.binomial(n, p) / n
    ccp = float(np.clip(0.25 + 0.7 * y + 0.004 * rng.standard_normal(), 0, 1))
    rows = [MetricRow(task, "acc", acc, n=n, chance=0.25),
            MetricRow(task, "correct_choice_prob", ccp, stderr=0.004, chance=0.25)]
    if task == "exam":
        brier = float(np.clip(0.75 * (1 - y) ** 1.2 + 0.004 * rng.standard_normal(), 0, 2))
        rows.append(MetricRow(task, "brier_sum", brier, stderr=0.004, chance=0.75, higher_is_better=False,
                              perfect=0.0))
    return rows


def write_store(db: Path, *, seed: int = 0) -> Path:
    """The ladder's results: runs, checkpoints (loss = validation loss), held-out `val` and `val:<genre>`
    losses and the task metrics, all through Store upserts."""
    rng = np.random.default_rng(seed)
    pts = ladder_points(sizes=SIZES, checkpoints=6, tokens_per_param=(10, 40), loss_noise=0.003, seed=seed)
    lo, hi = float(pts["loss"].min()), float(pts["loss"].max())
    weights = {g: n_bytes * tpb for g, (_, _, n_bytes, tpb) in GENRES.items()}
    with Store(db) as st:
        for model, run in pts.groupby("model", sort=True):
            params = int(run["params"].iloc[0])
            run_id = st.upsert_run(model, params=params + params // 4, non_embedding_params=params)
            for r in run.itertuples():
                genre_loss = {g: r.loss * f * (1 + 0.002 * rng.standard_normal())
                              for g, (_, f, _, _) in GENRES.items()}
                val = sum(weights[g] * genre_loss[g] for g in GENRES) / sum(weights.values())
                with st.transaction():
                    ckpt = st.upsert_checkpoint(run_id, step=int(r.step), tokens=int(r.tokens), loss=val)
                    st.upsert_heldout(ckpt, corpus="val", nats_per_token=val, bits_per_byte=None,
                                      n_tokens=30_000, n_bytes=95_000)
                    for g, (_, _, _, tpb) in GENRES.items():
                        st.upsert_heldout(ckpt, corpus=f"val:{g}", nats_per_token=genre_loss[g], bits_per_byte=None,
                                          n_tokens=int(10_000 * tpb), n_bytes=10_000)
                    for task in TASK_TYPES:
                        st.upsert_metrics(ckpt, _metrics(task, val, lo, hi, rng))
    return db


_CACHE: dict = {}


def planted_report(tmp_path_factory):
    """(study, index.html) of the planted store, built once per test session (both report test files
    use it)."""
    if "report" not in _CACHE:
        from losslens.analysis.study import run_study
        from losslens.report import write_report

        root = tmp_path_factory.mktemp("report")
        world = write_world(root / "world")
        db = write_store(root / "results.db")
        study = run_study(db, world_dir=world, seed=0, bootstrap=50, permutations=9)
        _CACHE["report"] = (study, write_report(root / "out", study))
    return _CACHE["report"]
