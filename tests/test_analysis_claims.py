"""The paper's claims as typed objects: each status ("holds", "fails", "not testable here") arises from
the data it should, a claim the data cannot decide is never "fails", summary.json keeps `holds` (bool)
and `all_hold`, and the one renderer gives the report and the demo the same rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from losslens.analysis.pipeline import analyze
from losslens.analysis.study import FAILS, HOLDS, UNTESTABLE, Claim, claims_from_summary, decide_claims, summary_of
from losslens.analysis.synthetic import planted_table
from losslens.analysis.table import TidyTable, validate
from losslens.report.claims import claim_rows, headline


def _report(shapes: dict[str, str], *, continuous: bool = True, seed: int = 0):
    """A planted ladder whose tasks carry acc and (as a stand-in continuous metric) correct_choice_prob."""
    df = planted_table(shapes, seed=seed)
    if continuous:
        df = pd.concat([df, df.assign(metric="correct_choice_prob")], ignore_index=True)
    return analyze(TidyTable(validate(df)), seed=seed, bootstrap=100, permutations=19, scaling_law=False)


@pytest.fixture(scope="module")
def rich_report():
    return _report({"exam": "emergent", "cloze": "linear"})


def _by_key(claims):
    return {c.key: c for c in claims}


def test_every_claim_holds_on_a_planted_study(rich_report):
    c = _by_key(decide_claims(rich_report, rich_report))  # the same report as the "other genres" axis
    assert rich_report.task("exam", "acc").verdict == "emergent"
    for key in ("a_smooth", "b_emergent", "d_backtest", "e_other_genres"):
        assert c[key].status == HOLDS, (key, c[key].reason, c[key].evidence)
    assert c["b_emergent"].details["task"] == "exam"
    assert any("exam/correct_choice_prob: emergent, eta" in line for line in c["b_emergent"].evidence)
    # (d) is claim 3, tested by the backtest fitted above eta
    assert all("not_predictable" in line and "eta" in line for line in c["d_backtest"].evidence[:2])
    assert c["c_same_loss"].status in (HOLDS, UNTESTABLE)  # decided by equivalence, or honestly undecided


def test_untestable_is_never_fails(rich_report):
    # no other-genres axis: (e) cannot be tested
    c = _by_key(decide_claims(rich_report, None))
    assert c["e_other_genres"].status == UNTESTABLE and "no other-genres axis" in c["e_other_genres"].reason
    # no continuous metric at all: (b) is not testable, and so are (d) and (e), which need (b)'s task
    only_acc = _report({"exam": "emergent", "cloze": "linear"}, continuous=False)
    c = _by_key(decide_claims(only_acc, only_acc))
    assert c["b_emergent"].status == UNTESTABLE and "continuous" in c["b_emergent"].reason
    assert c["d_backtest"].status == UNTESTABLE and "no emergent task" in c["d_backtest"].reason
    assert c["e_other_genres"].status == UNTESTABLE
    # nothing smooth: (c) has nothing to test
    flat = _report({"f": "flat"}, continuous=False)
    c = _by_key(decide_claims(flat, None))
    assert c["a_smooth"].status == FAILS and c["c_same_loss"].status == UNTESTABLE
    assert "no smooth task" in c["c_same_loss"].reason


def test_fails_when_the_data_say_no():
    smooth_only = _report({"cloze": "linear", "story": "sigmoid"})
    c = _by_key(decide_claims(smooth_only, smooth_only))
    assert c["b_emergent"].status == FAILS and "no task is emergent" in c["b_emergent"].reason
    assert c["a_smooth"].status == HOLDS


def test_summary_json_keeps_holds_and_all_hold(rich_report):
    decided = decide_claims(rich_report, None)
    summary = json.loads(json.dumps(summary_of(decided, rich_report)))
    for c in decided:
        entry = summary[c.key]
        assert entry["holds"] is (c.status == HOLDS) and entry["status"] == c.status
        assert entry["evidence"] == list(c.evidence) and entry["label"] == c.label
    assert summary["all_hold"] is False  # (e) is not testable here, so not all hold
    # back from the JSON: the same claims (as `losslens report` and the demo read them)
    assert claims_from_summary(summary) == decided
    with pytest.raises(ValueError):
        Claim("a_smooth", "(a)", "maybe")


def test_one_renderer_for_report_and_demo(rich_report):
    decided = decide_claims(rich_report, None)
    rows = claim_rows(decided)
    assert [r.key for r in rows] == ["a_smooth", "b_emergent", "c_same_loss", "d_backtest", "e_other_genres"]
    e = rows[-1]
    assert e.status == UNTESTABLE and e.evidence[-1].startswith("why not testable: no other-genres axis")
    assert "not testable here" in headline(decided)
    missing = claim_rows(decided[:2])
    assert [r.status for r in missing[2:]] == ["missing"] * 3


def test_the_demo_prints_the_same_rows(rich_report):
    """The demo's table (fast: no training) shows each row of the shared renderer, brackets intact."""
    from rich.console import Console

    from losslens.ladder.demo import claims_table

    decided = decide_claims(rich_report, None)
    console = Console(width=400, record=True)
    console.print(claims_table(decided, "claims"))
    text = console.export_text()
    for row in claim_rows(decided):
        assert row.label in text and row.status in text
        assert "; ".join(row.evidence)[:80] in text  # eta [lo, hi] is text, not rich markup
