"""The GPU code paths, checked on CPU: collectives on the device, no host sync per micro-batch, SDPA's
GQA arguments, device defaults (bf16 / TF32 / compile / fused AdamW), MFU in run.json and progress."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from conftest import write_run_config

import losslens.model.llama as llama
from losslens.model import LlamaLM, ModelConfig
from losslens.train import distributed
from losslens.train.config import TrainConfig, load_run_config
from losslens.train.distributed import Dist
from losslens.train.loop import device_settings, train
from losslens.train.mfu import mfu, peak_flops


def test_all_reduce_moves_a_host_tensor_to_the_device_first(monkeypatch):
    seen = []
    monkeypatch.setattr(distributed.dist, "all_reduce", lambda t, op=None: seen.append(t.device))
    d = Dist(rank=0, world_size=2, device=torch.device("meta"))  # any non-CPU device stands in for CUDA
    out = d.all_reduce_sum(torch.zeros(2))
    assert seen == [torch.device("meta")] and out.device.type == "meta"


class _Syncs:
    """Counts losslens's own host reads of tensor values (what waits for a GPU) during a run. (The
    CPU for-each AdamW reads its step counters, which live on the host; CUDA's fused AdamW does not.)"""

    def __init__(self, monkeypatch):
        self.calls = {}
        for name in ("item", "tolist", "cpu", "__float__"):
            original = getattr(torch.Tensor, name)

            def counted(t, *a, _name=name, _original=original, **k):
                if sys._getframe(1).f_globals.get("__name__", "").startswith("losslens"):
                    self.calls[_name] = self.calls.get(_name, 0) + 1
                return _original(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, counted)


def test_the_loop_reads_the_device_once_per_log_step_not_per_micro_batch(tmp_path, text_corpus, shared_data_dir,
                                                                         monkeypatch):
    steps, log_every = 12, 4
    cfg_path = write_run_config(tmp_path / "run.toml", text_corpus, shared_data_dir, tokens=steps * 8 * 32,
                                micro_batch_size=2, num_checkpoints=1, log_every=log_every, eval_tokens=512)
    cfg, source = load_run_config(str(cfg_path))
    syncs = _Syncs(monkeypatch)
    train(cfg, tmp_path / "run", config_source=str(source), quiet=True)
    micro_batches = steps * 4
    # One stacked read per log step, one for the held-out loss; the old loop did one per micro-batch.
    assert syncs.calls.get("tolist", 0) == steps // log_every
    assert syncs.calls.get("item", 0) + syncs.calls.get("cpu", 0) + syncs.calls.get("__float__", 0) <= 2
    assert sum(syncs.calls.values()) < micro_batches // 4
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))  # still every step logged


def _sdpa_calls(monkeypatch):
    calls, sdpa = [], llama.F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        calls.append((q.shape[1], k.shape[1], kw))
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(llama.F, "scaled_dot_product_attention", spy)
    return calls


def test_grouped_kv_heads_reach_sdpa_as_gqa_on_cpu_and_repeated_where_cuda_needs_it(monkeypatch):
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, max_seq_len=16)
    torch.manual_seed(0)
    model = LlamaLM(cfg).eval()
    x = torch.randint(0, 64, (2, 16))
    assert llama._repeat_kv(torch.zeros(1, dtype=torch.float32)) is False  # never on CPU
    calls = _sdpa_calls(monkeypatch)
    with torch.no_grad():
        grouped = model(x)
    assert calls == [(4, 2, {"is_causal": True, "enable_gqa": True})]
    # What CUDA fp32 does (enable_gqa would pin it to the math kernel): KV heads repeated, plain SDPA.
    monkeypatch.setattr(llama, "_repeat_kv", lambda q: True)
    calls.clear()
    with torch.no_grad():
        repeated = model(x)
    assert calls == [(4, 4, {"is_causal": True, "enable_gqa": False})]
    torch.testing.assert_close(repeated, grouped, atol=1e-5, rtol=1e-5)


