"""Tokenizer, shards, sampler and data preparation, on a small real corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from losslens.config import from_dict
from losslens.data import (
    DataConfig,
    WindowSampler,
    eval_windows,
    load_tokenizer,
    open_shard,
    prepare_data,
    train_bpe,
    write_shard,
)
from losslens.data.tokenizer import iter_documents
from losslens.errors import InputError


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, text_corpus):
    return train_bpe(iter_documents(text_corpus), 320, tmp_path_factory.mktemp("tok") / "tokenizer")


def test_bpe_is_a_standard_hf_tokenizer(tokenizer):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tokenizer.path))
    text = "Ada has 12 apples and 345 pears."
    assert hf(text)["input_ids"] == tokenizer.backend.encode(text).ids
    assert hf.decode(hf(text)["input_ids"]) == text
    assert hf.eos_token == "<|endoftext|>" and hf.eos_token_id == tokenizer.eos_id
    assert len(hf) == tokenizer.vocab_size == 320


def test_digits_are_single_tokens(tokenizer):
    pieces = [tokenizer.decode([i]) for i in tokenizer.backend.encode("x 1234 y").ids]
    assert [p for p in pieces if any(c.isdigit() for c in p)] == ["1", "2", "3", "4"]


def test_tokenizer_hash_is_content_based(tokenizer, tmp_path, text_corpus):
    again = train_bpe(iter_documents(text_corpus), 320, tmp_path / "again")
    other = train_bpe(iter_documents(text_corpus), 300, tmp_path / "other")
    assert load_tokenizer(tokenizer.path).hash == tokenizer.hash == again.hash != other.hash


def test_shard_roundtrip_and_truncation(tmp_path):
    chunks = [np.array([1, 2, 3, 0]), np.array([4, 5, 0])]
    shard = write_shard(tmp_path / "a.tokens", chunks, n_documents=2, vocab_size=320, tokenizer_hash="h",
                        n_bytes=21)
    assert shard.tokens.dtype == np.uint16 and shard.tokens.tolist() == [1, 2, 3, 0, 4, 5, 0]
    assert shard.header["n_documents"] == 2 and shard.bytes_per_token == 3.0
    big = write_shard(tmp_path / "b.tokens", [np.array([70000, 1])], n_documents=1, vocab_size=70001,
                      tokenizer_hash="h", n_bytes=2)
    assert big.tokens.dtype == np.uint32 and big.tokens.tolist() == [70000, 1]
    with pytest.raises(InputError, match="different tokenizer"):
        open_shard(tmp_path / "a.tokens", tokenizer_hash="other")
    raw = (tmp_path / "a.tokens").read_bytes()
    (tmp_path / "a.tokens").write_bytes(raw[:-2])
    with pytest.raises(InputError, match="truncated"):
        open_shard(tmp_path / "a.tokens")


def test_sampler_is_a_pure_function_of_seed_and_step():
    tokens = np.arange(10_000, dtype=np.uint16)
    s = WindowSampler(tokens, seq_len=16, batch_size=8, seed=3)
    x1, y1 = s.batch(5)
    x2, y2 = WindowSampler(tokens, seq_len=16, batch_size=8, seed=3).batch(5)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(y1[:, :-1], x1[:, 1:])  # targets are the next tokens
    assert not torch.equal(s.batch(6)[0], x1)
    assert not torch.equal(WindowSampler(tokens, 16, 8, seed=4).batch(5)[0], x1)
    halves = torch.cat([s.batch(5, slice(0, 4))[0], s.batch(5, slice(4, 8))[0]])
    assert torch.equal(halves, x1)  # data-parallel ranks split exactly the single-process batch


def test_eval_windows_cover_each_target_once():
    tokens = np.arange(100, dtype=np.uint16)
    w = eval_windows(tokens, seq_len=10, max_tokens=1000)
    targets = w[:, 1:].reshape(-1).tolist()
    assert targets == list(range(1, 100 - 9))[: len(targets)] and len(set(targets)) == len(targets)


def test_prepare_data_reuses_and_splits(tmp_path, text_corpus):
    cfg = from_dict(DataConfig, {"text": [str(text_corpus)], "vocab_size": 320, "val_every": 10})
    data = prepare_data(cfg, tmp_path / "d")
    stamp = (tmp_path / "d" / "train.tokens").stat().st_mtime_ns
    again = prepare_data(cfg, tmp_path / "d")
    assert (tmp_path / "d" / "train.tokens").stat().st_mtime_ns == stamp
    assert again.tokenizer.hash == data.tokenizer.hash
    n_docs = sum(1 for _ in iter_documents(text_corpus))
    assert data.train.header["n_documents"] + data.val.header["n_documents"] == n_docs
    assert data.val.header["n_documents"] == n_docs // 10
    other = from_dict(DataConfig, {"text": [str(text_corpus)], "vocab_size": 300})
    with pytest.raises(InputError, match="different \\[data\\] config"):
        prepare_data(other, tmp_path / "d")


def test_data_config_errors_name_the_field(tmp_path, text_corpus):
    with pytest.raises(InputError) as err:
        from_dict(DataConfig, {"text": [str(tmp_path / "missing.txt")]}, source="run.toml", prefix="data")
    assert err.value.field == "data.text[0]" and "run.toml" in str(err.value)
    with pytest.raises(InputError) as err:
        from_dict(DataConfig, {"text": [str(text_corpus)], "world_dir": str(tmp_path)}, source="run.toml",
                  prefix="data")
    assert err.value.field == "data.text" and "one corpus" in err.value.message
    with pytest.raises(InputError) as err:
        from_dict(DataConfig, {"vocab_sise": 3}, source="run.toml", prefix="data")
    assert err.value.field == "data.vocab_sise"
