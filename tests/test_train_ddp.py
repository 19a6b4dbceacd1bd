"""torchrun data parallelism (gloo on CPU) matches one process with the same global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import run_cli, write_run_config

from losslens.train import checkpoint as ckpt


@pytest.mark.slow
def test_torchrun_two_processes_match_a_single_process(tmp_path, text_corpus, shared_data_dir):
    cfg = write_run_config(tmp_path / "run.toml", text_corpus, shared_data_dir, model='preset = "micro"',
                           tokens=20 * 8 * 32, num_checkpoints=2)
    run_cli("train", cfg, "--out", tmp_path / "single", "--quiet", check=True)
    torchrun = shutil.which("torchrun") or sys.executable
    prefix = [torchrun] if torchrun.endswith("torchrun") else [sys.executable, "-m", "torch.distributed.run"]
    proc = subprocess.run([*prefix, "--standalone", "--nproc_per_node=2", "-m", "losslens", "train", str(cfg),
                           "--out", str(tmp_path / "ddp"), "--quiet"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]

    single = ckpt.load(ckpt.list_checkpoints(tmp_path / "single")[-1][1])
    ddp = ckpt.load(ckpt.list_checkpoints(tmp_path / "ddp")[-1][1])
    assert ddp["tokens"] == single["tokens"] == 20 * 8 * 32
    for name, w in single["model"].items():
        torch.testing.assert_close(ddp["model"][name], w, atol=2e-5, rtol=1e-4, msg=name)
    assert abs(ddp["val_loss"] - single["val_loss"]) < 1e-4


@pytest.mark.slow
def test_fsdp2_two_processes_match_a_single_process_and_resume(tmp_path, text_corpus, shared_data_dir):
    """FSDP2 (`train.fsdp`): weights and AdamW state sharded over 2 gloo ranks; the checkpoints are
    full (unsharded) state dicts, equal to one process's; a run resumed from its first checkpoint ends
    where the uninterrupted one does."""
    common = dict(model='preset = "micro"', tokens=12 * 8 * 32, checkpoints=[6 * 8 * 32], keep_states=2)
    single = write_run_config(tmp_path / "single.toml", text_corpus, shared_data_dir, **common)
    run_cli("train", single, "--out", tmp_path / "single", "--quiet", check=True)
    cfg = write_run_config(tmp_path / "fsdp.toml", text_corpus, shared_data_dir, fsdp=True, **common)
    torchrun = shutil.which("torchrun") or sys.executable
    prefix = [torchrun] if torchrun.endswith("torchrun") else [sys.executable, "-m", "torch.distributed.run"]

    def fsdp_train(out):
        proc = subprocess.run([*prefix, "--standalone", "--nproc_per_node=2", "-m", "losslens", "train", str(cfg),
                               "--out", str(out)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    fsdp_train(tmp_path / "fsdp")
    ref = ckpt.load(ckpt.list_checkpoints(tmp_path / "single")[-1][1])
    sharded = ckpt.load(ckpt.list_checkpoints(tmp_path / "fsdp")[-1][1])
    assert sharded["model"].keys() == ref["model"].keys()
    for name, w in ref["model"].items():
        torch.testing.assert_close(sharded["model"][name], w, atol=2e-5, rtol=1e-4, msg=name)
    assert abs(sharded["val_loss"] - ref["val_loss"]) < 1e-4

    # Resume: drop the final checkpoint, mark the run unfinished, train again under FSDP.
    import json
    run = tmp_path / "fsdp"
    final = sharded
    for tokens, path in ckpt.list_checkpoints(run) + ckpt.list_checkpoints(run, "state"):
        if tokens > 6 * 8 * 32:
            path.unlink()
    rec = json.loads((run / "run.json").read_text())
    rec["checkpoints"], rec["status"] = rec["checkpoints"][:1], "running"
    (run / "run.json").write_text(json.dumps(rec))
    assert "resuming" in fsdp_train(run).stdout
    resumed = ckpt.load(ckpt.list_checkpoints(run)[-1][1])
    for name, w in final["model"].items():
        torch.testing.assert_close(resumed["model"][name], w, atol=1e-6, rtol=1e-6, msg=name)
