"""Data parallelism under torchrun: gloo on CPU, NCCL on GPU. A single process is world size 1.

NCCL reduces only CUDA tensors, so every collective here runs on a tensor on `Dist.device`
(`all_reduce_sum` moves a stray CPU tensor there and returns the reduced tensor)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of `t` over ranks, as a tensor on this rank's device (`t` itself when it lives there)."""
        if self.enabled:
            t = t.to(self.device)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: str | None = None) -> Dist:
    """Join the torchrun process group if WORLD_SIZE > 1; pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if world_size == 1:
        return Dist(device=torch.device("cuda" if cuda else "cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local_rank)
    return Dist(rank=rank, world_size=world_size,
                device=torch.device(f"cuda:{local_rank}" if cuda else "cpu"))


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard_model(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP2: shard every transformer block, then the rest (embedding, final norm, tied head), over all
    ranks. Each rank keeps 1/world of the weights, gradients and AdamW state; a block's weights are
    all-gathered just for its forward and backward. The module is changed in place (DTensor params)."""
    from torch.distributed.fsdp import fully_shard

    for block in model.layers:
        fully_shard(block)
    fully_shard(model)
    return model
