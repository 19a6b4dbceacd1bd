"""From a ladder config and what OUT already holds to the jobs still to do.

A run is done when its `run.json` says `complete`; a checkpoint is done when results.db holds its
held-out loss on every corpus and every task. Everything else becomes a job:

    TrainJob(run)                  ready at once (resumes from the run's newest checkpoint)
    EvalJob(run, steps)            ready when those checkpoints exist (one job per checkpoint by
                                   default, so evaluation overlaps training; or one per run)

Each job carries a cost estimate in FLOPs (training: flops_per_token x tokens still to train;
evaluation: a forward pass over the scored tokens), which orders the queue longest first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from losslens.config import to_dict
from losslens.data.prepare import PreparedData
from losslens.errors import InputError
from losslens.ladder.config import LadderConfig
from losslens.ladder.jobs import EvalJob, TrainJob
from losslens.train.config import RunConfig, matches_record
from losslens.train.record import RunRecord, load_record

EVAL_GRANULARITY = ("checkpoint", "run")
TOKENS_PER_TASK_ITEM = 200   # rough size of one scored item (context x choices), for cost estimates only


@dataclass
class Run:
    name: str
    config: RunConfig
    dir: Path
    flops_per_token: float
    record: RunRecord | None          # as found on disk when planning

    @property
    def total_tokens(self) -> int:
        return self.config.train.total_steps * self.config.train.tokens_per_step

    @property
    def complete(self) -> bool:
        return self.record is not None and self.record.status == "complete"

    @property
    def trained_tokens(self) -> int:
        return self.record.checkpoints[-1]["tokens"] if self.record and self.record.checkpoints else 0

    @property
    def steps(self) -> list[int]:
        """The steps of its checkpoints (the training milestones)."""
        return self.config.train.milestone_steps()


@dataclass
class Plan:
    runs: list[Run]
    train_jobs: dict[str, TrainJob]                       # run name -> its job, for runs not complete
    eval_jobs: list[EvalJob]                              # checkpoints not yet in results.db
    evaluated: dict[str, int] = field(default_factory=dict)  # run name -> checkpoints already stored
    corpora: list[str] = field(default_factory=list)      # held-out corpora every checkpoint gets
    tasks: list[str] = field(default_factory=list)        # task names every checkpoint gets


def run_configs(cfg: LadderConfig, data_dir: Path) -> list[tuple[str, RunConfig]]:
    """Every run of the ladder as (name, RunConfig), all sharing the prepared data in `data_dir`."""
    data = dataclasses.replace(cfg.data, dir=str(data_dir.resolve()))
    return [(c.name, RunConfig(train=c.train, name=c.name, data=data, model=c.model)) for c in cfg.cells()]


def make_plan(cfg: LadderConfig, out: Path, data: PreparedData, *, per: str = "checkpoint") -> Plan:
    from losslens.evaluate.tasks import resolve_tasks
    from losslens.model import ModelConfig, flops_per_token
    from losslens.store import Store

    if per not in EVAL_GRANULARITY:
        raise ValueError(f"per must be one of {EVAL_GRANULARITY}, got {per!r}")
    world = str(data.world_dir) if data.world_dir else None
    tasks = resolve_tasks(cfg.eval.tasks, world)
    heldout = cfg.data.val_text if data.world_dir is None else None
    corpora = corpus_names(data, heldout)
    n_items = sum(min(cfg.eval.limit or len(t.items), len(t.items)) for t in tasks)
    scored_tokens = cfg.eval.heldout_tokens * (1 + max(len(corpora) - 1, 0) / 4) + TOKENS_PER_TASK_ITEM * n_items

    runs = []
    for name, rc in run_configs(cfg, data.dir):
        run_dir = (out / "runs" / name).resolve()
        record = load_record(run_dir)
        if record is not None and not matches_record(record.config, to_dict(rc)):
            raise InputError(run_dir / "run.json", "this run dir holds a run with a different config (was the "
                             "ladder config changed?); use another --out or remove the run dir", field="config")
        shape = ModelConfig.from_dict({"max_seq_len": rc.train.seq_len, **rc.model,
                                       "vocab_size": data.tokenizer.vocab_size}, source=cfg.source)
        runs.append(Run(name, rc, run_dir, float(flops_per_token(shape, rc.train.seq_len)), record))

    plan = Plan(runs, {}, [], corpora=corpora, tasks=[t.name for t in tasks])
    with Store(out / "results.db") as store:
        for run in runs:
            eval_cost = run.flops_per_token / 3 * scored_tokens  # forward only: a third of training's FLOPs
            missing = [s for s in run.steps if not _evaluated(store, run.name, s, corpora, plan.tasks)]
            plan.evaluated[run.name] = len(run.steps) - len(missing)
            groups = [(s,) for s in missing] if per == "checkpoint" else [tuple(missing)] if missing else []
            for steps in groups:
                plan.eval_jobs.append(EvalJob(
                    run=run.name, run_dir=str(run.dir), steps=steps, tasks=tuple(cfg.eval.tasks), world_dir=world,
                    heldout=tuple(heldout) if heldout else None, heldout_tokens=cfg.eval.heldout_tokens,
                    batch_size=cfg.eval.batch_size, limit=cfg.eval.limit, seed=cfg.eval.seed,
                    cost=eval_cost * len(steps), threads=cfg.executor.threads))
            if not run.complete:
                plan.train_jobs[run.name] = TrainJob(
                    run=run.name, config=run.config, run_dir=str(run.dir),
                    progress_path=str(out.resolve() / "progress" / f"{run.name}.json"),
                    cost=run.flops_per_token * (run.total_tokens - run.trained_tokens),
                    threads=cfg.executor.threads, source=cfg.source)
    return plan


def corpus_names(data: PreparedData, heldout: list[str] | None) -> list[str]:
    """The held-out corpora `evaluate_model` scores: the world's val.txt and each genre's, or the
    user's val_text files (none for a plain text corpus split by val_every)."""
    if data.world_dir is not None:
        return ["val"] + [f"val:{p.stem}" for p in sorted((Path(data.world_dir) / "val").glob("*.txt"))]
    return [Path(p).stem for p in heldout or []]


def _evaluated(store, run: str, step: int, corpora: list[str], tasks: list[str]) -> bool:
    ckpt = store.checkpoint_id(run, step)
    return ckpt is not None and all(store.has_heldout(ckpt, c) for c in corpora) \
        and all(store.has_task(ckpt, t) for t in tasks)
