"""A codec and a channel inside any torch model: :class:`CodecLink`, the transform that
:func:`intelliflow.models.split_at` puts after a named submodule.

::

    model(x) ─► ... ─► submodule ─► features ─► CodecLink ─► received ─► the rest of the model ─► outputs
                                    [B, D, H, W] | tokens [B, N, D] | vectors [B, D]   (same shape out)

    eval mode:     Flow.transmit: Device.encode_input ─► ideal link | DigitalLink (bytes) | channel (symbols)
                   ─► Receiver.decode (the one inference path; real payloads, 8 * len(payload) bits)
    training mode: Flow.forward: the codec's training pass (byte codecs: CompressAI's noise proxy and
                   likelihood bits; symbol codecs: encode ─► channel ─► decode), differentiable

A feature codec codes grids ``[B, D, H, W]``. Tokens ``[B, N, D]`` (batch first) lie row-major on
an ``H x W`` grid after ``P = N - H * W`` prefix tokens (a CLS token): ``grid=(H, W)`` says so, else a
square grid is assumed (``N = s²``, or ``N = 1 + s²`` with one prefix token); prefix tokens ride
beside the grid as :class:`~intelliflow.flow.endpoints.PrefixTokens` carries them for split
captioners (8-bit and counted with byte codecs, clean beside symbols). Vectors ``[B, D]`` are a
1 x 1 grid. Other shapes are refused (:class:`~intelliflow.errors.ShapeError`).

A payload the digital link loses leaves zeros in its sample's features (the receiver has nothing
else); :attr:`LinkReport.lost` says which.

>>> import torch, torchvision
>>> from intelliflow.models import split_at
>>> net = torchvision.models.resnet18(weights=None, num_classes=6).eval()
>>> link = CodecLink("quantize-8")                     # a codec (and channel "none": an ideal link)
>>> with split_at(net, "layer2", transform=link), torch.no_grad():
...     logits = net(torch.rand(2, 3, 32, 32))
>>> logits.shape, len(link.last.bits), link.last.bits == [8 * len(p) for p in link.last_sent.data]
(torch.Size([2, 6]), 2, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from intelliflow.codec import resolve_codec
from intelliflow.errors import ConfigError, ShapeError
from intelliflow.models import grid_to_tokens, tokens_to_grid
from intelliflow.models.protocol import square_grid


def feature_layout(shape: tuple[int, ...] | torch.Size, grid: tuple[int, int] | None = None
                   ) -> tuple[tuple[int, int], int]:
    """How features of ``shape`` lie on a codec's grid: ``((H, W), P)``, P prefix tokens before it.

    ``[B, D, H, W]``: its own grid; ``[B, N, D]``: ``grid`` (``P = N - H * W``), else a square
    ``N = s²`` or ``1 + s²``; ``[B, D]``: a 1 x 1 grid. Anything else is a :class:`ShapeError`.

    >>> feature_layout((2, 128, 4, 4)), feature_layout((2, 197, 768)), feature_layout((2, 50, 8), grid=(7, 7))
    (((4, 4), 0), ((14, 14), 1), ((7, 7), 1))
    >>> feature_layout((2, 512))
    ((1, 1), 0)
    """
    shape = tuple(shape)
    if len(shape) == 4:
        if grid is not None and tuple(grid) != shape[2:]:
            raise ShapeError(f"features {list(shape)} lie on a {shape[2]}x{shape[3]} grid, not the {grid} given")
        return (shape[2], shape[3]), 0
    if len(shape) == 2:
        return (1, 1), 0
    if len(shape) != 3:
        raise ShapeError(f"a codec link codes features [B, D, H, W], tokens [B, N, D] or vectors [B, D]; "
                         f"got {list(shape)}")
    n = shape[1]
    if grid is not None:
        h, w = (int(v) for v in grid)
        if h < 1 or w < 1 or h * w > n:
            raise ShapeError(f"{n} tokens do not hold a {h}x{w} grid")
        return (h, w), n - h * w
    found = square_grid(n)
    if found is not None:
        return found[1], found[0]
    raise ShapeError(f"{n} tokens are not a square grid (nor 1 + a square): give the grid, "
                     f"CodecLink(..., grid=(H, W)) (prefix tokens = N - H*W)")


def _layout(t: torch.Tensor) -> torch.memory_format:
    """The memory format of ``t`` (a 4-D tensor may be channels-last), so the rest of the model runs as it did."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class _HookedSplit:
    """What :class:`~intelliflow.flow.Flow`, ``Device`` and ``Receiver`` read of a split model, for
    features a hook caught: their grid, width and prefix tokens (set per forward) and a device."""

    name = "torch model"
    split = "hook"

    def __init__(self):
        self.feature_grid: tuple[int, int] = (1, 1)
        self.feature_dim = 0
        self.prefix_tokens = 0
        self._anchor = torch.empty(0)

    def see(self, tokens: torch.Tensor, grid: tuple[int, int], prefix: int) -> None:
        self.feature_grid, self.feature_dim, self.prefix_tokens = grid, tokens.shape[-1], prefix
        if self._anchor.device != tokens.device:
            self._anchor = torch.empty(0, device=tokens.device)

    def parameters(self):
        """The device the receiver decodes to (the features'), as a model's parameters say it."""
        return iter([self._anchor])

    def check_features(self, features: torch.Tensor) -> None:
        h, w = self.feature_grid
        expected = (self.prefix_tokens + h * w, self.feature_dim)
        if features.dim() != 3 or tuple(features.shape[1:]) != expected:
            raise ShapeError(f"decoded features must be [B, {expected[0]}, {expected[1]}], got {list(features.shape)}")


