"""Data-parallel training under ``torchrun``: wrap the model, check the replicas (the process group
itself is :mod:`intelliflow.distributed`).

Each process (rank) trains a replica on its own batches; ``DistributedDataParallel`` averages the
gradients, so the replicas stay equal. Rank 0 alone writes logs and checkpoints (see
:func:`intelliflow.training.loop.train_loop`); every rank writes the digest of its final weights
(:func:`write_weights_digest`) so equal replicas can be checked. Without ``torchrun``
(``WORLD_SIZE`` unset or 1) all of this is a no-op: rank 0 of 1.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import torch

from intelliflow.distributed import rank_and_world


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