def test_device_defaults_auto_means_fast_on_cuda_and_unchanged_on_cpu(monkeypatch):
    tc = TrainConfig(tokens=1024, batch_size=4, seq_len=32)
    cpu = device_settings(tc, torch.device("cpu"))
    assert (cpu.precision, cpu.compile, cpu.fused_adamw, cpu.tf32) == ("fp32", False, False, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = device_settings(tc, torch.device("cuda"))
    assert (gpu.precision, gpu.compile, gpu.fused_adamw, gpu.tf32) == ("bf16", True, True, True)
    explicit = TrainConfig(tokens=1024, batch_size=4, seq_len=32, precision="fp32", compile=False, tf32=False)
    gpu = device_settings(explicit, torch.device("cuda"))
    assert (gpu.precision, gpu.compile, gpu.tf32) == ("fp32", False, False)


def test_peak_table_and_mfu():
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert peak_flops("NVIDIA H200", "fp32") == 495e12  # TF32 tensor cores
    assert peak_flops("NVIDIA H200", "fp32", tf32=False) == 67e12
    assert peak_flops("NVIDIA A100-SXM4-80GB", "bf16") == 312e12
    assert peak_flops("NVIDIA A10G", "bf16") == 70e12 and peak_flops("NVIDIA L4", "bf16") == 121e12
    assert peak_flops("NVIDIA L40S", "bf16") == 362e12
    assert peak_flops("cpu", "fp32") is None and peak_flops("Some Future GPU", "bf16") is None
    assert mfu(1000.0, 1e9, 4e12, devices=2) == pytest.approx(0.125)
    assert mfu(1000.0, 1e9, None) is None


def test_run_json_and_metrics_carry_mfu_against_the_given_peak(tmp_path, text_corpus, shared_data_dir):
    cfg_path = write_run_config(tmp_path / "run.toml", text_corpus, shared_data_dir, tokens=6 * 8 * 32,
                                num_checkpoints=2, peak_flops=1e9, log_every=1)
    cfg, source = load_run_config(str(cfg_path))
    train(cfg, tmp_path / "run", config_source=str(source), quiet=True)
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    cuda = torch.cuda.is_available()  # this file also runs on a GPU machine (bench/gpu_check.sh)
    assert rec["device"] == (torch.cuda.get_device_name() if cuda else "cpu")
    assert rec["precision"] == ("bf16" if cuda else "fp32") and rec["peak_flops"] == 1e9
    for c in rec["checkpoints"]:
        assert c["tokens_per_s"] > 0
        assert c["mfu"] == pytest.approx(c["tokens_per_s"] * rec["flops_per_token"] / 1e9)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["mfu"] > 0 and r["tokens_per_s"] > 0 and r["grad_norm"] > 0 for r in rows)
    # Without a peak (a CPU) MFU is unknown, not made up.
    if not cuda:
        cfg.train.peak_flops = 0.0
        train(cfg, tmp_path / "plain", config_source=str(source), quiet=True)
        rec = json.loads((tmp_path / "plain" / "run.json").read_text())
        assert rec["peak_flops"] is None and all(c["mfu"] is None for c in rec["checkpoints"])


def test_progress_line_shows_mfu(capsys):
    from losslens.train.progress import TrainProgress

    p = TrainProgress(total_steps=10, start_step=0, tokens_per_step=100, enabled=True)
    p.milestone({"step": 5, "tokens": 500, "val_loss": 3.0, "val_bpb": 1.0, "train_loss": 3.1, "lr": 1e-3,
                 "mfu": 0.4125})
    p.milestone({"step": 6, "tokens": 600, "val_loss": 3.0, "val_bpb": 1.0, "train_loss": 3.1, "lr": 1e-3,
                 "mfu": None})
    out = capsys.readouterr().out.splitlines()
    assert "MFU 41.2%" in out[0] and "MFU -" in out[1]
