"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from losslens.evaluate.metrics import edit_distance, extract_answer, generation_metrics, multiple_choice_metrics


def _by_name(metrics):
    return {m.name: m for m in metrics}


def test_multiple_choice_metrics_by_hand():
    # Item 1: probs (0.5, 0.25, 0.125, 0.125), gold 0. Item 2: uniform over 4, gold 2.
    p1 = np.array([0.5, 0.25, 0.125, 0.125])
    items = [
        {"logprobs": np.log(p1 * 0.1).tolist(), "choice_chars": [4, 2, 2, 2], "gold": 0, "gold_bytes": 4},
        {"logprobs": [math.log(0.01)] * 4, "choice_chars": [1, 1, 1, 1], "gold": 2, "gold_bytes": 1},
    ]
    m = _by_name(multiple_choice_metrics(items))
    # acc: item 1 right (argmax 0); item 2 ties -> argmax picks index 0, wrong.
    assert m["acc"].value == 0.5 and m["acc"].n == 2 and m["acc"].chance == 0.25
    # acc_norm: item 1 per-char log-probs: log(.05)/4 = -0.749 vs log(.025)/2 = -1.84 -> still 0.
    assert m["acc_norm"].value == 0.5
    # CorrectChoiceProb: 0.5 and 0.25.
    assert m["correct_choice_prob"].value == pytest.approx(0.375)
    # Brier (Du, summed): item 1 (1-.5)^2 + .25^2 + 2 * .125^2 = 0.34375; item 2 uniform = 0.75.
    assert m["brier_sum"].value == pytest.approx((0.34375 + 0.75) / 2)
    assert m["brier_sum"].chance == pytest.approx(0.75) and not m["brier_sum"].higher_is_better
    # BIG-bench convention: divided by C = 4; uniform = 3/16.
    assert m["brier_mean"].value == pytest.approx((0.34375 + 0.75) / 8)
    assert m["brier_mean"].chance == pytest.approx(3 / 16)
    # stderr: sample sd / sqrt(n) of (1, 0) = 0.7071 / 1.4142 = 0.5
    assert m["acc"].stderr == pytest.approx(0.5)
    assert m["gold_logprob"].value == pytest.approx((math.log(0.05) + math.log(0.01)) / 2)
    assert m["gold_bpb"].value == pytest.approx((-math.log(0.05) / math.log(2) / 4 - math.log(0.01) / math.log(2)) / 2)


def test_brier_chance_depends_on_number_of_choices():
    items = [{"logprobs": [0.0, 0.0], "choice_chars": [1, 1], "gold": 1, "gold_bytes": 1}]
    m = _by_name(multiple_choice_metrics(items))
    assert m["brier_sum"].value == pytest.approx(0.5) and m["brier_mean"].value == pytest.approx(0.25)
    assert m["brier_mean"].chance == pytest.approx(1 / 4) and m["acc"].chance == 0.5


def test_generation_metrics_and_helpers():
    assert edit_distance([1, 2, 3], [1, 3]) == 1 and edit_distance([], [1, 2]) == 2
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert extract_answer(" 3 + 4 = 7. The answer is 1,234.", "last_number") == "1234"
    assert extract_answer(" no digits", "last_number") == ""
    assert extract_answer("  Rita Chen\nmore", "first_line") == "Rita Chen"
    items = [
        {"exact": True, "edit_distance": 0, "target_token_correct": [True, True], "target_logprob": -1.0,
         "target_bytes": 2},
        {"exact": False, "edit_distance": 3, "target_token_correct": [True, False, False, False],
         "target_logprob": -3.0, "target_bytes": 6},
    ]
    m = _by_name(generation_metrics(items))
    assert m["exact_match"].value == 0.5 and m["exact_match"].chance == 0.0
    assert m["token_edit_distance"].value == 1.5 and not m["token_edit_distance"].higher_is_better
    assert m["per_token_accuracy"].value == pytest.approx((1 + 0.25) / 2)
    assert m["target_logprob"].value == -2.0
    assert m["target_bpb"].value == pytest.approx((1 / math.log(2) / 2 + 3 / math.log(2) / 6) / 2)
