"""Train a drafter by distillation from the split model's greedy captions (``task: drafter`` recipes).

One step, for a batch of images (the split model frozen)::

    pixels ─► head ─► features ─┬─► tail, greedy ─► the verifier's caption ids (the targets)
                                └─► drafter ─► teacher-forced cross-entropy of those ids

Works for any split model with a step-by-step text decoder (the built-in captioner, a local
VisionEncoderDecoder, BLIP or GIT folder) on ``shapes`` or a local dataset. After the last step
the drafter counts the n-grams of ``ngram_captions`` greedy captions of the training images, from
which drafts are coded (:mod:`intelliflow.codec.tokens`). Validation drafts the first
``eval.images`` of ``shapes:val`` and reports how many draft tokens the verifier accepts.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from intelliflow.config import from_dict, to_dict
from intelliflow.training import LoopConfig, Step, TrainState, lr_schedule, train_loop

from .batches import ImageBatches


@dataclass
class DrafterModel:
    """The split model the drafter drafts for, and the drafter's size."""

    name: str = "shapes-captioner"
    split: int | None = None
    width: int = 128
    layers: int = 1


@dataclass
class DrafterTraining:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    threads: int = 0
    workers: int = 0


@dataclass
class DrafterEval:
    every: int = 500
    images: int = 200
    batch_size: int = 100


@dataclass
class DrafterRecipe:
    task: str = "drafter"
    seed: int = 0
    output: str = "runs/drafter"
    data: str = "shapes"   # or a local dataset spec: coco:DIR, flickr8k:DIR:train
    ngram_captions: int = 20000   # greedy captions whose n-grams code drafts
    ngram_order: int = 3          # n of the n-grams (contexts of n - 1 tokens)
    checkpoint_every: int = 250
    checkpoint_minutes: float = 5.0
    log_every: int = 25
    model: DrafterModel = field(default_factory=DrafterModel)
    train: DrafterTraining = field(default_factory=DrafterTraining)
    eval: DrafterEval = field(default_factory=DrafterEval)


def recipe_from_dict(data: dict) -> DrafterRecipe:
    return from_dict(DrafterRecipe, data)


def greedy_tokens(model, features: torch.Tensor) -> list[list[int]]:
    """The split model's greedy captions of features [B, N, D] as token ids after the start, each
    up to and with its end token."""
    decoding = model.decoding()
    s, eos = len(decoding.start), decoding.eos
    rows = model.tail_generate_ids(features)[:, s:].tolist()
    return [row[:row.index(eos) + 1] if eos in row else row for row in rows]


@torch.no_grad()
def acceptance(model, drafter, images, batch_size: int = 100) -> dict:
    """Draft and verify ``images``: the share of draft tokens accepted, of captions drafted exactly,
    and the decoder passes per caption against plain greedy's."""
    accepted = drafted = exact = passes = plain = 0
    for i in range(0, len(images), batch_size):
        features = model.head(model.preprocess(images[i:i + batch_size]))
        draft = drafter.draft(features)
        verified = model.tail_verify(features, draft.tokens)
        accepted += sum(verified.accepted)
        drafted += sum(verified.drafted)
        exact += sum(a == d == n for a, d, n in zip(verified.accepted, verified.drafted, verified.new_tokens))
        passes += sum(verified.passes)
        plain += sum(verified.new_tokens)
    n = len(images)
    return {"acceptance": accepted / max(drafted, 1), "exact_drafts": exact / n, "passes": passes / n,
            "greedy_passes": plain / n}


