"""Train a codec inside any torch model for that model's own task loss (``task: bridge``).

The recipe names the model, its data and its loss as Python entry points (``"package.module:name"``)
and where to split it; the model's weights stay frozen and only the codec learns, through the
channel, with a :class:`~intelliflow.flow.CodecLink` after the named submodule::

    inputs ─► model up to the split ─► features ─► CodecLink (training pass) ─► the rest ─► outputs
    loss = mean over the batch of  loss(outputs, targets) + feature_mse × normalised feature MSE
                                   + λ(q) × bits            (digital codecs: q drawn per sample)
           + the entropy model's auxiliary loss               (digital codecs)

(:func:`intelliflow.training.losses.rate_distortion`: the codec objective with the task loss in
the caption's place; analog codecs draw the SNR per sample from ``channel.snr_db``, and the bandwidth
per batch from ``channel.symbols``). ``loss(outputs, targets)`` returns the batch's mean (as
``torch.nn.functional.cross_entropy`` does) or one value per sample [B].

- ``model.entry``: builds the model (called with ``model.options``; an ``nn.Module`` object is
  taken as it is). It is built right after torch is seeded with the recipe's seed, so a model with
  random weights is the same one ``torch.manual_seed(seed)`` and the same call give.
- ``data.entry``: called with ``data.options``; returns a map-style dataset of ``(input, target)``
  items (drawn with replacement in batches of ``train.batch_size``) or an iterable of
  ``(inputs, targets)`` batches (taken as they come, the entry point called again when it ends).
  Inputs are a tensor (``model(inputs)``), a tuple (``model(*inputs)``) or a dict (``model(**inputs)``).
- ``loss``: ``loss(outputs, targets)`` -> a scalar or [B].

This module builds them and one step; :func:`intelliflow.training.train_loop` runs them (checkpoints,
``--resume``, logs, validation). One process. The trained codec is saved to ``OUT/codec`` (its
``config.json`` names the model's entry point and, as ``layer``, the submodule it splits after); load it with
:func:`~intelliflow.codec.resolve_codec` and put it back with ``split_at(model, split,
transform=CodecLink(codec, channel, ...))``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import torch
from torch import nn

from intelliflow.config import entry_point, from_dict, to_dict
from intelliflow.errors import ConfigError, ShapeError
from intelliflow.training import LoopConfig, Step, TrainState, lr_schedule, train_loop

from .codec import _ENTROPY_TABLES, ChannelSection, CodecTraining, codec_optimizer, draw_generators


@dataclass
class BridgeModel:
    """The model: an entry point that builds it, its keyword arguments, the submodule to split after."""

    entry: str = ""
    options: dict = field(default_factory=dict)
    split: str = ""
    grid: list[int] | None = None   # [H, W] of token features [B, N, D] whose grid is not square


@dataclass
class BridgeData:
    """The training data: an entry point returning a dataset or batches, its keyword arguments."""

    entry: str = ""
    options: dict = field(default_factory=dict)


@dataclass
class BridgeObjective:
    feature_mse: float = 0.0          # × the features' MSE normalised by their mean square
    lambda_low_rate: float = 0.01     # task-loss units per bit at rate point 0
    lambda_high_rate: float = 0.0001  # ... at the top rate point


@dataclass
class BridgeEval:
    every: int = 0                    # validate every N steps and at the last (0: never)
    batches: int = 4                  # batches of the validation data
    options: dict = field(default_factory=dict)   # data options over the training ones, e.g. {split: val}
    rate_points: list[float] = field(default_factory=lambda: [0.0, 2.5, 5.0])   # digital codecs, ideal link
    snr_db: list[float] = field(default_factory=lambda: [0.0, 10.0, 20.0])      # analog codecs, the channel


@dataclass
class BridgeRecipe:
    task: Literal["bridge"] = "bridge"
    seed: int = 0
    output: str = "runs/bridge"
    checkpoint_every: int = 250
    checkpoint_minutes: float = 5.0
    log_every: int = 25
    model: BridgeModel = field(default_factory=BridgeModel)
    data: BridgeData = field(default_factory=BridgeData)
    loss: str = "torch.nn.functional:cross_entropy"
    codec: dict = field(default_factory=lambda: {"name": "hyperprior"})
    channel: ChannelSection = field(default_factory=ChannelSection)
    objective: BridgeObjective = field(default_factory=BridgeObjective)
    train: CodecTraining = field(default_factory=CodecTraining)
    eval: BridgeEval = field(default_factory=BridgeEval)


def recipe_from_dict(data: dict) -> BridgeRecipe:
    """Validate a ``task: bridge`` recipe (keys and types; the entry points resolve when it runs)."""
    recipe = from_dict(BridgeRecipe, data)
    for key, value, example in (("model.entry", recipe.model.entry, "torchvision.models:resnet18"),
                                ("model.split", recipe.model.split, "layer2"),
                                ("data.entry", recipe.data.entry, "mypackage.data:train_set")):
        if not value:
            raise ConfigError(f"recipe key '{key}' is required (e.g. {example!r})")
    if recipe.model.grid is not None and len(recipe.model.grid) != 2:
        raise ConfigError(f"recipe key 'model.grid' must be [H, W], got {recipe.model.grid}")
    if len(recipe.channel.snr_db) != 2 or recipe.channel.snr_db[0] > recipe.channel.snr_db[1]:
        raise ConfigError(f"recipe key 'channel.snr_db' must be [low, high], got {recipe.channel.snr_db}")
    return recipe


# ---------------------------------------------------------------------- the parts a recipe names
def build_model(recipe: BridgeRecipe) -> nn.Module:
    """``model.entry(**model.options)``, right after torch is seeded with the recipe's seed."""
    made = entry_point(recipe.model.entry, "model.entry")
    if not isinstance(made, nn.Module):
        if not callable(made):
            raise ConfigError(f"recipe key 'model.entry': {recipe.model.entry!r} is neither a torch module nor callable")
        torch.manual_seed(recipe.seed)
        made = made(**recipe.model.options)
    if not isinstance(made, nn.Module):
        raise ConfigError(f"recipe key 'model.entry': {recipe.model.entry!r} gave a {type(made).__name__}, "
                          "not a torch nn.Module")
    return made


