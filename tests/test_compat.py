"""Compatibility: an export loads with every transformers version the package allows (the floor is
tested by .ci/run in a separate --target dir), and output directories get the user's umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_cli

from losslens.train import checkpoint as ckpt

FLOOR_DIR = os.environ.get("LOSSLENS_TRANSFORMERS_FLOOR_DIR")  # set by .ci/run: transformers==<floor> there
LOAD = """
import json, sys
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1], local_files_only=True)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], local_files_only=True).eval()
ids = tok("Ada lives in Rome. Ada has 3 apples")["input_ids"]
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0, -1].tolist()
print(json.dumps({"version": transformers.__version__, "class": type(tok).__name__, "ids": ids, "logits": logits}))
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def export(world_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("compat") / "hf"
    old = os.umask(0o027)
    try:
        run_cli("export", world_run, out, check=True)
    finally:
        os.umask(old)
    return out


def _load(export_dir: Path, floor_dir: str | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if floor_dir:
        env["PYTHONPATH"] = os.pathsep.join([floor_dir, str(REPO)])
    proc = subprocess.run([sys.executable, "-c", LOAD, str(export_dir)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ours(world_run, ids) -> list[float]:
    model, _ = ckpt.load_model(world_run)
    with torch.no_grad():
        return model(torch.tensor([ids]))[0, -1].tolist()


def test_export_names_a_tokenizer_class_every_version_knows(export, world_run):
    config = json.loads((export / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and "backend" not in config
    got = _load(export)
    assert got["logits"] == pytest.approx(_ours(world_run, got["ids"]), abs=1e-4)


@pytest.mark.skipif(not FLOOR_DIR, reason="needs LOSSLENS_TRANSFORMERS_FLOOR_DIR (.ci/run installs the floor there)")
def test_export_loads_with_the_oldest_allowed_transformers(export, world_run):
    floor = next(line for line in (REPO / "pyproject.toml").read_text().splitlines() if '"transformers>=' in line)
    floor = floor.split(">=")[1].split('"')[0]
    got = _load(export, FLOOR_DIR)
    assert got["version"] == floor and got["class"] == "PreTrainedTokenizerFast"
    assert got["logits"] == pytest.approx(_ours(world_run, got["ids"]), abs=1e-4)


def test_output_directories_follow_the_umask(export, world_dir, world_run):
    assert _mode(export) == 0o750  # exported under umask 027
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(world_dir) == 0o777 & ~umask
    assert _mode(Path(ckpt.load_model(world_run)[1]["tokenizer"])) == 0o777 & ~umask
