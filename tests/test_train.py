"""The trainer: schedule, checkpoints, records, exact resume after SIGKILL, corruption, divergence."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli, write_run_config

from losslens.train import checkpoint as ckpt
from losslens.train.config import TrainConfig, load_run_config
from losslens.train.loop import train
from losslens.train.schedule import lr_at


def test_cosine_reaches_its_minimum_exactly_at_the_budget():
    lrs = [lr_at(s, total_steps=100, max_lr=1.0, min_lr=0.1, warmup_steps=10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1, abs=1e-12) and min(lrs[10:]) == lrs[-1]
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay after warmup


def test_geometric_milestones_end_at_the_budget():
    cfg = TrainConfig(tokens=1_000_000, batch_size=10, seq_len=100, num_checkpoints=5)
    steps = cfg.milestone_steps()
    assert steps[-1] == cfg.total_steps == 1000 and len(steps) == 5
    ratios = [b / a for a, b in zip(steps, steps[1:])]
    assert max(ratios) / min(ratios) < 1.05  # evenly spaced in log tokens
    cfg = TrainConfig(tokens=10_000, batch_size=10, seq_len=100, checkpoints=[2500, 5000])
    assert cfg.milestone_steps() == [3, 5, 10]


def test_train_records_falling_loss_and_verified_checkpoints(tmp_path, text_corpus, shared_data_dir):
    cfg_path = write_run_config(tmp_path / "run.toml", text_corpus, shared_data_dir, tokens=60 * 8 * 32)
    cfg, source = load_run_config(str(cfg_path))
    result = train(cfg, tmp_path / "run", config_source=str(source), quiet=True)
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["status"] == "complete" and len(rec["checkpoints"]) == 4
    losses = [c["val_loss"] for c in rec["checkpoints"]]
    assert losses[-1] < losses[0] - 0.5
    assert rec["params"] > rec["non_embedding_params"] > 0 and rec["flops_per_token"] > 0
    assert [c["tokens"] for c in rec["checkpoints"]][-1] == 60 * 8 * 32
    for c in rec["checkpoints"]:
        path = tmp_path / "run" / c["path"]
        assert ckpt.sha256_of(path) == c["sha256"]
        assert ckpt.load(path)["val_loss"] == c["val_loss"]
        assert c["val_bpb"] > 0 and c["flops"] == 6 * rec["non_embedding_params"] * c["tokens"]
    assert result.record.status == "complete"
    again = train(cfg, tmp_path / "run", config_source=str(source), quiet=True)
    assert again.already_complete
    # A different config in the same run dir is refused rather than silently mixed.
    cfg.train.lr = 1e-3
    with pytest.raises(Exception, match="different config"):
        train(cfg, tmp_path / "run", config_source=str(source), quiet=True)


def _final_weights(run_dir: Path) -> dict:
    return ckpt.load(ckpt.list_checkpoints(run_dir)[-1][1])["model"]


def _assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path, text_corpus, shared_data_dir):
    steps = 60
    cfg_path = write_run_config(tmp_path / "run.toml", text_corpus, shared_data_dir, model='preset = "micro"',
                                tokens=steps * 8 * 32, checkpoints=[k * 8 * 32 for k in range(3, steps, 3)])
    run_cli("train", cfg_path, "--out", tmp_path / "ref", "--quiet", check=True)

    rng = random.Random(int(time.time()))
    kill_after = rng.randint(2, 15)  # checkpoints seen before the kill, then a random delay inside a step
    proc = subprocess.Popen([sys.executable, "-m", "losslens", "train", str(cfg_path), "--out",
                             str(tmp_path / "b"), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    record = tmp_path / "b" / "run.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if record.is_file():
            try:
                n = len(json.loads(record.read_text())["checkpoints"])
            except (json.JSONDecodeError, KeyError):
                n = 0
            if n >= kill_after:
                time.sleep(rng.uniform(0, 0.05))
                break
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill: nothing was resumed"

    resumed = run_cli("train", cfg_path, "--out", tmp_path / "b", check=True)
    assert "resuming" in resumed.stdout
    _assert_identical(_final_weights(tmp_path / "ref"), _final_weights(tmp_path / "b"))
    assert "already complete" in run_cli("train", cfg_path, "--out", tmp_path / "b", check=True).stdout


def test_corrupt_checkpoint_is_detected_and_resume_falls_back(tmp_path, text_corpus, shared_data_dir):
    cfg_path = write_run_config(tmp_path / "run.toml", text_corpus, shared_data_dir,
                                tokens=40 * 8 * 32, checkpoints=[10 * 8 * 32, 20 * 8 * 32, 30 * 8 * 32],
                                keep_states=3)
    cfg, source = load_run_config(str(cfg_path))
    train(cfg, tmp_path / "ref", config_source=str(source), quiet=True)

    # Simulate a crash after the 3rd checkpoint: keep files up to it, mark the record unfinished.
    run = tmp_path / "crashed"
    train(cfg, run, config_source=str(source), quiet=True)
    rec = json.loads((run / "run.json").read_text())
    for tokens, path in ckpt.list_checkpoints(run) + ckpt.list_checkpoints(run, "state"):
        if tokens > 30 * 8 * 32:
            path.unlink()
    rec["checkpoints"] = [c for c in rec["checkpoints"] if c["tokens"] <= 30 * 8 * 32]
    rec["status"] = "running"
    (run / "run.json").write_text(json.dumps(rec))
    newest = ckpt.ckpt_path(run, 30 * 8 * 32)
    newest.write_bytes(newest.read_bytes()[:-100])  # truncated: the hash no longer matches
    with pytest.raises(ckpt.CorruptCheckpoint, match="sha256 mismatch"):
        ckpt.load(newest)

    proc = run_cli("train", cfg_path, "--out", run, check=True)
    assert "truncated or corrupted" in proc.stderr and "resuming" in proc.stdout and "step 20" in proc.stdout
    _assert_identical(_final_weights(tmp_path / "ref"), _final_weights(run))


def test_non_finite_loss_stops_the_run_naming_the_step(tmp_path, text_corpus, shared_data_dir):
    cfg_path = write_run_config(tmp_path / "run.toml", text_corpus, shared_data_dir, lr=1e30, grad_clip=0.0,
                                warmup_fraction=0.0, tokens=20 * 8 * 32,
                                checkpoints=[k * 8 * 32 for k in range(1, 20)])
    proc = run_cli("train", cfg_path, "--out", tmp_path / "run")
    assert proc.returncode == 3
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "non-finite" in err[0] and "at step" in err[0] and "Traceback" not in proc.stderr
    bad_step = int(err[0].split("at step ")[1].split(";")[0])
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["status"] == "failed" and f"step {bad_step}" in rec["error"]
    assert all(c["step"] < bad_step for c in rec["checkpoints"])
    assert all(t < bad_step * 8 * 32 for t, _ in ckpt.list_checkpoints(tmp_path / "run"))


def test_gradient_accumulation_matches_the_full_batch(tmp_path, text_corpus, shared_data_dir):
    weights = []
    for micro in (None, 2):
        extra = {} if micro is None else {"micro_batch_size": micro}
        cfg_path = write_run_config(tmp_path / f"run{micro}.toml", text_corpus, shared_data_dir,
                                    tokens=6 * 8 * 32, num_checkpoints=1, **extra)
        cfg, source = load_run_config(str(cfg_path))
        train(cfg, tmp_path / f"run{micro}", config_source=str(source), quiet=True)
        weights.append(_final_weights(tmp_path / f"run{micro}"))
    for name, w in weights[0].items():
        torch.testing.assert_close(weights[1][name], w, atol=2e-5, rtol=1e-4, msg=name)
