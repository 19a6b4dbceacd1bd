"""A tiny ladder end to end: local executor, re-run skips everything, SIGKILL then re-run gives the
same store and summary bit for bit, and the Ray executor gives the same values as the local one."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from losslens.ladder.config import load_ladder_config
from losslens.ladder.run import LadderFailed, run_ladder
from losslens.store import Store

# Two model sizes x two budgets, three checkpoints each: 25 to 50 steps of 8 x 64 tokens.
LADDER = """
name = "tiny"
[data]
{data_dir}
vocab_size = 512
[data.world]
seed = 0
size_mb = 0.3
[train]
batch_size = 8
seq_len = 64
num_checkpoints = 3
eval_tokens = 1024
warmup_fraction = 0.1
[grid]
models = [{models}]
tokens = [12_800, 25_600]
[eval]
tasks = ["world:exam,arithmetic"]
limit = 10
heldout_tokens = 1024
[executor]
workers = 2
[analysis]
bootstrap = 20
permutations = 9
"""
MODELS = ['{ preset = "nano", d_model = 32, name = "pico" }', '"nano"']
RUNS = ["pico-12.8k-s0", "pico-25.6k-s0", "nano-12.8k-s0", "nano-25.6k-s0"]


def write_ladder(path: Path, models: list[str] = MODELS, data_dir: Path | None = None) -> Path:
    path.write_text(LADDER.format(models=", ".join(models),
                                  data_dir="" if data_dir is None else f'dir = "{data_dir}"'))
    return path


def store_contents(db: Path, runs: list[str] = RUNS) -> dict[str, pd.DataFrame]:
    """What the store holds about `runs`, by natural keys (row ids and file paths depend on the order
    jobs finished in and on OUT)."""
    with Store(db, create=False) as st:
        tidy, heldout = st.tidy(), st.heldout()
    con = sqlite3.connect(db)
    meta = pd.read_sql("SELECT name, params, non_embedding_params, family, source FROM runs ORDER BY name", con)
    ckpts = pd.read_sql("SELECT r.name, c.step, c.tokens, c.loss, c.flops FROM checkpoints c "
                        "JOIN runs r ON r.id = c.run_id ORDER BY r.name, c.step", con)
    con.close()
    tables = {"tidy": tidy[tidy["model"].isin(runs)], "heldout": heldout[heldout["model"].isin(runs)],
              "runs": meta[meta["name"].isin(runs)], "checkpoints": ckpts[ckpts["name"].isin(runs)]}
    return {k: v.reset_index(drop=True) for k, v in tables.items()}


def assert_same_store(a: Path, b: Path, runs: list[str] = RUNS) -> None:
    left, right = store_contents(a, runs), store_contents(b, runs)
    assert len(left["tidy"]) and len(left["heldout"])
    for key in left:
        pd.testing.assert_frame_equal(left[key], right[key], check_exact=True, obj=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny ladder run once, uninterrupted, with the local executor."""
    base = tmp_path_factory.mktemp("ladder")
    cfg = load_ladder_config(write_ladder(base / "tiny.toml"))
    result = run_ladder(cfg, base / "out", quiet=True)
    return base, result


def test_ladder_trains_evaluates_and_analyses_every_checkpoint(reference):
    base, result = reference
    out = base / "out"
    assert sorted(result.trained) == sorted(RUNS) and result.evaluated == 12
    with Store(out / "results.db", create=False) as st:
        tidy, heldout = st.tidy(), st.heldout()
    for run in RUNS:
        record = json.loads((out / "runs" / run / "run.json").read_text())
        assert record["status"] == "complete"
        steps = [c["step"] for c in record["checkpoints"]]
        assert len(steps) == 3 and record["checkpoints"][-1]["tokens"] == record["config"]["train"]["tokens"]
        rows = tidy[tidy["model"] == run]
        assert sorted(rows["step"].unique()) == steps  # every checkpoint ...
        for step in steps:                              # ... has every task and every held-out corpus
            assert set(rows[rows["step"] == step]["task"]) == {"exam", "arithmetic"}
            corpora = set(heldout[(heldout["model"] == run) & (heldout["step"] == step)]["corpus"])
            assert "val" in corpora and "val:exam" in corpora and "val:arithmetic" in corpora
    summary = json.loads((out / "summary.json").read_text())
    assert summary == result.study.summary and "all_hold" in summary
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["stages"]) >= {"data", "jobs", "analysis", "report", "total"}
    assert sorted(j["run"] for j in timings["jobs"] if j["job"] == "train") == sorted(RUNS)
    assert "seconds" not in json.dumps(summary)  # wall times stay out of the summary
    assert (out / "data" / "world" / "world.json").is_file()  # the shared data, built once
    assert all(json.loads((out / "progress" / f"{r}.json").read_text())["step"] in (25, 50) for r in RUNS)


