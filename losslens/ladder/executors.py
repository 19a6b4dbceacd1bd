"""Where jobs run. Both executors offer the same four calls to the scheduler:

    submit(job) -> handle      wait(handles, timeout) -> finished handles
    result(handle) -> JobResult (re-raises the job's own exception)      kill()

`local`: N worker processes started with the spawn method; each sets its thread environment before
torch is imported (`jobs.init_worker`) and keeps torch imported between jobs.
`ray`: every job is one Ray task asking for `threads` CPUs, on a local Ray instance
(`ray.init(num_cpus=workers * threads)`) or an existing cluster by address. On a cluster every node
must see OUT at the same path (a shared filesystem); only the driver writes results.db.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os

from losslens.errors import LadderFailed, UserError
from losslens.ladder.jobs import JobResult, init_worker, run_job, thread_env


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads = workers, threads
        self.pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=init_worker, initargs=(threads,))

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

    def __init__(self, workers: int | None, threads: int, address: str | None):
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
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(1, cluster_cpus // threads)
        self.task = ray.remote(num_cpus=threads)(run_job)

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
        return RayExecutor(cfg.workers, cfg.threads, cfg.address)
    return LocalExecutor(cfg.workers or max(1, (os.cpu_count() or 1) // cfg.threads), cfg.threads)
