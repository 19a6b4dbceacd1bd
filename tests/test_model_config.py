"""ModelConfig validation, presets, parameter and FLOP counts, and `losslens model-info`."""

from __future__ import annotations

import pytest
import torch

from losslens.cli import main
from losslens.errors import InputError
from losslens.model import PRESETS, LlamaLM, ModelConfig, flops_per_token, param_counts


def test_llama_ffn_width_defaults():
    assert ModelConfig(d_model=384, n_heads=6).ffn_dim == 1024  # 8/3 * 384 exactly
    assert ModelConfig(d_model=128).ffn_dim == 352  # 341.3 rounded up to a multiple of 32
    assert ModelConfig(d_model=128, multiple_of=256).ffn_dim == 512
    assert ModelConfig(d_model=128, ffn_dim=100).ffn_dim == 100
    assert ModelConfig(n_heads=4).n_kv_heads == 4


def test_presets_span_50k_to_50m_non_embedding_params():
    sizes = [param_counts(ModelConfig.preset(name))[1] for name in PRESETS]
    assert sizes == sorted(sizes)
    assert 40e3 < sizes[0] < 60e3 and 40e6 < sizes[-1] < 60e6
    cfg = ModelConfig.preset("tiny", vocab_size=777, n_layers=2)
    assert (cfg.vocab_size, cfg.n_layers, cfg.d_model) == (777, 2, PRESETS["tiny"]["d_model"])


@pytest.mark.parametrize("name", list(PRESETS)[:4])
@pytest.mark.parametrize("tie", [True, False])
def test_param_counts_match_the_built_model(name, tie):
    cfg = ModelConfig.preset(name, vocab_size=320, tie_embeddings=tie)
    model = LlamaLM(cfg)
    total, non_embedding = param_counts(cfg)
    assert total == sum(p.numel() for p in model.parameters())
    head = 0 if tie else model.lm_head.weight.numel()
    assert non_embedding == total - model.embed_tokens.weight.numel() - head


def test_flops_per_token_formula():
    cfg = ModelConfig(vocab_size=1000, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=160)
    per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 160 + 2 * 64
    non_embedding = 2 * per_layer + 64
    assert param_counts(cfg) == (non_embedding + 1000 * 64, non_embedding)
    assert flops_per_token(cfg, 128) == 6 * (non_embedding + 64 * 1000) + 12 * 2 * 128 * 64
    assert flops_per_token(cfg) == flops_per_token(cfg, cfg.max_seq_len)


def test_from_dict_with_preset_and_overrides():
    cfg = ModelConfig.from_dict({"preset": "micro", "vocab_size": 512, "rope_theta": 500000},
                                source="run.toml")
    assert cfg.d_model == PRESETS["micro"]["d_model"] and cfg.vocab_size == 512
    assert cfg.rope_theta == 500000  # an int is fine where a float is expected (TOML)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("table, field, message", [
    ({"d_modle": 64}, "model.d_modle", "unknown key"),
    ({"n_layers": "4"}, "model.n_layers", "expected an integer, got str"),
    ({"n_layers": 4.5}, "model.n_layers", "expected an integer, got float"),
    ({"n_layers": True}, "model.n_layers", "expected an integer, got bool"),
    ({"tie_embeddings": 1}, "model.tie_embeddings", "expected bool"),
    ({"d_model": 100, "n_heads": 3}, "model.n_heads", "do not divide d_model=100"),
    ({"n_heads": 4, "n_kv_heads": 3}, "model.n_kv_heads", "do not divide n_heads=4"),
    ({"d_model": 60, "n_heads": 4}, "model.n_heads", "must be even"),
    ({"n_layers": 0}, "model.n_layers", "must be positive"),
    ({"norm_eps": -1e-5}, "model.norm_eps", "must be positive"),
    ({"preset": "enormous"}, "model.preset", "unknown preset 'enormous'"),
])
def test_from_dict_errors_name_the_file_and_field(table, field, message):
    with pytest.raises(InputError) as info:
        ModelConfig.from_dict(table, source="run.toml")
    err = info.value
    assert err.path == "run.toml" and err.field == field and message in err.message
    assert str(err).startswith(f"run.toml: {field}: ")


def test_direct_construction_validates_too():
    with pytest.raises(InputError, match="n_kv_heads"):
        ModelConfig(n_heads=4, n_kv_heads=8)


def test_model_info_command(capsys):
    assert main(["model-info", "--preset", "tiny", "--vocab-size", "512"]) == 0
    out = capsys.readouterr().out
    total, non_embedding = param_counts(ModelConfig.preset("tiny", vocab_size=512))
    assert "tiny" in out and "nano" not in out
    assert f"{total / 1e3:.3g}k" in out and f"{non_embedding / 1e3:.3g}k" in out
    assert main(["model-info"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS)
    assert main(["model-info", "--seq-len", "0"]) == 2
    assert "--seq-len: must be >= 1" in capsys.readouterr().err


def test_model_builds_deterministically():
    cfg = ModelConfig.preset("nano", vocab_size=100)
    torch.manual_seed(5)
    a = LlamaLM(cfg).state_dict()
    torch.manual_seed(5)
    b = LlamaLM(cfg).state_dict()
    torch.manual_seed(6)
    c = LlamaLM(cfg).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["layers.0.attn.qkv_proj.weight"], c["layers.0.attn.qkv_proj.weight"])
