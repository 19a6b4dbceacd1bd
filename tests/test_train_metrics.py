"""The training log (metrics.jsonl): one line per step, no duplicates after a resume, torn lines
skipped, optional TensorBoard / W&B mirrors only where installed."""

from __future__ import annotations

import json
import sys
import types

from conftest import write_run_config

from losslens.train import checkpoint as ckpt
from losslens.train.config import load_run_config
from losslens.train.loop import train
from losslens.train.metrics import MetricsLog, read_metrics


def test_every_step_is_logged_once_and_a_resume_continues_without_duplicates(tmp_path, text_corpus,
                                                                             shared_data_dir):
    cfg_path = write_run_config(tmp_path / "run.toml", text_corpus, shared_data_dir, tokens=12 * 8 * 32,
                                checkpoints=[4 * 8 * 32, 8 * 8 * 32], keep_states=3, log_every=3)
    cfg, source = load_run_config(str(cfg_path))
    run = tmp_path / "run"
    train(cfg, run, config_source=str(source), quiet=True)
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert set(rows[0]) == {"step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "time"}
    assert rows[-1]["tokens"] == 12 * 8 * 32 and rows[-1]["loss"] < rows[0]["loss"]

    # A crash after step 8's checkpoint while steps 9-12 were logged (and the last line torn): the
    # resume from step 8 drops 9-12 and the torn line, keeps 1-8 as written, and logs 9-12 once.
    rec = json.loads((run / "run.json").read_text())
    for tokens, path in ckpt.list_checkpoints(run) + ckpt.list_checkpoints(run, "state"):
        if tokens > 8 * 8 * 32:
            path.unlink()
    rec["checkpoints"] = [c for c in rec["checkpoints"] if c["tokens"] <= 8 * 8 * 32]
    rec["status"] = "running"
    (run / "run.json").write_text(json.dumps(rec))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 13, "loss"')
    train(cfg, run, config_source=str(source), quiet=True)
    again = read_metrics(run)
    assert [r["step"] for r in again] == list(range(1, 13))
    assert again[:8] == rows[:8]
    assert [r["loss"] for r in again[8:]] == [r["loss"] for r in rows[8:]]  # exact resume, same losses
    assert (run / "metrics.jsonl").read_text().count("\n") == 12

    # A fresh start in a dir whose run was reset (no checkpoints kept) starts the log afresh too.
    log = MetricsLog(run, start_step=0)
    log.close()
    assert read_metrics(run) == []


def _row(step):
    return {"step": step, "tokens": step * 10, "loss": 1.0 / step, "lr": 1e-3, "grad_norm": 0.5,
            "tokens_per_s": 100.0, "mfu": None, "time": 0.0}


def test_mirrors_are_used_where_installed_and_skipped_with_a_warning_where_not(tmp_path, monkeypatch, capsys):
    logged = {"tb": [], "wandb": []}

    class Writer:
        def __init__(self, log_dir):
            logged["tb_dir"] = log_dir

        def add_scalar(self, tag, value, step):
            logged["tb"].append((tag, value, step))

        def close(self):
            logged["tb_closed"] = True

    class Run:
        def log(self, values, step):
            logged["wandb"].append((step, values))

        def finish(self):
            logged["wandb_finished"] = True

    # Neither package is installed here: both are skipped, the JSONL file is still written.
    log = MetricsLog(tmp_path, start_step=0, tensorboard=True, wandb=True)
    log.write([_row(1)])
    log.close()
    err = capsys.readouterr().err
    assert "tensorboard is not installed" in err and "wandb is not installed" in err
    assert [r["step"] for r in read_metrics(tmp_path)] == [1]

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kw: Run()))
    log = MetricsLog(tmp_path, start_step=1, tensorboard=True, wandb=True, run_name="r")
    log.write([_row(2), _row(3)])
    log.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    assert ("train/loss", 0.5, 2) in logged["tb"] and not any(t == "train/mfu" for t, _, _ in logged["tb"])
    assert logged["tb_dir"].endswith("tensorboard") and logged["tb_closed"] and logged["wandb_finished"]
    assert [s for s, _ in logged["wandb"]] == [2, 3] and logged["wandb"][0][1]["train/grad_norm"] == 0.5
    # Off by default.
    log = MetricsLog(tmp_path, start_step=3)
    assert log.mirrors == []
    log.close()
