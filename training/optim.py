"""The learning-rate schedule every runner uses and one optimiser step."""

from __future__ import annotations

import math
from typing import Iterable

import torch


def lr_factor(step: int, train) -> float:
    """Linear warm-up over ``train.warmup_steps``, then cosine decay to ``train.min_lr_ratio`` at
    ``train.steps`` (``train``: a recipe's training section)."""
    if step < train.warmup_steps:
        return (step + 1) / train.warmup_steps
    progress = min(1.0, (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps))
    return train.min_lr_ratio + (1 - train.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_schedule(optimizer: torch.optim.Optimizer, train) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`lr_factor` as a scheduler over every parameter group of ``optimizer``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, train))


def optimizer_step(loss: torch.Tensor, optimizer, scheduler, clipped: Iterable[torch.Tensor], grad_clip: float) -> None:
    """Backward ``loss`` (a scalar), clip the gradient norm of ``clipped`` to ``grad_clip``, step the
    optimiser and the schedule."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(clipped, grad_clip)
    optimizer.step()
    scheduler.step()
