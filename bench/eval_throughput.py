"""Multiple-choice scoring throughput: losslens' scorer against lm-evaluation-harness (HFLM).

    python bench/eval_throughput.py                    # CPU, 2 threads, preset mini, world tasks completion + exam
    python bench/eval_throughput.py --threads 1 --clock cpu   # robust on a shared machine: CPU time of 1 thread
    python bench/eval_throughput.py --preset small --tasks completion --fewshot 3 --limit 100
    python bench/eval_throughput.py --write-results    # also update this benchmark's section of bench/RESULTS.md

Both sides score the same prompts (each world item with its few-shot prefix, as `losslens eval` builds
it) with the same `LlamaForCausalLM` object (a randomly initialised losslens preset converted to Hugging
Face), the same tokenizer (a BPE trained on the world's text) and the same torch threads, in one process.
A request is one (context, choice) pair. Two comparisons per task:

  scorer      lm-eval's `HFLM.loglikelihood` over the requests vs losslens' `score_choices` over the items
              (model-side work only, tokenization and batching included)
  end-to-end  `lm_eval.simple_evaluate` on the same items as a local JSONL task (via `run_harness`) vs
              losslens' `evaluate_task` (all seven metrics)

Rounds alternate (lm-eval, losslens, lm-eval, ...), so a noisy neighbour slows both alike; each side's
figure is its best round. The per-item choices (argmax for acc, argmax per character for acc_norm) of
the two scorers are compared and printed as "choices identical" or the mismatches. `work ratio` is the
token positions lm-eval runs (after its one-token-continuation cache) over those losslens runs (each
context once, then every continuation but its last token, in one packed row; a prefix shared across
items, which losslens runs once, is not discounted here), unpadded. bench/eval_vs_lm_eval.py compares
whole `losslens eval` and `lm_eval` processes on three task kinds, with the positions counted.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- eval_throughput:begin -->", "<!-- eval_throughput:end -->"


@dataclass
class Prompt:
    id: str
    context: str
    choices: list[str]
    gold: int


def build(preset: str, work: Path, seed: int):
    """A world, a BPE trained on its text, and a random losslens `preset` model as LlamaForCausalLM."""
    from transformers import AutoTokenizer

    from losslens.data.tokenizer import train_bpe
    from losslens.evaluate.lm import to_hf_model
    from losslens.model import LlamaLM, ModelConfig

    world = work / "world"
    subprocess.run([sys.executable, "-m", "losslens", "world", "--seed", str(seed), "--out", str(world),
                    "--size-mb", "1"], check=True, stdout=subprocess.DEVNULL)
    train_bpe((world / "train.txt").read_text().splitlines(), 4096, work / "tok")
    tokenizer = AutoTokenizer.from_pretrained(work / "tok")
    torch.manual_seed(seed)
    cfg = ModelConfig.preset(preset, vocab_size=len(tokenizer), max_seq_len=1024)
    return world, tokenizer, to_hf_model(LlamaLM(cfg)), cfg


def prompts(world: Path, name: str, limit: int | None, seed: int, shots: int | None) -> list[Prompt]:
    """The task's items with their few-shot prefixes, exactly the contexts `losslens eval` scores
    (with `shots` examples instead of the task's own number, if given)."""
    from losslens.evaluate.tasks import load_task

    task = load_task(world / "eval" / f"{name}.jsonl", name=name)
    if shots is not None:
        task.num_fewshot = min(shots, len(task.fewshot_pool))
    items = task.items[:limit] if limit else task.items
    return [Prompt(it.id, task.fewshot_prefix(it, seed) + it.context, list(it.choices), it.gold) for it in items]


class Clock:
    def __init__(self, kind: str):
        self.now = time.process_time if kind == "cpu" else time.perf_counter


def time_scorers(model, tokenizer, hflm, items: list[Prompt], args, clock: Clock):
    from lm_eval.api.instance import Instance

    from losslens.evaluate.lm import ScoringModel
    from losslens.evaluate.scorer import score_choices

    lm = ScoringModel.from_hf(model, tokenizer, batch_size=args.batch_size)
    requests = [Instance("loglikelihood", doc={}, arguments=(p.context, c), idx=j)
                for p in items for j, c in enumerate(p.choices)]

    def theirs():
        out = iter(ll for ll, _ in hflm.loglikelihood(requests, disable_tqdm=True))
        return [np.array([next(out) for _ in p.choices]) for p in items]

    def ours():
        return [s.logprobs for s in score_choices(lm, [p.context for p in items], [p.choices for p in items])]

    return alternate(theirs, ours, args.rounds, clock)


def time_end_to_end(model, tokenizer, items: list[Prompt], work: Path, args, clock: Clock):
    from losslens.evaluate.harness import choice_task_yaml, run_harness
    from losslens.evaluate.lm import ScoringModel
    from losslens.evaluate.runner import evaluate_task
    from losslens.evaluate.tasks import load_task

    jsonl = work / f"{items[0].id.split('-')[0]}_prompts.jsonl"
    jsonl.write_text("".join(json.dumps(p.__dict__) + "\n" for p in items))
    name = choice_task_yaml(jsonl, work / "tasks", cache_dir=work / "hf-datasets")
    lm = ScoringModel.from_hf(model, tokenizer, batch_size=args.batch_size)

    def theirs():
        res = run_harness(model, tokenizer, [name], include_path=work / "tasks", batch_size=args.lm_eval_batch_size,
                          device=args.device, bootstrap_iters=0)
        return [c["logprobs"] for c in res.choices(name)]

    def ours():
        return [np.array(s["logprobs"]) for s in evaluate_task(lm, load_task(jsonl, name=name)).samples]

    return alternate(theirs, ours, args.rounds, clock)


def alternate(theirs, ours, rounds: int, clock: Clock):
    """Best time of each over alternating rounds, and each one's last log-probs."""
    t_theirs, t_ours = [], []
    for _ in range(rounds):
        start = clock.now()
        lls_theirs = theirs()
        t_theirs.append(clock.now() - start)
        start = clock.now()
        lls_ours = ours()
        t_ours.append(clock.now() - start)
    return min(t_theirs), min(t_ours), lls_theirs, lls_ours


def picks(items: list[Prompt], lls) -> list[tuple[int, int]]:
    """(acc choice, acc_norm choice) per item, as lm-eval computes them."""
    return [(int(np.argmax(lp)), int(np.argmax(lp / np.array([len(c) for c in p.choices], dtype=float))))
            for p, lp in zip(items, lls)]


def work_ratio(hflm, items: list[Prompt]) -> float:
    """Token positions lm-eval runs (one-token continuations of one context share a run) / ours."""
    theirs = ours = 0
    for p in items:
        pairs = [hflm._encode_pair(p.context, c) for c in p.choices]
        theirs += sum({tuple(ctx + cont[:-1]): len(ctx) + len(cont) - 1 for ctx, cont in pairs}.values())
        ours += len(pairs[0][0]) + sum(len(cont) - 1 for _, cont in pairs)  # one packed row (no shared prefix)
    return theirs / ours


def bench_task(name: str, world: Path, model, tokenizer, work: Path, args, clock: Clock) -> dict:
    from lm_eval.models.huggingface import HFLM

    items = prompts(world, name, args.limit, args.seed, args.fewshot)
    hflm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=args.lm_eval_batch_size,
                device=args.device)
    time_scorers(model, tokenizer, hflm, items[:8], argparse.Namespace(**{**vars(args), "rounds": 1}), clock)  # warm-up
    scorer_theirs, scorer_ours, lls_theirs, lls_ours = time_scorers(model, tokenizer, hflm, items, args, clock)
    e2e_theirs, e2e_ours, e2e_lls_theirs, e2e_lls_ours = time_end_to_end(model, tokenizer, items, work, args, clock)
    mine = picks(items, lls_ours)
    mismatches = [(p.id, m, t) for p, m, t in zip(items, mine, picks(items, lls_theirs)) if m != t]
    mismatches += [(p.id, m, t) for p, m, t in zip(items, picks(items, e2e_lls_ours), picks(items, e2e_lls_theirs))
                   if m != t]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(lls_ours, lls_theirs))
    shots = f"{args.fewshot}-shot" if args.fewshot is not None else "own shots"
    return {"task": f"{name} ({shots})", "items": len(items), "requests": sum(len(p.choices) for p in items),
            "scorer": (scorer_theirs, scorer_ours), "e2e": (e2e_theirs, e2e_ours), "mismatches": mismatches,
            "max_logprob_diff": diff, "work_ratio": work_ratio(hflm, items),
            "context_tokens": float(np.mean([len(hflm.tok_encode(p.context.rstrip())) for p in items]))}


