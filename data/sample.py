"""The sample type every dataset yields, and the DataLoader collate function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from .scene import Scene


@dataclass
class CaptionSample:
    """One image with its reference captions.

    ``image`` is an RGB PIL image of any size (models resize in their ``preprocess``);
    ``scene`` is the ground-truth scene graph on ``shapes`` and ``None`` on real datasets.
    """

    image_id: int
    image: Image.Image
    captions: list[str]
    scene: Scene | None = None
    file_name: str | None = None


def collate_samples(batch: list[CaptionSample]) -> dict[str, Any]:
    """Collate samples into lists: ``{"image_ids", "images", "captions", "scenes"}``.

    Images stay PIL images (sizes may differ on real datasets); a model's ``preprocess``
    turns them into ``pixel_values`` [B, 3, H, W].
    """
    return {
        "image_ids": [s.image_id for s in batch],
        "images": [s.image for s in batch],
        "captions": [s.captions for s in batch],
        "scenes": [s.scene for s in batch],
    }
