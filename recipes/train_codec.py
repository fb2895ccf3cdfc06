"""Train a codec end to end with the captioning objective, through the channel (``task: codec``).

One step, for a batch of images (the split model frozen unless ``model.trainable`` says otherwise)::

    pixels ─► head ─► features ─► Flow (codec + channel) ─► features_hat ─► tail ─► caption loss
                                     └─ digital: rate (bits per image, likelihood estimate)

Loss per image, in natural units:

- ``objective: caption``: the caption's token cross-entropy *summed* over its tokens (nats per
  caption) + ``distill_kl`` × KL(clean tail ‖ tail on features_hat) (nats per caption)
  + ``feature_mse`` × normalised feature MSE;
- ``objective: mse`` (the task-agnostic ``mse-codec``): normalised feature MSE only;
- digital codecs add ``λ(q)`` × bits, with ``q`` the rate point drawn per image and ``λ`` going
  log-linearly from ``lambda_low_rate`` (q = 0) to ``lambda_high_rate`` (the top rate point), so
  one codec learns the whole curve; analog codecs draw the SNR per image from ``channel.snr_db``
  (and the bandwidth, ``symbols``, per batch from ``channel.symbols``).

Distributed: under ``torchrun --nproc_per_node N`` the flow is wrapped in
``DistributedDataParallel`` (NCCL on GPUs, gloo on CPU); each rank draws its own images; rank 0
writes logs and checkpoints; every rank writes the digest of its final weights to
``weights_rank{r}.sha256`` so equal replicas can be checked.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from intelliflow.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from intelliflow.data.captions import canonical_caption
from intelliflow.data.sample import collate_samples
from intelliflow.errors import ConfigError

from .config import from_dict, to_dict
from intelliflow.training.optim import lr_factor, optimizer_step


@dataclass
class ModelSection:
    """The split model: a shipped name or a local folder, the split point, what learns."""

    name: str = "shapes-captioner"
    split: int | None = None
    trainable: Literal["none", "tail", "all"] = "none"


@dataclass
class ChannelSection:
    """The channel in training (analog codecs) and its SNR range; ``options`` go to ``build_channel``."""

    name: str = "none"
    snr_db: list[float] = field(default_factory=lambda: [0.0, 20.0])
    options: dict = field(default_factory=dict)
    symbols: list[int] | None = None  # JSCC symbol channels drawn per batch (several bandwidths)


@dataclass
class Objective:
    kind: Literal["caption", "mse"] = "caption"
    targets: Literal["canonical", "references", "teacher"] = "canonical"
    label_smoothing: float = 0.0
    distill_kl: float = 0.0
    feature_mse: float = 0.0
    lambda_low_rate: float = 0.05    # nats (or MSE units) per bit at rate point 0
    lambda_high_rate: float = 0.0005  # ... at the top rate point


@dataclass
class CodecTraining:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    aux_lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    grad_clip: float = 1.0
    threads: int = 0


@dataclass
class CodecEval:
    every: int = 500
    images: int = 200
    batch_size: int = 100
    rate_points: list[float] = field(default_factory=lambda: [0.0, 2.5, 5.0])
    snr_db: list[float] = field(default_factory=lambda: [0.0, 10.0, 20.0])


@dataclass
class CodecRecipe:
    task: Literal["codec"] = "codec"
    seed: int = 0
    output: str = "runs/codec"
    data: str = "shapes"  # or a dataset spec with captions: coco:DIR, flickr8k:DIR:train
    checkpoint_every: int = 250
    log_every: int = 25
    model: ModelSection = field(default_factory=ModelSection)
    codec: dict = field(default_factory=lambda: {"name": "hyperprior"})
    init_from: str | None = None  # start from a trained codec (shipped name or folder) of the same shape
    channel: ChannelSection = field(default_factory=ChannelSection)
    objective: Objective = field(default_factory=Objective)
    train: CodecTraining = field(default_factory=CodecTraining)
    eval: CodecEval = field(default_factory=CodecEval)


def recipe_from_dict(data: dict) -> CodecRecipe:
    recipe = from_dict(CodecRecipe, data)
    if len(recipe.channel.snr_db) != 2 or recipe.channel.snr_db[0] > recipe.channel.snr_db[1]:
        raise ConfigError(f"recipe key 'channel.snr_db' must be [low, high], got {recipe.channel.snr_db}")
    if recipe.objective.targets == "canonical" and not recipe.data.startswith("shapes"):
        raise ConfigError("objective.targets 'canonical' exists only for the shapes data; "
                          "use 'references' or 'teacher'")
    return recipe


def rate_lambda(q: torch.Tensor, max_q: float, objective: Objective) -> torch.Tensor:
    """λ per image [B]: log-linear from ``lambda_low_rate`` (q = 0) to ``lambda_high_rate`` (q = max)."""
    lo, hi = math.log(objective.lambda_low_rate), math.log(objective.lambda_high_rate)
    return torch.exp(lo + (q / max(max_q, 1e-9)) * (hi - lo))


def per_caption_nats(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Token cross-entropy summed over each caption: logits [B, T, V], labels [B, T] -> [B] nats."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none",
                         label_smoothing=label_smoothing)
    return ce.sum(1)


def per_caption_kl(teacher_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) summed over each caption's scored tokens: [B] nats."""
    kl = F.kl_div(F.log_softmax(logits.float(), -1), F.log_softmax(teacher_logits.float(), -1),
                  log_target=True, reduction="none").sum(-1)
    return (kl * (labels != -100)).sum(1)


