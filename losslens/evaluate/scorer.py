"""Scoring that computes each token position once: log-likelihoods of continuations, and greedy generation.

Tokenization follows lm-evaluation-harness exactly, so results are comparable (and the parity test
holds): trailing spaces of a context move to its continuation; the context is `tok(context)` and the
continuation is `tok(context + continuation)[len(tok(context)):]`; special tokens are added as the
tokenizer does by default (a BOS for Llama-style tokenizers, nothing for ours or GPT-2 style, as
lm-eval >= 0.4.9); an empty context becomes BOS (else EOS); too-long inputs lose tokens on the left.

Where the work goes (`score_encoded`), all found from the token ids, so task files need nothing:
1. Shared prefix. The longest run of tokens every context of a call starts with (a fixed few-shot
   prefix; at least the BOS of a Llama tokenizer), and the longer one a batch's contexts share, run
   once with a KV cache and reused by every row of every batch (batch-expanded, not recomputed).
2. One packed row per item. The rest of the context, then every choice but its last token, side by
   side: `suffix | c1 | c2 | ...`, under a block attention mask (a choice sees the prefix, the suffix
   and its own earlier tokens, never another choice) with position ids restarting after the suffix
   for each choice. So the context runs once and no choice is padded to the longest choice.
3. Length buckets. Rows are sorted by length and batched `batch_size` items at a time, right-padded
   to the batch's longest row; `lm.stats` counts real and padded positions (the padded share).
The LM head runs only at the positions whose next token is scored (hidden states in, fp32 logits
out), and log p(token) = logit - logsumexp; greedy = the token's logit is the row's maximum.
Everything stays on the model's device until one copy of each batch's results to the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from losslens.evaluate.lm import ScoringModel

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


Item = tuple[list[int], list[list[int]]]  # (context ids, each continuation's ids)


def _encode_item(lm: ScoringModel, context: str, choices: list[str]) -> Item:
    """lm-eval's `_encode_pair` for one context and all its choices: (context tokens, continuations)."""
    stripped = context.rstrip()
    moved = context[len(stripped):]  # trailing whitespace belongs to the continuation
    ctx = lm.encode(stripped)
    conts = [lm.encode(stripped + moved + c)[len(ctx):] for c in choices]
    ctx = list(ctx) or [lm.prefix_id]
    longest = max(len(c) for c in conts)
    if len(ctx) + longest > lm.max_length + 1:  # keep the right end, as lm-eval truncates on the left
        ctx = ctx[-(lm.max_length + 1 - longest):]
    return ctx, conts


