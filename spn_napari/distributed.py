"""torchrun / DistributedDataParallel plumbing, used by trainers/ and by every training loop.

Under ``torchrun`` the environment names this process's rank; :func:`init_from_env` joins the
process group (NCCL on GPUs, gloo on CPU) and picks the local GPU. Training loops ask
:func:`rank_world` for the data shard and wrap their model with :func:`wrap`. Per-image work
(feature caching, pseudo-labels, a round's prediction) takes :func:`shard` of the images and writes
them through :func:`sharded_writers`: each rank its own part of one artifact version, rank 0
commits once every rank has written. Outside torchrun all of this is a no-op (rank 0 of 1).
Resuming with ``--state`` on several machines needs the state file on a filesystem they share,
as the project itself.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["init_from_env", "rank_world", "is_main", "wrap", "barrier", "shutdown", "shard", "broadcast", "gather",
           "sharded_writers"]


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
    # A barrier may wait for rank 0's evaluation of a whole round: allow it hours.
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


def shard(n: int) -> range:
    """This rank's share of n images: every world-th from its rank (big and small images spread
    over the ranks alike, as a project's images are often sorted by source)."""
    rank, world = rank_world()
    return range(rank, n, world)


def broadcast(obj):
    """Rank 0's ``obj`` (picklable) on every rank."""
    if rank_world()[1] <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    rank, world = rank_world()
    if world <= 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def sharded_writers(project, kinds, *, depends: tuple[str, ...] = (), meta: dict | None = None) -> Iterator[dict]:
    """{kind: writer} for this rank's images of one new version of each artifact in ``kinds``.

    On a clean exit every rank finishes its part, and once all have, rank 0 commits the versions
    (each must then hold every image) while the others wait; every rank then sees them. On an
    error or a stop, nothing is committed and the versions' data is removed."""
    rank, _ = rank_world()
    writers: dict = {}
    if rank == 0:  # makes the versions' groups before any other rank opens them (no creation race)
        writers = {k: project.writer(k, depends=depends, meta=meta) for k in kinds}
    versions = broadcast([w.version for w in writers.values()] if rank == 0 else None)
    if rank != 0:
        writers = {k: project.writer(k, depends=depends, meta=meta, version=v, part=rank)
                   for k, v in zip(kinds, versions)}
    committed = False
    try:
        yield writers
        for w in writers.values():
            w.finish()
        barrier()
        if is_main():
            for k, w in writers.items():
                project.commit_written(k, w.version, depends=depends, meta=meta)
        committed = True
        barrier()
        project.reload()
    except BaseException:
        if not committed:
            for w in writers.values():
                w.abort()
        raise
