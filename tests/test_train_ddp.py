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
