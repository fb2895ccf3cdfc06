"""The one training loop: every runner (codec, captioner) supplies a step function, the loop does the rest.

A runner builds its model, optimiser and data, then calls :func:`train_loop` with

- ``step_fn(batch, step) -> Step``: the loss of one batch (``step``: the steps done before it, from 0)
  and the numbers to log;
- ``batches(start) -> iterator``: endless batches, positioned at step ``start`` (a resumed run
  sees the same batches as an uninterrupted one);
- a :class:`TrainState`: the modules, optimiser, schedule and random generators that a checkpoint
  holds;
- a :class:`LoopConfig`: how long, how often to log, validate and checkpoint.

Each step: ``step_fn`` → stop with :class:`~intelliflow.errors.NonFiniteLossError` if the loss is
NaN or infinite → backward, gradient clipping, optimiser and schedule step → every ``log_every``
steps a row of ``train_log.csv`` → every ``eval_every`` steps (and at the last) ``validate(step)``,
its rows in ``eval_log.csv`` → every ``checkpoint_every`` steps (at the last, at ``stop_at``, and
whenever ``checkpoint_minutes`` of wall time have passed since the last one) an atomic checkpoint
in ``OUT/checkpoint``. Validation comes before the checkpoint, so the random state a checkpoint
stores is the one the next step starts from: stop + resume gives the same weights, bit for bit, as
an uninterrupted run. A resumed run drops what a killed one logged after its checkpoint.

Under ``torchrun`` (see :mod:`intelliflow.training.distributed`) every rank runs the loop; rank 0
alone validates, writes files and shows the progress bar.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from tqdm import tqdm

from intelliflow.checkpoint import CONFIG, flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from intelliflow.errors import CheckpointError, ConfigError, NonFiniteLossError

from intelliflow.distributed import rank_and_world
from .optim import optimizer_step


@dataclass
class Step:
    """What a step function returns.

    ``loss``: the scalar to minimise. ``stats``: the numbers logged in ``train_log.csv`` after the
    loss, one per :attr:`LoopConfig.columns` entry: a float, a scalar tensor, or a per-item tensor
    [B] (its mean is logged).
    """

    loss: torch.Tensor
    stats: Mapping[str, torch.Tensor | float] = field(default_factory=dict)


@dataclass
class LoopConfig:
    """How long the loop runs and how often it logs, validates and checkpoints (0: never)."""

    steps: int
    batch_size: int = 1            # items per step on each process, for the images_per_s column
    grad_clip: float = 1.0         # max gradient norm of TrainState.clip
    log_every: int = 25
    checkpoint_every: int = 250    # the last step and a stop_at step are always checkpointed
    checkpoint_minutes: float = 5.0  # ... and at least this often in wall time (0: only by steps)
    eval_every: int = 0            # the last step is validated too (when there is a validate function)
    columns: Mapping[str, str] = field(default_factory=dict)  # Step.stats name -> format, e.g. {"bits": ".2f"}
    desc: str = "train"            # the progress bar's label


def _everything(key: str) -> bool:
    return True


@dataclass
class TrainState:
    """What the loop trains and what a checkpoint holds.

    A checkpoint stores, next to the step and the recipe: each module's state under
    ``"{name}.{key}"`` (only the keys ``keep`` accepts, e.g. not a frozen model's), the optimiser and
    schedule, torch's global random state (``rng.torch``), each of ``generators``
    (``rng.{name}``) and ``extra`` (``state.{name}``): tensors the step function keeps from one
    step to the next (it may add them as it goes; a resume puts them back, on the CPU).
    """

    modules: Mapping[str, torch.nn.Module]
    optimizer: torch.optim.Optimizer
    scheduler: Any                                # a torch lr scheduler
    clip: list[torch.Tensor]                      # the parameters whose gradient norm is clipped
    keep: Callable[[str], bool] = _everything
    generators: Mapping[str, torch.Generator] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def save(self, folder: Path, step: int, recipe: dict) -> None:
        """Write a checkpoint (atomically) to ``folder``."""
        tensors = {f"{name}.{k}": v for name, module in self.modules.items()
                   for k, v in module.state_dict().items() if self.keep(f"{name}.{k}")}
        skeleton, optimizer_tensors = flatten_state(self.optimizer.state_dict(), "optimizer")
        tensors.update(optimizer_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors.update({f"rng.{name}": g.get_state() for name, g in self.generators.items()})
        tensors.update({f"state.{name}": v for name, v in self.extra.items()})
        save_checkpoint(folder, tensors, {"recipe": recipe, "step": step, "optimizer": skeleton,
                                          "scheduler": self.scheduler.state_dict()})

    def load(self, folder: Path, recipe: dict) -> int:
        """Restore everything from the checkpoint in ``folder``; returns its step. A checkpoint of
        another recipe is a :class:`~intelliflow.errors.ConfigError`."""
        tensors, meta = load_checkpoint(folder)
        if meta["recipe"] != recipe:
            raise ConfigError(f"cannot resume {folder}: it was written by a different recipe")
        for name, module in self.modules.items():
            state = {k[len(name) + 1:]: v for k, v in tensors.items()
                     if k.startswith(f"{name}.") and self.keep(k)}
            missing, unexpected = module.load_state_dict(state, strict=False)
            missing = [k for k in missing if self.keep(f"{name}.{k}")]
            if missing or unexpected:
                raise CheckpointError(f"checkpoint {folder} does not fit {name!r}: missing {missing[:5]}, "
                                      f"unexpected {unexpected[:5]}")
        self.optimizer.load_state_dict(unflatten_state(meta["optimizer"], tensors))
        self.scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        for name, g in self.generators.items():
            if f"rng.{name}" in tensors:
                g.set_state(tensors[f"rng.{name}"])
        self.extra.update({k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")})
        return meta["step"]


@dataclass
class LoopResult:
    step: int           # steps done
    stopped: bool       # ended at ``stop_at`` before the last step
    checkpoint: Path    # OUT/checkpoint


class _Logs:
    """Rank 0's files: ``train_log.csv``, ``eval_log.csv`` and, when installed, TensorBoard."""

    def __init__(self, out: Path, config: LoopConfig, step: int):
        self.train_path, self.eval_path = out / "train_log.csv", out / "eval_log.csv"
        header = ["step", "loss", *config.columns, "lr", "images_per_s"]
        kept = self._rows_up_to(self.train_path, step) if step else []
        if step and self.eval_path.exists():  # resumed: drop what a killed run logged after its checkpoint
            self._rewrite(self.eval_path, self._rows_up_to(self.eval_path, step))
        elif not step:
            self.eval_path.unlink(missing_ok=True)  # a new run starts new logs
        self.file = self.train_path.open("w", newline="")
        self.csv = csv.writer(self.file)
        self.csv.writerow(header)
        self.csv.writerows(kept[1:] if kept and kept[0] == header else kept)
        self.file.flush()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # TensorBoard is optional
            self.board = None

    @staticmethod
    def _rows_up_to(path: Path, step: int) -> list[list[str]]:
        """A log's header and the rows of steps up to ``step`` (a row whose step is not a number is dropped)."""
        if not path.exists():
            return []
        lines = list(csv.reader(path.open(newline="")))
        if not lines or lines[0][:1] != ["step"]:
            return []
        return [lines[0]] + [r for r in lines[1:] if r and r[0].isdigit() and int(r[0]) <= step]

    @staticmethod
    def _rewrite(path: Path, lines: list[list[str]]) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows(lines)
        tmp.replace(path)

    def train(self, step: int, values: dict[str, float], config: LoopConfig, lr: float, rate: float) -> None:
        stats = (format(values[k], fmt) for k, fmt in config.columns.items())
        self.csv.writerow([step, f"{values['loss']:.5f}", *stats, f"{lr:.6g}", f"{rate:.1f}"])
        self.file.flush()
        if self.board:
            for k, v in values.items():
                self.board.add_scalar(f"train/{k}", v, step)

    def eval(self, step: int, rows: list[dict]) -> None:
        if not rows:
            return
        first = not self.eval_path.exists() or self.eval_path.stat().st_size == 0
        with self.eval_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", *rows[0]])
            if first:
                writer.writeheader()
            for row in rows:
                writer.writerow({"step": step, **row})
        if self.board:
            for row in rows:
                where = f"/{row['point']}" if "point" in row else ""
                for k, v in row.items():
                    if isinstance(v, (int, float)):
                        self.board.add_scalar(f"val/{k}{where}", v, step)

    def close(self) -> None:
        self.file.close()
        if self.board:
            self.board.close()


def _say(rank: int, text: str) -> None:
    if rank == 0:
        print(text, file=sys.stderr)


def _summary(step: int, rows: list[dict]) -> str:
    """``step 500: q=0.0 CIDEr-D 0.41 ...; q=2.5 ...``: text values bare, numbers with their names."""
    def show(k, v):
        return v if isinstance(v, str) else f"{k} {v:.4g}"

    return f"step {step}: " + "; ".join(" ".join(show(k, v) for k, v in row.items() if v != "") for row in rows)


def train_loop(step_fn: Callable[[Any, int], Step], batches: Callable[[int], Iterator], state: TrainState,
               config: LoopConfig, out: str | Path, recipe: dict, *,
               validate: Callable[[int], list[dict]] | None = None, resume: bool = False,
               stop_at: int | None = None) -> LoopResult:
    """Train until ``config.steps`` (or ``stop_at``); see the module docstring.

    ``out``: the run's folder (``train_log.csv``, ``eval_log.csv``, ``recipe.json``, ``checkpoint/``);
    ``recipe``: the run's recipe as a JSON-able dict, written to ``recipe.json`` and stored in every
    checkpoint (``resume`` refuses a checkpoint of another recipe); ``validate(step)``: rows of
    scores (dicts with the same keys), called on rank 0 only; ``resume``: continue from
    ``out/checkpoint`` if there is one; ``stop_at``: end after that step with a checkpoint.
    """
    rank, world = rank_and_world()
    out = Path(out)
    ckpt = out / "checkpoint"
    step = 0
    if resume and (ckpt / CONFIG).is_file():
        step = state.load(ckpt, recipe)
        _say(rank, f"resumed from {ckpt} at step {step}")
    elif resume:
        _say(rank, f"no checkpoint in {ckpt}; starting from scratch")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(json.dumps(recipe, indent=2))
    data = batches(step)
    logs = _Logs(out, config, step) if rank == 0 else None
    bar = tqdm(total=config.steps, initial=step, desc=config.desc, unit="step", file=sys.stderr, disable=rank != 0)
    running = None
    saved_at = time.monotonic()
    try:
        tick = time.perf_counter()
        while step < config.steps:
            result = step_fn(next(data), step)
            if not torch.isfinite(result.loss):
                raise NonFiniteLossError(f"loss became {result.loss.item()} at step {step}; the last good "
                                         f"checkpoint is in {ckpt}")
            optimizer_step(result.loss, state.optimizer, state.scheduler, state.clip, config.grad_clip)
            step += 1
            values = {"loss": result.loss.item(),
                      **{k: v.mean().item() if isinstance(v, torch.Tensor) else float(v)
                         for k, v in result.stats.items()}}
            running = values if running is None else {k: 0.9 * running[k] + 0.1 * v for k, v in values.items()}
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in running.items() if v or k == "loss"})
            if logs and config.log_every and step % config.log_every == 0:
                rate = config.log_every * config.batch_size * world / (time.perf_counter() - tick)
                logs.train(step, values, config, state.scheduler.get_last_lr()[0], rate)
                tick = time.perf_counter()
            if validate and rank == 0 and config.eval_every and (step % config.eval_every == 0 or
                                                                 step == config.steps):
                rows = validate(step)
                logs.eval(step, rows)
                bar.write(_summary(step, rows))
                tick = time.perf_counter()
            stopping = stop_at is not None and stop_at <= step < config.steps
            overdue = config.checkpoint_minutes and time.monotonic() - saved_at > 60 * config.checkpoint_minutes
            if rank == 0 and (step == config.steps or stopping or overdue or
                              (config.checkpoint_every and step % config.checkpoint_every == 0)):
                state.save(ckpt, step, recipe)
                saved_at = time.monotonic()
            if stopping:
                _say(rank, f"stopped at step {step}; continue with --resume")
                return LoopResult(step, True, ckpt)
    finally:
        bar.close()
        if logs:
            logs.close()
    return LoopResult(step, False, ckpt)
