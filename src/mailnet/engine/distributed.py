"""Multi-process training under ``torchrun``: gloo on CPU, nccl on GPU; only rank 0 writes."""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (once per process: several runs, e.g.
    ``--seeds``, share it, since joining again through torchrun's store hangs); a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(shutdown, DistInfo(world_size=world))
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def ranks_failing(failed: bool, info: DistInfo, device: torch.device) -> list[int]:
    """The ranks for which ``failed`` holds (one tiny all-gather): a rank that stops alone would leave the others
    waiting forever in their next collective (the gradient all-reduce), so every rank must learn of it together."""
    if not info.enabled:
        return [0] if failed else []
    flags = [torch.zeros(1, device=device) for _ in range(info.world_size)]
    dist.all_gather(flags, torch.tensor([float(failed)], device=device))
    return [r for r, f in enumerate(flags) if f.item()]


def sync_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). DDP broadcasts them at the start of each
    training forward, so after the last step each rank holds the statistics of its own last batch: validated so,
    the ranks would score slightly different models, and the one saved (rank 0's) would not be the one scored."""
    if info.enabled:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
