"""The split-model protocol: a captioner cut in two at a layer of its vision encoder.

::

    images ─► preprocess ─► pixel_values [B, 3, H, W]
           ─► head (device: vision layers < k) ─► features [B, N, D]
           ─► (codec + channel, elsewhere)
           ─► tail (server: vision layers >= k, then the text decoder) ─► loss | captions

``N = prefix_tokens + H' * W'``: the first ``prefix_tokens`` tokens (e.g. a CLS token) are not on
the grid, the rest lie row-major on ``feature_grid = (H', W')``, so a convolutional codec can
view them as ``[B, D, H', W']`` (:func:`tokens_to_grid`). With the features passed through
untouched, ``head`` + ``tail_loss``/``tail_generate`` give exactly the unsplit model's loss and
tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from intelliflow.errors import ConfigError, ShapeError


class SplitModel(nn.Module, ABC):
    """Base class of every split captioner. Subclasses set ``split`` (the layer index ``k``)."""

    #: the split point used when none is given
    default_split: int = 0
    #: tokens before the grid in the features (CLS and the like)
    prefix_tokens: int = 0

    @property
    @abstractmethod
    def num_split_points(self) -> int:
        """Valid split points are ``0 .. num_split_points - 1`` (0: right after the patch embedding)."""

    @property
    @abstractmethod
    def feature_grid(self) -> tuple[int, int]:
        """``(H', W')``: how the non-prefix feature tokens lie on a grid."""

    @property
    @abstractmethod
    def feature_dim(self) -> int:
        """``D``, the width of a feature token at the split."""

    @abstractmethod
    def preprocess(self, images: Sequence, device: torch.device | str | None = None) -> torch.Tensor:
        """PIL images (or uint8 arrays [H, W, 3]) -> ``pixel_values`` [B, 3, H, W] float, on ``device``
        (default the model's; a DataLoader worker asks for ``"cpu"``)."""

    @abstractmethod
    def head(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Device side: ``pixel_values`` [B, 3, H, W] -> features [B, N, D]."""

    @abstractmethod
    def tail_logits(self, features: torch.Tensor, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Server side, teacher-forced: features [B, N, D] -> (logits [B, T, V], labels [B, T]),
        labels ``-100`` where no loss is taken."""

    @abstractmethod
    def tail_generate_ids(self, features: torch.Tensor, **generation) -> torch.Tensor:
        """Server side: features [B, N, D] -> generated token ids [B, T]."""

    @abstractmethod
    def full_generate_ids(self, pixel_values: torch.Tensor, **generation) -> torch.Tensor:
        """The unsplit model's generated token ids [B, T]."""

    @abstractmethod
    def decode_ids(self, ids: torch.Tensor) -> list[str]:
        """Token ids [B, T] -> captions (special tokens dropped)."""

    def tail_verify(self, features: torch.Tensor, drafts: Sequence[Sequence[int]], **generation):
        """Server side with a draft per image (token ids after the start tokens): features [B, N, D]
        -> :class:`~intelliflow.models.speculative.Verified`, its ids token for token those of
        :meth:`tail_generate_ids` (greedy), in fewer decoder passes where the draft is right."""
        raise ConfigError(f"{type(self).__name__} cannot verify drafts (it has no step-by-step text decoder)")

    def tail_generate(self, features: torch.Tensor, **generation) -> list[str]:
        """Server side: features [B, N, D] -> one caption per image."""
        return self.decode_ids(self.tail_generate_ids(features, **generation))

    def full_generate(self, pixel_values: torch.Tensor, **generation) -> list[str]:
        """The unsplit model's captions."""
        return self.decode_ids(self.full_generate_ids(pixel_values, **generation))

    @abstractmethod
    def full_logits(self, pixel_values: torch.Tensor, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The unsplit model, teacher-forced: (logits [B, T, V], labels [B, T])."""

    def tail_loss(self, features: torch.Tensor, captions: Sequence[str], label_smoothing: float = 0.0) -> torch.Tensor:
        """Teacher-forced cross-entropy of ``captions`` given features [B, N, D]: a scalar."""
        return caption_loss(*self.tail_logits(features, captions), label_smoothing=label_smoothing)

    def full_loss(self, pixel_values: torch.Tensor, captions: Sequence[str], label_smoothing: float = 0.0) -> torch.Tensor:
        """The unsplit model's teacher-forced cross-entropy: a scalar."""
        return caption_loss(*self.full_logits(pixel_values, captions), label_smoothing=label_smoothing)

    def caption(self, images: Sequence, **generation) -> list[str]:
        """Convenience: the unsplit model's captions of PIL images."""
        with torch.no_grad():
            return self.full_generate(self.preprocess(images), **generation)

    def check_features(self, features: torch.Tensor) -> None:
        """Raise :class:`ShapeError` unless ``features`` is [B, N, D] for this split."""
        h, w = self.feature_grid
        expected = (self.prefix_tokens + h * w, self.feature_dim)
        if features.dim() != 3 or tuple(features.shape[1:]) != expected:
            raise ShapeError(f"features must be [B, {expected[0]}, {expected[1]}] at split {self.split}, "
                             f"got {list(features.shape)}")


def caption_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean token cross-entropy: logits [B, T, V], labels [B, T] (``-100`` ignored) -> scalar."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                           ignore_index=-100, label_smoothing=label_smoothing)


def tokens_to_grid(features: torch.Tensor, grid: tuple[int, int], prefix_tokens: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """features [B, N, D] -> (grid [B, D, H, W], prefix [B, P, D])."""
    h, w = grid
    b, n, d = features.shape
    if n != prefix_tokens + h * w:
        raise ShapeError(f"{n} tokens do not fit {prefix_tokens} prefix tokens + a {h}x{w} grid")
    prefix, rest = features[:, :prefix_tokens], features[:, prefix_tokens:]
    return rest.transpose(1, 2).reshape(b, d, h, w), prefix


def grid_to_tokens(grid: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of :func:`tokens_to_grid`: (grid [B, D, H, W], prefix [B, P, D]) -> [B, P + H*W, D]."""
    b, d, h, w = grid.shape
    tokens = grid.reshape(b, d, h * w).transpose(1, 2)
    return tokens if prefix is None or prefix.shape[1] == 0 else torch.cat([prefix, tokens], dim=1)


def square_grid(tokens: int) -> tuple[int, tuple[int, int]] | None:
    """``(prefix_tokens, (s, s))`` where ``tokens`` is a square grid ``s²`` or a CLS token and one
    (``1 + s²``); ``None`` otherwise.

    >>> square_grid(196), square_grid(197), square_grid(32)
    ((0, (14, 14)), (1, (14, 14)), None)
    """
    import math

    for prefix in (0, 1):
        side = math.isqrt(max(tokens - prefix, 0))
        if side and side * side == tokens - prefix:
            return prefix, (side, side)
    return None
