"""The issue-14 collision for real: one JSONL task scored by losslens and by the real lm-eval package
under the same name, both stored in one store with their per-item records, side by side."""

from __future__ import annotations

from test_harness_parity import ours, setup  # noqa: F401  (module fixtures: a tiny Llama, lm-eval run once)

from losslens.evaluate.evaluate import lm_eval_samples, task_samples
from losslens.store import LM_EVAL, MetricRow, Store

SETTINGS = {"seed": 0, "limit": None, "dtype": "fp32"}


def test_both_scorers_of_one_task_name_are_stored_apart_with_their_items(setup, ours, tmp_path):  # noqa: F811
    name = setup["name"]
    assert ours.task == name  # the same name from both scorers: the case that used to overwrite
    rows = [MetricRow(ours.task, m.name, m.value, n=m.n, chance=m.chance, higher_is_better=m.higher_is_better)
            for m in ours.metrics]
    theirs = [MetricRow(r.task, r.metric, r.value, stderr=r.stderr, n=r.n, chance=r.chance, source=LM_EVAL)
              for r in setup["harness"].rows]
    with Store(tmp_path / "r.db") as st:
        for step in (1, 2, 3):  # three checkpoints (the same numbers): a curve per scorer
            ckpt = st.upsert_checkpoint(st.upsert_run("tiny", params=1000), step=step, tokens=step, loss=4.0 - step)
            st.upsert_metrics(ckpt, rows + theirs, settings=SETTINGS)
            st.upsert_samples(ckpt, name, task_samples(ours), settings=SETTINGS)
            st.upsert_samples(ckpt, name, lm_eval_samples(setup["harness"].raw)[name], source=LM_EVAL,
                              settings=SETTINGS)
        tidy, items = st.tidy(), st.samples(step=1)
    assert set(zip(tidy.task, tidy.source)) == {(name, "losslens"), (f"lm-eval:{name}", "lm-eval")}
    acc = tidy[(tidy.metric == "acc") & (tidy.step == 1)].set_index("source").value
    assert acc["losslens"] == ours.metric("acc").value
    assert acc["lm-eval"] == setup["harness"].raw["results"][name]["acc,none"]
    mine, lm_eval = items[items.source == "losslens"], items[items.source == LM_EVAL]
    assert len(mine) == len(lm_eval) == len(setup["items"]) == 50
    # item by item: the same gold, the same choice, log-likelihoods within float error
    picks = setup["harness"].choices(name)
    assert lm_eval.choice.tolist() == [p["pred"] for p in picks] == mine.choice.tolist()
    assert lm_eval.gold.tolist() == [it["gold"] for it in setup["items"]] == mine.gold.tolist()
    for a, b in zip(mine.logprobs, lm_eval.logprobs):
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4
    assert lm_eval.correct.astype(float).mean() == acc["lm-eval"]
