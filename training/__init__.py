"""intelliflow.training: the one training loop the runners share, its losses, schedule and DDP helpers.

- :mod:`.loop`: :func:`train_loop` (checkpoint and exact resume, CSV logs, NaN stop, validation,
  progress bar, rank-0-only writing) and the :class:`Step` a step function returns;
- :mod:`.losses`: per-caption nats, KL distillation, rate λ and the codec objective;
- :mod:`.optim`: the warm-up + cosine learning-rate schedule and one optimiser step;
- :mod:`.distributed`: ``DistributedDataParallel`` wrapping and weight digests (the process group is
  :mod:`intelliflow.distributed`).
"""

from .distributed import ddp, weights_digest, write_weights_digest
from .loop import LoopConfig, LoopResult, Step, TrainState, train_loop
from .optim import lr_factor, lr_schedule, optimizer_step

__all__ = ["LoopConfig", "LoopResult", "Step", "TrainState", "ddp", "lr_factor", "lr_schedule", "optimizer_step",
           "train_loop", "weights_digest", "write_weights_digest"]
