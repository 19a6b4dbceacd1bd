"""Tokenizer, token shards and the training-window sampler."""

from losslens.data.prepare import DataConfig, PreparedData, prepare_data
from losslens.data.sampler import WindowSampler, eval_windows
from losslens.data.shards import Shard, open_shard, write_shard
from losslens.data.tokenizer import EOS, LoadedTokenizer, load_tokenizer, train_bpe

__all__ = ["DataConfig", "PreparedData", "prepare_data", "WindowSampler", "eval_windows", "Shard",
           "open_shard", "write_shard", "EOS", "LoadedTokenizer", "load_tokenizer", "train_bpe"]
