"""The batched, cached scorer equals naive one-sequence-at-a-time scoring; generation is greedy."""

from __future__ import annotations

import pytest
import torch

from losslens.evaluate.heldout import heldout_loss, read_corpus
from losslens.evaluate.lm import load_lm
from losslens.evaluate.scorer import generate_greedy, score_choices
from losslens.train import checkpoint as ckpt


@pytest.fixture(scope="module")
def lm(world_run):
    return load_lm(world_run, batch_size=3)


def _naive_logprob(model, ctx_ids, cont_ids):
    ids = torch.tensor([ctx_ids + cont_ids])
    with torch.no_grad():
        logp = model(ids).log_softmax(-1)[0]
    return sum(float(logp[len(ctx_ids) - 1 + j, t]) for j, t in enumerate(cont_ids))


def test_cached_batched_scores_equal_naive_scores(lm, world_run):
    ours, _ = ckpt.load_model(ckpt.list_checkpoints(world_run)[-1][1])  # our own LlamaLM, not the HF copy
    contexts = ["Question: Who was the mentor of Nell Webb?\nAnswer:", "List: a b c. Again:", "",
                "Ella had no clean shirts left. ", "x"]
    choices = [[" Rita Chen", " Bo", " a much longer answer here"], [" a b c.", " a"], ["Hello world"],
               ["She washed them.", "It rained all day long, and then it stopped."], [" y", " z"]]
    scores = score_choices(lm, contexts, choices)
    for ctx, chs, s in zip(contexts, choices, scores):
        stripped = ctx.rstrip()
        ctx_ids = lm.encode(stripped) or [lm.eos_id]
        for k, c in enumerate(chs):
            whole = lm.encode(stripped + ctx[len(stripped):] + c)
            cont = whole[len(lm.encode(stripped)):]
            assert s.n_tokens[k] == len(cont)
            assert s.logprobs[k] == pytest.approx(_naive_logprob(ours, ctx_ids, cont), abs=1e-4)


def test_bf16_scores_are_close(world_run):
    fp32 = load_lm(world_run)
    bf16 = load_lm(world_run, dtype="bf16")
    a = score_choices(fp32, ["List: a b c. Again:"], [[" a b c.", " x y z."]])[0].logprobs
    b = score_choices(bf16, ["List: a b c. Again:"], [[" a b c.", " x y z."]])[0].logprobs
    assert abs(a - b).max() < 0.1 * abs(a).max()


def test_greedy_generation_matches_step_by_step_argmax(lm, world_run):
    ours, _ = ckpt.load_model(ckpt.list_checkpoints(world_run)[-1][1])
    prompts = ["Question: What is the profession of Hans Dorsey?\nAnswer:", "List: q r s t. Again:"]
    outs = generate_greedy(lm, prompts, max_tokens=[6, 6], stops=[("\n",), (".",)])
    for prompt, out in zip(prompts, outs):
        ids = lm.encode(prompt)
        gen = []
        with torch.no_grad():
            for _ in range(6):
                nxt = int(ours(torch.tensor([ids + gen]))[0, -1].argmax())
                if nxt == lm.eos_id:
                    break
                gen.append(nxt)
        expected = lm.tokenizer.decode(gen)
        stops = "\n" if "Question" in prompt else "."
        assert out == expected.split(stops)[0]


def test_heldout_bits_per_byte_is_consistent(lm, world_dir):
    h = heldout_loss(lm, read_corpus(world_dir / "val.txt"), corpus="val", max_tokens=4096)
    assert h.n_tokens >= 4096 and h.n_bytes > h.n_documents > 0
    # bits/byte = nats/token * tokens / bytes / ln 2
    import math
    assert h.bits_per_byte == pytest.approx(h.nats_per_token * h.n_tokens / h.n_bytes / math.log(2))