def test_rerun_skips_everything_and_changes_nothing(reference, tmp_path):
    base, first = reference
    out = base / "out"
    ckpts = sorted((out / "runs").glob("*/checkpoints/ckpt-*.pt"))
    mtimes = {p: p.stat().st_mtime_ns for p in ckpts}
    before = store_contents(out / "results.db")
    summary = (out / "summary.json").read_bytes()
    again = run_ladder(load_ladder_config(base / "tiny.toml"), out, quiet=True, report=False)
    assert again.trained == [] and again.evaluated == 0
    assert json.loads((out / "timings.json").read_text())["jobs"] == []
    assert {p: p.stat().st_mtime_ns for p in ckpts} == mtimes
    after = store_contents(out / "results.db")
    for key in before:
        pd.testing.assert_frame_equal(before[key], after[key], check_exact=True)
    assert (out / "summary.json").read_bytes() == summary


def test_a_failed_run_does_not_stop_the_others_and_is_reported(reference, tmp_path):
    base, _ = reference
    config = write_ladder(tmp_path / "tiny.toml", models=MODELS[:1], data_dir=base / "out" / "data")
    config.write_text(config.read_text().replace("tokens = [12_800, 25_600]", "tokens = [12_800]") +
                      '[[runs]]\nmodel = "nano"\ntokens = 12_800\ntrain = { lr = 1e30, grad_clip = 0.0 }\n')
    with pytest.raises(LadderFailed) as err:
        run_ladder(load_ladder_config(config), tmp_path / "out", quiet=True, report=False)
    lines = str(err.value).splitlines()
    assert lines[0].startswith("2 job(s) failed") and len(lines) == 3
    assert lines[1].startswith("  train nano-12.8k-s0: non-finite")
    assert lines[2] == "  eval nano-12.8k-s0: 3 checkpoint(s) not evaluated, its training failed"
    failed = json.loads((tmp_path / "out" / "runs" / "nano-12.8k-s0" / "run.json").read_text())
    assert failed["status"] == "failed"
    assert_same_store(base / "out" / "results.db", tmp_path / "out" / "results.db", runs=["pico-12.8k-s0"])
    assert not (tmp_path / "out" / "summary.json").exists()


def _evaluated_steps(db: Path) -> set[tuple[str, int]]:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1)
        rows = con.execute("SELECT DISTINCT r.name, c.step FROM metrics m JOIN checkpoints c ON c.id = "
                           "m.checkpoint_id JOIN runs r ON r.id = c.run_id").fetchall()
        con.close()
        return set(rows)
    except sqlite3.Error:
        return set()


@pytest.mark.slow
def test_sigkill_then_rerun_finishes_without_redoing_work_and_equals_an_uninterrupted_ladder(reference, tmp_path):
    base, _ = reference
    config = write_ladder(tmp_path / "tiny.toml", data_dir=base / "out" / "data")  # prepared data: saves time
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "losslens", "ladder", str(config), "--out", str(out), "--quiet", "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while not _evaluated_steps(out / "results.db") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the ladder ended before it could be killed: {proc.stderr.read().decode()}"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, wherever they are
    proc.wait()
    assert not (out / "summary.json").exists()
    done_evals = _evaluated_steps(out / "results.db")
    done_runs = {r for r in RUNS if json.loads((out / "runs" / r / "run.json").read_text())["status"] == "complete"}
    assert done_evals and len(done_evals) < 12

    rerun = run_ladder(load_ladder_config(config), out, quiet=True, report=False)
    jobs = json.loads((out / "timings.json").read_text())["jobs"]
    assert rerun.evaluated == 12 - len(done_evals)
    redone = {(j["run"], s) for j in jobs if j["job"] == "eval" for s in j["steps"]}
    assert not redone & done_evals, "re-evaluated a checkpoint that was already stored"
    assert not {j["run"] for j in jobs if j["job"] == "train"} & done_runs, "retrained a complete run"
    assert_same_store(base / "out" / "results.db", out / "results.db")
    assert (out / "summary.json").read_bytes() == (base / "out" / "summary.json").read_bytes()


@pytest.mark.slow
def test_ray_executor_on_a_local_cluster_gives_the_local_executors_values(reference, tmp_path):
    import ray  # in the test extra: a missing Ray fails this test rather than skipping it

    base, _ = reference
    # Half the ladder (runs are independent), on the reference's prepared data, to save time.
    config = write_ladder(tmp_path / "tiny.toml", models=MODELS[:1], data_dir=base / "out" / "data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        result = run_ladder(load_ladder_config(config), tmp_path / "out", executor="ray", quiet=True, report=False)
    finally:
        ray.shutdown()
    assert sorted(result.trained) == RUNS[:2] and result.evaluated == 6
    assert_same_store(base / "out" / "results.db", tmp_path / "out" / "results.db", runs=RUNS[:2])
