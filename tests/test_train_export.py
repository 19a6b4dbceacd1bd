"""`losslens export` turns a training checkpoint into a Hugging Face model with the same logits."""

from __future__ import annotations

import torch
from conftest import run_cli, write_run_config

from losslens.train import checkpoint as ckpt


def test_export_trained_checkpoint_loads_in_transformers(tmp_path, text_corpus, shared_data_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = write_run_config(tmp_path / "run.toml", text_corpus, shared_data_dir, tokens=10 * 8 * 32,
                           num_checkpoints=2)
    run_cli("train", cfg, "--out", tmp_path / "run", "--quiet", check=True)
    proc = run_cli("export", tmp_path / "run", tmp_path / "hf", check=True)
    assert "LlamaForCausalLM" in proc.stdout

    ours, meta = ckpt.load_model(ckpt.list_checkpoints(tmp_path / "run")[-1][1])
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    ids = torch.tensor([tok("Ada lives in Rome. Ada has 3 apples")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), atol=1e-5, rtol=0)
    assert meta["tokens"] == 10 * 8 * 32


def test_export_rejects_a_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "ckpt-000000000001.pt"
    bad.write_bytes(b"LLCKPT01" + b"\0" * 32 + b"garbage")
    proc = run_cli("export", bad, tmp_path / "hf")
    assert proc.returncode == 2 and "sha256 mismatch" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "hf").exists()


def test_runs_work_from_another_directory(tmp_path, text_corpus):
    """Records hold absolute paths: a run trained with a relative --out exports from anywhere."""
    write_run_config(tmp_path / "run.toml", text_corpus, tokens=4 * 8 * 32, num_checkpoints=1)
    run_cli("train", "run.toml", "--out", "rel", "--quiet", cwd=tmp_path, check=True)
    (tmp_path / "elsewhere").mkdir()
    proc = run_cli("export", "../rel", "hf", cwd=tmp_path / "elsewhere", check=True)
    assert "LlamaForCausalLM" in proc.stdout and (tmp_path / "elsewhere" / "hf" / "tokenizer.json").is_file()
