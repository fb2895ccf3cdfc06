"""Train the built-in ``shapes`` captioner from scratch (``task: captioner`` recipes).

The captioner learns the *canonical* caption of each scene (objects in reading order of their
cells, ``left of`` / ``above`` between neighbours), a deterministic target in which every
relation sits between the two objects it binds. An auxiliary probe predicts each grid cell's
object (shape, colour, size, or empty) from the encoder states, which teaches the encoder where
things are (:class:`intelliflow.training.probe.CellProbe`). Validation greedily captions
``shapes:val`` and reports CIDEr-D and semantic accuracy.

This module builds the model, the data and one step; :func:`intelliflow.training.train_loop` runs
them: checkpoints (safetensors + JSON, atomic) every ``checkpoint_every`` steps, and ``--resume``
continues from the last one with the same data order, so a run can span sessions.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader

from intelliflow.data.captions import canonical_caption, vocabulary
from intelliflow.data.sample import collate_samples
from intelliflow.data.shapes import ShapesConfig, ShapesDataset, ShapesStream
from intelliflow.models.captioner import ShapesCaptioner, build_captioner, build_tokenizer, count_parameters
from .probe import CellProbe
from intelliflow.models.protocol import caption_loss
from intelliflow.seeding import seed_everything
from intelliflow.training import LoopConfig, Step, TrainState, lr_schedule, train_loop

from intelliflow.config import from_dict, to_dict


@dataclass
class CaptionerModel:
    #: ``convvit``: the built-in VisionEncoderDecoder (conv-stem ViT + GPT-2); ``llava``: a
    #: LLaVA-architecture captioner (CLIP tower with ``patch_size`` patches, MLP projector, Llama
    #: decoder; :mod:`intelliflow.models.llava_captioner`), ``hidden_size`` wide on both sides
    architecture: Literal["convvit", "llava"] = "convvit"
    patch_size: int = 8
    image_size: int = 64
    hidden_size: int = 192
    encoder_layers: int = 4
    decoder_layers: int = 3
    heads: int = 4
    stem_channels: list[int] = field(default_factory=lambda: [32, 64])


@dataclass
class CaptionerTraining:
    steps: int = 12000
    batch_size: int = 64
    lr: float = 2e-3
    min_lr_ratio: float = 0.02
    warmup_steps: int = 500
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    aux_cell_weight: float = 0.5
    grad_clip: float = 1.0
    threads: int = 0  # 0: torch's default
    workers: int = 0  # DataLoader workers rendering scenes


@dataclass
class CaptionerEval:
    every: int = 1000
    images: int = 200
    batch_size: int = 100


@dataclass
class CaptionerRecipe:
    task: Literal["captioner"] = "captioner"
    seed: int = 0
    caption_form: Literal["canonical", "references"] = "canonical"
    output: str = "runs/shapes-captioner"
    checkpoint_every: int = 250
    checkpoint_minutes: float = 5.0  # also checkpoint at least this often (wall time)
    log_every: int = 50
    model: CaptionerModel = field(default_factory=CaptionerModel)
    train: CaptionerTraining = field(default_factory=CaptionerTraining)
    eval: CaptionerEval = field(default_factory=CaptionerEval)


@torch.no_grad()
def evaluate_captioner(captioner: ShapesCaptioner, images: int, batch_size: int = 100,
                       split: str = "val", config: ShapesConfig = ShapesConfig()) -> dict:
    """Greedy captions of the first ``images`` of ``shapes:split``: CIDEr-D, BLEU-4, semantic scores."""
    from intelliflow.evaluation.sweep import caption_dataset, score

    was_training = captioner.training
    dataset = ShapesDataset(split, config, limit=images)
    captioner.eval()
    done = caption_dataset(captioner, dataset, batch_size=batch_size, progress=False)
    captioner.train(was_training)
    return score(done.results, done.references, done.scenes, meteor=False, tokenizer="python")


def train_captioner(recipe: CaptionerRecipe, output: str | Path | None = None, resume: bool = False,
                    stop_at: int | None = None) -> Path:
    """Run a captioner recipe; returns the folder of the final model.

    ``stop_at`` ends this run after that step with a checkpoint (continue later with ``resume``);
    the function then returns the checkpoint folder.
    """
    out = Path(output or recipe.output)
    t, m = recipe.train, recipe.model
    if t.threads:
        torch.set_num_threads(t.threads)
    seed_everything(recipe.seed)
    shapes = ShapesConfig(image_size=m.image_size, seed=recipe.seed)
    if m.architecture == "llava":
        from intelliflow.models.llava_captioner import build_llava_captioner

        captioner = build_llava_captioner(vocabulary(), image_size=m.image_size, patch_size=m.patch_size,
                                          vision_hidden=m.hidden_size, vision_layers=m.encoder_layers,
                                          text_hidden=m.hidden_size, text_layers=m.decoder_layers, heads=m.heads)
    else:
        tokenizer = build_tokenizer(vocabulary())
        model = build_captioner(tokenizer, image_size=m.image_size, hidden_size=m.hidden_size,
                                encoder_layers=m.encoder_layers, decoder_layers=m.decoder_layers,
                                heads=m.heads, stem_channels=m.stem_channels)
        captioner = ShapesCaptioner(model, tokenizer)
    probe = CellProbe(m.hidden_size, captioner.feature_grid, shapes.grid,
                      (len(shapes.shapes) + 1, len(shapes.colours) + 1, len(shapes.sizes) + 1))
    params = list(captioner.parameters()) + list(probe.parameters())
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    state = TrainState({"model": captioner, "probe": probe}, optimizer, lr_schedule(optimizer, t), clip=params)
    print(f"captioner: {count_parameters(captioner):,} parameters; output {out}", file=sys.stderr)

    def batches(start: int):
        stream = ShapesStream(shapes, start=start * t.batch_size)
        return iter(DataLoader(stream, batch_size=t.batch_size, num_workers=t.workers, collate_fn=collate_samples))

    def step_fn(batch: dict, step: int) -> Step:
        if recipe.caption_form == "canonical":
            targets = [canonical_caption(s) for s in batch["scenes"]]
        else:
            targets = [refs[(i + step) % len(refs)] for i, refs in zip(batch["image_ids"], batch["captions"])]
        if m.architecture == "llava":   # the image tokens the LLM reads carry the probe
            states = captioner.head(captioner.preprocess(batch["images"]))
            cap_loss = captioner.tail_loss(states, targets, label_smoothing=t.label_smoothing)
        else:
            states = captioner.encoder_states(captioner.head(captioner.preprocess(batch["images"])))
            cap_loss = caption_loss(*captioner.decode_logits(states, targets), label_smoothing=t.label_smoothing)
        cell_loss = probe.loss(states, batch["scenes"], shapes) if t.aux_cell_weight else torch.zeros(())
        return Step(cap_loss + t.aux_cell_weight * cell_loss, {"caption_loss": cap_loss, "cell_loss": cell_loss})

    def validation(step: int) -> list[dict]:
        scores = evaluate_captioner(captioner, recipe.eval.images, recipe.eval.batch_size, config=shapes)
        return [{k: scores[k] for k in ("CIDEr-D", "BLEU-4", "semantic_accuracy", "relation_accuracy", "exact_match")}]

    captioner.train()
    loop = LoopConfig(steps=t.steps, batch_size=t.batch_size, grad_clip=t.grad_clip, log_every=recipe.log_every,
                      checkpoint_every=recipe.checkpoint_every, checkpoint_minutes=recipe.checkpoint_minutes, eval_every=recipe.eval.every,
                      columns={"caption_loss": ".5f", "cell_loss": ".5f"}, desc="train captioner")
    result = train_loop(step_fn, batches, state, loop, out, to_dict(recipe),
                        validate=validation if recipe.eval.every else None, resume=resume, stop_at=stop_at)
    if result.stopped:
        return result.checkpoint
    captioner.eval()
    final = out / "model"
    if m.architecture == "llava":
        from intelliflow.models.llava_captioner import save_llava_captioner

        save_llava_captioner(captioner, final, card=model_card(recipe, result.step))
    else:
        captioner.save(final, card=model_card(recipe, result.step))
    print(f"saved the captioner to {final}", file=sys.stderr)
    return final


def model_card(recipe: CaptionerRecipe, steps: int) -> str:
    if recipe.model.architecture == "llava":
        m = recipe.model
        return f"""# shapes-llava

