"""Data-parallel training under ``torchrun``: join the process group, wrap the model, leave.

Each process (rank) trains a replica on its own batches; ``DistributedDataParallel`` averages the
gradients, so the replicas stay equal. Rank 0 alone writes logs and checkpoints (see
:func:`intelliflow.training.loop.train_loop`); every rank writes the digest of its final weights
(:func:`write_weights_digest`) so equal replicas can be checked. Without ``torchrun``
(``WORLD_SIZE`` unset or 1) all of this is a no-op: rank 0 of 1.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

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


def ddp(module: torch.nn.Module, ignore: Iterable[str] = ()) -> torch.nn.Module:
    """``module`` in ``DistributedDataParallel`` when there are several processes, else itself.

    ``ignore``: names (as in ``module.state_dict()``) of buffers that differ between ranks on
    purpose and must not be broadcast from rank 0 (e.g. tables only rank 0 builds, for validation).
    """
    if rank_and_world()[1] == 1:
        return module
    ignore = list(ignore)
    if ignore:
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ignore)
    return torch.nn.parallel.DistributedDataParallel(module, find_unused_parameters=True)


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state (names and bytes): equal replicas give equal digests."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def write_weights_digest(out: str | Path, module: torch.nn.Module) -> Path:
    """Write :func:`weights_digest` of ``module`` to ``out/weights_rank{rank}.sha256`` (every rank)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"weights_rank{rank_and_world()[0]}.sha256"
    path.write_text(weights_digest(module) + "\n")
    return path