def _common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest prefix all `seqs` share, leaving each at least one token of its own
    (the last context token's logits score the first continuation token)."""
    first = np.asarray(seqs[0])
    n = min(len(s) for s in seqs) - 1
    for s in seqs[1:]:
        if n <= 0:
            break
        diff = np.nonzero(first[:n] != np.asarray(s[:n]))[0]
        n = int(diff[0]) if diff.size else n
    return max(n, 0)


# -- KV cache of shared prefixes ----------------------------------------------------------------


def _layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # pragma: no cover


def _cache_of(kv, batch: int):
    """A fresh DynamicCache holding `kv` expanded to `batch` rows (a view: the first forward's
    concatenation makes the only copy, and `kv` itself is never modified)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, (k, v) in enumerate(kv):
        cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), i)
    return cache


class PrefixCache:
    """KV caches of token prefixes already run, each extended from the longest one it starts with."""

    def __init__(self, lm: ScoringModel):
        self.lm, self.entries = lm, {}  # tuple(ids) -> per-layer (k, v) of shape (1, heads, len, d)

    def get(self, prefix: list[int]):
        key = tuple(prefix)
        if key in self.entries:
            return self.entries[key]
        start, kv = 0, None
        for known, known_kv in self.entries.items():
            if len(known) > start and key[:len(known)] == known:
                start, kv = len(known), known_kv
        lm = self.lm
        ids = torch.tensor([prefix[start:]], device=lm.device)
        pos = torch.arange(start, len(prefix), device=lm.device)[None]
        extra = {CACHE_ARG: _cache_of(kv, 1)} if kv is not None else {}
        with lm.autocast():
            out = lm.decoder_forward(ids, position_ids=pos, use_cache=True, **extra)
        lm.stats.positions += len(prefix) - start
        lm.stats.prefix_positions += len(prefix) - start
        self.entries[key] = _layers(getattr(out, CACHE_ARG))
        return self.entries[key]

    def keep(self, *prefixes: list[int]) -> None:
        """Forget every cached prefix but these (bounded memory)."""
        keys = {tuple(p) for p in prefixes}
        self.entries = {k: v for k, v in self.entries.items() if k in keys}


# -- one batch of packed rows ---------------------------------------------------------------------


def _attention_mask(lm: ScoringModel, seg: torch.Tensor, real: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """(B, 1, L, n_prefix + L) mask: query q sees the whole prefix, and key k <= q of its row that is
    real and in the suffix (segment 0) or in q's own choice; padded queries see themselves only."""
    impl = getattr(lm.model.config, "_attn_implementation", "sdpa") or "sdpa"
    if impl not in ("sdpa", "eager"):  # flash attention takes no 4-D mask: it would silently score wrongly
        raise NotImplementedError(f"packed scoring needs sdpa or eager attention, the model uses {impl!r}")
    B, L = seg.shape
    idx = torch.arange(L, device=seg.device)
    causal = idx[None, :, None] >= idx[None, None, :]
    same = (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
    rows = causal & same & real[:, None, :] & real[:, :, None]
    rows |= torch.eye(L, dtype=torch.bool, device=seg.device)[None] & ~real[:, :, None]
    mask = torch.cat([real[:, :, None].expand(B, L, n_prefix), rows], dim=-1)[:, None]
    if impl == "eager":  # eager adds the mask to the scores
        dtype = torch.bfloat16 if lm.dtype == "bf16" else next(lm.model.parameters()).dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    return mask


@torch.no_grad()
def _score_batch(lm: ScoringModel, batch: list[Item], n_prefix: int, kv) -> list[ContinuationScores]:
    B = len(batch)
    rows, pred_at, targets, owner = [], [], [], []
    n_choice = 0
    for ctx, conts in batch:
        suffix = ctx[n_prefix:]
        row, seg = list(suffix), [0] * len(suffix)
        pos = list(range(n_prefix, len(ctx)))
        for c in conts:
            start = len(row)
            pred_at += [len(suffix) - 1] + [start + i for i in range(len(c) - 1)]
            row += c[:-1]
            seg += [n_choice + 1] * (len(c) - 1)
            pos += range(len(ctx), len(ctx) + len(c) - 1)
            targets += c
            owner += [n_choice] * len(c)
            n_choice += 1
        rows.append((row, seg, pos))
    L = max(len(r) for r, _, _ in rows)
    ids = np.full((B, L), lm.pad_id, dtype=np.int64)
    seg = np.full((B, L), -1, dtype=np.int64)
    pos = np.zeros((B, L), dtype=np.int64)
    for b, (r, s, p) in enumerate(rows):
        ids[b, :len(r)], seg[b, :len(r)], pos[b, :len(r)] = r, s, p
    real_positions = sum(len(r) for r, _, _ in rows)
    lm.stats.positions += real_positions
    lm.stats.padding += B * L - real_positions
    row_of = np.repeat(np.arange(B), [sum(len(c) for c in conts) for _, conts in batch])
    dev = lm.device
    seg_t = torch.from_numpy(seg).to(dev)
    mask = _attention_mask(lm, seg_t, seg_t >= 0, n_prefix)
    extra = {CACHE_ARG: _cache_of(kv, B)} if n_prefix else {}
    with lm.autocast():
        hidden = lm.decoder_forward(torch.from_numpy(ids).to(dev), attention_mask=mask,
                                    position_ids=torch.from_numpy(pos).to(dev), use_cache=False,
                                    **extra).last_hidden_state
        picked_hidden = hidden[torch.from_numpy(row_of).to(dev), torch.tensor(pred_at, device=dev)]
        token_lp, correct = token_logprobs(lm, picked_hidden, torch.tensor(targets, device=dev))
    correct = correct.cpu().numpy()
    sums = torch.zeros(n_choice, dtype=torch.float64, device=dev).index_add_(
        0, torch.tensor(owner, device=dev), token_lp.double()).cpu().numpy()
    results, j, t = [], 0, 0
    for _, conts in batch:
        lengths = np.array([len(c) for c in conts])
        per = []
        for n in lengths:
            per.append(correct[t:t + n])
            t += n
        results.append(ContinuationScores(sums[j:j + len(conts)], lengths, per))
        j += len(conts)
    return results


def token_logprobs(lm: ScoringModel, hidden: torch.Tensor, targets: torch.Tensor,
                   chunk_bytes: int = 64 << 20) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) and "target is the argmax" for (N, d) final hidden states and (N,) targets. The LM
    head runs on chunks of about `chunk_bytes` of fp32 logits, so (N, V) logits never exist at once."""
    V = lm.model.get_output_embeddings().weight.shape[0]
    step = max(1, chunk_bytes // (4 * V))
    lps, hits = [], []
    for i in range(0, hidden.shape[0], step):
        logits = lm.logits(hidden[i:i + step])
        picked = logits.gather(-1, targets[i:i + step, None]).squeeze(-1)
        lps.append(picked - logits.logsumexp(-1))
        hits.append(picked >= logits.amax(-1))
    if not lps:
        return hidden.new_zeros(0, dtype=torch.float32), torch.zeros(0, dtype=torch.bool, device=hidden.device)
    return torch.cat(lps), torch.cat(hits)


def _row_length(item: Item, n_prefix: int) -> int:
    ctx, conts = item
    return len(ctx) - n_prefix + sum(len(c) - 1 for c in conts)


def score_encoded(lm: ScoringModel, items: list[Item]) -> list[ContinuationScores]:
    """Scores of already tokenised (context, continuations) items; results in input order."""
    if not items:
        return []
    prefixes = PrefixCache(lm)
    shared = items[0][0][:_common_prefix([ctx for ctx, _ in items])]
    if shared:
        prefixes.get(shared)  # run once; every batch's own prefix extends it
    # Longest rows first: batches of similar length waste little padding.
    order = sorted(range(len(items)), key=lambda i: -_row_length(items[i], len(shared)))
    results: list[ContinuationScores | None] = [None] * len(items)
    for start in range(0, len(order), lm.batch_size):
        idx = order[start:start + lm.batch_size]
        batch = [items[i] for i in idx]
        prefix = batch[0][0][:_common_prefix([ctx for ctx, _ in batch])]
        kv = prefixes.get(prefix) if prefix else None
        prefixes.keep(shared, prefix)
        for i, r in zip(idx, _score_batch(lm, batch, len(prefix), kv)):
            results[i] = r
    return results  # type: ignore[return-value]


def score_choices(lm: ScoringModel, contexts: list[str], choices: list[list[str]]) -> list[ContinuationScores]:
    """Log-likelihood of each item's choices given its context, batched `lm.batch_size` items at a time."""
    return score_encoded(lm, [_encode_item(lm, ctx, ch) for ctx, ch in zip(contexts, choices)])


# -- greedy generation ------------------------------------------------------------------------------


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
def generate_tokens(lm: ScoringModel, prompts: list[list[int]], *, max_tokens: list[int],
                    stops: list[tuple[str, ...]], eos_ids: frozenset[int] | None = None) -> list[list[int]]:
    """Greedy continuations of token prompts with a KV cache, batched `lm.batch_size` prompts at a
    time. Each row stops on its own: after an EOS token (`eos_ids`, default the tokenizer's; kept in
    the output), at its own `max_tokens`, or once its decoded text contains one of its stop sequences;
    finished rows leave the batch (and its KV cache) at once."""
    eos_ids = eos_ids if eos_ids is not None else frozenset([lm.eos_id])
    outputs: list[list[int] | None] = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    dev = lm.device
    for start in range(0, len(order), lm.batch_size):
        idx = order[start:start + lm.batch_size]
        ids, mask = _left_pad([prompts[i] for i in idx], lm.pad_id)
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        live = list(range(len(idx)))            # batch rows still generating, by position in `idx`
        gen: list[list[int]] = [[] for _ in idx]
        cache = None
        while live:
            extra = {CACHE_ARG: cache} if cache is not None else {}
            with lm.autocast():
                out = lm.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                               logits_to_keep=1, **extra) if lm.last_logits_only else \
                      lm.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **extra)
            cache = getattr(out, CACHE_ARG)
            lm.stats.positions += int(mask.shape[0] * ids.shape[1])
            nxt = out.logits[:, -1].argmax(-1)
            keep = []
            for r, token in enumerate(nxt.tolist()):  # one host copy per step: the stop checks need text
                row = live[r]
                i = idx[row]
                gen[row].append(token)
                done = token in eos_ids or len(gen[row]) >= max_tokens[i] or (
                    bool(stops[i]) and any(s in lm.tokenizer.decode(gen[row][-_tail(stops[i]):])
                                           for s in stops[i]))
                if not done:
                    keep.append(r)
            if len(keep) < len(live):
                if not keep:
                    break
                sel = torch.tensor(keep, device=dev)
                cache.batch_select_indices(sel)
                nxt, mask, pos = nxt[sel], mask[sel], pos[sel]
                live = [live[r] for r in keep]
            ids = nxt[:, None]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            pos = pos[:, -1:] + 1
        for row, i in enumerate(idx):
            outputs[i] = gen[row]
    return outputs  # type: ignore[return-value]


def _tail(stops: tuple[str, ...]) -> int:
    """Tokens to decode to see a stop sequence that just completed: one per character is enough."""
    return max(len(s) for s in stops) + 2


def generate_greedy(lm: ScoringModel, prompts: list[str], *, max_tokens: list[int],
                    stops: list[tuple[str, ...]]) -> list[str]:
    """Greedy continuations of text prompts, cut at the first stop sequence (see `generate_tokens`)."""
    limits = [max(1, min(m, lm.max_length - 1)) for m in max_tokens]  # leave room for a 1-token prompt
    encoded = [list(lm.encode(p) or [lm.prefix_id])[-(lm.max_length - n):] for p, n in zip(prompts, limits)]
    gens = generate_tokens(lm, encoded, max_tokens=limits, stops=stops)
    return [_cut_at_stop(lm.tokenizer.decode([t for t in g if t != lm.eos_id], skip_special_tokens=True), s)
            for g, s in zip(gens, stops)]


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cut = min((pos for s in stops if (pos := text.find(s)) >= 0), default=len(text))
    return text[:cut]
