"""``intelliflow train``: train what a recipe describes."""

from __future__ import annotations

from . import COMMAND_GROUPS


def cmd_train(args) -> int:
    """Train what a recipe describes (its ``task`` key picks the runner)."""
    from intelliflow.config import read_recipe

    data = read_recipe(args.recipe, args.set)
    task = data.get("task")
    if task == "captioner":
        from intelliflow.training.captioner import recipe_from_dict, train_captioner

        final = train_captioner(recipe_from_dict(data), output=args.out, resume=args.resume, stop_at=args.stop_at)
    elif task == "codec":
        from intelliflow.training.codec import recipe_from_dict, train_codec

        final = train_codec(recipe_from_dict(data), output=args.out, resume=args.resume, stop_at=args.stop_at)
    elif task == "drafter":
        from intelliflow.training.drafter import recipe_from_dict, train_drafter

        final = train_drafter(recipe_from_dict(data), output=args.out, resume=args.resume, stop_at=args.stop_at)
    elif task == "bridge":
        from intelliflow.training.bridge import recipe_from_dict, train_bridge

        final = train_bridge(recipe_from_dict(data), output=args.out, resume=args.resume, stop_at=args.stop_at)
    elif task == "image-codec":
        from intelliflow.training.image_codec import recipe_from_dict, train_image_codec

        final = train_image_codec(recipe_from_dict(data), output=args.out, resume=args.resume, stop_at=args.stop_at)
    else:
        from intelliflow.errors import ConfigError

        raise ConfigError(f"recipe {args.recipe}: unknown task {task!r}; allowed: ['bridge', 'captioner', 'codec', 'drafter', 'image-codec']")
    print(f"trained: {final}")
    return 0


@COMMAND_GROUPS.register("train")
def register(sub) -> None:
    """Add this group's commands to the main parser's sub-parsers."""
    p = sub.add_parser("train", help="train a model or codec from a YAML recipe (recipes/...)")
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/shapes/captioner.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--out", default=None, help="output folder (default: the recipe's output)")
    p.add_argument("--resume", action="store_true", help="continue from the output folder's last checkpoint")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop after this step with a checkpoint (continue later with --resume)")
    p.set_defaults(func=cmd_train)
