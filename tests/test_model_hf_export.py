"""export_hf writes a LlamaForCausalLM directory that transformers loads with our exact logits."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from losslens.errors import InputError  # noqa: E402
from losslens.model import LlamaLM, ModelConfig, export_hf  # noqa: E402


def small_model(seed: int = 0, **overrides) -> LlamaLM:
    cfg = ModelConfig(**{**dict(vocab_size=300, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                max_seq_len=64, rope_theta=5000.0, norm_eps=1e-6), **overrides})
    torch.manual_seed(seed)
    model = LlamaLM(cfg).eval()
    with torch.no_grad():  # non-trivial norm gains, so a misplaced gain would show
        for p in model.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return model


def hf_logits(out_dir, idx, **kwargs) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(out_dir, local_files_only=True, **kwargs).eval()
    assert hf.dtype == torch.float32
    with torch.no_grad():
        return hf(idx).logits


@pytest.mark.parametrize("tie, n_kv_heads", [(True, 2), (False, 2), (False, 4), (True, 1)],
                         ids=["tied-gqa", "untied-gqa", "untied-mha", "tied-mqa"])
def test_hf_logits_match(tmp_path, tie, n_kv_heads):
    model = small_model(tie_embeddings=tie, n_kv_heads=n_kv_heads)
    out = export_hf(model, tmp_path / "hf")
    idx = torch.randint(0, 300, (3, 50), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(idx)
    theirs = hf_logits(out, idx)
    assert theirs.shape == ours.shape == (3, 50, 300)
    assert (ours - theirs).abs().max().item() < 1e-5
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert config["tie_word_embeddings"] is tie and config["num_key_value_heads"] == n_kv_heads


def test_hf_eager_attention_matches_too(tmp_path):
    """Parity does not hinge on both sides calling the same SDPA kernel."""
    model = small_model(seed=3, n_layers=3)
    out = export_hf(model, tmp_path / "hf")
    idx = torch.randint(0, 300, (2, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model(idx)
    assert (ours - hf_logits(out, idx, attn_implementation="eager")).abs().max().item() < 1e-5


def test_export_copies_tokenizer_and_special_ids(tmp_path):
    from transformers import AutoTokenizer

    from losslens.data.tokenizer import train_bpe

    tok_dir = tmp_path / "tok"
    train_bpe(["the cat sat on the mat. " * 20, "a dog ran far away. " * 20], 280, tok_dir)
    out = export_hf(small_model(), tmp_path / "hf", tokenizer_dir=tok_dir)
    assert (out / "tokenizer.json").read_bytes() == (tok_dir / "tokenizer.json").read_bytes()
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    config = json.loads((out / "config.json").read_text())
    assert config["eos_token_id"] == tok.eos_token_id is not None
    assert tok.decode(tok("the cat sat")["input_ids"]) == "the cat sat"


def test_export_rejects_a_tokenizer_larger_than_the_vocab(tmp_path):
    from losslens.data.tokenizer import train_bpe

    tok_dir = tmp_path / "tok"
    train_bpe(["lorem ipsum dolor sit amet " * 50], 290, tok_dir)
    with pytest.raises(InputError, match="vocab_size"):
        export_hf(small_model(vocab_size=200), tmp_path / "hf", tokenizer_dir=tok_dir)
    assert not (tmp_path / "hf").exists()


def test_export_is_atomic_and_replaces_an_earlier_export(tmp_path):
    out = tmp_path / "hf"
    export_hf(small_model(seed=0), out)
    first = (out / "model.safetensors").read_bytes()
    export_hf(torch.compile(small_model(seed=1)), out)  # a compiled wrapper unwraps (compiles nothing)
    assert (out / "model.safetensors").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no temp or backup dirs left


def test_export_refuses_to_replace_an_unrelated_directory(tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(InputError, match="not an earlier export"):
        export_hf(small_model(), precious)
    assert (precious / "thesis.txt").read_text() == "do not delete"
