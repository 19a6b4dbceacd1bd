"""Evaluation speed, losslens against lm-evaluation-harness, three task kinds side by side in one run.

    flock /tmp/losslens-cpu.lock python bench/eval_vs_lm_eval.py --write-results

One model (the losslens preset `mini`, a 6-layer Llama, as a Hugging Face model dir, trained a few
hundred steps on a world's text so that it emits stop sequences), one BPE tokenizer, and three tasks
built from the world's items, written once in losslens format (JSONL, prompts complete, 0 few-shot
draws) and once as lm-eval local-JSONL tasks over the same files, so both score identical prompts:

  mmlu_like   the world's `exam` questions behind one fixed 5-shot prefix (MMLU's dev-set examples),
              choices " A".." D" (one token each)
  hella_like  the world's `completion` stories, 0-shot, four sentence endings (HellaSwag's shape)
  gen_like    the world's `arithmetic` word problems behind one fixed 1-shot worked solution, greedy
              until "\\n" or 64 tokens (GSM8K's shape); exact match of the last number

Per task, two comparisons:

  in-process   the same model object and threads: lm-eval's HFLM (`loglikelihood` / `generate_until`)
               against losslens' scorer (`score_choices` / `generate_greedy`): requests/s, the token
               positions each computes (lm-eval's counted from its batching rules: its one-token
               cache, batches of 32 sorted by length, padded to the longest), losslens' padded share,
               and the per-item choices (acc, acc_norm argmax) or generated texts compared.
  whole process  `python -m losslens eval MODEL --tasks TASK.jsonl` against
               `python -m lm_eval run --model hf --tasks TASK --include_path DIR`, wall clock, alternating
               rounds, best of each; their aggregate metrics compared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_throughput import build as build_untrained  # noqa: E402
from eval_throughput import machine, write_section  # noqa: E402

GEN_TOKENS = 64


def build(work: Path, seed: int, steps: int, preset: str):
    """World, BPE, and the preset model trained `steps` steps, saved as a Hugging Face dir."""
    world, tokenizer, model, cfg = build_untrained(preset, work, seed)  # world, BPE and the preset, as there
    ids = torch.tensor(tokenizer((world / "train.txt").read_text()[:2_000_000], add_special_tokens=False)["input_ids"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, ids.numel() - 129, (16,), generator=gen)
        batch = torch.stack([ids[s:s + 129] for s in starts])
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1].clone()).loss  # HF shifts labels itself
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    return world, tokenizer, model, cfg, float(loss.detach())


def make_tasks(world: Path, work: Path, limit: int, gen_limit: int) -> dict:
    """The three tasks as losslens JSONL (prompts complete) and lm-eval YAML over the same files."""
    from losslens.evaluate.harness import choice_task_yaml, generation_task_yaml
    from losslens.evaluate.tasks import load_task

    exam, comp, arith = (load_task(world / "eval" / f"{n}.jsonl") for n in ("exam", "completion", "arithmetic"))
    mmlu_prefix = "".join(it.demo() + "\n\n" for it in exam.fewshot_pool[:5])
    gen_prefix = arith.fewshot_pool[0].demo() + "\n"
    rows = {
        "mmlu_like": [{"id": it.id, "context": mmlu_prefix + it.context, "choices": list(it.choices), "gold": it.gold}
                      for it in exam.items[:limit]],
        "hella_like": [{"id": it.id, "context": it.context, "choices": list(it.choices), "gold": it.gold}
                       for it in comp.items[:limit]],
        "gen_like": [{"id": it.id, "prompt": gen_prefix + it.prompt, "answer": it.answer, "target": it.target,
                      "stop": ["\n"], "max_tokens": GEN_TOKENS, "extract": "last_number"}
                     for it in arith.items[:gen_limit]],
    }
    tasks = {}
    for name, items in rows.items():
        d = work / "tasks" / name
        d.mkdir(parents=True)
        jsonl = d / f"{name}.jsonl"
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in items))
        (d / f"{name}.json").write_text(json.dumps({"name": name, "num_fewshot": 0}))
        if name == "gen_like":
            generation_task_yaml(jsonl, work / "lm_eval_tasks", until=["\n"], max_gen_toks=GEN_TOKENS,
                                 cache_dir=work / "hf" / "datasets")
            cfg = work / "lm_eval_tasks" / f"{name}.yaml"  # the last number, as our `last_number` extractor
            y = json.loads(cfg.read_text())
            y["filter_list"] = [{"name": "last_number", "filter": [
                {"function": "regex", "regex_pattern": r"(-?\d+)(?!.*\d)", "group_select": 0, "fallback": ""},
                {"function": "take_first"}]}]
            cfg.write_text(json.dumps(y, indent=2) + "\n")
        else:
            choice_task_yaml(jsonl, work / "lm_eval_tasks", cache_dir=work / "hf" / "datasets")
        tasks[name] = {"jsonl": jsonl, "items": items, "kind": "generation" if name == "gen_like" else "choice"}
    return tasks


# -- in-process ---------------------------------------------------------------------------------------


def lm_eval_choice_positions(hflm, items, batch: int = 32) -> tuple[int, int]:
    """(positions, padding) HFLM runs: its one-token cache merges requests with the same input; inputs
    are sorted longest first, batched, right-padded to the batch's longest."""
    inputs = {}
    for it in items:
        for c in it["choices"]:
            ctx, cont = hflm._encode_pair(it["context"], c) if it["context"] else ([hflm.prefix_token_id], c)
            inp = tuple((ctx + cont)[-(hflm.max_length + 1):][:-1])
            key = inp if len(cont) == 1 else (inp, tuple(cont))
            inputs[key] = len(inp)
    lens = sorted(inputs.values(), reverse=True)
    real = sum(lens)
    padded = sum(len(lens[i:i + batch]) * lens[i] for i in range(0, len(lens), batch))
    return real, padded - real


