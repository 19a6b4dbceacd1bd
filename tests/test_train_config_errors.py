"""Bad configs fail before any work: one line naming the file and the field, exit 2, nothing written."""

from __future__ import annotations

import pytest
from conftest import run_cli, write_run_config


def _check(tmp_path, cfg, field: str, words: str):
    out = tmp_path / "run"
    proc = run_cli("train", cfg, "--out", out)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(cfg) in lines[0] and field in lines[0] and words in lines[0], lines[0]
    assert not out.exists()


@pytest.mark.parametrize("edit, field, words", [
    (lambda s: s.replace("[train]", "[train]\nlearning_rate = 0.1"), "train.learning_rate", "unknown key"),
    (lambda s: s.replace("batch_size = 8", 'batch_size = "eight"'), "train.batch_size", "expected an integer"),
    (lambda s: s.replace("tokens = 6144", "tokens = 100"), "train.tokens", "smaller than one batch"),
    (lambda s: s.replace('preset = "nano"', "d_model = 50\nn_heads = 3"), "model.n_heads", "do not divide"),
    (lambda s: s.replace("corpus.txt", "missing.txt"), "data.text[0]", "no such file"),
    (lambda s: s.replace('precision = "fp32"', 'precision = "fp8"'), "train.precision", "must be one of"),
    (lambda s: s + "[extra]\nx = 1\n", "extra", "unknown key"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, text_corpus, edit, field, words):
    cfg = write_run_config(tmp_path / "run.toml", text_corpus, precision="fp32")
    cfg.write_text(edit(cfg.read_text()))
    _check(tmp_path, cfg, field, words)


def test_missing_and_malformed_files(tmp_path):
    proc = run_cli("train", tmp_path / "nope.toml")
    assert proc.returncode == 2 and "nope.toml" in proc.stderr and "not found" in proc.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\ntokens = 1")
    proc = run_cli("train", bad, "--out", tmp_path / "run")
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_unusable_corpora_fail_with_one_line(tmp_path):
    from conftest import write_run_config

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait\n\nd\xe9j\xe0 vu".encode("latin-1"))
    proc = run_cli("train", write_run_config(tmp_path / "a.toml", latin1), "--out", tmp_path / "a")
    assert proc.returncode == 2 and "not UTF-8" in proc.stderr and "Traceback" not in proc.stderr
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("\n\n".join(["a b c"] * 150))
    proc = run_cli("train", write_run_config(tmp_path / "b.toml", tiny), "--out", tmp_path / "b")
    assert proc.returncode == 2 and "fewer than one window" in proc.stderr and "Traceback" not in proc.stderr


def test_a_run_dir_of_an_earlier_version_still_matches_its_config():
    """run.json of a version before the CUDA defaults (no tf32/fsdp/... keys, precision fp32, compile
    false) is the same run as today's default config on CPU; a real change is still refused."""
    from losslens.config import to_dict
    from losslens.train.config import ADDED_TRAIN_KEYS, RunConfig, TrainConfig, matches_record, resumed_as_recorded

    cfg = RunConfig(name="r", model={"d_model": 16}, train=TrainConfig(tokens=100_000))
    now = to_dict(cfg)
    old = {**now, "train": {k: v for k, v in now["train"].items() if k not in ADDED_TRAIN_KEYS}}
    old["train"].update(precision="fp32", compile=False)
    assert matches_record(old, now) and matches_record(now, now)
    assert resumed_as_recorded(cfg.train, old).precision == "fp32"
    assert resumed_as_recorded(cfg.train, old).compile is False
    assert resumed_as_recorded(cfg.train, now) == cfg.train
    changed = {**old, "train": {**old["train"], "lr": 1e-3}}
    assert not matches_record(changed, now)
    assert not matches_record(old, {**now, "train": {**now["train"], "fsdp": True}})