def train_drafter(recipe: DrafterRecipe, output: str | Path | None = None, resume: bool = False,
                  stop_at: int | None = None) -> Path:
    """Run a drafter recipe; returns the folder of the trained drafter (``OUT/drafter``)."""
    from intelliflow.models import load_split_model
    from intelliflow.models.drafter import Drafter
    from intelliflow.seeding import seed_everything

    out, t = Path(output or recipe.output), recipe.train
    if t.threads:
        torch.set_num_threads(t.threads)
    seed_everything(recipe.seed)
    model = load_split_model(recipe.model.name, split=recipe.model.split).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    m = recipe.model
    drafter = Drafter.for_model(model, width=m.width, layers=m.layers)
    optimizer = torch.optim.AdamW(drafter.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    params = list(drafter.parameters())
    state = TrainState({"drafter": drafter}, optimizer, lr_schedule(optimizer, t), clip=params)
    print(f"drafter for {m.name} at split {model.split}: {sum(p.numel() for p in params):,} parameters "
          f"(the verifier's tail: {sum(p.numel() for p in model.parameters()):,} in the whole model); output {out}",
          file=sys.stderr)

    def step_fn(batch: dict, step: int) -> Step:
        with torch.no_grad():
            features = model.head(model.preprocess(batch["images"]))
            targets = greedy_tokens(model, features)
        loss = drafter.loss(features, targets)
        return Step(loss, {"tokens": sum(len(x) for x in targets) / len(targets)})

    val_images = None

    def validation(step: int) -> list[dict]:
        nonlocal val_images
        from intelliflow.data.shapes import ShapesDataset

        if val_images is None:
            val_images = [s.image for s in ShapesDataset("val", limit=recipe.eval.images)]
        drafter.eval()
        row = acceptance(model, drafter, val_images, recipe.eval.batch_size)
        drafter.train()
        return [row]

    drafter.train()
    loop = LoopConfig(steps=t.steps, batch_size=t.batch_size, grad_clip=t.grad_clip, log_every=recipe.log_every,
                      checkpoint_every=recipe.checkpoint_every, checkpoint_minutes=recipe.checkpoint_minutes,
                      eval_every=recipe.eval.every, columns={"tokens": ".2f"}, desc="train drafter")
    result = train_loop(step_fn, lambda start: ImageBatches(recipe.data, t.batch_size, recipe.seed, 0, start, t.workers),
                        state, loop, out, to_dict(recipe), resume=resume, stop_at=stop_at,
                        validate=validation if recipe.eval.every and recipe.data == "shapes" else None)
    if result.stopped:
        return result.checkpoint
    drafter.eval()
    count_ngrams(model, drafter, recipe)
    final = out / "drafter"
    drafter.save(final, card=drafter_card(recipe, result.step, out))
    print(f"saved the drafter to {final}", file=sys.stderr)
    return final


@torch.no_grad()
def count_ngrams(model, drafter, recipe: DrafterRecipe) -> None:
    """The ``ngram_order``-grams of the greedy captions of the first ``ngram_captions`` training images."""
    from tqdm import tqdm

    batches = ImageBatches(recipe.data, recipe.train.batch_size, recipe.seed, 0, 0, recipe.train.workers)
    done = 0
    with tqdm(total=recipe.ngram_captions, desc="count n-grams", unit="caption", file=sys.stderr) as bar:
        while done < recipe.ngram_captions:
            images = next(batches)["images"][: recipe.ngram_captions - done]
            drafter.count_ngrams(greedy_tokens(model, model.head(model.preprocess(images))), order=recipe.ngram_order)
            done += len(images)
            bar.update(len(images))


def drafter_card(recipe: DrafterRecipe, steps: int, run: Path) -> str:
    """A short model card: what the drafter drafts for, how it was made, its last validation."""
    evals = (run / "eval_log.csv").read_text().strip().splitlines() if (run / "eval_log.csv").is_file() else []
    table = "\n".join([evals[0], evals[-1]]) if len(evals) > 1 else "(no validation in this run)"
    return f"""# drafter for {recipe.model.name} (split {recipe.model.split})

A {recipe.model.layers}-layer, {recipe.model.width}-wide GRU decoder attending to the head's features
(`intelliflow.models.drafter`), distilled from the split model's greedy captions for {steps} steps
of {recipe.train.batch_size} images on `{recipe.data}`, seed {recipe.seed}; n-grams of
{recipe.ngram_captions} greedy captions for coding drafts.

Reproduce: `intelliflow train RECIPE.yaml` with the recipe below, then copy `OUT/drafter/` here.

Last validation (`shapes:val`, first {recipe.eval.images} images, clean features; acceptance: share
of draft tokens the verifier keeps; passes: decoder passes per caption, against greedy's):

```
{table}
```

Recipe:

```json
{json.dumps(to_dict(recipe), indent=2)}
```
"""
