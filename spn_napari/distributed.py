"""torchrun / DistributedDataParallel plumbing, used by trainers/ and by every training loop.

Under ``torchrun`` the environment names this process's rank; :func:`init_from_env` joins the
process group (NCCL on GPUs, gloo on CPU) and picks the local GPU. Training loops ask
:func:`rank_world` for the data shard and wrap their model with :func:`wrap`; only rank 0 writes
to the project. Outside torchrun all of this is a no-op (rank 0 of 1). Resuming with ``--state`` on several
machines needs the state file on a filesystem they share.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["init_from_env", "rank_world", "is_main", "wrap", "barrier", "shutdown"]


def init_from_env(device: str = "auto") -> str:
    """Join the torchrun process group if WORLD_SIZE > 1; return the device string to train on."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return device
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    # Rank 0 alone predicts and commits while the others wait at a barrier: allow it hours.
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(hours=6))
    return device


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around ``model`` when running distributed (SyncBatchNorm on GPUs; on CPU each process
    normalises its own shard, as PyTorch's SyncBatchNorm is GPU-only); else ``model`` itself."""
    if rank_world()[1] <= 1:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(model)


def barrier() -> None:
    if rank_world()[1] > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
