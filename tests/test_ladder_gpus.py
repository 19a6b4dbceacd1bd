"""Ladder job placement on GPUs: worker slots, each local worker's CUDA_VISIBLE_DEVICES, Ray's num_gpus."""

from __future__ import annotations

import os
import time

import pytest

from losslens.errors import InputError, UserError
from losslens.ladder.config import ExecutorConfig
from losslens.ladder.executors import LocalExecutor, gpu_slots


def test_gpu_slots_whole_gpus_per_job_or_shares_of_one():
    assert gpu_slots(["0", "1", "2", "3"], 1) == ["0", "1", "2", "3"]
    assert gpu_slots(["0", "1", "2", "3"], 2) == ["0,1", "2,3"]
    assert gpu_slots(["0", "1", "2"], 2) == ["0,1"]  # a job never gets half its GPUs
    assert gpu_slots(["4", "7"], 0.5) == ["4", "4", "7", "7"]
    assert gpu_slots(["0"], 0) == [] and gpu_slots([], 1) == []


@pytest.mark.parametrize("bad", [-1.0, 0.3, 1.5])
def test_num_gpus_must_be_whole_or_a_unit_fraction(bad):
    with pytest.raises(InputError, match="executor.num_gpus"):
        ExecutorConfig(num_gpus=bad).validate(source="ladder.toml", prefix="executor")  # as the ladder calls it
    ExecutorConfig(num_gpus=0.25).validate(source="ladder.toml")


def _devices_seen(seconds: float) -> str:
    time.sleep(seconds)  # keep this worker busy so the next call lands on another one
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def _run_on_every_worker(ex) -> list[str]:
    futures = [ex.pool.submit(_devices_seen, 1.5) for _ in range(ex.workers)]
    return sorted(f.result() for f in futures)


def test_each_local_worker_sees_its_own_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # what the driver may use (no real GPU needed)
    with LocalExecutor(None, 1, num_gpus=None) as ex:  # default: one GPU per job when GPUs are visible
        assert ex.workers == 2
        assert _run_on_every_worker(ex) == ["3", "5"]
    with LocalExecutor(None, 1, num_gpus=0.5) as ex:
        assert ex.workers == 4 and ex.gpu_slots == ["3", "3", "5", "5"]
    with LocalExecutor(1, 1, num_gpus=0) as ex:  # CPU jobs on a GPU machine: the GPUs are hidden
        assert _run_on_every_worker(ex) == [""]
    with pytest.raises(UserError, match="worker slots"):
        LocalExecutor(3, 1, num_gpus=1)
    with pytest.raises(UserError, match="2 GPU"):
        LocalExecutor(None, 1, num_gpus=4)


def test_without_gpus_workers_are_left_alone(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with LocalExecutor(1, 1) as ex:
        assert ex.gpu_slots == [] and ex.workers == 1
        assert _run_on_every_worker(ex) == [""]


def test_ray_jobs_ask_for_num_gpus():
    import tempfile

    import ray

    from losslens.ladder.executors import RayExecutor

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             _temp_dir=temp)
    try:
        ex = RayExecutor(None, 1, None, num_gpus=None)
        assert ex.num_gpus == 1.0 and ex.workers == 2
        assert RayExecutor(None, 1, None, num_gpus=0.5).workers == 2  # 4 GPU slots, 2 CPUs
        with pytest.raises(UserError, match="Ray cluster has 2 GPU"):
            RayExecutor(None, 1, None, num_gpus=4)
        def devices():  # defined here: Ray pickles it by value (workers cannot import this test module)
            import os
            return os.environ.get("CUDA_VISIBLE_DEVICES")

        task = ray.remote(num_cpus=1, num_gpus=ex.num_gpus)(devices)
        assert ray.get(task.remote()) in ("0", "1")  # Ray gives the task its own GPU
    finally:
        ray.shutdown()
