"""Process-group plumbing for DistributedDataParallel runs started by ``torchrun``.

``torchrun --nproc_per_node N script.py`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT.
The Trainer first chooses its device (``cuda:LOCAL_RANK`` when CUDA is available), then calls
:func:`setup` with it, which joins the group when WORLD_SIZE > 1: nccl for a CUDA device, gloo for the
CPU. A group joined here is left again by :func:`teardown` (``Trainer.close()``, or at interpreter exit).
A plain ``python script.py`` stays a single process and never touches torch.distributed.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_local_rank(mode: str = "auto") -> int | None:
    """LOCAL_RANK when this process is one of several launched together (and mode is not 'off'), else None."""
    if mode == "off" or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return int(os.environ.get("LOCAL_RANK", "0"))


def setup(mode: str = "auto", device: torch.device | None = None) -> DistInfo:
    """Join the process group if this process was launched as one of several; else a 1-process info.

    `device` is the device the caller will train on: a CUDA device selects nccl (and becomes the current
    CUDA device), anything else gloo.
    """
    if mode == "off":
        return DistInfo()
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)
    atexit.register(teardown, info)
    return info


def teardown(info: DistInfo) -> None:
    """Leave the process group if `info` joined it; a second call does nothing."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()
    info.initialized_here = False


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of `t` over all processes (a no-op for one process)."""
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
