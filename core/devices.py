"""Device names as the project's components want them.

Sionna binds each block to an explicit device string when it is built, and a bare ``"cuda"`` means
"the current CUDA device" to torch, so every place that hands a device to Sionna goes through
:func:`device_string`. :func:`rank_device` picks the CUDA device of a distributed-training rank.
"""

from __future__ import annotations

import torch

__all__ = ["device_string", "rank_device"]


def device_string(device: str | torch.device) -> str:
    """The explicit device string of ``device``: ``"cuda:N"`` for a CUDA device (``N`` the current
    CUDA device when ``device`` names none), else its type (``"cpu"``).

    >>> device_string("cpu"), device_string(torch.device("cpu")), device_string("cuda:1")
    ('cpu', 'cpu', 'cuda:1')
    """
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}"
    return device.type


def rank_device(rank: int) -> torch.device:
    """The device of distributed-training process ``rank``: CUDA device ``rank`` modulo the visible
    ones, or the CPU when there is no CUDA.

    >>> rank_device(0) == (torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu"))
    True
    """
    if torch.cuda.is_available():
        return torch.device(f"cuda:{rank % torch.cuda.device_count()}")
    return torch.device("cpu")