class _Images:
    """Endless training batches: the shapes stream, or a shuffled local dataset; each rank its own."""

    def __init__(self, spec: str, batch_size: int, seed: int, rank: int, start_batch: int):
        from intelliflow.data.shapes import ShapesConfig, ShapesStream

        if spec == "shapes":
            stream = ShapesStream(ShapesConfig(seed=seed + 10_000_000 * rank), start=start_batch * batch_size)
            # its own generator: creating the loader must not draw from torch's global RNG (resume)
            self._iter = iter(DataLoader(stream, batch_size=batch_size, collate_fn=collate_samples,
                                         generator=torch.Generator().manual_seed(seed)))
            return
        from intelliflow.data.datasets import open_dataset

        dataset = open_dataset(spec)
        sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=10 ** 9,
                                                 generator=torch.Generator().manual_seed(seed + rank))
        batches = iter(torch.utils.data.BatchSampler(sampler, batch_size, drop_last=True))
        for _ in range(start_batch):  # the same order after a resume
            next(batches)
        self._iter = (collate_samples([dataset[i] for i in indices]) for indices in batches)

    def __next__(self) -> dict:
        return next(self._iter)


def _targets(recipe: CodecRecipe, batch: dict, step: int, model, features) -> list[str]:
    kind = recipe.objective.targets
    if kind == "canonical":
        return [canonical_caption(s) for s in batch["scenes"]]
    if kind == "references":
        return [refs[(i + step) % len(refs)] for i, refs in enumerate(batch["captions"])]
    with torch.no_grad():
        return model.tail_generate(features)


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state (names and bytes): equal replicas give equal digests."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def train_codec(recipe: CodecRecipe, output: str | Path | None = None, resume: bool = False,
                stop_at: int | None = None) -> Path:
    """Run a codec recipe; returns the folder of the trained codec (``OUT/codec``).

    ``stop_at`` ends the run after that step with a checkpoint (continue later with ``resume``).
    """
    from intelliflow.codec import build_codec
    from intelliflow.codec.persistence import save_codec
    from intelliflow.flow.flow import Flow, draw_rate_points, draw_snr
    from intelliflow.models import load_split_model
    from intelliflow.seeding import seed_everything

    rank, world = _distributed()
    out = Path(output or recipe.output)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    t = recipe.train
    if t.threads:
        torch.set_num_threads(t.threads)
    seed_everything(recipe.seed + rank, sionna=recipe.channel.name != "none")
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")

    model = load_split_model(recipe.model.name, split=recipe.model.split).to(device)
    h, w = model.feature_grid
    codec_config = dict(recipe.codec)
    codec_config.setdefault("in_channels", model.feature_dim)
    codec = build_codec(codec_config).to(device)
    if recipe.init_from:
        from intelliflow.codec.persistence import codec_folder, load_codec

        folder = codec_folder(recipe.init_from)
        if folder is None:
            raise ConfigError(f"recipe key 'init_from': no codec checkpoint {recipe.init_from!r}")
        start = load_codec(folder)
        if type(start) is not type(codec) or start.config != codec.config:
            raise ConfigError(f"recipe key 'init_from': {recipe.init_from} is a {start.kind} codec with "
                              f"{start.config}, the recipe builds {codec.config}")
        codec.load_state_dict(start.state_dict())
    channel = {"name": recipe.channel.name, **recipe.channel.options}
    flow = Flow(model, codec, channel, trainable=recipe.model.trainable).to(device)
    if flow.kind not in ("learned", "analog"):
        raise ConfigError(f"codec {codec_config['name']!r} has nothing to train")
    digital = flow.kind == "learned"
    if not digital and recipe.channel.name == "none":
        raise ConfigError("an analog codec trains through a channel: set channel.name (awgn, rayleigh, ofdm-tdl)")

    main_params = [p for n, p in flow.named_parameters() if p.requires_grad and not n.endswith(".quantiles")]
    groups = [{"params": main_params, "lr": t.lr, "weight_decay": 0.0}]
    aux_params = [p for n, p in codec.named_parameters() if n.endswith(".quantiles")]
    if aux_params:
        groups.append({"params": aux_params, "lr": t.aux_lr, "weight_decay": 0.0})
    optimizer = torch.optim.Adam(groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda s: lr_factor(s, t)] * len(groups))
    generator = torch.Generator().manual_seed(recipe.seed * 7919 + rank)

    step = 0
    ckpt = out / "checkpoint"
    if resume and (ckpt / "config.json").is_file():
        tensors, meta = load_checkpoint(ckpt)
        if meta["recipe"] != to_dict(recipe):
            raise ConfigError(f"cannot resume {ckpt}: it was written by a different recipe")
        flow.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("flow.")}, strict=False)
        optimizer.load_state_dict(unflatten_state(meta["optimizer"], tensors))
        scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        generator.set_state(tensors["rng.draws"])
        if "rng.sionna" in tensors:
            from sionna.phy import config as sionna_config

            sionna_config.torch_rng("cpu").set_state(tensors["rng.sionna"])
        step = meta["step"]
        if rank == 0:
            print(f"resumed from {ckpt} at step {step}", file=sys.stderr)
    elif resume and rank == 0:
        print(f"no checkpoint in {ckpt}; starting from scratch", file=sys.stderr)

    trained = torch.nn.parallel.DistributedDataParallel(flow, find_unused_parameters=True) if world > 1 else flow
    if rank == 0:
        (out / "recipe.json").write_text(json.dumps(to_dict(recipe), indent=2))
        n_params = sum(p.numel() for p in codec.parameters())
        print(f"codec {codec_config['name']}: {n_params:,} parameters; {world} process(es); output {out}",
              file=sys.stderr)

    def save():
        if rank:
            return
        state = {k: v for k, v in flow.state_dict().items()
                 if k.startswith("codec.") or recipe.model.trainable != "none"}
        opt_skeleton, opt_tensors = flatten_state(optimizer.state_dict(), "optimizer")
        tensors = {**{f"flow.{k}": v for k, v in state.items()}, **opt_tensors,
                   "rng.torch": torch.get_rng_state(), "rng.draws": generator.get_state()}
        if recipe.channel.name != "none":
            from sionna.phy import config as sionna_config

            tensors["rng.sionna"] = sionna_config.torch_rng("cpu").get_state()
        save_checkpoint(ckpt, tensors, {"recipe": to_dict(recipe), "step": step, "optimizer": opt_skeleton,
                                        "scheduler": scheduler.state_dict()})

    images = _Images(recipe.data, t.batch_size, recipe.seed, rank, step)
    log_path, eval_path = out / "train_log.csv", out / "eval_log.csv"
    log_file = log = writer = None
    if rank == 0:
        new_log = not log_path.exists() or step == 0
        log_file = log_path.open("w" if new_log else "a", newline="")
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["step", "loss", "caption_nats", "kl_nats", "feature_nmse", "bits", "lr", "images_per_s"])
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # tensorboard is optional
            writer = None
    flow.train()
    model.train(recipe.model.trainable != "none")
    objective = recipe.objective
    bar = tqdm(total=t.steps, initial=step, desc=f"train {codec_config['name']}", unit="step", file=sys.stderr,
               disable=rank != 0)
    tick = time.perf_counter()
    feature_scale = None
    running = None
    while step < t.steps:
        batch = next(images)
        pixels = model.preprocess(batch["images"]).to(device)
        features = flow.features(pixels)
        if feature_scale is None:  # normalises the feature MSE (a fixed constant of the run)
            feature_scale = features.detach().pow(2).mean().clamp_min(1e-8)
        b = features.shape[0]
        q = draw_rate_points(b, codec.max_q, generator).to(device) if digital else None
        snr = draw_snr(b, *recipe.channel.snr_db, generator).to(device) if not digital else None
        symbols = None
        if not digital and recipe.channel.symbols:
            symbols = recipe.channel.symbols[int(torch.randint(len(recipe.channel.symbols), (1,),
                                                               generator=generator))]
        sent = trained(features=features, snr_db=snr, q=q, symbols=symbols)
        f_hat = sent["features_hat"]
        nmse = (f_hat - features).pow(2).flatten(1).mean(1) / feature_scale
        zeros = torch.zeros(b, device=device)
        nats = kl = zeros
        if objective.kind == "caption":
            targets = _targets(recipe, batch, step, model, features)
            logits, labels = model.tail_logits(f_hat, targets)
            nats = per_caption_nats(logits, labels.to(device), objective.label_smoothing)
            if objective.distill_kl:
                with torch.no_grad():
                    clean_logits, _ = model.tail_logits(features, targets)
                kl = per_caption_kl(clean_logits, logits, labels.to(device))
            per_image = nats + objective.distill_kl * kl + objective.feature_mse * nmse
        else:
            per_image = nmse
        bits = sent["bits"] if digital else zeros
        if digital:
            per_image = per_image + rate_lambda(q, codec.max_q, objective) * bits
        loss = per_image.mean()
        if digital:
            loss = loss + sent["aux_loss"]
        if not torch.isfinite(loss):
            if log_file:
                log_file.close()
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; the last good checkpoint is in "
                                     f"{ckpt}")
        optimizer_step(loss, optimizer, scheduler, main_params, t.grad_clip)
        step += 1
        stats = {"loss": loss.item(), "nats": nats.mean().item(), "kl": kl.mean().item(),
                 "nmse": nmse.mean().item(), "bits": bits.mean().item()}
        running = stats if running is None else {k: 0.9 * running[k] + 0.1 * v for k, v in stats.items()}
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in running.items() if v or k == "loss"})
        if rank == 0 and step % recipe.log_every == 0:
            rate = recipe.log_every * t.batch_size * world / (time.perf_counter() - tick)
            log.writerow([step, f"{stats['loss']:.5f}", f"{stats['nats']:.5f}", f"{stats['kl']:.5f}",
                          f"{stats['nmse']:.5f}", f"{stats['bits']:.2f}", f"{scheduler.get_last_lr()[0]:.6g}",
                          f"{rate:.1f}"])
            log_file.flush()
            if writer:
                for k, v in stats.items():
                    writer.add_scalar(f"train/{k}", v, step)
            tick = time.perf_counter()
        if step % recipe.checkpoint_every == 0 or step == t.steps:
            save()
        if stop_at is not None and step >= stop_at and step < t.steps:
            save()
            bar.close()
            if log_file:
                log_file.close()
            if rank == 0:
                print(f"stopped at step {step}; continue with --resume", file=sys.stderr)
            return ckpt
        if rank == 0 and recipe.eval.every and recipe.data == "shapes" and \
                (step % recipe.eval.every == 0 or step == t.steps):
            rows = validate(flow, recipe)
            first = not eval_path.exists()
            with eval_path.open("a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["step", "point", "payload_bits", "channel_uses", "CIDEr-D",
                                                  "semantic_accuracy", "relation_accuracy"])
                if first:
                    w.writeheader()
                for row in rows:
                    w.writerow({"step": step, **row})
                    if writer:
                        writer.add_scalar(f"val/CIDEr-D/{row['point']}", row["CIDEr-D"], step)
            bar.write(f"step {step}: " + "; ".join(
                f"{r['point']} CIDEr-D {r['CIDEr-D']:.3f} sem {r['semantic_accuracy']:.3f}"
                + (f" {r['payload_bits']:.0f} bits" if r["payload_bits"] != "" else "") for r in rows))
            flow.train()
            model.train(recipe.model.trainable != "none")
            tick = time.perf_counter()
    bar.close()
    if log_file:
        log_file.close()
    if writer:
        writer.close()
    codec.eval()
    if digital:
        codec.update()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"weights_rank{rank}.sha256").write_text(weights_digest(codec) + "\n")
    final = out / "codec"
    if rank == 0:
        save_codec(codec, final, model=recipe.model.name, split=model.split, objective=objective.kind,
                   channel=recipe.channel.name, seed=recipe.seed, steps=step, recipe=to_dict(recipe))
        (final / "README.md").write_text(codec_card(recipe, step, out))
        print(f"saved the codec to {final}", file=sys.stderr)
    if world > 1:
        torch.distributed.barrier()
    return final


