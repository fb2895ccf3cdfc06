"""``intelliflow models``: split models and their costs."""

from __future__ import annotations

from . import COMMAND_GROUPS
from .common import action_group, print_json


def cmd_models_info(args) -> int:
    """Parameters and FLOPs per side, and feature size, for every split point."""
    from intelliflow.data.shapes import make_sample
    from intelliflow.models import load_split_model
    from intelliflow.models.costs import costs_for_every_split

    model = load_split_model(args.model, split=args.split)
    rows = costs_for_every_split(model, [make_sample("val", 0).image])
    if args.json:
        names = getattr(model, "split_names", None)
        print_json({"model": args.model, "default_split": model.default_split, "selected_split": model.split,
                    "splits": [{**r.as_dict(), **({"point": names[r.split]} if names else {})} for r in rows]})
        return 0
    print(f"{args.model}: split points 0..{model.num_split_points - 1}, default {model.default_split}; "
          f"FLOPs per image (teacher-forced caption on the server)")
    print(f"{'k':>3} {'device params':>14} {'server params':>14} {'device MFLOP':>13} {'server MFLOP':>13} "
          f"{'feature floats':>15}  features")
    names = getattr(model, "split_names", None)   # multimodal LLMs name their points
    for r in rows:
        mark = " <" if r.split == model.split else ""
        name = f"  {names[r.split]}" if names else ""
        print(f"{r.split:>3} {r.device_params:>14,} {r.server_params:>14,} {r.device_flops / 1e6:>13.2f} "
              f"{r.server_flops / 1e6:>13.2f} {r.feature_floats:>15,}  {list(r.feature_shape)}{name}{mark}")
    return 0


@COMMAND_GROUPS.register("models")
def register(sub) -> None:
    """Add this group's commands to the main parser's sub-parsers."""
    msub = action_group(sub, "models", "split models: costs per split point")
    p = msub.add_parser("info", help="parameters and FLOPs of each side, and feature size, for every split point")
    p.add_argument("model", help="model name (shapes-captioner) or local folder")
    p.add_argument("--split", type=int, default=None, help="mark this split point (default: the model's default)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_models_info)