def in_process_choice(model, tokenizer, items, batch_size: int) -> dict:
    import copy

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from losslens.evaluate.lm import ScoringModel
    from losslens.evaluate.scorer import score_choices
    hflm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=32, device="cpu")
    requests = [Instance("loglikelihood", doc={}, arguments=(it["context"], c), idx=j)
                for it in items for j, c in enumerate(it["choices"])]
    start = time.perf_counter()
    flat = iter(ll for ll, _ in hflm.loglikelihood(requests, disable_tqdm=True))
    theirs = [np.array([next(flat) for _ in it["choices"]]) for it in items]
    t_theirs = time.perf_counter() - start
    lm = ScoringModel.from_hf(model, tokenizer, batch_size=batch_size)
    start = time.perf_counter()
    ours = [s.logprobs for s in score_choices(lm, [it["context"] for it in items], [it["choices"] for it in items])]
    t_ours = time.perf_counter() - start

    def picks(lls):
        return [(int(np.argmax(lp)), int(np.argmax(lp / np.array([len(c) for c in it["choices"]], float))))
                for it, lp in zip(items, lls)]

    mismatch = [it["id"] for it, a, b in zip(items, picks(theirs), picks(ours)) if a != b]
    real, pad = lm_eval_choice_positions(hflm, items)
    return {"requests": len(requests), "t": (t_theirs, t_ours), "mismatch": mismatch,
            "diff": max(float(np.abs(a - b).max()) for a, b in zip(theirs, ours)),
            "positions": ((real, pad), (lm.stats.positions, lm.stats.padding)), "prefix": lm.stats.prefix_positions}


def in_process_generation(model, tokenizer, items, batch_size: int) -> dict:
    import copy

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from losslens.evaluate.lm import ScoringModel
    from losslens.evaluate.scorer import generate_greedy

    hflm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=32, device="cpu")
    kwargs = {"until": ["\n"], "max_gen_toks": GEN_TOKENS, "do_sample": False}
    requests = [Instance("generate_until", doc={}, arguments=(it["prompt"], dict(kwargs)), idx=0) for it in items]
    start = time.perf_counter()
    theirs = hflm.generate_until(requests, disable_tqdm=True)
    t_theirs = time.perf_counter() - start
    lm = ScoringModel.from_hf(model, tokenizer, batch_size=batch_size)
    start = time.perf_counter()
    ours = generate_greedy(lm, [it["prompt"] for it in items], max_tokens=[GEN_TOKENS] * len(items),
                           stops=[("\n",)] * len(items))
    t_ours = time.perf_counter() - start
    mismatch = [it["id"] for it, a, b in zip(items, theirs, ours) if a != b]
    # HF generate runs a batch (32, longest prompt first) until its last row stops
    prompt_lens = [len(tokenizer(it["prompt"])["input_ids"]) for it in items]
    gen_lens = [min(GEN_TOKENS, len(tokenizer(o + "\n", add_special_tokens=False)["input_ids"])) for o in ours]
    order = sorted(range(len(items)), key=lambda i: -prompt_lens[i])
    real = sum(p + g - 1 for p, g in zip(prompt_lens, gen_lens))
    total = sum(len(b) * (prompt_lens[b[0]] + max(gen_lens[i] for i in b) - 1)
                for b in (order[k:k + 32] for k in range(0, len(order), 32)))
    return {"requests": len(requests), "t": (t_theirs, t_ours), "mismatch": mismatch, "diff": 0.0,
            "positions": ((real, total - real), (lm.stats.positions, None)), "prefix": 0,
            "mean_gen_tokens": float(np.mean(gen_lens))}


# -- whole process ---------------------------------------------------------------------------------


