"""Train a codec end to end with the captioning objective, through the channel (``task: codec``).

One step, for a batch of images (the split model frozen unless ``model.trainable`` says otherwise)::

    pixels ─► head ─► features ─► Flow (codec + channel) ─► features_hat ─► tail ─► caption loss
                                     └─ digital: rate (bits per image, likelihood estimate)

Loss per image, in natural units (:func:`intelliflow.training.losses.codec_objective`):

- ``objective: caption``: the caption's token cross-entropy *summed* over its tokens (nats per
  caption) + ``distill_kl`` × KL(clean tail ‖ tail on features_hat) (nats per caption)
  + ``feature_mse`` × normalised feature MSE;
- ``objective: mse`` (the task-agnostic ``mse-codec``): normalised feature MSE only;
- digital codecs add ``λ(q)`` × bits, with ``q`` the rate point drawn per image and ``λ`` going
  log-linearly from ``lambda_low_rate`` (q = 0) to ``lambda_high_rate`` (the top rate point), so
  one codec learns the whole curve; analog codecs draw the SNR per image from ``channel.snr_db``
  (and the bandwidth, ``symbols``, per batch from ``channel.symbols``).

This module builds the model, codec, flow, data and one step; :func:`intelliflow.training.train_loop`
runs them (checkpoints, ``--resume``, logs, validation).

Distributed: under ``torchrun --nproc_per_node N`` the flow is wrapped in
``DistributedDataParallel`` (NCCL on GPUs, gloo on CPU); each rank draws its own images; rank 0
writes logs and checkpoints; every rank writes the digest of its final weights to
``weights_rank{r}.sha256`` so equal replicas can be checked.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from intelliflow.data.captions import canonical_caption
from intelliflow.devices import rank_device
from intelliflow.distributed import distributed
from intelliflow.errors import ConfigError
from intelliflow.training import LoopConfig, Step, TrainState, ddp, lr_schedule, train_loop, write_weights_digest
from intelliflow.training.losses import codec_objective
from .batches import ImageBatches

from intelliflow.config import from_dict, to_dict


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
    workers: int = 0   # DataLoader processes reading and decoding a local dataset's images
    precision: Literal["float32", "bfloat16"] = "float32"   # bfloat16: the model and the transforms under autocast


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
    checkpoint_minutes: float = 5.0  # also checkpoint at least this often (wall time)
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


def _targets(recipe: CodecRecipe, batch: dict, step: int, model, features) -> list[str]:
    kind = recipe.objective.targets
    if kind == "canonical":
        return [canonical_caption(s) for s in batch["scenes"]]
    if kind == "references":
        return [refs[(i + step) % len(refs)] for i, refs in enumerate(batch["captions"])]
    with torch.no_grad():
        return model.tail_generate(features)


# The entropy coder's tables: built by ``codec.update()`` (rank 0 builds them to validate), derived
# from the weights, unused in training. Checkpoints leave them out (a fresh codec's are empty, so
# they would not load) and DDP does not broadcast them (their sizes differ between ranks).
_ENTROPY_TABLES = ("._quantized_cdf", "._offset", "._cdf_length", ".scale_table")


def codec_optimizer(main_params: list, codec, train: CodecTraining) -> torch.optim.Optimizer:
    """Adam over ``main_params`` at ``train.lr`` and, in a group of their own at ``train.aux_lr``,
    the codec's entropy-model quantiles (CompressAI's auxiliary parameters), where it has them."""
    groups = [{"params": main_params, "lr": train.lr, "weight_decay": 0.0}]
    aux_params = [p for n, p in codec.named_parameters() if n.endswith(".quantiles")]
    if aux_params:
        groups.append({"params": aux_params, "lr": train.aux_lr, "weight_decay": 0.0})
    return torch.optim.Adam(groups)


def draw_generators(seed: int, channel: str) -> tuple[torch.Generator, dict]:
    """The generator of a run's rate points, SNRs and bandwidths, and every generator a checkpoint
    keeps (Sionna's too where a channel is simulated)."""
    generator = torch.Generator().manual_seed(seed)
    generators = {"draws": generator}
    if channel != "none":
        from sionna.phy import config as sionna_config

        generators["sionna"] = sionna_config.torch_rng("cpu")
    return generator, generators


def train_codec(recipe: CodecRecipe, output: str | Path | None = None, resume: bool = False,
                stop_at: int | None = None) -> Path:
    """Run a codec recipe; returns the folder of the trained codec (``OUT/codec``).

    ``stop_at`` ends the run after that step with a checkpoint (continue later with ``resume``).
    """
    with distributed() as (rank, world):
        return _train_codec(recipe, Path(output or recipe.output), resume, stop_at, rank, world)


def _build(recipe: CodecRecipe, device: torch.device):
    """The split model, the codec (``init_from`` loaded) and the flow through the training channel."""
    from intelliflow.codec import build_codec
    from intelliflow.flow import Flow
    from intelliflow.models import load_split_model

    model = load_split_model(recipe.model.name, split=recipe.model.split).to(device)
    codec_config = dict(recipe.codec)
    codec_config.setdefault("in_channels", model.feature_dim)
    codec = build_codec(codec_config).to(device)
    if recipe.init_from:
        from intelliflow.codec.persistence import load_codec
        from intelliflow.codec.registry import checkpoint_folder

        folder = checkpoint_folder(recipe.init_from)
        if folder is None:
            raise ConfigError(f"recipe key 'init_from': no codec checkpoint {recipe.init_from!r}")
        start = load_codec(folder)
        if type(start) is not type(codec) or start.config != codec.config:
            raise ConfigError(f"recipe key 'init_from': {recipe.init_from} is a {start.registered_name} codec with "
                              f"{start.config}, the recipe builds {codec.config}")
        codec.load_state_dict(start.state_dict())
    channel = {"name": recipe.channel.name, **recipe.channel.options}
    flow = Flow(model, codec, channel, trainable=recipe.model.trainable).to(device)
    if flow.kind not in ("learned", "analog"):
        raise ConfigError(f"codec {codec_config['name']!r} has nothing to train")
    if flow.kind == "analog" and recipe.channel.name == "none":
        raise ConfigError("an analog codec trains through a channel: set channel.name (awgn, rayleigh, ofdm-tdl)")
    return model, codec, flow


MEAN_BATCHES = 8   # training batches whose features give a mean_grid codec its mean


def _train_codec(recipe: CodecRecipe, out: Path, resume: bool, stop_at: int | None, rank: int, world: int) -> Path:
    from intelliflow.codec.persistence import save_codec
    from .losses import draw_rate_points, draw_snr
    from intelliflow.seeding import seed_everything

    t, objective = recipe.train, recipe.objective
    if t.threads:
        torch.set_num_threads(t.threads)
    seed_everything(recipe.seed + rank, sionna=recipe.channel.name != "none")
    device = rank_device(rank)
    model, codec, flow = _build(recipe, device)
    digital = flow.kind == "learned"
    if getattr(codec.config, "mean_grid", None) is not None and not recipe.init_from:
        # the features every image shares, from the run's first training images (the same on every
        # rank; a resumed run gets the stored mean back with the checkpoint)
        from intelliflow.models import tokens_to_grid

        images, grids = ImageBatches(recipe.data, t.batch_size, recipe.seed, 0, 0), []
        for _ in range(MEAN_BATCHES):
            tokens = flow.features(model.preprocess(next(images)["images"]).to(device))
            grids.append(tokens_to_grid(tokens, model.feature_grid, model.prefix_tokens)[0])
        codec.set_feature_mean(torch.cat(grids))

    main_params = [p for n, p in flow.named_parameters() if p.requires_grad and not n.endswith(".quantiles")]
    optimizer = codec_optimizer(main_params, codec, t)
    generator, generators = draw_generators(recipe.seed * 7919 + rank, recipe.channel.name)
    tables = [k for k in flow.state_dict() if k.endswith(_ENTROPY_TABLES)]
    state = TrainState({"flow": flow}, optimizer, lr_schedule(optimizer, t), clip=main_params,
                       keep=lambda k: (k.startswith("flow.codec.") or recipe.model.trainable != "none")
                       and not k.endswith(_ENTROPY_TABLES), generators=generators)
    trained = ddp(flow, ignore=tables)
    if rank == 0:
        print(f"codec {recipe.codec['name']}: {sum(p.numel() for p in codec.parameters()):,} parameters; "
              f"{world} process(es); output {out}", file=sys.stderr)

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bfloat16")

    def step_fn(batch: dict, step: int) -> Step:
        with autocast:   # the entropy model, the channel and the losses' reductions stay in float32
            return _step(batch, step)

    def _step(batch: dict, step: int) -> Step:
        pixels = model.preprocess(batch["images"]).to(device, non_blocking=True)
        features = flow.features(pixels)
        if "feature_scale" not in state.extra:  # normalises the feature MSE (a constant of the run)
            state.extra["feature_scale"] = features.detach().pow(2).mean().clamp_min(1e-8)
        b = features.shape[0]
        q = draw_rate_points(b, codec.max_q, generator).to(device) if digital else None
        snr = draw_snr(b, *recipe.channel.snr_db, generator).to(device) if not digital else None
        symbols = None
        if not digital and recipe.channel.symbols:
            symbols = recipe.channel.symbols[int(torch.randint(len(recipe.channel.symbols), (1,),
                                                               generator=generator))]
        sent = trained(features=features, snr_db=snr, q=q, symbols=symbols)
        targets = _targets(recipe, batch, step, model, features) if objective.kind == "caption" else None
        loss, stats = codec_objective(objective, features, sent, state.extra["feature_scale"].to(device), model,
                                      targets, q, codec.max_q if digital else 0.0)
        return Step(loss, stats)

    def validation(step: int) -> list[dict]:
        rows = validate(flow, recipe)
        flow.train()
        model.train(recipe.model.trainable != "none")
        return rows

    flow.train()
    model.train(recipe.model.trainable != "none")
    loop = LoopConfig(steps=t.steps, batch_size=t.batch_size, grad_clip=t.grad_clip, log_every=recipe.log_every,
                      checkpoint_every=recipe.checkpoint_every, checkpoint_minutes=recipe.checkpoint_minutes, eval_every=recipe.eval.every,
                      columns={"caption_nats": ".5f", "kl_nats": ".5f", "feature_nmse": ".5f", "bits": ".2f"},
                      desc=f"train {recipe.codec['name']}")
    result = train_loop(step_fn, lambda start: ImageBatches(recipe.data, t.batch_size, recipe.seed, rank, start, t.workers),
                        state, loop, out, to_dict(recipe), resume=resume, stop_at=stop_at,
                        validate=validation if recipe.eval.every and recipe.data == "shapes" else None)
    if result.stopped:
        return result.checkpoint
    codec.eval()
    if digital:
        codec.update()
    write_weights_digest(out, codec)
    final = out / "codec"
    if rank == 0:
        save_codec(codec, final, model=recipe.model.name, split=model.split, objective=objective.kind,
                   channel=recipe.channel.name, seed=recipe.seed, steps=result.step, recipe=to_dict(recipe))
        (final / "README.md").write_text(codec_card(recipe, result.step, out))
        print(f"saved the codec to {final}", file=sys.stderr)
    return final


@torch.no_grad()
def validate(flow, recipe: CodecRecipe) -> list[dict]:
    """Caption the first ``eval.images`` of ``shapes:val`` at the eval rate points (digital, ideal
    link) or SNRs (analog, the training channel): CIDEr-D and semantic accuracy per point."""
    from intelliflow.data.shapes import ShapesDataset
    from intelliflow.evaluation.sweep import caption_dataset, score

    codec = flow.codec
    was_training = flow.training
    flow.eval()
    dataset = ShapesDataset("val", limit=recipe.eval.images)
    digital = flow.kind == "learned"
    if digital:
        codec.update()
    points = recipe.eval.rate_points if digital else recipe.eval.snr_db
    rows = []
    for point in points:
        if digital and point > codec.max_q:
            continue
        # a digital codec is validated over an ideal link, an analog one through the training channel
        options = {"q": point, "ideal": True} if digital else {"snr_db": point}
        done = caption_dataset(flow, dataset, batch_size=recipe.eval.batch_size, progress=False, **options)
        scores = score(done.results, done.references, done.scenes, meteor=False, tokenizer="python")
        rows.append({"point": f"q={point}" if digital else f"snr={point}",
                     "payload_bits": sum(done.bits) / len(done.bits) if done.bits else "",
                     "channel_uses": sum(done.channel_uses) / len(done.channel_uses) if done.channel_uses else "",
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
