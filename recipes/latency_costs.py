"""What the latency and plan commands need: FLOP counts of the split model's sides and of the
codec, and a planner built from result folders and a profile."""

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


def model_costs(model_name: str, splits=None) -> dict:
    """``{split: SplitCosts}`` of a split model at ``splits`` (default: every split point); the
    model's default split comes first."""
    from intelliflow.data.shapes import make_sample
    from intelliflow.flow.planner import SplitCosts
    from intelliflow.models import load_split_model
    from intelliflow.models.costs import split_costs

    model = load_split_model(model_name)
    image = make_sample("val", 0).image
    wanted = sorted(set(splits) if splits else range(model.num_split_points), key=lambda k: k != model.split)
    costs = {}
    for k in wanted:
        model.split = int(k)
        c = split_costs(model, [image])
        costs[int(k)] = SplitCosts(float(c.device_flops), float(c.server_flops), float(c.device_params),
                                   float(c.server_params))
    return costs


def build_planner(results, profile: str | None = None, model: str = "shapes-captioner", split: int | None = None,
                  quality: float = 0.95, codec_flops_override: float | None = None):
    """A :class:`~intelliflow.flow.planner.Planner` over result folders, with node and backhaul
    profiles from a YAML file; returns (planner, the profile's wireless link)."""
    from intelliflow.evaluation.curves import load_results
    from intelliflow.flow.latency import WirelessLink, read_profile
    from intelliflow.flow.planner import Planner

    rows = load_results(results)
    if split is not None:
        splits = [split]
    else:
        splits = sorted({int(r["split"]) for r in rows if r.get("split") not in (None, "")})
    prof = read_profile(profile) if profile else {}
    codecs = {str(r["codec"]) for r in rows if r.get("kind") in ("learned", "analog")}
    flops = {c: codec_flops(c) if codec_flops_override is None else codec_flops_override for c in codecs}
    nodes = {k: prof[k] for k in ("device", "edge", "cloud", "backhaul") if k in prof}  # else the Planner's presets
    planner = Planner(rows, model_costs(model, splits or None), quality=quality, codec_flops=flops, **nodes)
    return planner, prof.get("wireless") or WirelessLink()