def whole_process(name: str, task: dict, work: Path, rounds: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HF_HOME": str(work / "hf")}
    model = str(work / "model")
    theirs_cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
                  f"pretrained={model},dtype=float32", "--tasks", name, "--include_path", str(work / "lm_eval_tasks"),
                  "--batch_size", "32", "--device", "cpu", "--output_path", str(work / "out" / name)]
    db = work / f"{name}.db"
    ours_cmd = [sys.executable, "-m", "losslens", "eval", model, "--tasks", str(task["jsonl"]), "--batch-size", "32",
                "--db", str(db), "--run", "bench"]
    times = {"theirs": [], "ours": []}
    for _ in range(rounds):
        for side, cmd in (("theirs", theirs_cmd), ("ours", ours_cmd)):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[side].append(time.perf_counter() - start)
    results = sorted((work / "out" / name).rglob("results*.json"))[-1]
    lm_eval_metrics = json.loads(results.read_text())["results"][name]
    from losslens.store import Store

    with Store(db, create=False) as st:
        df = st.tidy()
    ours = {r.metric: r.value for r in df.itertuples() if r.task == name}
    if task["kind"] == "choice":
        same = [(m, lm_eval_metrics[f"{m},none"], ours[m]) for m in ("acc", "acc_norm")]
    else:
        same = [("exact_match", lm_eval_metrics["exact_match,last_number"], ours["exact_match"])]
    return {"wall": (min(times["theirs"]), min(times["ours"])), "metrics": same}


def main(argv=None) -> int:
    import lm_eval
    import transformers

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=300, help="items of each multiple-choice task (default: %(default)s)")
    ap.add_argument("--gen-limit", type=int, default=100, help="items of the generation task (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=200, help="training steps of the model (default: %(default)s)")
    ap.add_argument("--preset", default="mini")
    ap.add_argument("--rounds", type=int, default=2, help="alternating whole-process rounds (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32, help="losslens items per batch (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from losslens.model import param_counts

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["HF_HOME"] = str(work / "hf")
        start = time.perf_counter()
        world, tokenizer, model, cfg, loss = build(work, args.seed, args.steps, args.preset)
        t_build = time.perf_counter() - start
        tasks = make_tasks(world, work, args.limit, args.gen_limit)
        rows = {}
        for name, task in tasks.items():
            fn = in_process_generation if task["kind"] == "generation" else in_process_choice
            rows[name] = fn(model, tokenizer, task["items"], args.batch_size)
            rows[name].update(whole_process(name, task, work, args.rounds, args.threads))
            print(name, rows[name], flush=True)

    total, non_emb = param_counts(cfg)
    header = (f"model: losslens preset {args.preset!r} as a Hugging Face LlamaForCausalLM dir ({total / 1e6:.2f}M "
              f"params, vocab {cfg.vocab_size}), fp32, trained {args.steps} steps (loss {loss:.2f}), seed {args.seed}; "
              f"build {t_build:.0f} s  \nmachine: {machine('cpu')}  \nlm-eval {lm_eval.__version__}, transformers "
              f"{transformers.__version__}; batch 32 (both); whole process: best of {args.rounds} alternating rounds, "
              f"wall clock, OMP_NUM_THREADS={args.threads}")
    lines = ["| task | items | requests | positions lm-eval (+pad) | positions losslens (+pad, share) | "
             "in-process req/s lm-eval | losslens | speed-up | whole process lm-eval s | losslens s | speed-up | "
             "identical | metrics (lm-eval = losslens) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    ok = True
    for name, r in rows.items():
        (tt, to), (wt, wo), n = r["t"], r["wall"], r["requests"]
        (pr, pp), (orr, op) = r["positions"]
        ours_pos = f"{orr:,}" + (f" (+{op:,}, {op / (orr + op):.1%})" if op is not None else "")
        same = "yes" if not r["mismatch"] else f"NO: {len(r['mismatch'])} items {r['mismatch'][:3]}"
        ok &= not r["mismatch"] and all(abs(a - b) < 1e-9 for _, a, b in r["metrics"])
        metrics = ", ".join(f"{m} {a:.3f} {'=' if abs(a - b) < 1e-9 else '!='} {b:.3f}" for m, a, b in r["metrics"])
        items = len(tasks[name]["items"])
        lines.append(f"| {name} | {items} | {n} | {pr:,} (+{pp:,}) | {ours_pos} | {n / tt:.0f} | {n / to:.0f} | "
                     f"{tt / to:.2f}x | {wt:.1f} | {wo:.1f} | **{wt / wo:.2f}x** | {same} | {metrics} |")
    print(header)
    print("\n".join(lines))
    if args.write_results:
        write_section("\n".join([header, "", *lines]),
                      argparse.Namespace(threads=args.threads, clock="wall", preset=args.preset,
                                         tasks="mmlu_like,hella_like,gen_like-cli", fewshot="fixed"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
