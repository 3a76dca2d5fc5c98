"""Process group for running a study under ``torchrun`` (one process per GPU, or several on CPU).

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous address); when
``WORLD_SIZE > 1`` we join the group with the gloo backend, which works on CPU and on GPU machines
alike and is only used for barriers (cases are split by index, results meet on the shared output
folder). The timeout is long because a barrier waits for the slowest process's share of cases.
Without ``torchrun`` the study runs as the single process ``rank 0 of 1``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

#: How long a barrier waits for the other processes (their share of a long study).
BARRIER_TIMEOUT = datetime.timedelta(days=3)


@dataclass(frozen=True)
class Workers:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def device(self, requested: str) -> torch.device:
        """``cuda`` means this process's GPU (``cuda:LOCAL_RANK``); anything else is used as given."""
        device = torch.device(requested)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError("device 'cuda' was requested but CUDA is not available on this machine")
            if device.index is None:
                device = torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return device


def join() -> Workers:
    """The process group of this run: from ``torchrun``'s environment, or a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Workers()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=BARRIER_TIMEOUT)
        owns = True
    return Workers(rank, world_size, local_rank, owns)
