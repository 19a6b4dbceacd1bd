"""Parity with lm-evaluation-harness: on one local multiple-choice task and one tiny HF model, losslens
picks the same choice as lm-eval on every item, for acc and acc_norm, and the aggregates are equal.
lm-eval's own tasks run through the losslens backend (`LosslensLM`) give the same per-item answers and
metrics as through lm-eval's HFLM: multiple choice, greedy generation and rolling log-likelihood.

The task is built to hit lm-eval's tokenization rules: contexts ending in a space (moved to the
continuation), choices with and without a leading space (some merge with the context's last word),
2 to 5 choices of very different lengths, an empty context (scored after the prefix token).
lm-eval runs once per module (its import and run take ~10 s on 2 cores).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

WORDS = ("the cat dog sat ran on a mat hat red blue green big small house tree river stone "
         "quickly slowly under over near far bright dark old new king queen ship sea").split()


def _items(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)

    def words(lo: int, hi: int) -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))

    items = []
    for i in range(n):
        context, lead, stem = words(3, 14).capitalize(), " ", ""
        if i % 6 == 0:
            context, lead = context + " ", ""  # trailing space: lm-eval moves it into each continuation
        elif i % 6 == 1:
            context += ":"
        elif i % 6 == 2:  # the context ends mid-word, so its last token fuses with the choice's first
            word = rng.choice([w for w in WORDS if len(w) >= 5])
            context, lead, stem = context + " " + word[:2], "", word[2:] + " "
        if i == 7:
            context = ""  # empty context: scored after the prefix (BOS/EOS) token
        k = rng.randint(2, 5)
        # (after a fused stem, at least 3 more words, so the continuation keeps some tokens of its own)
        choices = list(dict.fromkeys(lead + stem + words(3 if stem else 1, 6) for _ in range(k)))
        while len(choices) < 2:
            choices.append(choices[0] + " sea")
        items.append({"id": f"p-{i:03d}", "context": context, "choices": choices, "gold": rng.randrange(len(choices))})
    return items


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from losslens.data.tokenizer import train_bpe
    from losslens.evaluate.harness import choice_task_yaml, run_harness

    tmp = tmp_path_factory.mktemp("parity")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp / "hf")}.items():
            mp.setenv(key, value)
        items = _items(50)
        task_file = tmp / "parity.jsonl"
        task_file.write_text("".join(json.dumps(it) + "\n" for it in items))
        corpus = [it["context"] + c for it in items for c in it["choices"]] * 3
        train_bpe(corpus, 320, tmp / "tok")
        tokenizer = AutoTokenizer.from_pretrained(tmp / "tok")
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                             initializer_range=0.1)  # sharp logits: choices far apart, no near-ties
        model = LlamaForCausalLM(config).eval()
        name = choice_task_yaml(task_file, tmp / "tasks", cache_dir=tmp / "hf" / "datasets")
        harness = run_harness(model, tokenizer, [name], include_path=tmp / "tasks", batch_size=8, backend="hf")
        yield {"items": items, "task_file": task_file, "model": model, "tokenizer": tokenizer,
               "harness": harness, "name": name, "tmp": tmp}


@pytest.fixture(scope="module")
def backends(setup):
    """The multiple-choice task, a generation task and a rolling log-likelihood task, through HFLM and
    through the losslens backend (one lm-eval run each)."""
    from losslens.evaluate.harness import generation_task_yaml, rolling_task_yaml, run_harness

    tmp, rng = setup["tmp"], random.Random(1)
    gen = tmp / "gen.jsonl"
    gen.write_text("".join(json.dumps({"id": f"g{i}", "prompt": " ".join(rng.choices(WORDS, k=rng.randint(2, 9))),
                                       "answer": rng.choice(WORDS), "stop": [" the", "."]}) + "\n"
                           for i in range(16)))
    docs = tmp / "docs.jsonl"  # one document longer than the model's 128 positions: several windows
    docs.write_text("".join(json.dumps({"text": " ".join(rng.choices(WORDS, k=n))}) + "\n" for n in (5, 40, 150, 12)))
    names = [setup["name"],
             generation_task_yaml(gen, tmp / "tasks", max_gen_toks=12, cache_dir=tmp / "hf" / "datasets"),
             rolling_task_yaml(docs, tmp / "tasks", cache_dir=tmp / "hf" / "datasets")]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp / "hf")}.items():
            mp.setenv(key, value)
        return {b: run_harness(setup["model"], setup["tokenizer"], names, include_path=tmp / "tasks",
                               batch_size=8, backend=b, bootstrap_iters=0)
                for b in ("hf", "losslens")}, names


@pytest.fixture(scope="module")
def ours(setup):
    from losslens.evaluate.lm import ScoringModel
    from losslens.evaluate.runner import evaluate_task
    from losslens.evaluate.tasks import load_task

    lm = ScoringModel.from_hf(setup["model"], setup["tokenizer"], batch_size=8)
    return evaluate_task(lm, load_task(setup["task_file"]))


def test_items_exercise_the_tokenization_rules(setup):
    items, tok = setup["items"], setup["tokenizer"]
    assert sum(it["context"].endswith(" ") for it in items) >= 8
    assert any(it["context"] == "" for it in items)
    assert {len(it["choices"]) for it in items} >= {2, 3, 4, 5}
    merged = 0  # a choice whose first token fuses with the context's last word
    for it in items:
        ctx = tok(it["context"].rstrip(), add_special_tokens=False)["input_ids"]
        for c in it["choices"]:
            whole = tok(it["context"] + c, add_special_tokens=False)["input_ids"]
            merged += bool(ctx) and whole[:len(ctx)] != ctx
    assert merged >= 1


def test_per_item_choices_equal_lm_eval(setup, ours):
    theirs = setup["harness"].choices(setup["name"])
    assert len(theirs) == len(ours.samples) == 50
    for t, s in zip(theirs, ours.samples):
        lp = np.array(s["logprobs"])
        pred, pred_norm = int(np.argmax(lp)), int(np.argmax(lp / np.array(s["choice_chars"])))
        assert (pred, pred_norm) == (t["pred"], t["pred_norm"]), s["id"]
        assert (float(pred == s["gold"]), float(pred_norm == s["gold"])) == (t["acc"], t["acc_norm"]), s["id"]
        np.testing.assert_allclose(lp, t["logprobs"], rtol=1e-4, atol=1e-4, err_msg=s["id"])


def test_aggregate_acc_and_acc_norm_equal_lm_eval(setup, ours):
    results = setup["harness"].raw["results"][setup["name"]]
    for metric in ("acc", "acc_norm"):
        m = ours.metric(metric)
        assert m.value == results[f"{metric},none"]
        assert m.stderr == pytest.approx(results[f"{metric}_stderr,none"], rel=1e-12)
        assert m.n == 50
    assert 0 < results["acc,none"] < 1  # a random model: neither all right nor all wrong


def test_run_harness_rows(setup):
    items, results = setup["items"], setup["harness"].raw["results"][setup["name"]]
    rows = {r.metric: r for r in setup["harness"].rows}
    assert set(rows) == {"acc", "acc_norm"}
    chance = np.mean([1 / len(it["choices"]) for it in items])
    for metric, row in rows.items():
        assert row.task == setup["name"] and row.n == 50 and row.higher_is_better
        assert row.value == results[f"{metric},none"]
        assert row.stderr == results[f"{metric}_stderr,none"]
        assert row.chance == pytest.approx(chance)


def test_results_file_written_by_lm_eval_imports(setup, tmp_path):
    """lm-eval's own writer (as `lm_eval --output_path` uses it) -> `losslens import-lm-eval` -> store."""
    from lm_eval.loggers import EvaluationTracker

    from losslens.cli import main
    from losslens.store import Store

    raw = dict(setup["harness"].raw)
    samples = raw.pop("samples")
    tracker = EvaluationTracker(output_path=str(tmp_path / "out"))
    tracker.general_config_tracker.model_name = "tiny-llama"
    tracker.general_config_tracker.model_name_sanitized = "tiny-llama"
    tracker.save_results_aggregated(results=raw, samples=samples)
    for task, task_samples in samples.items():
        tracker.save_results_samples(task_name=task, samples=task_samples)
    db = tmp_path / "r.db"
    argv = ["import-lm-eval", str(tmp_path / "out"), "--db", str(db), "--model", "tiny", "--params", "12345",
            "--tokens", "1000", "--loss", "3.5", "--step", "7"]
    assert main(argv) == 0
    with Store(db, create=False) as st:
        df = st.tidy()
    by_metric = {r.metric: r for r in df.itertuples()}
    assert set(by_metric) == {"acc", "acc_norm"}
    chance = np.mean([1 / len(it["choices"]) for it in setup["items"]])
    for metric, row in by_metric.items():
        assert (row.model, row.params, row.tokens, row.loss, row.step, row.n) == ("tiny", 12345, 1000, 3.5, 7, 50)
        assert row.value == setup["harness"].raw["results"][setup["name"]][f"{metric},none"]
        assert row.chance == pytest.approx(chance)  # from the samples_*.jsonl file beside the results


