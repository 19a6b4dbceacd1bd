"""Token shards: one file, a small JSON header, then a flat uint16/uint32 array read by memmap.

Layout: 8-byte magic `LLTOKENS`, a little-endian uint32 header length, the UTF-8 JSON header, zero
padding to a 64-byte boundary, then the tokens. The header records the tokenizer hash (so tokens are
never mixed across tokenizers), the token, document and UTF-8 byte counts (bytes give bits/byte).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from losslens.errors import InputError
from losslens.io import atomic_open

MAGIC = b"LLTOKENS"
ALIGN = 64


@dataclass(frozen=True)
class Shard:
    path: Path
    header: dict
    tokens: np.ndarray  # read-only memmap

    @property
    def n_tokens(self) -> int:
        return int(self.header["n_tokens"])

    @property
    def bytes_per_token(self) -> float:
        """Average UTF-8 bytes of source text per token (documents' EOS tokens included)."""
        return self.header["n_bytes"] / max(self.n_tokens, 1)


def token_dtype(vocab_size: int):
    """The smallest unsigned integer type that holds every token id."""
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def write_shard(path: str | Path, chunks: Iterable[np.ndarray], *, n_documents: int, vocab_size: int,
                tokenizer_hash: str, n_bytes: int, **extra) -> Shard:
    """Write token arrays (documents already end in EOS) as one shard, atomically."""
    dtype = token_dtype(vocab_size)
    arrays = [np.asarray(c, dtype=dtype) for c in chunks]
    tokens = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
    header = {"format": "losslens-tokens/1", "dtype": np.dtype(dtype).name, "n_tokens": int(tokens.size),
              "n_documents": int(n_documents), "n_bytes": int(n_bytes), "vocab_size": int(vocab_size),
              "tokenizer_hash": tokenizer_hash, **extra}
    blob = json.dumps(header).encode()
    prefix = MAGIC + struct.pack("<I", len(blob)) + blob
    prefix += b"\0" * (-len(prefix) % ALIGN)
    with atomic_open(path, "wb") as f:
        f.write(prefix)
        f.write(tokens.tobytes())
    return open_shard(path)


def open_shard(path: str | Path, *, tokenizer_hash: str | None = None) -> Shard:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(8) != MAGIC:
                raise InputError(path, "not a losslens token shard (bad magic)")
            (n,) = struct.unpack("<I", f.read(4))
            header = json.loads(f.read(n))
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"unreadable token shard: {err}") from None
    offset = 12 + n + (-(12 + n) % ALIGN)
    dtype = np.dtype(header["dtype"])
    expected = offset + header["n_tokens"] * dtype.itemsize
    if path.stat().st_size != expected:
        raise InputError(path, f"truncated token shard: {path.stat().st_size} bytes, expected {expected}")
    if tokenizer_hash is not None and header["tokenizer_hash"] != tokenizer_hash:
        raise InputError(path, "shard was made with a different tokenizer", field="tokenizer_hash")
    tokens = (np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(header["n_tokens"],))
              if header["n_tokens"] else np.zeros(0, dtype=dtype))
    return Shard(path=path, header=header, tokens=tokens)
