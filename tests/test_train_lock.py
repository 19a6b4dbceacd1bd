"""One trainer per run dir: a second process (e.g. a re-run while an orphaned worker still trains)
gets a one-line error instead of racing the first on checkpoints and run.json."""

from __future__ import annotations

import fcntl

from conftest import run_cli, write_run_config


def test_second_trainer_of_a_run_dir_is_refused(tmp_path, text_corpus, shared_data_dir):
    cfg = write_run_config(tmp_path / "run.toml", text_corpus, shared_data_dir)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / ".lock", "w") as held:  # this test process plays the running trainer
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = run_cli("train", cfg, "--out", run_dir, "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "another process is training this run" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (run_dir / "checkpoints").exists()
    assert run_cli("train", cfg, "--out", run_dir, "--quiet").returncode == 0  # released: trains