@dataclass
class LinkReport:
    """What crossed the link in one forward pass, one entry per sample.

    :ivar bits: payload bits per sample: ``8 * len(payload)`` of the real payload in eval mode (the
        prefix part included), the codec's likelihood estimate in training mode (``estimated``);
        ``None`` for a codec that sends symbols;
    :ivar channel_uses: complex channel uses per sample: the symbols through the analog channel, or
        the digital link's (retransmissions, pilots included); ``None`` over an ideal link and for
        byte codecs in training (they train without the digital link);
    :ivar lost: the digital link did not deliver the sample's payload (its features are zeros);
    :ivar estimated: ``bits`` are the training pass's likelihood estimate, not a real payload's;
    :ivar mcs, transmissions: per sample over the digital link (else ``None``).
    """

    bits: list[float] | None
    channel_uses: list[int | None]
    lost: list[bool]
    estimated: bool = False
    mcs: list[int | None] = field(default_factory=list)
    transmissions: list[int | None] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return len(self.lost)

    @property
    def bits_per_sample(self) -> float | None:
        """Mean payload bits per sample (``None`` for symbols)."""
        return None if self.bits is None else sum(self.bits) / max(len(self.bits), 1)

    @property
    def channel_uses_per_sample(self) -> float | None:
        """Mean channel uses per sample (``None`` where nothing went through a channel)."""
        uses = [u for u in self.channel_uses if u is not None]
        return sum(uses) / len(uses) if uses else None


@dataclass
class LinkTotals:
    """Sums over every forward pass since the link was built or :meth:`CodecLink.reset`."""

    forwards: int = 0
    samples: int = 0
    bits: float | None = None
    channel_uses: int | None = None
    lost: int = 0

    def add(self, report: LinkReport) -> None:
        self.forwards += 1
        self.samples += report.samples
        self.lost += sum(report.lost)
        if report.bits is not None:
            self.bits = (self.bits or 0.0) + float(sum(report.bits))
        uses = [u for u in report.channel_uses if u is not None]
        if uses:
            self.channel_uses = (self.channel_uses or 0) + int(sum(uses))

    @property
    def bits_per_sample(self) -> float | None:
        return None if self.bits is None or not self.samples else self.bits / self.samples

    @property
    def channel_uses_per_sample(self) -> float | None:
        return None if self.channel_uses is None or not self.samples else self.channel_uses / self.samples


