"""Seed every random source from one recipe seed: Python, numpy, torch and Sionna."""

from __future__ import annotations

import random
import sys

import numpy as np
import torch


def seed_everything(seed: int, sionna: bool | None = None) -> None:
    """Seed ``random``, numpy's global generator, torch (CPU and CUDA) and ``sionna.phy.config``.

    Sionna takes seconds to import, so by default it is seeded only when it is already imported
    (``sionna=None``); pass ``sionna=True`` to import and seed it anyway.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if sionna or (sionna is None and "sionna.phy" in sys.modules):
        from sionna.phy import config as sionna_config

        sionna_config.seed = seed
