"""Several processes under ``torchrun``: join the process group, split work, gather results.

Training (:mod:`intelliflow.training.distributed`) and evaluation
(:func:`intelliflow.evaluation.sweep.evaluate`) both use these. Without ``torchrun``
(``WORLD_SIZE`` unset or 1) everything here is a no-op: rank 0 of 1.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import distributed as dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process: ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def distributed() -> Iterator[tuple[int, int]]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1; NCCL on GPUs, gloo on CPU)
    and yield ``(rank, world size)``. On the way out every rank waits for the others (so rank 0 has
    finished writing), and a group this call created is destroyed."""
    created = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        created = True
    try:
        yield rank_and_world()
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()
    finally:
        if created:
            dist.destroy_process_group()


def my_share(n: int) -> range:
    """The indices ``0..n-1`` this rank takes: every ``world``-th one from its rank.

    >>> list(my_share(5))   # one process takes everything
    [0, 1, 2, 3, 4]
    """
    rank, world = rank_and_world()
    return range(rank, n, world)


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` for one process.
    (It travels through ``torch.distributed.all_gather_object``: ranks exchange only what they made.)"""
    rank, world = rank_and_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out
