#!/usr/bin/env bash
# The trainer's GPU checks, for a machine with CUDA (none was lent when this was written; see
# bench/RESULTS.md). About 5 minutes on one H100/H200-class GPU:
#   1. the GPU-path unit tests and a tiny training run on the GPU (bf16 + TF32 + compile by default),
#      whose run.json must name the GPU and carry an MFU;
#   2. with 2+ GPUs, two-process DDP (NCCL) and FSDP2 on them;
#   3. throughput and MFU at ~124M and ~354M params against the nanoGPT-style baseline.
set -euo pipefail
export PYTHONPATH=$PWD
out=${OUT:-/tmp/losslens-gpu-check}
mkdir -p "$out"
python -m pytest -q tests/test_train_device.py tests/test_train_metrics.py
python - "$out" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "tests")
from conftest import make_text_corpus, write_run_config
from losslens.train.config import load_run_config
from losslens.train.loop import train
out = Path(sys.argv[1])
corpus = make_text_corpus(out / "corpus.txt")
cfg, src = load_run_config(str(write_run_config(out / "run.toml", corpus, model='preset = "small"',
                                                tokens=200 * 32 * 128, batch_size=32, seq_len=128,
                                                num_checkpoints=2)))
train(cfg, out / "run", config_source=str(src))
rec = json.loads((out / "run" / "run.json").read_text())
print({k: rec[k] for k in ("device", "precision", "peak_flops")}, rec["checkpoints"][-1]["mfu"])
assert rec["device"] != "cpu" and rec["precision"] == "bf16" and rec["checkpoints"][-1]["mfu"] > 0
PY
if [ "$(python -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  for fsdp in false true; do
    sed "s/^\[train\]$/[train]\nfsdp = $fsdp/" "$out/run.toml" > "$out/dist-$fsdp.toml"
    torchrun --standalone --nproc_per_node=2 -m losslens train "$out/dist-$fsdp.toml" --out "$out/dist-$fsdp" --quiet
  done
fi
python bench/train_throughput.py --device cuda --shapes c,d --vocab 50304 --precisions bf16,fp32
