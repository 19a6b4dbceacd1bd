"""Run a ladder end to end: data -> plan -> jobs (train, evaluate) -> analysis -> report.

    result = run_ladder(load_ladder_config("my-ladder.toml"), Path("out"))
    result.study.summary          # the claims, as written to out/summary.json

Re-running with the same OUT skips what is done (see plan.py); a killed ladder loses at most each
running training's steps since its last checkpoint. Only this driver writes results.db, so a
checkpoint's results land in one transaction and the store never holds half an evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from losslens.config import to_dict
from losslens.errors import InputError, LadderFailed, UserError
from losslens.fmt import num
from losslens.io import write_json
from losslens.ladder.config import LadderConfig
from losslens.ladder.jobs import EvalJob, JobResult, TrainJob
from losslens.ladder.plan import Plan, Run, make_plan
from losslens.ladder.progress import LadderView, RunState, read_progress
from losslens.train.record import load_record

POLL_S = 0.5   # how often the driver looks at progress files and new checkpoints


@dataclass
class LadderResult:
    out: Path
    study: object | None                     # losslens.analysis.study.Study
    timings: dict[str, float]                # seconds per stage, as in OUT/timings.json
    trained: list[str] = field(default_factory=list)   # runs trained or resumed by this invocation
    evaluated: int = 0                       # checkpoints evaluated by this invocation
    report: Path | None = None               # OUT/report/index.html, unless report=False


def run_ladder(cfg: LadderConfig, out: str | Path, *, executor: str | None = None, quiet: bool = False,
               report: bool = True, console=None, eval_per: str = "checkpoint") -> LadderResult:
    """Train, evaluate, analyse and report every run of `cfg` into `out`; resume whatever is done.

    `executor` ("local" or "ray") overrides `cfg.executor.kind`; `quiet` (or a non-terminal stdout)
    prints one line per finished job instead of the live view; `report=False` skips the HTML
    report; `eval_per` is "checkpoint" (one eval job per checkpoint, the default: measured faster,
    bench/RESULTS.md) or "run" (one per run)."""
    from rich.console import Console

    from losslens.data.prepare import prepare_data

    console = console or Console(highlight=False)
    out = Path(out).resolve()
    exec_cfg = dataclasses.replace(cfg.executor, kind=executor or cfg.executor.kind)
    exec_cfg.validate(source="--executor")
    timings: dict[str, float] = {}
    t_start = clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 3)
        clock = now

    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory", field="--out")
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(cfg.data.dir).resolve() if cfg.data.dir else out / "data"
    data = prepare_data(dataclasses.replace(cfg.data, dir=str(data_dir)), data_dir)
    lap("data")

    plan = make_plan(cfg, out, data, per=eval_per)  # refuses run dirs trained with another config
    write_json(out / "ladder.json", to_dict(cfg))
    lap("plan")
    with _sigterm_as_exit():  # `kill` or a timeout stops the workers too, not only Ctrl-C
        scheduler = _run_jobs(cfg, plan, exec_cfg, out, quiet=quiet, console=console)
    lap("jobs")
    if scheduler.failures:
        raise LadderFailed(f"{len(scheduler.failures)} job(s) failed; the rest is kept, re-run to retry:\n  "
                           + "\n  ".join(scheduler.failures))

    _register_runs(out / "results.db", plan.runs)
    study = _analyse(cfg, out, data.world_dir, [r.name for r in plan.runs])
    lap("analysis")
    report_path = _report(out, study, cfg.name) if report else None
    lap("report")
    timings["total"] = round(time.perf_counter() - t_start, 3)
    write_json(out / "timings.json", {"stages": timings, "jobs": scheduler.job_times})
    _print_study(study, console)
    console.print(f"summary: {out / 'summary.json'}" + (f"  report: {report_path}" if report_path else ""))
    return LadderResult(out, study, timings, trained=scheduler.trained, evaluated=scheduler.evaluated,
                        report=report_path)


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM raises SystemExit in the driver, so the scheduler's cleanup kills the worker processes
    (left alone, they would go on training into run dirs that a re-run then trains too)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_jobs(cfg: LadderConfig, plan: Plan, exec_cfg, out: Path, *, quiet: bool, console) -> Scheduler:
    """Every job of the plan on the configured executor (none is started when nothing is left)."""
    from losslens.ladder.executors import make_executor

    todo = sum(len(j.steps) for j in plan.eval_jobs)
    what = (f"[bold]{cfg.name}[/]: {len(plan.runs)} runs ({len(plan.train_jobs)} to train), "
            f"{sum(len(r.steps) for r in plan.runs)} checkpoints ({todo} to evaluate) in {out}")
    states = {r.name: RunState(r.name, r.total_tokens, tokens=r.trained_tokens,
                               status="trained" if r.complete else "queued", evals_total=len(r.steps),
                               evals_done=plan.evaluated[r.name]) for r in plan.runs}
    if not plan.train_jobs and not plan.eval_jobs:
        console.print(what + "; nothing to do")
        return Scheduler(plan, None, LadderView(states, live=False, console=console), out / "results.db")
    with make_executor(exec_cfg) as ex:
        console.print(f"{what}; {ex.name} executor, {ex.workers} workers x {exec_cfg.threads} thread(s)")
        live = not quiet and console.is_terminal
        with LadderView(states, live=live, console=console) as view:
            scheduler = Scheduler(plan, ex, view, out / "results.db")
            scheduler.run()
    return scheduler


class Scheduler:
    """Keeps at most `workers` jobs in flight, biggest first; an eval job waits for its checkpoints."""

    def __init__(self, plan: Plan, ex, view: LadderView, db: Path):
        self.ex, self.view, self.db = ex, view, db
        self.runs: dict[str, Run] = {r.name: r for r in plan.runs}
        self.queue: list[TrainJob | EvalJob] = [*plan.train_jobs.values(), *plan.eval_jobs]
        self.in_flight: dict = {}                      # handle -> (job, start time)
        self.recorded = {r.name: {c["step"] for c in (r.record.checkpoints if r.record else [])}
                         for r in plan.runs}
        self.failures: list[str] = []
        self.trained: list[str] = []
        self.evaluated = 0
        self.job_times: list[dict] = []
        self.started = time.time()
        self.eval_rate: float | None = None            # estimated FLOPs per second of one eval worker
        self.train_rate: float | None = None

    def run(self) -> None:
        try:
            while self.queue or self.in_flight:
                self._poll()
                for job in self._ready()[: self.ex.workers - len(self.in_flight)]:
                    self.queue.remove(job)
                    self.in_flight[self.ex.submit(job)] = (job, time.perf_counter())
                    self._started(job)
                if not self.in_flight:  # what is left waits on checkpoints of runs that failed
                    for run in dict.fromkeys(job.run for job in self.queue):
                        n = sum(len(j.steps) for j in self.queue if j.run == run)
                        self.failures.append(f"eval {run}: {n} checkpoint(s) not evaluated, its training failed")
                    break
                for handle in self.ex.wait(self.in_flight, timeout=POLL_S):
                    job, t0 = self.in_flight.pop(handle)
                    self._finished(job, handle, time.perf_counter() - t0)
                self._estimate()
                self.view.refresh()
        except BaseException:
            self.ex.kill()
            raise

    def _ready(self) -> list:
        """Jobs that can start now, biggest first (a training counts its run's evaluations too)."""
        def priority(job) -> float:
            if isinstance(job, TrainJob):
                return job.cost + sum(e.cost for e in self.queue if isinstance(e, EvalJob) and e.run == job.run)
            return job.cost

        ready = [j for j in self.queue if isinstance(j, TrainJob) or set(j.steps) <= self.recorded[j.run]]
        return sorted(ready, key=lambda j: (-priority(j), j.run, j.kind))

    def _poll(self) -> None:
        """New checkpoints and progress of the runs being trained."""
        for job, _ in self.in_flight.values():
            if not isinstance(job, TrainJob):
                continue
            record = load_record(job.run_dir)
            if record is not None:
                self.recorded[job.run] = {c["step"] for c in record.checkpoints}
            report = read_progress(Path(job.progress_path), since=self.started)
            state = self.view.states[job.run]
            if report is not None:
                state.tokens, state.tokens_per_s = report["tokens"], report["tokens_per_s"]

    def _started(self, job) -> None:
        if isinstance(job, TrainJob):
            self.view.states[job.run].status = "training"
        else:
            self.view.running_evals[id(job)] = f"{job.run} step {','.join(map(str, job.steps))}"

    def _finished(self, job, handle, seconds: float) -> None:
        try:
            result: JobResult = self.ex.result(handle)
        except BrokenProcessPool:
            raise LadderFailed("a worker process died (killed, or out of memory?); re-run to resume") from None
        except UserError as err:
            what = f"train {job.run}" if isinstance(job, TrainJob) else f"eval {job.run} steps {list(job.steps)}"
            self.failures.append(f"{what}: {err}")
            self.view.running_evals.pop(id(job), None)
            if isinstance(job, TrainJob):
                self.view.states[job.run].status = "failed"
            self.view.line(f"FAILED {what}: {err}")
            return
        self.job_times.append({"job": job.kind, "run": job.run, "steps": list(getattr(job, "steps", [])),
                               "seconds": round(seconds, 3)})
        state = self.view.states[job.run]
        if isinstance(job, TrainJob):
            record = load_record(job.run_dir)
            self.runs[job.run].record = record
            self.recorded[job.run] = {c["step"] for c in record.checkpoints}
            state.status, state.tokens = "trained", state.total_tokens
            if result.tokens_per_s:
                state.tokens_per_s = result.tokens_per_s
            if not result.already_complete:
                self.trained.append(job.run)
            last = record.checkpoints[-1]
            self.view.line(f"trained {job.run}: {last['tokens']:,} tokens, val loss {last['val_loss']:.4f} "
                           f"({seconds:.1f} s" + (f", {result.tokens_per_s:,.0f} tok/s)" if result.tokens_per_s
                                                  else ")"))
            return
        self.view.running_evals.pop(id(job), None)
        for r in result.evals:
            self._store(r)
            state.evals_done += 1
            self.evaluated += 1
            self.view.line(f"evaluated {job.run} step {r.step}: loss {num(r.loss, '.4f')}, {len(r.tasks)} task(s)")
        rate = job.cost / max(seconds, 1e-9)
        self.eval_rate = rate if self.eval_rate is None else 0.7 * self.eval_rate + 0.3 * rate

    def _store(self, r) -> None:
        """One checkpoint's results. A corpus without held-out files keeps the trainer's held-out loss
        as the checkpoint's loss, written first: the task metrics (one transaction) mark it done."""
        from losslens.evaluate.evaluate import store_result
        from losslens.store import Store

        if r.loss is None:
            entry = load_record(self.runs[r.run].dir).checkpoint_at(r.step)
            with Store(self.db) as st, st.transaction():
                run_id = st.upsert_run(r.run, params=None, source="losslens")
                st.upsert_checkpoint(run_id, step=r.step, tokens=r.tokens, loss=entry["val_loss"])
        store_result(self.db, r, log_samples=True)  # ladders keep every item's record (docs/ladder.md)

    def _estimate(self) -> None:
        """ETA: FLOPs left to train over the measured training rate, plus evaluation likewise."""
        rates = [self.runs[j.run].flops_per_token * s.tokens_per_s for j, _ in self.in_flight.values()
                 if isinstance(j, TrainJob) and (s := self.view.states[j.run]).tokens_per_s]
        if rates:
            self.train_rate = sum(rates) / len(rates)
        states = self.view.states
        train_left = sum(r.flops_per_token * (states[r.name].total_tokens - states[r.name].tokens)
                         for r in self.runs.values() if states[r.name].status != "trained")
        evals = [j for j in self.queue if isinstance(j, EvalJob)]
        evals += [j for j, _ in self.in_flight.values() if isinstance(j, EvalJob)]
        eval_left = sum(j.cost for j in evals)
        train_rate, eval_rate = self.train_rate or self.eval_rate, self.eval_rate or self.train_rate
        if train_rate is None:
            return  # nothing measured yet
        self.view.eta = (train_left / train_rate + eval_left / eval_rate) / self.ex.workers


def _register_runs(db: Path, runs: list[Run]) -> None:
    """Each run's sizes and config in the store (the same values whatever order jobs finished in)."""
    from losslens.store import Store

    with Store(db) as st, st.transaction():
        for run in runs:
            record = run.record or load_record(run.dir)
            st.upsert_run(run.name, params=record.params, non_embedding_params=record.non_embedding_params,
                          source="losslens", config=record.config)


def _analyse(cfg: LadderConfig, out: Path, world_dir: Path | None, runs: list[str]):
    from losslens.analysis.study import run_study

    a = cfg.analysis  # only this ladder's runs: a run dropped from the config may still be in the store
    study = run_study(out / "results.db", world_dir=world_dir, runs=runs, **a.analyze_kwargs())
    study.write_summary(out / "summary.json")
    return study


def _report(out: Path, study, title: str) -> Path:
    from losslens.report import write_report
    return write_report(out, study, title=title)


def _print_study(study, console) -> None:
    from losslens.analysis.command import print_report

    print_report(study.report, console)
    claims = {k: v for k, v in study.summary.items() if isinstance(v, dict) and "holds" in v}
    if claims:
        console.print("claims: " + ", ".join(f"{k} {'[green]holds[/]' if v['holds'] else '[red]fails[/]'}"
                                              for k, v in claims.items()))
