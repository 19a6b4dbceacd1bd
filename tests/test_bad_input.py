"""Bad checkpoints fail with one line naming the file and the tensor, exit 2, nothing written:
wrong tensor shapes (`eval`, `export`) and non-finite weights (`eval`, also for a HF model dir)."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli

from losslens.train import checkpoint as ckpt


def _bad_copy(world_run, tmp_path, edit) -> str:
    _, newest = ckpt.list_checkpoints(world_run)[-1]
    payload = ckpt.load(newest)
    edit(payload["model"])
    path = tmp_path / "bad" / "checkpoints" / newest.name
    ckpt.save(path, payload)
    return path


def _one_line_exit_2(proc, *words):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines[0]


def _narrow_embedding(weights):
    weights["embed_tokens.weight"] = weights["embed_tokens.weight"][:, :-2].clone()


def _nan(weights):
    weights["layers.0.mlp_norm.weight"][0] = float("nan")


def _inf(weights):
    weights["layers.1.attn.qkv_proj.weight"][3, 1] = float("inf")


@pytest.mark.parametrize("command", ["eval", "export"])
def test_wrong_tensor_shapes(world_run, world_dir, tmp_path, command):
    path = _bad_copy(world_run, tmp_path, _narrow_embedding)
    out = tmp_path / "out"
    args = ("eval", path, "--db", out, "--world", world_dir) if command == "eval" else ("export", path, out)
    proc = run_cli(*args)
    _one_line_exit_2(proc, str(path), "model.embed_tokens.weight", "shape [", "does not match its model config")
    assert not out.exists()


@pytest.mark.parametrize("edit, tensor", [(_nan, "model.layers.0.mlp_norm.weight"),
                                          (_inf, "model.layers.1.attn.qkv_proj.weight")])
def test_non_finite_weights_for_eval(world_run, world_dir, tmp_path, edit, tensor):
    path = _bad_copy(world_run, tmp_path, edit)
    db = tmp_path / "results.db"
    proc = run_cli("eval", path, "--db", db, "--world", world_dir, "--limit", "2", "--heldout-tokens", "256")
    _one_line_exit_2(proc, str(path), tensor, "non-finite weights")
    assert not db.exists()


def test_missing_tensor(world_run, tmp_path):
    path = _bad_copy(world_run, tmp_path, lambda w: w.pop("norm.weight"))
    proc = run_cli("export", path, tmp_path / "out")
    _one_line_exit_2(proc, str(path), "missing tensor norm.weight")


def test_non_finite_weights_in_a_hf_dir(world_run, world_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    hf = tmp_path / "hf"
    run_cli("export", world_run, hf, check=True)
    weights = load_file(hf / "model.safetensors")
    name = "model.layers.0.mlp.up_proj.weight"
    weights[name][0, 0] = torch.nan
    save_file(weights, hf / "model.safetensors", metadata={"format": "pt"})
    db = tmp_path / "results.db"
    proc = run_cli("eval", hf, "--db", db, "--world", world_dir, "--limit", "2", "--heldout-tokens", "256")
    _one_line_exit_2(proc, str(hf), name, "non-finite weights")
    assert not db.exists()
