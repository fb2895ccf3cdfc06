"""Split any torch model after a named submodule: the generic route for models with no adapter.

A forward hook on the submodule passes its output through ``transform`` (a codec and a channel:
:class:`intelliflow.flow.CodecLink`, which reports bits and channel uses and trains the codec;
or anything mapping a tensor to a tensor of the same shape) before the rest of the model sees it.
The device side is everything up to and including the submodule, the server side the rest.

>>> import torch, torchvision
>>> net = torchvision.models.resnet18(weights=None).eval()
>>> noisy_link = lambda x: x + 0.1 * torch.randn_like(x)    # stands in for a codec and a channel
>>> with split_at(net, "layer2", transform=noisy_link) as split, torch.no_grad():
...     logits = net(torch.rand(2, 3, 64, 64))
>>> split.features.shape, split.received.shape, logits.shape   # features: what crossed the link
(torch.Size([2, 128, 8, 8]), torch.Size([2, 128, 8, 8]), torch.Size([2, 1000]))
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from intelliflow.errors import ConfigError


class SplitPoint:
    """A live split: holds the hook; ``features`` / ``received`` are the last tensors sent / received."""

    def __init__(self, model: nn.Module, path: str, transform: Callable[[torch.Tensor], torch.Tensor] | None):
        try:
            self.module = model.get_submodule(path)
        except AttributeError as exc:
            names = [n for n, _ in model.named_modules() if n][:20]
            raise ConfigError(f"no submodule {path!r} in {type(model).__name__}; some names: {names}") from exc
        self.path, self.transform = path, transform
        self.features: torch.Tensor | None = None
        self.received: torch.Tensor | None = None
        self.calls = 0
        self._handle = self.module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        tensor = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(tensor, torch.Tensor):
            raise ConfigError(f"submodule {self.path!r} returns {type(output).__name__}, not a tensor; "
                              "split after a module that returns a tensor")
        self.calls += 1
        self.features = tensor
        received = tensor if self.transform is None else self.transform(tensor)
        if received.shape != tensor.shape:
            raise ConfigError(f"the transform at {self.path!r} changed the shape {list(tensor.shape)} "
                              f"to {list(received.shape)}")
        self.received = received
        if isinstance(output, tuple):
            return (received, *output[1:])
        if isinstance(output, list):
            return [received, *output[1:]]
        return received

    def remove(self) -> None:
        """Remove the hook: the model is unsplit again."""
        self._handle.remove()

    def __enter__(self) -> "SplitPoint":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def split_at(model: nn.Module, path: str, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
             ) -> SplitPoint:
    """Insert ``transform`` after ``model.get_submodule(path)``; returns the :class:`SplitPoint`
    (also a context manager that removes the hook on exit). ``transform=None`` only observes."""
    return SplitPoint(model, path, transform)
