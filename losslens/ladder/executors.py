"""Where jobs run. Both executors offer the same four calls to the scheduler:

    submit(job) -> handle      wait(handles, timeout) -> finished handles
    result(handle) -> JobResult (re-raises the job's own exception)      kill()

`local`: N worker processes started with the spawn method; each sets its thread environment (and
its CUDA_VISIBLE_DEVICES: its own GPU, or its share of one) before torch is imported
(`jobs.init_worker`) and keeps torch imported between jobs.
`ray`: every job is one Ray task asking for `threads` CPUs and `num_gpus` GPUs (Ray sets
CUDA_VISIBLE_DEVICES), on a local Ray instance (`ray.init(num_cpus=workers * threads)`) or an
existing cluster by address. On a cluster every node must see OUT at the same path (a shared
filesystem); only the driver writes results.db.

A job trains and evaluates on the device its worker sees: the GPU when it has one, else the CPU.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os

from losslens.errors import LadderFailed, UserError
from losslens.ladder.jobs import JobResult, init_worker, run_job, thread_env


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries ([] without CUDA)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_slots(gpus: list[str], per_job: float) -> list[str]:
    """CUDA_VISIBLE_DEVICES of each worker: `per_job` whole GPUs each, or 1/per_job workers per GPU."""
    if per_job <= 0:
        return []
    if per_job >= 1:
        k = int(per_job)
        return [",".join(gpus[i:i + k]) for i in range(0, len(gpus) - k + 1, k)]
    return [g for g in gpus for _ in range(round(1 / per_job))]


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int | None, threads: int, num_gpus: float | None = None):
        gpus = visible_gpus()
        per_job = (1.0 if gpus else 0.0) if num_gpus is None else num_gpus
        slots = gpu_slots(gpus, per_job)
        if per_job > 0 and not slots:
            raise UserError(f"executor.num_gpus = {per_job} per job, but {len(gpus)} GPU(s) are visible")
        if slots and workers is not None and workers > len(slots):
            raise UserError(f"executor.workers = {workers}, but {len(gpus)} GPU(s) at num_gpus = {per_job} "
                            f"per job give {len(slots)} worker slots")
        self.workers = workers or len(slots) or max(1, (os.cpu_count() or 1) // threads)
        self.threads, self.gpu_slots = threads, slots
        ctx = multiprocessing.get_context("spawn")
        # Each worker takes the next slot at start-up; with GPUs on the machine but num_gpus = 0 the
        # workers see none, so "CPU jobs" stays true on a GPU machine.
        devices = slots or ([""] if gpus else None)
        self.pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=init_worker,
                                           initargs=(threads, devices, ctx.Value("i", 0) if devices else None))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, job) -> cf.Future:
        return self.pool.submit(run_job, job)

    def wait(self, handles, timeout: float) -> list:
        done, _ = cf.wait(list(handles), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: cf.Future) -> JobResult:
        return handle.result()

    def kill(self) -> None:
        """Stop now (an interrupt): running jobs lose at most the work since their last checkpoint."""
        # ProcessPoolExecutor has no public way to stop running calls before Python 3.14.
        for process in list(getattr(self.pool, "_processes", {}).values()):
            process.terminate()
        self.pool.shutdown(wait=False, cancel_futures=True)


class RayExecutor:
    name = "ray"

    def __init__(self, workers: int | None, threads: int, address: str | None, num_gpus: float | None = None):
        try:
            import ray
        except ModuleNotFoundError:
            raise UserError("the ray executor needs Ray: pip install 'losslens[ray]'") from None
        self.ray, self.threads = ray, threads
        self.owned = not ray.is_initialized()
        if self.owned:
            cpus = (workers or os.cpu_count() or 1) * threads if address is None else None
            try:
                ray.init(address=address, num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                         logging_level="WARNING", configure_logging=True,
                         runtime_env={"env_vars": thread_env(threads)})
            except ConnectionError as err:
                raise UserError(f"cannot connect to the Ray cluster at {address!r}: {err}") from None
        resources = ray.cluster_resources()
        cluster_cpus, cluster_gpus = int(resources.get("CPU", 1)), resources.get("GPU", 0)
        self.num_gpus = (1.0 if cluster_gpus else 0.0) if num_gpus is None else num_gpus
        if self.num_gpus > cluster_gpus:
            raise UserError(f"executor.num_gpus = {self.num_gpus} per job, but the Ray cluster has "
                            f"{cluster_gpus:g} GPU(s)")
        slots = max(1, cluster_cpus // threads)
        if self.num_gpus:
            slots = min(slots, int(cluster_gpus / self.num_gpus + 1e-9))
        self.workers = workers or slots
        self.task = ray.remote(num_cpus=threads, num_gpus=self.num_gpus)(run_job)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.owned:
            self.ray.shutdown()

    def submit(self, job):
        return self.task.remote(job)

    def wait(self, handles, timeout: float) -> list:
        handles = list(handles)
        done, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        rest = [h for h in handles if h not in done]
        if done and rest:  # collect everything else that is already finished too
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
            done += more
        return done

    def result(self, handle) -> JobResult:
        from ray.exceptions import RayError, RayTaskError

        try:
            return self.ray.get(handle)
        except RayTaskError as err:  # re-raise the job's own exception (a UserError prints one line)
            cause = getattr(err, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except RayError as err:  # a worker or node died (out of memory, lost node): not a bug of ours
            raise LadderFailed(f"a Ray worker died ({type(err).__name__}); re-run to resume") from None

    def kill(self) -> None:
        if self.owned:
            self.ray.shutdown()
        self.owned = False


def make_executor(cfg) -> LocalExecutor | RayExecutor:
    """The executor an `ExecutorConfig` asks for."""
    if cfg.kind == "ray":
        return RayExecutor(cfg.workers, cfg.threads, cfg.address, cfg.num_gpus)
    return LocalExecutor(cfg.workers, cfg.threads, cfg.num_gpus)
