"""Per-item scores -> per-task metrics, each with a standard error and n. Pure numpy.

Multiple choice (per item: summed log-prob of each choice given the context):
  acc                 argmax of log-prob is the gold choice
  acc_norm            argmax of log-prob / choice length in characters (lm-eval's acc_norm)
  correct_choice_prob probability of the gold choice, softmax over the choices (Du et al.'s CorrectChoiceProb)
  brier_sum           sum over the C choices of (y - p)^2  (Du et al.; uniform 4-way = 0.75)
  brier_mean          brier_sum / C                        (BIG-bench; uniform = (C-1)/C^2)
  gold_logprob        log-prob of the gold choice, nats (summed over its tokens)
  gold_bpb            bits per UTF-8 byte of the gold choice
Generation (greedy answer; log-probs of the reference continuation under teacher forcing):
  exact_match         extracted answer equals the reference answer
  token_edit_distance Levenshtein distance between answer and reference, in tokens (Schaeffer et al.)
  per_token_accuracy  share of reference tokens that are the model's argmax under teacher forcing
  target_logprob      log-prob of the reference continuation, nats
  target_bpb          bits per UTF-8 byte of the reference continuation
The standard error is the sample standard deviation over items / sqrt(n), as lm-eval reports it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

LN2 = math.log(2)


@dataclass(frozen=True)
class Metric:
    """One aggregated metric of one task."""

    name: str
    value: float
    stderr: float
    n: int
    chance: float | None
    higher_is_better: bool = True


def mean_stderr(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), se


def _metric(name, values, chance, higher_is_better=True) -> Metric:
    value, se = mean_stderr(values)
    return Metric(name, value, se, len(values), chance, higher_is_better)


def choice_probs(logprobs: np.ndarray) -> np.ndarray:
    """Softmax over one item's choices (log-probs normalised over the options only)."""
    z = logprobs - logprobs.max()
    p = np.exp(z)
    return p / p.sum()


def brier_sum(probs: np.ndarray, gold: int) -> float:
    y = np.zeros_like(probs)
    y[gold] = 1.0
    return float(((y - probs) ** 2).sum())


def multiple_choice_metrics(items: list[dict]) -> list[Metric]:
    """items: dicts with `logprobs` (per choice), `choice_chars`, `gold`, `gold_bytes`."""
    acc, acc_norm, ccp, bsum, bmean, glp, gbpb = ([] for _ in range(7))
    chance_acc, chance_bsum, chance_bmean = [], [], []
    for it in items:
        lp = np.asarray(it["logprobs"], dtype=float)
        c, gold = lp.size, it["gold"]
        probs = choice_probs(lp)
        acc.append(float(np.argmax(lp) == gold))
        acc_norm.append(float(np.argmax(lp / np.asarray(it["choice_chars"], dtype=float)) == gold))
        ccp.append(float(probs[gold]))
        bsum.append(brier_sum(probs, gold))
        bmean.append(bsum[-1] / c)
        glp.append(float(lp[gold]))
        gbpb.append(-lp[gold] / LN2 / max(it["gold_bytes"], 1))
        chance_acc.append(1 / c)
        chance_bsum.append((c - 1) / c)
        chance_bmean.append((c - 1) / c**2)
    return [
        _metric("acc", acc, float(np.mean(chance_acc))),
        _metric("acc_norm", acc_norm, float(np.mean(chance_acc))),
        _metric("correct_choice_prob", ccp, float(np.mean(chance_acc))),
        _metric("brier_sum", bsum, float(np.mean(chance_bsum)), higher_is_better=False),
        _metric("brier_mean", bmean, float(np.mean(chance_bmean)), higher_is_better=False),
        _metric("gold_logprob", glp, None),
        _metric("gold_bpb", gbpb, None, higher_is_better=False),
    ]


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str, how: str) -> str:
    """The answer part of a generation: stripped text, its first line, or its last number."""
    if how == "last_number":
        numbers = _NUMBER.findall(text)
        return numbers[-1].replace(",", "").rstrip(".") if numbers else ""
    if how == "first_line":
        return text.strip().split("\n", 1)[0].strip()
    return text.strip()


def normalize_answer(text: str) -> str:
    return " ".join(text.strip().rstrip(".").split())


def edit_distance(a: list, b: list) -> int:
    """Levenshtein distance between two sequences (insert, delete, substitute cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i]
        for j, y in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def generation_metrics(items: list[dict]) -> list[Metric]:
    """items: dicts with `exact` (bool), `edit_distance`, `target_token_correct` (list of bools),
    `target_logprob`, `target_bytes`."""
    return [
        _metric("exact_match", [float(it["exact"]) for it in items], 0.0),
        _metric("token_edit_distance", [it["edit_distance"] for it in items], None, higher_is_better=False),
        _metric("per_token_accuracy", [float(np.mean(it["target_token_correct"])) for it in items], 0.0),
        _metric("target_logprob", [it["target_logprob"] for it in items], None),
        _metric("target_bpb", [-it["target_logprob"] / LN2 / max(it["target_bytes"], 1) for it in items], None,
                higher_is_better=False),
    ]