def task_loss(recipe: BridgeRecipe):
    """The ``loss`` entry point: ``loss(outputs, targets) -> scalar or [B]``."""
    loss = entry_point(recipe.loss, "loss")
    if not callable(loss):
        raise ConfigError(f"recipe key 'loss': {recipe.loss!r} is not callable")
    return loss


def task_batches(entry: str, options: dict, batch_size: int, seed: int, start: int = 0, workers: int = 0,
                 key: str = "data.entry") -> Iterator:
    """Endless ``(inputs, targets)`` batches from the data entry point, positioned at batch ``start``
    (see the module docstring)."""
    from torch.utils.data import Dataset, IterableDataset

    from .batches import shuffled_batches

    source = entry_point(entry, key)

    def make():
        if callable(source) and not isinstance(source, Dataset):
            with torch.random.fork_rng(devices=[]):   # the entry point may seed torch: the run's state stays
                return source(**options)
        if options:
            raise ConfigError(f"recipe key '{key}': {entry!r} is not callable, so it takes no options")
        return source

    made = make()
    if isinstance(made, Dataset) and not isinstance(made, IterableDataset):
        return shuffled_batches(made, batch_size, seed, start, workers)
    if isinstance(made, IterableDataset):
        from torch.utils.data import DataLoader

        made = DataLoader(made, batch_size=batch_size)
    elif not hasattr(made, "__iter__"):
        raise ConfigError(f"recipe key '{key}': {entry!r} gave a {type(made).__name__}: give a dataset of "
                          "(input, target) items or an iterable of (inputs, targets) batches")

    def endless(first):
        source, skip = first, start
        while True:
            count = 0
            for batch in source:
                count += 1
                if skip:
                    skip -= 1
                    continue
                yield batch
            if not count:
                raise ConfigError(f"recipe key '{key}': {entry!r} gave no batches")
            source = make()
            if isinstance(source, IterableDataset):
                from torch.utils.data import DataLoader

                source = DataLoader(source, batch_size=batch_size)

    return endless(made)


