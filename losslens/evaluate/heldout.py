"""Held-out pre-training loss of any model on any corpus: nats/token and bits/byte.

Nats/token depends on the tokenizer; bits/byte (total nats / ln 2 / UTF-8 bytes of the scored
documents) does not, so it compares models with different tokenizers. Documents (a text file split
on blank lines, or JSONL with a "text" field) are taken whole, in order, until `max_tokens`; each ends
with the model's EOS token, as in training. The token stream is cut into consecutive windows of
`seq_len + 1` tokens overlapping by one, so every token but the first is predicted exactly once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from losslens.data.sampler import eval_windows
from losslens.data.tokenizer import iter_documents
from losslens.errors import InputError
from losslens.evaluate.lm import ScoringModel
from losslens.io import iter_jsonl


@dataclass(frozen=True)
class HeldoutLoss:
    corpus: str
    nats_per_token: float
    bits_per_byte: float
    n_tokens: int      # tokens predicted
    n_bytes: int       # UTF-8 bytes of the documents scored
    n_documents: int


def read_corpus(path: str | Path) -> Iterator[str]:
    """Documents of a .txt (blank-line separated) or .jsonl ({"text": ...} per line) corpus."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "corpus file not found")
    if path.suffix != ".jsonl":
        yield from iter_documents(path)
        return
    for n, obj in iter_jsonl(path):
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise InputError(path, "each line needs a string field", field="text", line=n)
        yield obj["text"]


@torch.no_grad()
def heldout_loss(lm: ScoringModel, documents: Iterable[str], *, corpus: str = "heldout", max_tokens: int = 262_144,
                 seq_len: int | None = None) -> HeldoutLoss:
    seq_len = min(seq_len or lm.max_length, lm.max_length)
    ids: list[int] = []
    n_bytes = n_docs = 0
    for doc in documents:
        if len(ids) >= max_tokens + 1:
            break
        ids += lm.encode(doc, special_tokens=False) + [lm.eos_id]
        n_bytes += len(doc.encode())
        n_docs += 1
    if len(ids) < 2:
        raise InputError(corpus, "corpus has no text to score")
    tokens = np.asarray(ids, dtype=np.int64)
    n_full = (tokens.size - 1) // seq_len
    windows = eval_windows(tokens, seq_len, tokens.size) if n_full else torch.zeros((0, seq_len + 1), dtype=torch.long)
    tail = tokens[n_full * seq_len:]  # the last, shorter window
    total, count = 0.0, 0
    batches = [windows[i:i + lm.batch_size] for i in range(0, windows.size(0), lm.batch_size)]
    if tail.size > 1:
        batches.append(torch.from_numpy(tail)[None])
    for w in batches:
        w = w.to(lm.device)
        with lm.autocast():
            logits = lm.model(input_ids=w[:, :-1]).logits
        total += float(F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1),
                                       reduction="sum"))
        count += w[:, 1:].numel()
    return HeldoutLoss(corpus=corpus, nats_per_token=total / count, bits_per_byte=total / math.log(2) / n_bytes,
                       n_tokens=count, n_bytes=n_bytes, n_documents=n_docs)
