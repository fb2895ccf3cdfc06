"""Train a learned image codec for MSE on pictures (``task: image-codec``): the "best image codec"
information-flow baseline (:mod:`intelliflow.codec.learned_image`).

CompressAI's own training pieces: its ``ScaleHyperprior`` (the zoo's bmshj2018-hyperprior
architecture), its ``RateDistortionLoss`` (``lmbda * 255^2 * MSE + bits per pixel``) and its
auxiliary loss (the entropy bottleneck's quantiles, in their own parameter group with ``aux_lr``,
as CompressAI's example trains them with a second optimiser). Pictures in [0, 1], sides multiples
of 64 (``shapes`` images are 64 x 64). :func:`intelliflow.training.train_loop` runs the steps
(checkpoints, ``--resume``, logs); validation codes ``shapes:val`` pictures for real (payload
bits, every header byte counted, and PSNR).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from intelliflow.config import from_dict, to_dict
from intelliflow.distributed import distributed
from intelliflow.errors import ConfigError
from intelliflow.training import LoopConfig, Step, TrainState, lr_schedule, train_loop


@dataclass
class ImageCodecTraining:
    steps: int = 3000
    batch_size: int = 16
    lr: float = 5e-4
    aux_lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    grad_clip: float = 1.0
    threads: int = 0


@dataclass
class ImageCodecEval:
    every: int = 500
    images: int = 200


@dataclass
class ImageCodecRecipe:
    task: Literal["image-codec"] = "image-codec"
    seed: int = 0
    output: str = "runs/image_codec"
    data: str = "shapes"
    checkpoint_every: int = 500
    checkpoint_minutes: float = 5.0
    log_every: int = 50
    codec: dict = field(default_factory=lambda: {"name": "bmshj2018"})
    train: ImageCodecTraining = field(default_factory=ImageCodecTraining)
    eval: ImageCodecEval = field(default_factory=ImageCodecEval)


def recipe_from_dict(data: dict) -> ImageCodecRecipe:
    recipe = from_dict(ImageCodecRecipe, data)
    if recipe.data != "shapes":
        raise ConfigError(f"recipe key 'data': the image codec trains on 'shapes' pictures, got {recipe.data!r}")
    return recipe


def train_image_codec(recipe: ImageCodecRecipe, output: str | Path | None = None, resume: bool = False,
                      stop_at: int | None = None) -> Path:
    """Run an image-codec recipe; returns the folder of the trained codec (``OUT/codec``)."""
    with distributed() as (rank, world):
        if world > 1:
            raise ConfigError("the image codec trains in one process (run it without torchrun)")
        return _train(recipe, Path(output or recipe.output), resume, stop_at)


def _train(recipe: ImageCodecRecipe, out: Path, resume: bool, stop_at: int | None) -> Path:
    from compressai.losses import RateDistortionLoss

    from intelliflow.codec import build_codec
    from intelliflow.codec.learned_image import to_tensor
    from intelliflow.codec.persistence import save_codec
    from intelliflow.seeding import seed_everything

    from .batches import ImageBatches
    from .codec import _ENTROPY_TABLES

    t = recipe.train
    if t.threads:
        torch.set_num_threads(t.threads)
    seed_everything(recipe.seed)
    codec = build_codec(dict(recipe.codec))
    if codec.takes != "image" or not codec.learned:
        raise ConfigError(f"recipe key 'codec': {recipe.codec.get('name')!r} is not a learned image codec")
    criterion = RateDistortionLoss(lmbda=codec.config.lmbda)
    main = [p for n, p in codec.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in codec.named_parameters() if n.endswith(".quantiles")]
    optimizer = torch.optim.Adam([{"params": main, "lr": t.lr}, {"params": aux, "lr": t.aux_lr}])
    state = TrainState({"codec": codec}, optimizer, lr_schedule(optimizer, t), clip=main,
                       keep=lambda k: not k.endswith(_ENTROPY_TABLES))
    print(f"image codec {recipe.codec.get('name')}: {sum(p.numel() for p in codec.parameters()):,} parameters, "
          f"lambda {codec.config.lmbda:g}; output {out}", file=sys.stderr)

    def step_fn(batch: dict, step: int) -> Step:
        x = to_tensor(batch["images"])
        losses = criterion(codec(x), x)   # CompressAI's forward: x_hat and likelihoods, the noise proxy
        aux_loss = codec.aux_loss()
        psnr = -10 * torch.log10(losses["mse_loss"].detach().clamp_min(1e-10))
        return Step(losses["loss"] + aux_loss, {"bpp": losses["bpp_loss"].detach(), "psnr_db": psnr,
                                                "aux": aux_loss.detach()})

    def validation(step: int) -> list[dict]:
        rows = validate(codec, recipe.eval.images)
        codec.train()
        return rows

    codec.train()
    loop = LoopConfig(steps=t.steps, batch_size=t.batch_size, grad_clip=t.grad_clip, log_every=recipe.log_every,
                      checkpoint_every=recipe.checkpoint_every, checkpoint_minutes=recipe.checkpoint_minutes,
                      eval_every=recipe.eval.every, columns={"bpp": ".4f", "psnr_db": ".2f", "aux": ".1f"},
                      desc=f"train {recipe.codec.get('name')} (lambda {codec.config.lmbda:g})")
    result = train_loop(step_fn, lambda start: ImageBatches(recipe.data, t.batch_size, recipe.seed, 0, start),
                        state, loop, out, to_dict(recipe), resume=resume, stop_at=stop_at,
                        validate=validation if recipe.eval.every else None)
    if result.stopped:
        return result.checkpoint
    codec.eval()
    codec.update()
    final = out / "codec"
    save_codec(codec, final, objective="mse", data=recipe.data, seed=recipe.seed, steps=result.step,
               recipe=to_dict(recipe))
    (final / "README.md").write_text(card(recipe, result.step, out))
    print(f"saved the codec to {final}", file=sys.stderr)
    return final


@torch.no_grad()
def validate(codec, images: int) -> list[dict]:
    """Code the first ``images`` pictures of ``shapes:val`` for real: mean payload bits and PSNR (dB)."""
    from intelliflow.codec.learned_image import to_tensor
    from intelliflow.data.shapes import ShapesDataset

    was_training = codec.training
    codec.eval()
    codec.update()
    dataset = ShapesDataset("val", limit=images)
    pictures = [dataset[i].image for i in range(len(dataset))]
    payloads = codec.encode(pictures)
    decoded = codec.decode(payloads)
    mse = torch.stack([((to_tensor([a]) - to_tensor([b])) ** 2).mean() for a, b in zip(pictures, decoded)])
    codec.train(was_training)
    return [{"payload_bits": sum(8 * len(p) for p in payloads) / len(payloads),
             "psnr_db": float((-10 * torch.log10(mse.clamp_min(1e-10))).mean()),
             "bpp": sum(8 * len(p) for p in payloads) / len(payloads) / (pictures[0].width * pictures[0].height)}]


def card(recipe: ImageCodecRecipe, steps: int, run: Path) -> str:
    """The model card of a trained image codec."""
    evals = (run / "eval_log.csv").read_text().strip().splitlines() if (run / "eval_log.csv").is_file() else []
    table = "\n".join([evals[0], evals[-1]]) if len(evals) > 1 else "(no validation in this run)"
    lmbda = recipe.codec.get("lmbda", "the default")
    return f"""# {recipe.codec.get('name')} image codec (CompressAI ScaleHyperprior) for `{recipe.data}` pictures

The information-flow baseline "a strong image codec": the bmshj2018-hyperprior architecture of
CompressAI's zoo, trained for MSE (CompressAI's RateDistortionLoss, lambda {lmbda}) for {steps}
steps of {recipe.train.batch_size} pictures, seed {recipe.seed}. The device sends the picture's
payload; the receiver decodes it and runs the whole captioner.

Reproduce: `intelliflow train recipes/shapes/image_codec.yaml --set codec.lmbda={lmbda} --out OUT`,
then copy `OUT/codec/` here.

Last validation (`shapes:val`, first {recipe.eval.images} pictures, coded for real: every header
byte counted):

```
{table}
```

Recipe:

```json
{json.dumps(to_dict(recipe), indent=2)}
```
"""


__all__ = ["ImageCodecRecipe", "recipe_from_dict", "train_image_codec", "validate"]