class CodecLink(nn.Module):
    """A codec and a channel as a transform: device encode, the link and receiver decode, in any
    torch model's forward pass (``split_at(model, path, transform=CodecLink(...))``).

    :param codec: a codec of features (a :class:`~intelliflow.codec.Codec`, or a name or mapping
        :func:`~intelliflow.codec.resolve_codec` takes: ``"quantize-8"``, a checkpoint folder,
        ``{"name": "hyperprior", "in_channels": 128}`` builds an untrained one).
    :param channel: an analog channel, its name or config (``"none"``: an ideal link). Byte payloads
        ride the 5G :class:`~intelliflow.channels.DigitalLink` over it (``link``: its options, as
        :class:`~intelliflow.flow.Flow` takes them), symbols go through it.
    :param snr_db: the channel's SNR (dB; a number, or a [B] tensor in training); needed for a channel.
    :param q: the rate point of a variable-rate byte codec (number or [B] tensor; default its highest).
    :param symbols: the symbol channels a JSCC codec sends (default all).
    :param mcs: ``"auto"`` (link adaptation per payload) or a fixed MCS index, for byte payloads.
    :param ideal: send byte payloads over an error-free link whatever the channel.
    :param grid: ``(H, W)`` for token features ``[B, N, D]`` whose grid is not square.
    :param framing: ``"stream"`` or ``"file"`` payloads (see :class:`~intelliflow.flow.Flow`).

    ``q``, ``snr_db``, ``symbols``, ``mcs`` and ``ideal`` are attributes: set them between forward passes.
    In training mode (``link.train()``; a learned codec's own mode when the link is built) the pass
    is differentiable; in eval mode it is the real thing. ``link.eval()`` after training builds
    a learned byte codec's entropy tables (``codec.update()``). Fixed codecs always run the real
    thing. ``last`` is the :class:`LinkReport` of the last forward pass, ``totals`` the
    :class:`LinkTotals` since the start; in eval mode ``last_sent`` is what the device sent
    (:class:`~intelliflow.flow.endpoints.Sent`: the payloads or symbols), in training mode
    ``last_pass`` is :meth:`Flow.forward`'s dict (``bits`` [B] with gradients, ``aux_loss``, ...)
    for the objective.
    """

    def __init__(self, codec: Any, channel: Any = "none", snr_db=None, q=None, symbols: int | None = None,
                 mcs: int | str = "auto", ideal: bool = False, link: dict | None = None,
                 grid: tuple[int, int] | None = None, framing: str = "stream"):
        super().__init__()
        from .flow import Flow

        if isinstance(codec, (str, Mapping)):   # a name, or the config of an untrained codec
            codec = resolve_codec(codec)
        if codec.takes != "features":
            raise ConfigError(f"a codec link codes features, and the {codec.name} codec takes {codec.takes}s: "
                              "use a codec of features (quantize-8, identity, hyperprior, jscc, ...)")
        self._split = _HookedSplit()
        self.flow = Flow(self._split, codec, channel, trainable="none", link=link, framing=framing)
        self.q, self.snr_db, self.symbols, self.mcs, self.ideal = q, snr_db, symbols, mcs, ideal
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))
        self.last: LinkReport | None = None
        self.last_sent = None
        self.last_pass: dict | None = None
        self.totals = LinkTotals()
        nn.Module.train(self, bool(codec.learned and codec.training))

    @property
    def codec(self):
        return self.flow.codec

    @property
    def channel(self):
        return self.flow.channel

    def reset(self) -> None:
        """Start the totals afresh."""
        self.totals = LinkTotals()

    def train(self, mode: bool = True) -> "CodecLink":
        """Training (``True``) or eval mode; leaving training builds a learned byte codec's entropy tables."""
        was = self.training
        super().train(mode)
        codec = self.codec
        if was and not mode and codec.learned and codec.sends == "bytes":
            codec.update()
        return self

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, D, H, W] | [B, N, D] | [B, D] -> what the receiver decoded, the same shape and dtype."""
        if not isinstance(features, torch.Tensor) or not features.is_floating_point():
            raise ShapeError(f"a codec link codes float features, got {getattr(features, 'dtype', type(features))}")
        grid, prefix = feature_layout(features.shape, self.grid)
        if features.dim() == 4:
            tokens = grid_to_tokens(features.float())
        elif features.dim() == 2:
            tokens = features.float()[:, None, :]
        else:
            tokens = features.float()
        self._split.see(tokens, grid, prefix)
        b = tokens.shape[0]
        codec = self.codec
        snr = self.snr_db
        if codec.sends == "symbols" and snr is None and self.flow.channel_name == "none":
            snr = 0.0   # an ideal link passes the symbols on (the decoder assumes 0 dB), as Flow.caption does
        if self.training and codec.learned:
            out = self.flow(features=tokens, snr_db=snr, q=self.q, symbols=self.symbols)
            received = out["features_hat"]
            bits = None if out["bits"] is None else out["bits"].detach().float().tolist()
            uses = out["channel_uses"]
            self.last_pass, self.last_sent = out, None
            self.last = LinkReport(bits, [uses] * b, [False] * b, estimated=True, mcs=[None] * b,
                                   transmissions=[None] * b)
        else:
            if isinstance(snr, torch.Tensor) and snr.numel() != 1:
                raise ConfigError("a codec link in eval mode sends a batch at one SNR: set snr_db to a number")
            x, front = tokens_to_grid(tokens.detach(), grid, prefix)
            done = self.flow.transmit(x, front if prefix else None, snr_db=None if snr is None else float(snr),
                                      q=self.q, symbols=self.symbols, mcs=self.mcs, ideal=self.ideal)
            received = tokens.new_zeros(tokens.shape)
            if done.delivered:
                received[done.delivered] = done.decoded.to(tokens.dtype)
            self.last_pass, self.last_sent = None, done.sent
            self.last = LinkReport(None if codec.sends == "symbols" else done.payload_bits, done.channel_uses,
                                   done.lost, mcs=done.mcs, transmissions=done.transmissions)
        self.totals.add(self.last)
        if features.dim() == 4:
            received = received.transpose(1, 2).reshape(features.shape)
        elif features.dim() == 2:
            received = received[:, 0]
        return received.to(features.dtype).contiguous(memory_format=_layout(features))


__all__ = ["CodecLink", "LinkReport", "LinkTotals", "feature_layout"]
