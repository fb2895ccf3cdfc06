"""Train the built-in ``shapes`` captioner from scratch (``task: captioner`` recipes).

The captioner learns the *canonical* caption of each scene (objects in reading order of their
cells, ``left of`` / ``above`` between neighbours), a deterministic target in which every
relation sits between the two objects it binds. An auxiliary probe predicts each grid cell's
object (shape, colour, size, or empty) from the encoder states, which teaches the encoder where
things are. Validation greedily captions ``shapes:val`` and reports CIDEr-D and semantic accuracy.

Checkpoints (safetensors + JSON, atomic) are written every ``checkpoint_every`` steps; ``--resume``
continues from the last one with the same data order, so a run can span sessions.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from intelliflow.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from intelliflow.data.captions import canonical_caption, vocabulary
from intelliflow.data.sample import collate_samples
from intelliflow.data.shapes import ShapesConfig, ShapesDataset, ShapesStream
from intelliflow.errors import ConfigError
from intelliflow.models.captioner import ShapesCaptioner, build_captioner, build_tokenizer, count_parameters
from intelliflow.models.protocol import caption_loss
from intelliflow.seeding import seed_everything

from .config import from_dict, to_dict
from intelliflow.training.optim import lr_factor, optimizer_step


@dataclass
class CaptionerModel:
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
    log_every: int = 50
    model: CaptionerModel = field(default_factory=CaptionerModel)
    train: CaptionerTraining = field(default_factory=CaptionerTraining)
    eval: CaptionerEval = field(default_factory=CaptionerEval)


class CellProbe(nn.Module):
    """Auxiliary head: encoder states [B, N, D] on an (h, w) grid -> per-cell logits of the
    ``shapes`` grid (shape, colour and size classes, class 0 = empty cell)."""

    def __init__(self, dim: int, token_grid: tuple[int, int], cells: int, classes: tuple[int, int, int]):
        super().__init__()
        self.token_grid, self.cells, self.classes = token_grid, cells, classes
        self.proj = nn.Linear(dim, sum(classes))

    def forward(self, states: torch.Tensor) -> list[torch.Tensor]:
        b, n, d = states.shape
        grid = states.transpose(1, 2).reshape(b, d, *self.token_grid)
        pooled = F.adaptive_avg_pool2d(grid, self.cells).flatten(2).transpose(1, 2)  # [B, cells², D]
        return list(self.proj(pooled).split(self.classes, dim=-1))

    @staticmethod
    def targets(scenes, config: ShapesConfig, device) -> torch.Tensor:
        """[B, cells², 3] class indices (shape, colour, size), 0 where a cell is empty."""
        t = torch.zeros(len(scenes), config.grid ** 2, 3, dtype=torch.long)
        for i, scene in enumerate(scenes):
            for o in scene.objects:
                cell = o.row * config.grid + o.col
                t[i, cell] = torch.tensor([config.shapes.index(o.shape) + 1, config.colours.index(o.colour) + 1,
                                           config.sizes.index(o.size) + 1])
        return t.to(device)

    def loss(self, states, scenes, config: ShapesConfig) -> torch.Tensor:
        logits = self(states)
        targets = self.targets(scenes, config, states.device)
        return sum(F.cross_entropy(l.reshape(-1, l.shape[-1]), targets[..., k].reshape(-1))
                   for k, l in enumerate(logits))


@torch.no_grad()
def evaluate_captioner(captioner: ShapesCaptioner, images: int, batch_size: int = 100,
                       split: str = "val", config: ShapesConfig = ShapesConfig()) -> dict:
    """Greedy captions of the first ``images`` of ``shapes:split``: CIDEr-D, BLEU-4, semantic scores."""
    from .evaluate import caption_dataset, score

    was_training = captioner.training
    dataset = ShapesDataset(split, config, limit=images)
    results, references, scenes, _ = caption_dataset(captioner, dataset, batch_size, progress=False)
    captioner.train(was_training)
    return score(results, references, scenes, meteor=False, tokenizer="python")


def train_captioner(recipe: CaptionerRecipe, output: str | Path | None = None, resume: bool = False,
                    stop_at: int | None = None) -> Path:
    """Run a captioner recipe; returns the folder of the final model.

    ``stop_at`` ends this run after that step with a checkpoint (continue later with ``resume``);
    the function then returns the checkpoint folder.
    """
    out = Path(output or recipe.output)
    out.mkdir(parents=True, exist_ok=True)
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    seed_everything(recipe.seed)
    shapes = ShapesConfig(image_size=recipe.model.image_size, seed=recipe.seed)
    tokenizer = build_tokenizer(vocabulary())
    m = recipe.model
    model = build_captioner(tokenizer, image_size=m.image_size, hidden_size=m.hidden_size,
                            encoder_layers=m.encoder_layers, decoder_layers=m.decoder_layers,
                            heads=m.heads, stem_channels=m.stem_channels)
    captioner = ShapesCaptioner(model, tokenizer)
    probe = CellProbe(m.hidden_size, captioner.feature_grid, shapes.grid,
                      (len(shapes.shapes) + 1, len(shapes.colours) + 1, len(shapes.sizes) + 1))
    params = list(captioner.parameters()) + list(probe.parameters())
    optimizer = torch.optim.AdamW(params, lr=recipe.train.lr, weight_decay=recipe.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, recipe.train))

    step = 0
    ckpt = out / "checkpoint"
    if resume and (ckpt / "config.json").is_file():
        tensors, meta = load_checkpoint(ckpt)
        if meta["recipe"] != to_dict(recipe):
            raise ConfigError(f"cannot resume {ckpt}: it was written by a different recipe")
        captioner.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        probe.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("probe.")})
        optimizer.load_state_dict(unflatten_state(meta["optimizer"], tensors))
        scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        step = meta["step"]
        print(f"resumed from {ckpt} at step {step}", file=sys.stderr)
    elif resume:
        print(f"no checkpoint in {ckpt}; starting from scratch", file=sys.stderr)
    (out / "recipe.json").write_text(json.dumps(to_dict(recipe), indent=2))
    print(f"captioner: {count_parameters(captioner):,} parameters; output {out}", file=sys.stderr)

    def save():
        opt_skeleton, opt_tensors = flatten_state(optimizer.state_dict(), "optimizer")
        tensors = {**{f"model.{k}": v for k, v in captioner.state_dict().items()},
                   **{f"probe.{k}": v for k, v in probe.state_dict().items()},
                   **opt_tensors, "rng.torch": torch.get_rng_state()}
        save_checkpoint(ckpt, tensors, {"recipe": to_dict(recipe), "step": step, "optimizer": opt_skeleton,
                                        "scheduler": scheduler.state_dict()})

    t = recipe.train
    stream = ShapesStream(shapes, start=step * t.batch_size)
    loader = iter(DataLoader(stream, batch_size=t.batch_size, num_workers=t.workers, collate_fn=collate_samples))
    log_path, eval_path = out / "train_log.csv", out / "eval_log.csv"
    new_log = not log_path.exists() or step == 0
    log_file = log_path.open("w" if new_log else "a", newline="")
    log = csv.writer(log_file)
    if new_log:
        log.writerow(["step", "loss", "caption_loss", "cell_loss", "lr", "images_per_s"])
    captioner.train()
    bar = tqdm(total=t.steps, initial=step, desc="train captioner", unit="step", file=sys.stderr)
    tick = time.perf_counter()
    while step < t.steps:
        batch = next(loader)
        if recipe.caption_form == "canonical":
            targets = [canonical_caption(s) for s in batch["scenes"]]
        else:
            targets = [refs[(i + step) % len(refs)] for i, refs in zip(batch["image_ids"], batch["captions"])]
        states = captioner.encoder_states(captioner.head(captioner.preprocess(batch["images"])))
        cap_loss = caption_loss(*captioner.decode_logits(states, targets), label_smoothing=t.label_smoothing)
        cell_loss = probe.loss(states, batch["scenes"], shapes) if t.aux_cell_weight else torch.zeros(())
        loss = cap_loss + t.aux_cell_weight * cell_loss
        if not torch.isfinite(loss):
            log_file.close()
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; the last good checkpoint "
                                     f"is in {ckpt}")
        optimizer_step(loss, optimizer, scheduler, params, t.grad_clip)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{cap_loss.item():.3f}", cell=f"{cell_loss.item():.3f}")
        if step % recipe.log_every == 0:
            rate = recipe.log_every * t.batch_size / (time.perf_counter() - tick)
            log.writerow([step, f"{loss.item():.5f}", f"{cap_loss.item():.5f}", f"{cell_loss.item():.5f}",
                          f"{scheduler.get_last_lr()[0]:.6g}", f"{rate:.1f}"])
            log_file.flush()
            tick = time.perf_counter()
        if step % recipe.checkpoint_every == 0 or step == t.steps:
            save()
        if stop_at is not None and step >= stop_at and step < t.steps:
            save()
            bar.close()
            log_file.close()
            print(f"stopped at step {step}; continue with --resume", file=sys.stderr)
            return ckpt
        if recipe.eval.every and (step % recipe.eval.every == 0 or step == t.steps):
            scores = evaluate_captioner(captioner, recipe.eval.images, recipe.eval.batch_size, config=shapes)
            row = {"step": step, **{k: scores[k] for k in ("CIDEr-D", "BLEU-4", "semantic_accuracy",
                                                            "relation_accuracy", "exact_match")}}
            first = not eval_path.exists()
            with eval_path.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(row))
                if first:
                    writer.writeheader()
                writer.writerow(row)
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "step"))
            tick = time.perf_counter()
    bar.close()
    log_file.close()
    captioner.eval()
    final = out / "model"
    captioner.save(final, card=model_card(recipe, step))
    print(f"saved the captioner to {final}", file=sys.stderr)
    return final


def model_card(recipe: CaptionerRecipe, steps: int) -> str:
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
