"""An auxiliary head for training the ``shapes`` captioner: which object sits in each grid cell.

Predicting each cell's object (shape, colour, size, or empty) from the encoder states teaches the
encoder where things are (see :mod:`intelliflow.training.captioner`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from intelliflow.data.shapes import ShapesConfig


class CellProbe(nn.Module):
    """Encoder states [B, N, D] on an (h, w) token grid -> per-cell logits of the ``shapes`` grid
    (``cells`` × ``cells``): one tensor [B, cells², classes[k]] for each of shape, colour and size,
    class 0 = empty cell."""

    def __init__(self, dim: int, token_grid: tuple[int, int], cells: int, classes: tuple[int, int, int]):
        super().__init__()
        self.token_grid, self.cells, self.classes = token_grid, cells, classes
        self.proj = nn.Linear(dim, sum(classes))

    def forward(self, states: torch.Tensor) -> list[torch.Tensor]:
        b, n, d = states.shape
        grid = states.transpose(1, 2).reshape(b, d, *self.token_grid)
        pooled = F.adaptive_avg_pool2d(grid, self.cells).flatten(2).transpose(1, 2)  # [B, cells², D]
        return list(self.proj(pooled).split(self.classes, dim=-1))

    @staticmethod
    def targets(scenes, config: ShapesConfig, device) -> torch.Tensor:
        """[B, cells², 3] class indices (shape, colour, size), 0 where a cell is empty."""
        t = torch.zeros(len(scenes), config.grid ** 2, 3, dtype=torch.long)
        for i, scene in enumerate(scenes):
            for o in scene.objects:
                cell = o.row * config.grid + o.col
                t[i, cell] = torch.tensor([config.shapes.index(o.shape) + 1, config.colours.index(o.colour) + 1,
                                           config.sizes.index(o.size) + 1])
        return t.to(device)

    def loss(self, states: torch.Tensor, scenes, config: ShapesConfig) -> torch.Tensor:
        """Cross-entropy of the cells' shape, colour and size classes, summed over the three (scalar)."""
        logits = self(states)
        targets = self.targets(scenes, config, states.device)
        return sum(F.cross_entropy(l.reshape(-1, l.shape[-1]), targets[..., k].reshape(-1))
                   for k, l in enumerate(logits))
