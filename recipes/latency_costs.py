"""FLOP counts the latency command needs: the split model's two sides and the codec's encoder."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def model_flops(model_name: str, split: int | None) -> tuple[float, float]:
    """(device FLOPs, server FLOPs) per image of a split model (see ``intelliflow models info``)."""
    from intelliflow.data.shapes import make_sample
    from intelliflow.models import load_split_model
    from intelliflow.models.costs import split_costs

    model = load_split_model(model_name, split=split)
    image = make_sample("val", 0).image
    cost = split_costs(model, [image])
    return float(cost.device_flops), float(cost.server_flops)


def codec_flops(codec_name: str) -> float:
    """FLOPs of one side of a learned codec (half its eval forward: analysis + synthesis), per image;
    0 for names that are not a codec checkpoint."""
    from intelliflow.codec.persistence import codec_folder, load_codec

    folder = codec_folder(codec_name)
    if folder is None:
        return 0.0
    codec = load_codec(folder)
    if not hasattr(codec, "g_a"):
        return 0.0
    features = torch.zeros(1, codec.config.in_channels, 8, 8)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        codec(features)
    return counter.get_total_flops() / 2
