"""Held-out pre-training loss of any model on any corpus: nats/token and bits/byte.

Nats/token depends on the tokenizer; bits/byte (total nats / ln 2 / UTF-8 bytes of the scored
documents) does not, so it compares models with different tokenizers. Documents (a text file split
on blank lines, or JSONL with a "text" field) are taken whole, in order, until `max_tokens`.

Two ways to score them (`bpb`):
- "losslens" (default; the pre-training loss): each document ends with the model's EOS token, as in
  training; the token stream is cut into consecutive windows of `seq_len + 1` tokens overlapping by
  one, so every token but the first is predicted exactly once, with the previous document as context.
- "lm-eval": lm-eval's `loglikelihood_rolling` (its wikitext-style `bits_per_byte`): each document on
  its own, no EOS, its first token predicted after the prefix token (BOS, else EOS), disjoint windows
  of the model's full length. The EOS tokens and the cross-document context make "losslens" differ
  (2.6% higher bits/byte on the world's val.txt at 128-token windows, issue 14).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from losslens.data.sampler import eval_windows
from losslens.data.tokenizer import iter_documents
from losslens.errors import InputError
from losslens.evaluate.lm import ScoringModel
from losslens.evaluate.scorer import score_encoded, token_logprobs
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


BPB_MODES = ("losslens", "lm-eval")


@torch.no_grad()
def heldout_loss(lm: ScoringModel, documents: Iterable[str], *, corpus: str = "heldout", max_tokens: int = 262_144,
                 seq_len: int | None = None, bpb: str = "losslens") -> HeldoutLoss:
    """Held-out loss of the documents (whole, in order, until `max_tokens`). `bpb="losslens"`: each
    document ends with EOS, the stream is cut into `seq_len + 1`-token windows overlapping by one;
    `bpb="lm-eval"`: lm-eval's `loglikelihood_rolling` per document (see `_lm_eval_windows`), so
    bits/byte equals lm-eval's `bits_per_byte` on the same documents."""
    if bpb not in BPB_MODES:
        raise InputError(None, f"must be one of {', '.join(BPB_MODES)}, got {bpb!r}", field="--bpb")
    seq_len = min(seq_len or lm.max_length, lm.max_length)
    docs: list[str] = []
    n_ids = 0
    for doc in documents:
        if n_ids >= max_tokens + 1:
            break
        docs.append(doc)
        n_ids += len(lm.encode(doc, special_tokens=False)) + 1
    if n_ids < 2:
        raise InputError(corpus, "corpus has no text to score")
    n_bytes = sum(len(d.encode()) for d in docs)
    total, count = _lm_eval_nll(lm, docs) if bpb == "lm-eval" else _packed_nll(lm, docs, seq_len)
    if count == 0:
        raise InputError(corpus, "corpus has no text to score")
    return HeldoutLoss(corpus=corpus, nats_per_token=total / count, bits_per_byte=total / math.log(2) / n_bytes,
                       n_tokens=count, n_bytes=n_bytes, n_documents=len(docs))


def _packed_nll(lm: ScoringModel, docs: list[str], seq_len: int) -> tuple[float, int]:
    """Summed NLL (nats) and tokens predicted: EOS-joined documents in consecutive windows. The LM head
    runs chunk by chunk on the final hidden states (`token_logprobs`): no (B, T, V) logits."""
    ids: list[int] = []
    for doc in docs:
        ids += lm.encode(doc, special_tokens=False)
        ids.append(lm.eos_id)
    tokens = np.asarray(ids, dtype=np.int64)
    n_full = (tokens.size - 1) // seq_len
    windows = eval_windows(tokens, seq_len, tokens.size) if n_full else torch.zeros((0, seq_len + 1), dtype=torch.long)
    tail = tokens[n_full * seq_len:]  # the last, shorter window
    batches = [windows[i:i + lm.batch_size] for i in range(0, windows.size(0), lm.batch_size)]
    if tail.size > 1:
        batches.append(torch.from_numpy(tail)[None])
    total = torch.zeros((), dtype=torch.float64, device=lm.device)
    count = 0
    for w in batches:
        w = w.to(lm.device, non_blocking=True)
        with lm.autocast():
            hidden = lm.decoder_forward(w[:, :-1]).last_hidden_state
            lp, _ = token_logprobs(lm, hidden.reshape(-1, hidden.shape[-1]), w[:, 1:].reshape(-1))
        total -= lp.double().sum()
        count += w[:, 1:].numel()
        lm.stats.positions += w[:, :-1].numel()
    return float(total), count  # one host sync per corpus


def _lm_eval_windows(lm: ScoringModel, doc: str) -> list[tuple[list[int], list[int]]]:
    """lm-eval's rolling windows of one document, as HFLM builds them: the text encoded with the
    tokenizer's own special tokens (none if it starts with the BOS text), no EOS, the prefix token
    (BOS, else EOS) before the first token, disjoint windows of the model's max length."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    from losslens.evaluate.lm_eval_backend import hf_max_length, hf_prefix_token

    prefix = hf_prefix_token(lm.tokenizer)
    bos_text = lm.tokenizer.decode(prefix)
    ids = list(lm.encode(doc, special_tokens=not (bos_text and doc.startswith(bos_text))))
    return [make_disjoint_window(w) for w in get_rolling_token_windows(
        token_list=ids, prefix_token=prefix, max_seq_len=hf_max_length(lm), context_len=1)]


def _lm_eval_nll(lm: ScoringModel, docs: list[str]) -> tuple[float, int]:
    windows = [w for doc in docs for w in _lm_eval_windows(lm, doc)]
    scores = score_encoded(lm, [(ctx, [cont]) for ctx, cont in windows])
    return -float(sum(s.logprobs[0] for s in scores)), sum(len(cont) for _, cont in windows)
