"""Cost accounting of a split: parameters and FLOPs per side, and the feature size.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplications and
convolutions, counted as 2 x multiply-accumulates) on one image: the device side is ``head``,
the server side the teacher-forced ``tail_logits`` on a typical caption (generation with a
key-value cache costs about the same per token). Device parameters are exactly those that
receive a gradient from the head's output; the server holds the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .protocol import SplitModel


@dataclass(frozen=True)
class SplitCost:
    """Per-image costs of one split point: parameters and FLOPs of the device side (the head) and
    the server side (the tail), and the size of the features between them."""

    split: int
    device_params: float
    server_params: float
    device_flops: float
    server_flops: float
    feature_floats: int = 0
    feature_shape: tuple[int, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


def _flops(fn, model: torch.nn.Module) -> int:
    # parameters stop requiring grad while counted: a view of a parameter made under no_grad still
    # requires grad without a grad_fn (BLIP-2's expanded query tokens), which the counter's module
    # tracker cannot hook
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with FlopCounterMode(display=False) as counter:
            with torch.no_grad():
                fn()
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return int(counter.get_total_flops())


def split_costs(model: SplitModel, images, caption: str = "a large red circle left of a small blue square") -> SplitCost:
    """Costs of ``model`` at its current split for one image (the first of ``images``)."""
    px = model.preprocess(images[:1])
    device_flops = _flops(lambda: model.head(px), model)
    with torch.no_grad():
        features = model.head(px)
    server_flops = _flops(lambda: model.tail_logits(features, [caption]), model)

    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        out = model.head(px)
        grads = torch.autograd.grad(out.float().sum(), params, allow_unused=True) if out.requires_grad else [None] * len(params)
    seen, device_params = set(), 0
    for p, g in zip(params, grads):
        if g is not None and id(p) not in seen:
            seen.add(id(p))
            device_params += p.numel()
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return SplitCost(model.split, device_params, total - device_params, device_flops, server_flops,
                     int(features[0].numel()), tuple(features.shape[1:]))


def costs_for_every_split(model: SplitModel, images) -> list[SplitCost]:
    """:func:`split_costs` at every split point (restores the model's split afterwards)."""
    original = model.split
    try:
        rows = []
        for k in range(model.num_split_points):
            model.split = k
            rows.append(split_costs(model, images))
        return rows
    finally:
        model.split = original