def split_batch(batch: Any, device: torch.device) -> tuple[Any, Any]:
    """A batch -> ``(inputs, targets)`` on ``device``; anything but a pair is a :class:`ConfigError`."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ConfigError(f"data batches must be (inputs, targets) pairs, got a {type(batch).__name__}"
                          + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
    return _to(batch[0], device), _to(batch[1], device)


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


def run_model(model: nn.Module, inputs: Any) -> Any:
    """``model(inputs)``, ``model(*inputs)`` for a tuple or list, ``model(**inputs)`` for a dict."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def batch_size_of(inputs: Any) -> int:
    """The batch size: the first dimension of the first tensor in ``inputs``."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() == 0:
            raise ShapeError("model inputs must have a batch dimension, got a scalar tensor")
        return int(inputs.shape[0])
    values = inputs.values() if isinstance(inputs, dict) else inputs if isinstance(inputs, (tuple, list)) else ()
    for v in values:
        try:
            return batch_size_of(v)
        except ShapeError:
            continue
    raise ShapeError(f"no tensor with a batch dimension in the model's inputs ({type(inputs).__name__})")


def _per_sample(value: Any, b: int) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() not in (1, b) or not value.is_floating_point():
        shown = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ConfigError(f"the loss must return a float scalar or one value per sample [{b}], got {shown}")
    return value.float().reshape(-1)


# ---------------------------------------------------------------------- the run
def train_bridge(recipe: BridgeRecipe, output: str | Path | None = None, resume: bool = False,
                 stop_at: int | None = None) -> Path:
    """Run a ``task: bridge`` recipe; returns the folder of the trained codec (``OUT/codec``).

    ``stop_at`` ends the run after that step with a checkpoint (continue later with ``resume``)."""
    from intelliflow.codec import build_codec
    from intelliflow.codec.persistence import save_codec
    from intelliflow.codec.registry import entry as codec_entry
    from intelliflow.devices import rank_device
    from intelliflow.flow import CodecLink
    from intelliflow.flow.bridge import feature_layout
    from intelliflow.models import split_at
    from intelliflow.seeding import seed_everything

    from .losses import draw_rate_points, draw_snr, rate_distortion

    out, t, objective = Path(output or recipe.output), recipe.train, recipe.objective
    if t.threads:
        torch.set_num_threads(t.threads)
    seed_everything(recipe.seed, sionna=recipe.channel.name != "none")
    device = rank_device(0)
    loss_fn = task_loss(recipe)
    model = build_model(recipe).to(device).eval()   # frozen: only the codec learns
    for p in model.parameters():
        p.requires_grad_(False)
    batches = lambda start: task_batches(recipe.data.entry, recipe.data.options, t.batch_size,  # noqa: E731
                                         recipe.seed, start, t.workers)

    # the features at the split, from one batch: their width sizes the codec
    with split_at(model, recipe.model.split) as probe, torch.no_grad():
        run_model(model, split_batch(next(batches(0)), device)[0])
    if probe.features is None:
        raise ConfigError(f"recipe key 'model.split': the model never ran {recipe.model.split!r} in its forward pass")
    shape = tuple(probe.features.shape)
    grid, prefix = feature_layout(shape, recipe.model.grid)
    codec_config = dict(recipe.codec)
    kind = codec_entry(str(codec_config.get("name"))).cls
    if not kind.learned or kind.takes != "features":
        raise ConfigError(f"codec {codec_config.get('name')!r} has nothing to train here: use a learned codec of "
                          "features (hyperprior, factorized, jscc)")
    codec_config.setdefault("in_channels", shape[1] if len(shape) == 4 else shape[-1])
    codec = build_codec(codec_config).to(device)
    digital = codec.sends == "bytes"
    if not digital and recipe.channel.name == "none":
        raise ConfigError("an analog codec trains through a channel: set channel.name (awgn, rayleigh, ofdm-tdl)")
    channel = {"name": recipe.channel.name, **recipe.channel.options}
    link = CodecLink(codec, channel, grid=recipe.model.grid).to(device)
    split = split_at(model, recipe.model.split, transform=link)

    main_params = [p for n, p in codec.named_parameters() if not n.endswith(".quantiles")]
    optimizer = codec_optimizer(main_params, codec, t)
    generator, generators = draw_generators(recipe.seed * 7919, recipe.channel.name)
    state = TrainState({"link": link}, optimizer, lr_schedule(optimizer, t), clip=main_params,
                       keep=lambda k: not k.endswith(_ENTROPY_TABLES), generators=generators)
    max_q = codec.rate_range()[1] if digital else 0.0
    print(f"split after {recipe.model.split!r}: features {list(shape)} on a {grid[0]}x{grid[1]} grid"
          f"{f' after {prefix} prefix token(s)' if prefix else ''}; codec {codec_config['name']}: "
          f"{sum(p.numel() for p in codec.parameters()):,} parameters; output {out}", file=sys.stderr)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bfloat16")

    def step_fn(batch: Any, step: int) -> Step:
        inputs, targets = split_batch(batch, device)
        b = batch_size_of(inputs)
        q = draw_rate_points(b, max_q, generator).to(device) if digital else None
        if digital:
            link.q = q
        else:
            link.snr_db = draw_snr(b, *recipe.channel.snr_db, generator).to(device)
            if recipe.channel.symbols:
                link.symbols = recipe.channel.symbols[int(torch.randint(len(recipe.channel.symbols), (1,),
                                                                        generator=generator))]
        with autocast:
            outputs = run_model(model, inputs)
        sent, link.last_pass = link.last_pass, None
        if sent is None:
            raise ConfigError(f"the model's forward pass did not run {recipe.model.split!r} for this batch")
        task = _per_sample(loss_fn(outputs, targets), b)
        f, f_hat = sent["features"].float(), sent["features_hat"].float()
        if "feature_scale" not in state.extra:   # normalises the feature MSE (a constant of the run)
            state.extra["feature_scale"] = f.detach().pow(2).mean().clamp_min(1e-8)
        nmse = (f_hat - f).pow(2).flatten(1).mean(1) / state.extra["feature_scale"].to(device)
        distortion = task + objective.feature_mse * nmse if objective.feature_mse else task
        loss = rate_distortion(distortion, sent, q, max_q, objective)
        bits = sent["bits"] if digital else torch.zeros(b, device=device)
        return Step(loss, {"task_loss": task.detach(), "feature_nmse": nmse.detach(), "bits": bits.detach()})

    val_batches: list = []

    def validation(step: int) -> list[dict]:
        if not val_batches:
            options = {**recipe.data.options, **recipe.eval.options}
            source = task_batches(recipe.data.entry, options, t.batch_size, recipe.seed + 1)
            val_batches.extend(next(source) for _ in range(recipe.eval.batches))
        rows = validate(model, link, loss_fn, val_batches, recipe.eval.rate_points if digital else recipe.eval.snr_db,
                        device)
        link.train()
        return rows

    link.train()
    loop = LoopConfig(steps=t.steps, batch_size=t.batch_size, grad_clip=t.grad_clip, log_every=recipe.log_every,
                      checkpoint_every=recipe.checkpoint_every, checkpoint_minutes=recipe.checkpoint_minutes,
                      eval_every=recipe.eval.every, columns={"task_loss": ".5f", "feature_nmse": ".5f", "bits": ".2f"},
                      desc=f"train {codec_config['name']} in {type(model).__name__}")
    try:
        result = train_loop(step_fn, batches, state, loop, out, to_dict(recipe), resume=resume, stop_at=stop_at,
                            validate=validation if recipe.eval.every else None)
    finally:
        split.remove()
    if result.stopped:
        return result.checkpoint
    link.eval()   # builds a digital codec's entropy tables
    final = out / "codec"
    save_codec(codec, final, model=recipe.model.entry, layer=recipe.model.split, loss=recipe.loss,
               channel=recipe.channel.name, seed=recipe.seed, steps=result.step, recipe=to_dict(recipe))
    print(f"saved the codec to {final}", file=sys.stderr)
    return final


@torch.no_grad()
def validate(model: nn.Module, link, loss_fn, batches: list, points: list[float], device: torch.device) -> list[dict]:
    """The task loss, payload bits and channel uses per sample through ``link`` in eval mode (real
    payloads) on ``batches``, at each rate point (a digital codec, over an ideal link) or SNR (an
    analog one, through its channel); ``model`` is split with ``link`` already."""
    digital = link.codec.sends == "bytes"
    link.eval()
    rows = []
    for point in points:
        if digital and point > link.codec.rate_range()[1]:
            continue
        link.q, link.snr_db, link.symbols, link.ideal = (point, None, None, True) if digital else (None, point, None, False)
        losses, bits, uses, n = 0.0, 0.0, 0.0, 0
        for batch in batches:
            inputs, targets = split_batch(batch, device)
            b = batch_size_of(inputs)
            outputs = run_model(model, inputs)
            losses += float(_per_sample(loss_fn(outputs, targets), b).mean()) * b
            report = link.last
            bits += report.bits_per_sample * b if report.bits is not None else 0.0
            uses += (report.channel_uses_per_sample or 0.0) * b
            n += b
        rows.append({"point": f"q={point}" if digital else f"snr={point}", "task_loss": losses / n,
                     "payload_bits": bits / n if digital else "", "channel_uses": "" if digital else uses / n})
    link.ideal = False
    return rows


__all__ = ["BridgeData", "BridgeEval", "BridgeModel", "BridgeObjective", "BridgeRecipe", "recipe_from_dict",
           "task_batches", "train_bridge", "validate"]