def test_losslens_backend_answers_like_hflm(backends):
    runs, (choice, gen, rolling) = backends
    hf, ours = runs["hf"].raw, runs["losslens"].raw
    for task in (choice, gen, rolling):
        assert ours["results"][task] == pytest.approx(hf["results"][task], rel=1e-6), task
        a = sorted(hf["samples"][task], key=lambda x: x["doc_id"])
        b = sorted(ours["samples"][task], key=lambda x: x["doc_id"])
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            if task == gen:
                assert x["resps"] == y["resps"], x["doc_id"]   # the same generated text, item by item
            else:
                np.testing.assert_allclose(np.array(y["resps"], dtype=object)[..., 0].astype(float).ravel(),
                                           np.array(x["resps"], dtype=object)[..., 0].astype(float).ravel(),
                                           rtol=1e-7, atol=1e-5, err_msg=f"{task} {x['doc_id']}")  # HFLM sums in fp32
    theirs, mine = runs["hf"].choices(choice), runs["losslens"].choices(choice)
    assert [(t["pred"], t["pred_norm"]) for t in theirs] == [(m["pred"], m["pred_norm"]) for m in mine]
    outputs = [s["filtered_resps"][0] for s in hf["samples"][gen]]
    assert len(set(outputs)) > 1 and 0 < hf["results"][rolling]["bits_per_byte,none"]


def test_bpb_lm_eval_mode_reproduces_lm_eval_bits_per_byte(setup, backends):
    """`heldout_loss(bpb="lm-eval")` gives lm-eval's own bits_per_byte (HFLM) on the same documents."""
    from losslens.evaluate.heldout import heldout_loss, read_corpus
    from losslens.evaluate.lm import ScoringModel

    runs, (_, _, rolling) = backends
    lm = ScoringModel.from_hf(setup["model"], setup["tokenizer"], batch_size=4)
    docs = setup["tmp"] / "docs.jsonl"
    ours = heldout_loss(lm, read_corpus(docs), corpus="docs", bpb="lm-eval")
    theirs = runs["hf"].raw["results"][rolling]["bits_per_byte,none"]
    assert ours.bits_per_byte == pytest.approx(theirs, rel=1e-6)
    assert ours.n_documents == 4
    default = heldout_loss(lm, read_corpus(docs), corpus="docs")  # EOS per document, packed windows
    assert abs(default.bits_per_byte - theirs) > 1e-4
