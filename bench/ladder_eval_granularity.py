"""Which finishes a ladder sooner: one eval job per checkpoint, or one per run?

Runs the same small ladder from scratch with each granularity (in alternating order, `--repeats`
times) and prints the wall time of the jobs stage (training + evaluation; data preparation and the
analysis are the same for both and left out).

    python bench/ladder_eval_granularity.py [--repeats 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

LADDER = """
name = "bench"
[data]
vocab_size = 1024
[data.world]
seed = 0
size_mb = 1
[train]
batch_size = 16
seq_len = 128
num_checkpoints = 6
eval_tokens = 8192
warmup_fraction = 0.05
[grid]
models = ["nano", "micro", "tiny"]
tokens = [102_400, 204_800]
[eval]
tasks = ["world:all"]
limit = 50
heldout_tokens = 8192
[analysis]
bootstrap = 20
permutations = 9
"""


def main() -> None:
    from rich.console import Console

    from losslens.ladder.config import load_ladder_config
    from losslens.ladder.run import run_ladder

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"checkpoint": [], "run": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(LADDER + f"[executor]\nworkers = {args.workers}\n")
        data_dir = Path(tmp) / "data"  # prepared once, shared by every repeat
        for i in range(args.repeats):
            for per in (["checkpoint", "run"] if i % 2 == 0 else ["run", "checkpoint"]):
                cfg = load_ladder_config(path)
                cfg.data.dir = str(data_dir)
                t0 = time.perf_counter()
                result = run_ladder(cfg, Path(tmp) / f"{per}-{i}", quiet=True, eval_per=per, report=False,
                                    console=Console(quiet=True))
                times[per].append(result.timings["jobs"])
                print(f"{per:>10}: jobs stage {result.timings['jobs']:.1f} s (total {time.perf_counter() - t0:.1f} s)")
    print(json.dumps({"machine": platform.processor() or platform.machine(), "workers": args.workers,
                      "jobs_seconds": times}, indent=1))


if __name__ == "__main__":
    main()
