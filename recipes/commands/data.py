"""``intelliflow data``: export a dataset split, print its facts."""

from __future__ import annotations

from . import COMMAND_GROUPS
from .common import action_group, print_json


def cmd_data_export(args) -> int:
    """Write a dataset split to disk in COCO-captions format."""
    from intelliflow.data.datasets import export_dataset, open_dataset

    dataset = open_dataset(args.spec, limit=args.limit)
    path = export_dataset(dataset, args.out, description=args.spec, progress=True)
    print(f"wrote {len(dataset)} images and {path}")
    return 0


def cmd_data_info(args) -> int:
    """Sizes of a dataset; for shapes also the vocabulary and the exact semantic entropy."""
    if args.spec.split(":")[0] == "shapes":
        from intelliflow.data.captions import vocabulary
        from intelliflow.data.entropy import entropy_breakdown
        from intelliflow.data.shapes import SPLIT_SIZES, ShapesConfig

        config = ShapesConfig()
        parts = entropy_breakdown(config)
        info = {
            "dataset": "shapes",
            "entropy_bits": sum(parts.values()),
            "entropy_breakdown_bits": parts,
            "splits": {"train": "endless stream", **SPLIT_SIZES},
            "vocabulary_size": len(vocabulary()),
            "image_size": config.image_size,
            "objects_per_image": [config.min_objects, config.max_objects],
            "references_per_image": config.n_references,
        }
        text = [f"shapes: {config.image_size}x{config.image_size} scenes of "
                f"{config.min_objects}-{config.max_objects} objects on a {config.grid}x{config.grid} grid",
                f"semantic entropy: {info['entropy_bits']:.4f} bits per image "
                f"(count {parts['count_bits']:.4f} + attributes {parts['attribute_bits']:.4f} "
                f"+ relations {parts['relation_bits']:.4f})",
                f"splits: train endless, val {SPLIT_SIZES['val']}, test {SPLIT_SIZES['test']} images",
                f"vocabulary: {info['vocabulary_size']} words; {config.n_references} references per image"]
    else:
        from intelliflow.data.datasets import open_dataset

        dataset = open_dataset(args.spec)
        n_captions = sum(len(e[2]) for e in dataset.entries)
        info = {"dataset": args.spec, "images": len(dataset), "captions": n_captions}
        text = [f"{args.spec}: {len(dataset)} images, {n_captions} captions"]
    if args.json:
        print_json(info)
    else:
        print("\n".join(text))
    return 0


@COMMAND_GROUPS.register("data")
def register(sub) -> None:
    """Add this group's commands to the main parser's sub-parsers."""
    dsub = action_group(sub, "data", "datasets: export to COCO format, print facts")
    p = dsub.add_parser("export", help="write a split (e.g. shapes:test) as PNG images + annotations.json")
    p.add_argument("spec", help="dataset spec: shapes:val, shapes:test, coco:DIR, flickr8k:DIR[:SPLIT]")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--limit", type=int, default=None, help="export only the first N images")
    p.set_defaults(func=cmd_data_export)
    p = dsub.add_parser("info", help="split sizes, vocabulary and (for shapes) the exact semantic entropy")
    p.add_argument("spec", help="shapes, or a dataset spec")
    p.add_argument("--json", action="store_true", help="print a JSON object (key entropy_bits for shapes)")
    p.set_defaults(func=cmd_data_info)
