"""Costs the system model prices: FLOPs and parameters of a split model's two sides
(:func:`intelliflow.models.costs.split_costs`, at every split point), FLOPs of a learned codec and
of a drafter, and a :class:`~intelliflow.system.planner.Planner` built from result folders and a
profile."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def codec_flops(codec_name: str) -> float:
    """FLOPs of one side of a learned byte codec (half its eval forward: analysis + synthesis), per
    image on the 8 x 8 grid; 0 for other codecs (fixed baselines cost next to nothing; JSCC codecs
    are not counted yet)."""
    from intelliflow.codec.registry import checkpoint_folder, resolve_codec

    if checkpoint_folder(codec_name) is None:
        return 0.0
    codec = resolve_codec(codec_name)
    if not (codec.learned and codec.sends == "bytes"):
        return 0.0
    features = torch.zeros(1, codec.config.in_channels, 8, 8)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        codec(features)
    return counter.get_total_flops() / 2


def drafter_flops_per_token(drafter_name: str, model_name: str) -> float:
    """FLOPs per drafted token of a drafter (its greedy draft of one ``shapes`` image, over the
    head's features at the drafter's split, divided by the tokens drafted)."""
    from intelliflow.data.shapes import make_sample
    from intelliflow.models import load_split_model
    from intelliflow.models.drafter import load_drafter

    drafter = load_drafter(drafter_name)
    model = load_split_model(model_name, split=drafter.config.split)
    with torch.no_grad():
        features = model.head(model.preprocess([make_sample("val", 0).image]))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        draft = drafter.draft(features)
    return counter.get_total_flops() / max(1, len(draft.tokens[0]))


def model_costs(model_name: str, splits=None) -> dict:
    """``{split: SplitCost}`` of a split model at ``splits`` (default: every split point); the
    model's default split comes first."""
    from intelliflow.data.shapes import make_sample
    from intelliflow.models import load_split_model
    from intelliflow.models.costs import split_costs

    model = load_split_model(model_name)
    image = make_sample("val", 0).image
    wanted = sorted(set(splits) if splits else range(model.num_split_points), key=lambda k: k != model.split)
    costs = {}
    for k in wanted:
        model.split = int(k)
        costs[int(k)] = split_costs(model, [image])
    return costs


def build_planner(results, profile: str | None = None, model: str = "shapes-captioner", split: int | None = None,
                  quality: float = 0.95, codec_flops_override: float | None = None, device: str | None = None):
    """A :class:`~intelliflow.system.planner.Planner` over result folders, with node and backhaul
    profiles from a YAML file (``device``: a node preset's name over the profile's device); returns
    (planner, the profile's wireless link)."""
    from intelliflow.evaluation.results import load_results
    from .latency import WirelessLink, node_from_dict, read_profile
    from .planner import Planner

    rows = load_results(results)
    if split is not None:
        splits = [split]
    else:
        splits = sorted({int(r["split"]) for r in rows if r.get("split") not in (None, "")})
    prof = read_profile(profile) if profile else {}
    codecs = {str(r["codec"]) for r in rows if r.get("kind") in ("learned", "analog")}
    flops = {c: codec_flops(c) if codec_flops_override is None else codec_flops_override for c in codecs}
    nodes = {k: prof[k] for k in ("device", "edge", "cloud", "backhaul") if k in prof}  # else the Planner's presets
    if device is not None:
        nodes["device"] = node_from_dict(device, "--device")
    drafters = sorted({str(r["drafter"]) for r in rows if r.get("drafter")})
    per_token = drafter_flops_per_token(drafters[0], model) if drafters else 0.0
    planner = Planner(rows, model_costs(model, splits or None), quality=quality, codec_flops=flops,
                      drafter_flops_per_token=per_token, **nodes)
    return planner, prof.get("wireless") or WirelessLink()