@torch.no_grad()
def validate(flow, recipe: CodecRecipe) -> list[dict]:
    """Caption the first ``eval.images`` of ``shapes:val`` at the eval rate points (digital, ideal
    link) or SNRs (analog, the training channel): CIDEr-D and semantic accuracy per point."""
    from intelliflow.data.shapes import ShapesDataset

    from .evaluate import score

    codec = flow.codec
    was_training = flow.training
    flow.eval()
    dataset = ShapesDataset("val", limit=recipe.eval.images)
    samples = [dataset[i] for i in range(len(dataset))]
    digital = flow.kind == "learned"
    if digital:
        codec.update()
    points = recipe.eval.rate_points if digital else recipe.eval.snr_db
    rows = []
    for point in points:
        if digital and point > codec.max_q:
            continue
        results, bits, uses = {}, [], []
        for i in range(0, len(samples), recipe.eval.batch_size):
            chunk = samples[i:i + recipe.eval.batch_size]
            if digital:  # validation of a digital codec: ideal link
                result = flow.caption([s.image for s in chunk], q=point, ideal=True)
            else:
                result = flow.caption([s.image for s in chunk], snr_db=point)
            for s, c in zip(chunk, result.captions):
                results[s.image_id] = c
            bits += [x for x in result.payload_bits if x is not None]
            uses += [x for x in result.channel_uses if x is not None]
        scores = score(results, {s.image_id: s.captions for s in samples}, {s.image_id: s.scene for s in samples},
                       meteor=False, tokenizer="python")
        rows.append({"point": f"q={point}" if digital else f"snr={point}",
                     "payload_bits": sum(bits) / len(bits) if bits else "",
                     "channel_uses": sum(uses) / len(uses) if uses else "",
                     **{k: scores[k] for k in ("CIDEr-D", "semantic_accuracy", "relation_accuracy")}})
    flow.train(was_training)
    return rows


def codec_card(recipe: CodecRecipe, steps: int, run: Path) -> str:
    """A short model card for a trained codec: what, how it was made, its last validation."""
    evals = (run / "eval_log.csv").read_text().strip().splitlines() if (run / "eval_log.csv").is_file() else []
    last_step = evals[-1].split(",")[0] if len(evals) > 1 else None
    table = "\n".join([evals[0]] + [line for line in evals[1:] if line.split(",")[0] == last_step]) if last_step else \
        "(no validation in this run)"
    return f"""# {recipe.codec.get('name')} codec for {recipe.model.name} (split {recipe.model.split})

Objective `{recipe.objective.kind}`, channel `{recipe.channel.name}`, trained for {steps} steps of
{recipe.train.batch_size} images on `{recipe.data}`, seed {recipe.seed}.

Reproduce: `intelliflow train RECIPE.yaml` with the recipe below (add `--resume` to continue an
interrupted run), then copy `OUT/codec/` here.

Last validation (`shapes:val`, first {recipe.eval.images} images; digital points over an ideal link):

```
{table}
```

Recipe:

```json
{json.dumps(to_dict(recipe), indent=2)}
```
"""
