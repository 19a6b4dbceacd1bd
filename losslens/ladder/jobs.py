"""The two kinds of job a ladder runs, and `run_job`, which any executor calls in a worker.

A job is plain picklable data: a local worker process or a Ray task runs it the same way. This
module imports no torch at import time, so a worker can set its thread environment first.

    TrainJob -> losslens.train.train(...)        (trains, or resumes, or finds the run complete)
    EvalJob  -> losslens.evaluate.evaluate_model  (one or more checkpoints of one run; nothing stored:
                                                   the driver is the only writer of results.db)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from losslens.errors import UserError

if TYPE_CHECKING:  # numpy and torch read their thread settings at import: not before init_worker
    from losslens.train.config import RunConfig

# Thread pools that must be sized before the libraries start them (torch/OpenMP, MKL, OpenBLAS,
# and the tokenizers crate's rayon pool).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    return {var: str(threads) for var in THREAD_VARS} | {"TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True)
class TrainJob:
    run: str
    config: RunConfig
    run_dir: str
    progress_path: str       # where the worker reports steps (losslens.ladder.progress.ProgressWriter)
    cost: float              # estimated FLOPs still to do: the scheduler runs big jobs first
    threads: int
    source: str | None = None

    kind = "train"


@dataclass(frozen=True)
class EvalJob:
    run: str
    run_dir: str
    steps: tuple[int, ...]   # checkpoints of the run to evaluate, by step
    tasks: tuple[str, ...]
    world_dir: str | None
    heldout: tuple[str, ...] | None   # held-out corpora when the corpus is not a world
    heldout_tokens: int
    batch_size: int
    limit: int | None
    seed: int
    cost: float
    threads: int

    kind = "eval"


@dataclass
class JobResult:
    job: TrainJob | EvalJob
    seconds: float
    already_complete: bool = False
    tokens_per_s: float | None = None            # train jobs: measured over the steps this job ran
    evals: list = field(default_factory=list)    # eval jobs: ModelResults without weights


class JobFailed(UserError):
    """A job's user error, as its one-line message: it crosses the process boundary intact (an
    `InputError` with its keyword arguments does not pickle)."""


def run_job(job: TrainJob | EvalJob) -> JobResult:
    """Run one job in this process (a worker) and return what the driver needs to know."""
    import torch

    torch.set_num_threads(job.threads)
    t0 = time.perf_counter()
    try:
        return _train(job, t0) if isinstance(job, TrainJob) else _evaluate(job, t0)
    except UserError as err:
        raise JobFailed(str(err)) from None


def _train(job: TrainJob, t0: float) -> JobResult:
    from losslens.ladder.progress import ProgressWriter
    from losslens.train.loop import train

    tc = job.config.train
    writer = ProgressWriter(job.progress_path, run=job.run, total_steps=tc.total_steps,
                            tokens_per_step=tc.tokens_per_step)
    result = train(job.config, job.run_dir, config_source=job.source, quiet=True, on_step=writer)
    writer.close()
    return JobResult(job, time.perf_counter() - t0, already_complete=result.already_complete,
                     tokens_per_s=writer.tokens_per_s)


def _evaluate(job: EvalJob, t0: float) -> JobResult:
    import torch

    from losslens.errors import InputError
    from losslens.evaluate.evaluate import evaluate_model
    from losslens.train.record import load_record

    device = "cuda" if torch.cuda.is_available() else "cpu"  # the worker's own GPU, when it has one
    record = load_record(job.run_dir)
    results = []
    for step in job.steps:
        entry = record.checkpoint_at(step) if record else None
        if entry is None:
            raise InputError(Path(job.run_dir) / "run.json", f"no checkpoint at step {step} to evaluate")
        r = evaluate_model(Path(job.run_dir) / entry["path"], tasks=list(job.tasks),
                           world=Path(job.world_dir) if job.world_dir else None,
                           heldout=[Path(p) for p in job.heldout] if job.heldout else None,
                           heldout_tokens=job.heldout_tokens, batch_size=job.batch_size, limit=job.limit,
                           seed=job.seed, run=job.run, step=step, tokens=entry["tokens"], device=device)
        # The weights stay here; storing a losslens checkpoint's result reads only its metadata.
        r.lm.model = r.lm.tokenizer = None
        results.append(r)
    return JobResult(job, time.perf_counter() - t0, evals=results)


def init_worker(threads: int, devices: list[str] | None = None, counter=None) -> None:
    """A local worker's first act: thread environment and its GPU(s) (`devices[i]` for the i-th worker
    to start, as CUDA_VISIBLE_DEVICES) before torch is imported, then torch's pool."""
    os.environ.update(thread_env(threads))
    if devices is not None and counter is not None:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
    import torch

    torch.set_num_threads(threads)