def machine(device: str) -> str:
    if device == "cuda":
        chip = torch.cuda.get_device_name()
    else:
        with open("/proc/cpuinfo") as f:
            chip = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                        platform.processor() or "unknown CPU")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{chip}; {torch.get_num_threads()} torch threads; load average {load}; torch {torch.__version__}; "
            f"Python {platform.python_version()}; {datetime.date.today().isoformat()}")


def main(argv=None) -> int:
    import lm_eval
    import transformers

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="mini", help="losslens model preset (default: %(default)s)")
    ap.add_argument("--tasks", default="completion,exam", help="world multiple-choice tasks (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="first N items of each task (default: all 300)")
    ap.add_argument("--batch-size", type=int, default=32, help="losslens items per batch (default: %(default)s)")
    ap.add_argument("--lm-eval-batch-size", type=int, default=32,
                    help="lm-eval requests per batch (default: %(default)s, its fastest here of 8/32/64)")
    ap.add_argument("--fewshot", type=int, help="few-shot examples per prompt (default: each task's own)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default: %(default)s)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall-clock time, or this process's CPU time (steadier on a busy machine with 1 thread)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-results", action="store_true", help=f"update this benchmark's section of {RESULTS.name}")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = Clock(args.clock)

    from losslens.model import param_counts

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ.setdefault("HF_HOME", str(work / "hf"))
        world, tokenizer, model, cfg = build(args.preset, work, args.seed)
        model.to(args.device)
        rows = [bench_task(name, world, model, tokenizer, work, args, clock) for name in args.tasks.split(",")]

    total, non_emb = param_counts(cfg)
    header = (f"model: losslens preset {args.preset!r} as LlamaForCausalLM ({total / 1e6:.2f}M params, "
              f"{non_emb / 1e6:.2f}M non-embedding, vocab {cfg.vocab_size}), fp32, random init, seed {args.seed}\n"
              f"machine: {machine(args.device)}\n"
              f"lm-eval {lm_eval.__version__}, transformers {transformers.__version__}; batch: losslens "
              f"{args.batch_size} items, lm-eval {args.lm_eval_batch_size} requests; best of {args.rounds} "
              f"alternating rounds, {args.clock} clock")
    lines = ["| task | items | requests | ctx tokens | work ratio | scorer: lm-eval req/s | losslens req/s | "
             "speed-up | end-to-end: lm-eval req/s | losslens req/s | speed-up | choices (acc, acc_norm) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    ok = True
    for r in rows:
        (st, so), (et, eo), n = r["scorer"], r["e2e"], r["requests"]
        verdict = ("choices identical" if not r["mismatches"]
                   else f"{len(r['mismatches'])} mismatches: {r['mismatches'][:5]}")
        ok &= not r["mismatches"]
        lines.append(f"| {r['task']} | {r['items']} | {n} | {r['context_tokens']:.0f} | {r['work_ratio']:.2f} | "
                     f"{n / st:.0f} | {n / so:.0f} | {st / so:.2f}x | {n / et:.0f} | {n / eo:.0f} | {et / eo:.2f}x | "
                     f"{verdict} (max log-prob diff {r['max_logprob_diff']:.0e}) |")
    print(header)
    print("\n".join(lines))
    for r in rows:
        print(f"{r['task']}: losslens {r['scorer'][0] / r['scorer'][1]:.2f}x lm-eval (scorer), "
              f"{r['e2e'][0] / r['e2e'][1]:.2f}x (end-to-end); "
              + ("choices identical" if not r["mismatches"] else f"MISMATCH on {len(r['mismatches'])} items"))
    if args.write_results:
        write_section("\n".join([header.replace("\n", "  \n"), "", *lines]), args)
    return 0 if ok else 1


def write_section(body: str, args) -> None:
    """Add or replace this configuration's block in this benchmark's section of RESULTS.md."""
    key = (f"<!-- eval_throughput:{args.threads}t-{args.clock}-{args.preset}-{args.tasks}-"
           f"{'own' if args.fewshot is None else args.fewshot}shot -->")
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = re.search(re.escape(BEGIN) + ".*?" + re.escape(END), text, re.S)
    old = section.group(0) if section else (f"{BEGIN}\n## Multiple-choice scoring throughput "
                                            f"(bench/eval_throughput.py)\n{END}")
    block = f"{key}\n{body}\n{key}"
    pattern = re.compile(re.escape(key) + ".*?" + re.escape(key), re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.replace(END, f"\n{block}\n{END}")
    text = text.replace(old, new) if section else text.rstrip("\n") + "\n\n" + new + "\n"
    RESULTS.write_text(text)
    print(f"updated {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
