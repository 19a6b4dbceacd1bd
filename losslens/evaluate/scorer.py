"""Batched scoring: log-likelihoods of continuations with a shared context, and greedy generation.

Tokenization follows lm-evaluation-harness exactly, so results are comparable (and the parity test
holds): trailing spaces of a context move to its continuation; the context is `tok(context)` and the
continuation is `tok(context + continuation)[len(tok(context)):]`; special tokens are added as the
tokenizer does by default (a BOS for Llama-style tokenizers, nothing for ours or GPT-2 style, as
lm-eval >= 0.4.9); an empty context becomes BOS (else EOS); too-long inputs lose tokens on the left.

Speed comes from doing each context once: a batch of items runs its (left-padded) contexts in one
forward pass with a KV cache, the cache is gathered once per choice, and all choices of the batch run
together in a second pass (skipped when every choice is a single token).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from losslens.evaluate.lm import LM

# transformers 5.x calls the KV cache `cache` (input and output); 4.x called it `past_key_values`.
try:
    from transformers.modeling_outputs import CausalLMOutputWithPast as _Out
    CACHE_ARG = "cache" if "cache" in _Out.__dataclass_fields__ else "past_key_values"
except ImportError:  # pragma: no cover
    CACHE_ARG = "past_key_values"


@dataclass
class ContinuationScores:
    """Scores of one context's continuations."""

    logprobs: np.ndarray          # (n_choices,) summed log-prob of each continuation, nats
    n_tokens: np.ndarray          # (n_choices,) continuation tokens
    token_correct: list[np.ndarray]  # per continuation: was each token the model's argmax?

    @property
    def greedy(self) -> np.ndarray:
        return np.array([bool(c.all()) for c in self.token_correct])


def _encode_item(lm: LM, context: str, choices: list[str]) -> tuple[list[int], list[list[int]]]:
    """lm-eval's `_encode_pair` for one context and all its choices: (context tokens, continuations)."""
    stripped = context.rstrip()
    moved = context[len(stripped):]  # trailing whitespace belongs to the continuation
    ctx = lm.encode(stripped)
    conts = [lm.encode(stripped + moved + c)[len(ctx):] for c in choices]
    ctx = ctx or [lm.prefix_id]
    longest = max(len(c) for c in conts)
    if len(ctx) + longest > lm.max_length + 1:  # keep the right end, as lm-eval truncates on the left
        ctx = ctx[-(lm.max_length + 1 - longest):]
    return ctx, conts


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, left-padded so that every sequence ends at the last column."""
    L = max(map(len, seqs))
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = torch.tensor(s)
        mask[i, L - len(s):] = 1
    return ids, mask


@torch.no_grad()
def _score_batch(lm: LM, batch: list[tuple[list[int], list[list[int]]]]) -> list[ContinuationScores]:
    B = len(batch)
    ctx_len = torch.tensor([len(c) for c, _ in batch])
    ids, mask = _left_pad([ctx for ctx, _ in batch], lm.pad_id)  # every context ends at the last column
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    conts = [cont for _, choices in batch for cont in choices]
    owner = torch.repeat_interleave(torch.arange(B), torch.tensor([len(ch) for _, ch in batch]))
    M = max(len(c) for c in conts)
    dev = lm.device
    mask, owner = mask.to(dev), owner.to(dev)
    with lm.autocast():
        out = lm.model(input_ids=ids.to(dev), attention_mask=mask, position_ids=positions.to(dev),
                       use_cache=M > 1, **lm.last_logits_only)
    first = out.logits[:, -1, :].float()[owner]  # logits of each continuation's 1st token
    N = len(conts)
    cont_ids = torch.full((N, M), lm.pad_id, dtype=torch.long)
    cont_mask = torch.zeros((N, M), dtype=torch.long)
    for j, c in enumerate(conts):
        cont_ids[j, :len(c)] = torch.tensor(c)
        cont_mask[j, :len(c)] = 1
    cont_ids, cont_mask = cont_ids.to(dev), cont_mask.to(dev)
    if M > 1:
        cache = getattr(out, CACHE_ARG)
        cache.reorder_cache(owner)  # one copy of its context's cache per continuation
        attn = torch.cat([mask[owner], cont_mask], dim=1)
        pos = ctx_len.to(dev)[owner, None] + torch.arange(M, device=dev)
        with lm.autocast():
            rest = lm.model(input_ids=cont_ids, attention_mask=attn, position_ids=pos, use_cache=False,
                            **{CACHE_ARG: cache}).logits[:, :-1].float()
        logits = torch.cat([first[:, None], rest], dim=1)
    else:
        logits = first[:, None]
    # log p(token) = logit - logsumexp; greedy = the token's logit is the row's max (no full log_softmax/argmax)
    picked = logits.gather(-1, cont_ids[..., None]).squeeze(-1)
    token_lp = (picked - logits.logsumexp(-1)) * cont_mask
    correct = (picked >= logits.amax(-1)).cpu().numpy()
    lp_sum = token_lp.sum(-1).double().cpu().numpy()
    results, j = [], 0
    for _, choices in batch:
        k = len(choices)
        lengths = np.array([len(c) for c in choices])
        results.append(ContinuationScores(lp_sum[j:j + k], lengths,
                                          [correct[j + i, :lengths[i]] for i in range(k)]))
        j += k
    return results


def score_choices(lm: LM, contexts: list[str], choices: list[list[str]]) -> list[ContinuationScores]:
    """Log-likelihood of each item's choices given its context, batched `lm.batch_size` items at a time."""
    encoded = [_encode_item(lm, ctx, ch) for ctx, ch in zip(contexts, choices)]
    # Longest first: batches of similar length waste little padding; results return in input order.
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + max(map(len, encoded[i][1]))))
    results: list[ContinuationScores | None] = [None] * len(encoded)
    for start in range(0, len(order), lm.batch_size):
        idx = order[start:start + lm.batch_size]
        for i, r in zip(idx, _score_batch(lm, [encoded[i] for i in idx])):
            results[i] = r
    return results  # type: ignore[return-value]


@torch.no_grad()
def generate_greedy(lm: LM, prompts: list[str], *, max_tokens: list[int], stops: list[tuple[str, ...]]) -> list[str]:
    """Greedy continuations, batched with a KV cache (Hugging Face `generate`), cut at the first stop."""
    outputs: list[str | None] = [None] * len(prompts)
    encoded = [lm.encode(p) or [lm.prefix_id] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    for start in range(0, len(order), lm.batch_size):
        idx = order[start:start + lm.batch_size]
        new = min(max(max_tokens[i] for i in idx), lm.max_length - 1)  # leave room for a 1-token prompt
        seqs = [encoded[i][-(lm.max_length - new):] for i in idx]
        ids, mask = _left_pad(seqs, lm.pad_id)
        L = ids.shape[1]
        with lm.autocast():
            out = lm.model.generate(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                                    max_new_tokens=new, do_sample=False, pad_token_id=lm.pad_id,
                                    eos_token_id=lm.eos_id, num_beams=1)
        for r, i in enumerate(idx):
            gen = out[r, L:].tolist()[:max_tokens[i]]
            if lm.eos_id in gen:
                gen = gen[:gen.index(lm.eos_id)]
            text = lm.tokenizer.decode(gen, skip_special_tokens=True)
            outputs[i] = _cut_at_stop(text, stops[i])
    return outputs  # type: ignore[return-value]


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cut = min((pos for s in stops if (pos := text.find(s)) >= 0), default=len(text))
    return text[:cut]
