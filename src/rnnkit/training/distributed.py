"""Data-parallel training under ``torchrun``: one process per rank, gloo on CPU, NCCL on GPU.

``torchrun --nproc-per-node 2 -m rnnkit.cli train ...`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``
and a rendezvous address in the environment. :func:`setup` then joins the process group and
the ``Trainer`` wraps the model in ``DistributedDataParallel`` (gradients are averaged across
ranks at every step). Rank r draws its own data (its seed stream includes r; the text task
trains each rank on its own shard), every rank evaluates the same held-out data with the same
weights, and only rank 0 writes records and checkpoints. Stop decisions (time budget, an
interrupt) are agreed on with one all-reduce per step, so no rank is left waiting.

On a single process nothing here touches torch.distributed.

Example:
    >>> info = setup(env={})
    >>> info.world_size, info.rank, info.is_main
    (1, 0, True)
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from rnnkit.errors import bad_argument

__all__ = ["DistInfo", "agree_stop", "all_sum", "backend_for", "setup", "teardown", "wrap"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the run."""

    rank: int = 0  # this process, 0..world_size-1
    world_size: int = 1  # processes in the run
    local_rank: int = 0  # this process on its machine
    local_world_size: int = 1  # processes on this machine

    @property
    def is_main(self) -> bool:
        """True on the process that writes records and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_argument(f"environment variable {name}", "an int (torchrun sets it)", raw,
                           "launch with torchrun, or unset the variable") from None


def backend_for(device: torch.device) -> str:
    """The process-group backend for ranks computing on ``device``: nccl for CUDA, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def setup(env: Mapping[str, str] | None = None, device: str = "auto") -> DistInfo:
    """Read the torchrun environment and, when ``WORLD_SIZE > 1``, join the process group.

    ``device`` is the run's ``--device``: the backend is nccl only when it resolves to CUDA (each
    rank on its own ``cuda:LOCAL_RANK``), else gloo. CPU threads are split between the ranks of a
    machine so they do not oversubscribe the cores.
    """
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo()
    rank = _env_int(env, "RANK", 0)
    local_rank = _env_int(env, "LOCAL_RANK", rank)
    local_world = _env_int(env, "LOCAL_WORLD_SIZE", world)
    import torch.distributed as dist

    from rnnkit.training.device import resolve_device

    where = resolve_device(device, local_rank)
    if where.type == "cuda":
        torch.cuda.set_device(where)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(where))
    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // max(1, local_world)))
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world)


def wrap(model: nn.Module, info: DistInfo, device: torch.device | None = None) -> nn.Module:
    """``model`` in DistributedDataParallel when the run is distributed, else ``model`` itself.

    On CUDA each rank's replica lives on its own device (``device_ids=[device]``).
    """
    if not info.distributed:
        return model
    if device is not None and device.type == "cuda":
        return nn.parallel.DistributedDataParallel(model, device_ids=[device])
    return nn.parallel.DistributedDataParallel(model)


def agree_stop(stop: bool, info: DistInfo) -> bool:
    """True on every rank if any rank wants to stop (a no-op on one process)."""
    if not info.distributed:
        return stop
    import torch.distributed as dist

    flag = torch.tensor([1 if stop else 0], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def all_sum(value: int, info: DistInfo) -> int:
    """The sum of ``value`` over all ranks (``value`` itself on one process)."""
    if not info.distributed:
        return value
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return int(total.item())


def _collective_device() -> torch.device:
    """Where small all-reduce tensors live: NCCL only reduces CUDA tensors."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def teardown(info: DistInfo) -> None:
    """Leave the process group (after a final barrier) when the run is distributed."""
    if not info.distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
