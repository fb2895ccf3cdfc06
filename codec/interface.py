"""The one codec interface: what every codec takes, what it sends, its rate knob, and its two calls.

A codec sits between the device and the receiver::

    device:   x (features | image | caption) ─► codec.encode(x, **rate) ─► payload
    link:     payload ─► bytes over a digital link | symbols through an analog channel
    receiver: payload ─► codec.decode(payload, **context) ─► x̂ (the same kind as x)

Every codec declares, as class attributes:

- ``takes``: ``"features"`` (the split model's head output on its grid, ``[B, D, H, W]``),
  ``"image"`` (PIL images: the receiver runs the whole model) or ``"caption"`` (text the device
  computed itself);
- ``sends``: ``"bytes"`` (one self-contained payload per image, for a digital link; rate =
  ``8 * len(payload)``) or ``"symbols"`` (complex channel symbols ``[B, n]`` with unit mean energy,
  for an analog channel; rate = ``n`` channel uses);
- ``rate``: the knob ``encode`` takes per call (:class:`RateKnob`), or ``None`` when the rate is
  fixed when the codec is built (``jpeg-30``, ``quantize-6``);
- ``learned``: whether the codec has trained weights (then it has a training pass, :meth:`Codec.train_pass`).

Codecs are stateless between ``encode`` and ``decode``: the receiver gives ``decode`` everything
it needs (the feature ``grid`` for symbols, the SNR and noise levels for an analog decoder).
Nothing outside :mod:`intelliflow.codec` asks what type a codec is: it reads these attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Sequence

if TYPE_CHECKING:  # torch loads only where a codec computes
    import torch

Takes = Literal["features", "image", "caption"]
Sends = Literal["bytes", "symbols"]


@dataclass(frozen=True)
class RateKnob:
    """The per-call rate option of a codec: ``encode(x, **{name: value})`` with ``low <= value <= high``.

    :ivar name: the keyword ``encode`` takes (``"q"``: rate point; ``"symbols"``: symbol channels sent).
    :ivar low, high: the range (inclusive); ``None`` for ``high`` when it depends on the instance.
    :ivar unit: what the value means, for messages and plots.
    """

    name: str
    low: float
    high: float | None
    unit: str


class Codec:
    """Base of every codec (mixed into ``nn.Module`` or CompressAI's ``CompressionModel`` where the
    codec has weights). Subclasses set the class attributes and implement :meth:`encode` and
    :meth:`decode`; the registry (:func:`intelliflow.codec.registry.register_codec`) sets
    ``registered_name``."""

    takes: ClassVar[Takes] = "features"
    sends: ClassVar[Sends] = "bytes"
    rate: ClassVar[RateKnob | None] = None
    learned: ClassVar[bool] = False
    #: the payload is meant for an ideal link only (the identity ceiling's raw float32 features)
    ideal_link_only: ClassVar[bool] = False
    #: what a loaded checkpoint was trained for (``model``, ``split``, ...; empty for fixed codecs)
    trained_for: ClassVar[dict] = {}
    #: the registry's name of this codec class (set by ``register_codec``)
    registered_name: ClassVar[str] = ""
    #: the 4-bit kind in the payload header (:mod:`intelliflow.codec.bitstream`), where the codec writes one
    payload_id: ClassVar[int | None] = None
    #: the codec's payloads have a per-image header that a stream context can replace (stream mode:
    #: :meth:`stream_context`; ``encode`` and ``decode`` then take ``stream=``)
    streams: ClassVar[bool] = False
    #: the codec codes a side message (a draft's tokens, :mod:`intelliflow.codec.tokens`) in its own
    #: entropy-coded message: ``encode(..., side=[writer per image])`` calls ``writer(encoder)``
    #: after its own symbols, ``decode(..., side=reader)`` calls ``reader(decoder)`` after them
    carries_side: ClassVar[bool] = False

    # ------------------------------------------------------------------ the two calls
    def encode(self, x: Any, **options) -> Any:
        """Device side: ``x`` (see ``takes``) -> what goes on the link (see ``sends``)."""
        raise NotImplementedError

    def decode(self, payload: Any, **context) -> Any:
        """Receiver side: what came off the link -> ``x̂`` (the same kind ``encode`` took).

        Codecs that take features accept ``expected=(C, H, W)``, the feature shape the receiver's
        model needs; a payload that declares another shape is refused before it is decoded.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ descriptions
    @property
    def name(self) -> str:
        """The name that resolves back to an equivalent codec (``jpeg-30``, ``quantize-6``, or the
        shipped name or folder a learned codec was loaded from)."""
        return getattr(self, "checkpoint_name", None) or self.registered_name

    @property
    def family(self) -> str:
        """How results label the codec: ``analog`` (channel symbols), ``learned`` (trained digital
        codec) or ``bytes`` (a fixed byte-payload baseline); the identity codec says ``identity``."""
        if self.sends == "symbols":
            return "analog"
        return "learned" if self.learned else "bytes"

    def stream_context(self, grid: tuple[int, int], q: float | None = None, check: bool = False):
        """Stream mode (:class:`~intelliflow.codec.bitstream.StreamContext`): what sender and receiver
        agree once for a stream of feature grids ``grid`` = (H, W), at rate point ``q`` for every
        image (``None``: each payload carries its own, as a byte budget needs), with a check per
        payload or not (``check=False`` where the link checks). ``None`` for a codec whose payloads
        are always self-contained (see :attr:`streams`)."""
        return None

    def stream_for(self, grid: tuple[int, int], q=None, target_bytes=None, check: bool = False):
        """The stream context a sender agrees for encoding with these rate options (the one place the
        default is decided): the rate point per payload where a byte budget picks it image by image
        (``target_bytes``) or ``q`` is a per-image sequence or tensor; else ``q``, by default the
        codec's highest. ``None`` for a codec without stream mode."""
        if not self.streams:
            return None
        if target_bytes is not None or getattr(q, "ndim", 0) > 0 or isinstance(q, (list, tuple)):
            q = None
        elif q is None and self.rate is not None and self.rate.name == "q":
            q = self.rate_range()[1]
        return self.stream_context(grid, q=q, check=check)

    def rate_range(self) -> tuple[float, float] | None:
        """The rate knob's range on this codec (inclusive), ``None`` without a knob."""
        if self.rate is None:
            return None
        return self.rate.low, self.rate.high

    def rate_options(self, **values) -> dict:
        """The subset of ``values`` this codec's ``encode`` takes (its rate knob, ``target_bytes`` for a
        learned byte codec, ``snr_db`` for an analog one), ``None`` values dropped."""
        wanted = set()
        if self.rate is not None:
            wanted.add(self.rate.name)
        if self.sends == "bytes" and self.learned:
            wanted.add("target_bytes")
        if self.sends == "symbols":
            wanted.add("snr_db")
        return {k: v for k, v in values.items() if k in wanted and v is not None}

    def train_pass(self, grid, **options) -> dict:
        """Training (learned codecs only): the differentiable forward. Byte codecs return
        ``{"f_hat", "likelihoods", "bits" [B], "aux_loss"}``; symbol codecs are trained through
        the channel by the caller with :meth:`encode` and :meth:`decode`."""
        from intelliflow.errors import ConfigError

        raise ConfigError(f"{self.name} is a fixed codec: it has no training pass; use Flow.caption")