A LLaVA-architecture captioner (see `intelliflow.models.llava_captioner`): a CLIP vision tower
({m.encoder_layers} layers x {m.hidden_size}, {m.patch_size}-pixel patches), LLaVA's MLP projector
and a Llama decoder ({m.decoder_layers} layers x {m.hidden_size}) in a transformers
`LlavaForConditionalGeneration`, trained from scratch on the generated `shapes` benchmark ({steps}
steps of {recipe.train.batch_size} images, seed {recipe.seed}).

Reproduce: `intelliflow train recipes/shapes/llava_captioner.yaml --out runs/shapes-llava`.

Recipe:

```json
{json.dumps(to_dict(recipe), indent=2)}
```
"""
    return f"""# shapes-captioner

The built-in captioner of intelliflow (see `intelliflow.models.captioner`): a conv-stem ViT
encoder ({recipe.model.encoder_layers} layers x {recipe.model.hidden_size}) and a GPT-2 decoder
({recipe.model.decoder_layers} layers) in a Hugging Face `VisionEncoderDecoderModel`, trained from
scratch on the generated `shapes` benchmark ({steps} steps of {recipe.train.batch_size} images,
seed {recipe.seed}, caption form `{recipe.caption_form}`).

Reproduce: `intelliflow train recipes/shapes/captioner.yaml --out runs/shapes-captioner`
(add `--resume` to continue an interrupted run), then copy `runs/shapes-captioner/model/` here.

Recipe:

```json
{json.dumps(to_dict(recipe), indent=2)}
```
"""


def recipe_from_dict(data: dict) -> CaptionerRecipe:
    return from_dict(CaptionerRecipe, data)