def check_expected(found: tuple[int, ...], expected: tuple[int, ...] | None, what: str) -> None:
    """Refuse a payload whose declared shape is not the one the receiver expects, before any decoding
    work (a forged header could otherwise claim a huge latent): :class:`~intelliflow.errors.BitstreamError`."""
    from intelliflow.errors import BitstreamError

    if expected is not None and tuple(found) != tuple(expected):
        shown = lambda t: "x".join(map(str, t))  # noqa: E731
        raise BitstreamError(f"the payload declares {what} {shown(found)}; this receiver expects {shown(expected)}")


def grid_padding(height: int, width: int, step: int) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """The padding that makes a ``height`` x ``width`` grid a multiple of ``step`` on each side
    (CompressAI's :func:`compressai.ops.compute_padding`, spread evenly) and the grid the codec's
    stride-2 stages leave of it: ``(pad, (ceil(height / step), ceil(width / step)))``.

    >>> grid_padding(27, 37, 4)
    ((1, 2, 0, 1), (7, 10))
    """
    from compressai.ops import compute_padding

    pad, _ = compute_padding(height, width, min_div=step)
    return pad, ((height + pad[2] + pad[3]) // step, (width + pad[0] + pad[1]) // step)


def pad_grid(x: torch.Tensor, step: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad a grid [B, C, H, W] as :func:`grid_padding` says, so that H and W become multiples
    of ``step``; returns it and the padding that :func:`crop_grid` removes again. Any grid size
    codes this way: 27 x 27 and 37 x 37 included.

    >>> import torch
    >>> padded, pad = pad_grid(torch.ones(1, 2, 27, 37), 4)
    >>> tuple(padded.shape), crop_grid(padded, pad).shape == (1, 2, 27, 37)
    ((1, 2, 28, 40), True)
    """
    import torch.nn.functional as F

    pad, _ = grid_padding(x.shape[-2], x.shape[-1], step)
    return (F.pad(x, pad) if any(pad) else x), pad


def crop_grid(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_grid` on a decoded grid [B, C, H', W']."""
    left, right, top, bottom = pad
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right] if any(pad) else x


def reduce_layers(config: GridCodecConfig) -> tuple[Any, Any, int]:
    """The 1x1 layers of ``reduce_channels`` (before the 3x3 stages, after them) and the width the
    3x3 stages see; ``(None, None, D)`` with the reduction off (a codec's weights are then as
    they were)."""
    from torch import nn

    r = config.reduce_channels
    if not r:
        return None, None, config.in_channels
    return nn.Conv2d(config.in_channels, r, 1), nn.Conv2d(r, config.in_channels, 1), r


def check_batch(payloads: Sequence, what: str = "decode") -> list:
    """A non-empty list of per-image payloads, or :class:`~intelliflow.errors.BitstreamError`."""
    from intelliflow.errors import BitstreamError

    if isinstance(payloads, (bytes, bytearray, memoryview, str)) or not len(payloads):
        raise BitstreamError(f"{what} takes a non-empty list of payloads, one per image")
    return list(payloads)


@dataclass
class GridCodecConfig:
    """Sizes every convolutional codec of grid features shares: ``in_channels`` (the feature width
    ``D``), ``hidden_channels`` of its transforms and ``downsample`` stride-2 stages (0, 1 or 2).

    ``reduce_channels`` (0: off) makes wide features cheap to code: a 1x1 convolution first maps
    ``D`` to that width, the 3x3 stages run on it, and a 1x1 convolution maps back at the end (a
    3x3 convolution costs 9 times a 1x1 of the same widths, so at D = 1024 the two 1x1 layers cost
    a fraction of what 3x3 layers at D did).
    """

    in_channels: int = 192
    hidden_channels: int = 192
    downsample: int = 1
    reduce_channels: int = 0

    def __post_init__(self):
        from intelliflow.errors import ConfigError

        for name in ("in_channels", "hidden_channels", "reduce_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "reduce_channels" else 1):
                raise ConfigError(f"codec {name} must be a {'non-negative' if name == 'reduce_channels' else 'positive'} "
                                  f"integer, got {str(value)[:20]}")
        if self.downsample not in (0, 1, 2):
            raise ConfigError(f"codec downsample must be 0, 1 or 2, got {self.downsample}")
