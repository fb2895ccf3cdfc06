"""Digital feature codecs on CompressAI: real entropy-coded bitstreams of split features.

Features ``f`` [B, D, H, W] (the split model's tokens laid on its grid) are coded as in learned
image compression, with a gain per rate point for variable rate (Cui et al., "asymmetric gained"
codecs)::

    f ─► g_a ─► y ─► × gain(q) ─► Q ─► ŷ ─► entropy coder ─► bytes
                                   │
    f̂ ◄─ g_s ◄─ × gain⁻¹(q) ◄─ ŷ ◄─┘

- :class:`FactorizedFeatureCodec`: ``ŷ`` under CompressAI's ``EntropyBottleneck`` (a factorized
  prior, one learned density per channel).
- :class:`HyperpriorFeatureCodec`: a mean-scale hyperprior: ``z = h_a(y)`` goes through an
  ``EntropyBottleneck``, ``h_s(ẑ)`` gives the means and scales of a ``GaussianConditional`` for ``ŷ``;
  ``ẑ`` and ``ŷ`` share one entropy-coded stream (:mod:`intelliflow.codec.entropy_coding`).

The rate point ``q`` is continuous in ``[0, rate_points - 1]``: integer points have their own
learned gain vectors (monotonic in q with ``monotonic_gains``), points between them interpolate the
log-gains, so one trained codec covers the whole rate-quality curve. ``compress`` takes ``q`` or a
byte budget per image; a payload is self-contained, or a stream's body under a
:class:`~intelliflow.codec.bitstream.StreamContext` (:mod:`intelliflow.codec.bitstream`), and
decoding is bit-exact: ``decompress``
returns exactly what ``forward`` returns in eval mode.

Both implement :class:`~intelliflow.codec.interface.Codec` (takes features, sends bytes, rate knob
``q``): ``encode`` is CompressAI's ``compress`` and ``decode`` its ``decompress``.

>>> import torch
>>> codec = HyperpriorFeatureCodec(FeatureCodecConfig(in_channels=16, hidden_channels=16,
...                                                   latent_channels=8, hyper_channels=8)).eval()
>>> _ = codec.update()                               # build the entropy coder's tables
>>> features = torch.randn(1, 16, 8, 8)
>>> payloads = codec.encode(features, q=2.5)         # list of bytes, one per image
>>> f_hat = codec.decode(payloads)                   # [1, 16, 8, 8]
>>> torch.equal(f_hat, codec(features, q=2.5)["f_hat"])   # bit-exact: the eval forward of the same image
True
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import warnings

import torch
from torch import nn

with warnings.catch_warnings():  # compressai 1.2.6's video models use deprecated torch APIs at import time
    warnings.simplefilter("ignore", FutureWarning)
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional
    from compressai.layers import GDN
    from compressai.models import CompressionModel
    from compressai.models.utils import conv, deconv

from intelliflow.errors import BitstreamError, ConfigError, ShapeError

from . import bitstream
from .entropy_coding import Tables, entropy_coder
from .interface import (Codec, GridCodecConfig, RateKnob, check_batch, check_expected, crop_grid, grid_padding,
                        pad_grid, reduce_layers)
from .registry import register_codec

# Gaussian scale table: CompressAI's default stops at 256, whose 3,000-entry CDFs make every call
# slow; latent scales of feature codecs stay well below 32 (larger values are still coded, exactly).
SCALES_MIN, SCALES_MAX, SCALES_LEVELS = 0.11, 32.0, 64
#: what one coded element costs at most in :meth:`FeatureCodec.estimate_bits`: CompressAI's CDFs
#: have 16-bit precision (an escaped value costs more, but lies beyond the tables' 1e-9 tails)
MAX_SYMBOL_BITS = 16


def checked_mean_grid(value) -> tuple[int, int] | None:
    """A codec's ``mean_grid`` as ``(H, W)``, or ``None``; anything else is a :class:`ConfigError`."""
    if value is None:
        return None
    try:
        grid = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        grid = ()
    if len(grid) != 2 or not all(0 < v < 256 for v in grid):
        raise ConfigError(f"codec mean_grid must be [H, W] with H and W in 1..255, got {value!r}")
    return grid


@dataclass
class FeatureCodecConfig(GridCodecConfig):
    """Sizes of a digital feature codec. ``downsample`` stride-2 stages shrink the latent grid."""

    latent_channels: int = 64
    hyper_channels: int = 64
    rate_points: int = 6
    #: the quantisation gain of every latent channel never falls as q rises (the log-gain at point 0
    #: plus non-negative steps), so the rate rises with q; ``False``: one free gain vector per point
    #: (codecs trained before this option, whose neighbouring points could cross)
    monotonic_gains: bool = True
    #: the entropy coder of the payload body (:mod:`intelliflow.codec.entropy_coding`):
    #: ``arithmetic`` (within a few bits of the information), ``range`` (constriction's, about 16
    #: bits over it) or ``rans`` (CompressAI's, about 45)
    entropy_coder: str = "arithmetic"
    #: ``[H, W]``: the codec holds the mean of the training features on that grid ([D, H, W], set
    #: once from the first training batches), codes each image's difference from it and adds it back.
    #: What every image shares (at an early split point mostly the positional embedding, which a
    #: convolutional decoder cannot synthesise by position) then costs no bits. The codec takes
    #: that grid only. ``None``: features are coded as they are.
    mean_grid: tuple[int, int] | None = None

    def __post_init__(self):
        super().__post_init__()
        self.mean_grid = checked_mean_grid(self.mean_grid)
        for name in ("latent_channels", "hyper_channels", "rate_points"):
            if getattr(self, name) < 1:
                raise ConfigError(f"codec {name} must be positive, got {getattr(self, name)}")
        from .entropy_coding import ENTROPY_CODERS

        if self.entropy_coder not in ENTROPY_CODERS:
            raise ConfigError(f"codec entropy_coder must be one of {', '.join(ENTROPY_CODERS)}, got {self.entropy_coder!r}")
        if self.rate_points > 16:
            raise ConfigError(f"codec rate_points must be at most 16 (the header stores q in 1/16 steps), "
                              f"got {self.rate_points}")


def _analysis(c: FeatureCodecConfig, reduce: nn.Module | None, width: int) -> nn.Sequential:
    layers: list[nn.Module] = [reduce] if reduce is not None else []
    layers += [conv(width, c.hidden_channels, 3, 1), GDN(c.hidden_channels)]
    for _ in range(c.downsample - 1):
        layers += [conv(c.hidden_channels, c.hidden_channels, 3, 2), GDN(c.hidden_channels)]
    layers.append(conv(c.hidden_channels, c.latent_channels, 3, 2 if c.downsample else 1))
    return nn.Sequential(*layers)


def _synthesis(c: FeatureCodecConfig, expand: nn.Module | None, width: int) -> nn.Sequential:
    first = deconv(c.latent_channels, c.hidden_channels, 3, 2) if c.downsample else \
        conv(c.latent_channels, c.hidden_channels, 3, 1)
    layers: list[nn.Module] = [first, GDN(c.hidden_channels, inverse=True)]
    for _ in range(c.downsample - 1):
        layers += [deconv(c.hidden_channels, c.hidden_channels, 3, 2), GDN(c.hidden_channels, inverse=True)]
    layers.append(conv(c.hidden_channels, width, 3, 1))
    if expand is not None:
        layers.append(expand)
    return nn.Sequential(*layers)


class FeatureCodec(CompressionModel, Codec):
    """Shared machinery: transforms, variable-rate gains, payload format, rate estimates."""

    takes, sends, learned, streams, carries_side = "features", "bytes", True, True, True
    rate = RateKnob("q", 0.0, None, "rate point (0 .. rate_points - 1)")

    def __init__(self, config: FeatureCodecConfig | None = None):
        super().__init__()
        self.config = config or FeatureCodecConfig()
        c = self.config
        reduce, expand, width = reduce_layers(c)   # 1x1 layers around the 3x3 stages, or none
        self.g_a = _analysis(c, reduce, width)
        self.g_s = _synthesis(c, expand, width)
        # log-gains per rate point, increasing with q at initialisation (finer quantisation)
        init = torch.linspace(-3.0, 2.0, c.rate_points)[:, None].expand(-1, c.latent_channels) * math.log(2)
        if c.monotonic_gains:   # log-gain at point 0 [M] + softplus(steps) [R - 1, M], each step >= 0
            self.log_gain_start = nn.Parameter(init[0].clone())
            step = math.log(2) * 5.0 / max(c.rate_points - 1, 1)
            self.log_gain_steps = nn.Parameter(torch.full((c.rate_points - 1, c.latent_channels),
                                                          math.log(math.expm1(step))))
        else:
            self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init.clone())
        self._fingerprint: bytes | None = None
        self._coding_tables: dict | None = None
        self.coder = entropy_coder(c.entropy_coder)
        if c.mean_grid is not None:
            self.register_buffer("feature_mean", torch.zeros(c.in_channels, *c.mean_grid))

    def set_feature_mean(self, features: torch.Tensor) -> None:
        """Store the mean of training features [N, D, H, W] (on the ``mean_grid``) as the part every
        image shares: coded images are differences from it (only for a codec with ``mean_grid``)."""
        if self.config.mean_grid is None:
            raise ConfigError("this codec has no mean_grid: it codes features as they are")
        self._check_features(features)
        self.feature_mean.copy_(features.detach().float().mean(0))
        self._fingerprint = None   # the mean is part of the weights the fingerprint digests

    def _centre(self, f: torch.Tensor) -> torch.Tensor:
        return f - self.feature_mean.to(f.dtype) if self.config.mean_grid is not None else f

    def _uncentre(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.feature_mean.to(f.dtype) if self.config.mean_grid is not None else f

    # ------------------------------------------------------------------ rate points
    @property
    def max_q(self) -> float:
        return float(self.config.rate_points - 1)

    def rate_range(self) -> tuple[float, float]:
        return 0.0, self.max_q

    def _q_tensor(self, q, batch: int, device) -> torch.Tensor:
        q = torch.as_tensor(self.max_q if q is None else q, dtype=torch.float32, device=device)
        if q.dim() == 0:
            q = q.expand(batch)
        if q.shape != (batch,):
            raise ShapeError(f"q must be a number or a tensor [B={batch}], got shape {list(q.shape)}")
        if (q < 0).any() or (q > self.max_q).any():
            raise ConfigError(f"rate point q must lie in [0, {self.max_q}], got {q.tolist()}")
        return q

    def log_gains(self) -> torch.Tensor:
        """The quantisation log-gain of every rate point and latent channel [R, M]."""
        if not self.config.monotonic_gains:
            return self.log_gain
        steps = nn.functional.softplus(self.log_gain_steps)
        return torch.cat([self.log_gain_start[None], self.log_gain_start[None] + steps.cumsum(0)])

    def gains(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image gain and inverse gain [B, M, 1, 1] at rate points ``q`` [B] (log-linear interpolation)."""
        lo = q.floor().long().clamp(max=self.config.rate_points - 1)
        hi = (lo + 1).clamp(max=self.config.rate_points - 1)
        t = (q - lo.float())[:, None]
        log_gain = self.log_gains()
        g = (1 - t) * log_gain[lo] + t * log_gain[hi]
        ig = (1 - t) * self.log_inv_gain[lo] + t * self.log_inv_gain[hi]
        return g.exp()[..., None, None], ig.exp()[..., None, None]

    # ------------------------------------------------------------------ checks
    @property
    def step(self) -> int:
        """How much the transforms shrink the grid (2 ** downsample); other sizes are padded to it."""
        return 2 ** self.config.downsample

    def _check_features(self, f: torch.Tensor) -> None:
        if f.dim() != 4 or f.shape[1] != self.config.in_channels or not 0 < f.shape[2] < 256 or not 0 < f.shape[3] < 256:
            raise ShapeError(f"features must be [B, {self.config.in_channels}, H, W] with H and W in 1..255, "
                             f"got {list(f.shape)}")
        if self.config.mean_grid is not None and tuple(f.shape[-2:]) != self.config.mean_grid:
            raise ShapeError(f"this codec codes differences from its training features' mean on the "
                             f"{self.config.mean_grid[0]}x{self.config.mean_grid[1]} grid, got a "
                             f"{f.shape[-2]}x{f.shape[-1]} grid")

    # ------------------------------------------------------------------ training / estimation
    def forward(self, f: torch.Tensor, q=None) -> dict:
        """Training and estimation: ``{"f_hat" [B, D, H, W], "likelihoods": {name: tensor}}``.

        In training mode quantisation is CompressAI's additive-noise proxy; in eval mode it is
        rounding, and ``f_hat`` equals what ``decompress(compress(f, q))`` returns. Under
        ``torch.autocast`` the transforms run in the reduced precision and the entropy model
        (quantisation, hyperprior, likelihoods) in float32.
        """
        self._check_features(f)
        gain, inv_gain = self.gains(self._q_tensor(q, f.shape[0], f.device))
        padded, pad = pad_grid(self._centre(f), self.step)
        y = self.g_a(padded) * gain
        with torch.autocast(y.device.type, enabled=False):   # the entropy model in full precision, always
            y_hat, likelihoods = self._entropy_forward(y if y.dtype in (torch.float32, torch.float64) else y.float())
        return {"f_hat": self._uncentre(crop_grid(self.g_s(y_hat * inv_gain), pad)), "likelihoods": likelihoods,
                "y_hat": y_hat}

    @staticmethod
    def likelihood_bits(likelihoods: dict) -> torch.Tensor:
        """Rate of ``forward``'s likelihoods: bits per image [B] (CompressAI bounds them below by 1e-9)."""
        return sum(-torch.log2(l).flatten(1).sum(1) for l in likelihoods.values())

    def estimate_bits(self, f: torch.Tensor, q=None) -> torch.Tensor:
        """Likelihood estimate of the payload bits per image [B], header excluded: each element's
        information, counted at most :data:`MAX_SYMBOL_BITS` (the coders' 16-bit tables give every
        symbol at least 1/65536, while CompressAI's likelihoods go down to 1e-9, 29.9 bits: an
        entropy model trained for a few thousand steps leaves enough elements that far out to
        overstate its payloads by up to 12 %). ``likelihood_bits``, the training rate, is unbounded."""
        with torch.no_grad():
            likelihoods = self.forward(f, q)["likelihoods"]
            return self.likelihood_bits({k: l.clamp_min(2.0 ** -MAX_SYMBOL_BITS) for k, l in likelihoods.items()})

    # ------------------------------------------------------------------ bitstreams
    def update(self, scale_table=None, force: bool = True, update_quantiles: bool = False) -> bool:
        """Build the entropy coder's tables (call after training and before ``compress``)."""
        if scale_table is None:
            scale_table = torch.exp(torch.linspace(math.log(SCALES_MIN), math.log(SCALES_MAX), SCALES_LEVELS))
        self._fingerprint = self._coding_tables = None
        return super().update(scale_table=scale_table, force=force, update_quantiles=update_quantiles)

    def load_state_dict(self, state_dict, strict: bool = True):
        self._fingerprint = self._coding_tables = None
        return super().load_state_dict(state_dict, strict=strict)

    @property
    def fingerprint(self) -> bytes:
        """Digest of the configuration, weights and entropy tables; enters every payload's CRC."""
        if self._fingerprint is None:
            tensors = [t for _, t in sorted(self.state_dict().items())]
            self._fingerprint = bitstream.fingerprint(self.registered_name, json.dumps(asdict(self.config), sort_keys=True),
                                                      *tensors)
        return self._fingerprint

    def tables(self, name: str) -> Tables:
        """The entropy coder's tables of the entropy model ``name`` (built by :meth:`update`)."""
        if self._coding_tables is None:
            self._coding_tables = {}
        if name not in self._coding_tables:
            self._coding_tables[name] = Tables.of(getattr(self, name))
        return self._coding_tables[name]

    def _tables_ready(self) -> None:
        for name in ("entropy_bottleneck", "gaussian_conditional"):
            module = getattr(self, name, None)
            if module is not None and module._quantized_cdf.numel() == 0:
                raise ConfigError("the codec's entropy tables are not built: call codec.update() after training")

    def train_pass(self, grid: torch.Tensor, q=None, **_) -> dict:
        """Training: ``{"f_hat" [B, D, H, W], "likelihoods", "bits" [B], "aux_loss"}`` (the noise proxy in
        train mode; ``aux_loss`` is CompressAI's quantile fit, computed here so DDP sees it in the forward)."""
        coded = self(grid, q)
        return {"f_hat": coded["f_hat"], "likelihoods": coded["likelihoods"],
                "bits": self.likelihood_bits(coded["likelihoods"]), "aux_loss": self.aux_loss()}

    def encode(self, features: torch.Tensor, q=None, target_bytes=None,
               stream: bitstream.StreamContext | None = None, side=None) -> list[bytes]:
        """Device side: features [B, D, H, W] -> one payload per image (see :meth:`compress`)."""
        return self.compress(features, q=q, target_bytes=target_bytes, stream=stream, side=side)

    def decode(self, payloads: Sequence[bytes], expected: tuple[int, int, int] | None = None,
               stream: bitstream.StreamContext | None = None, side=None, **_) -> torch.Tensor:
        """Receiver side: payloads -> features [B, D, H, W] (see :meth:`decompress`)."""
        return self.decompress(payloads, expected=expected, stream=stream, side=side)

    def stream_context(self, grid: tuple[int, int], q: float | None = None, check: bool = False
                       ) -> bitstream.StreamContext:
        if q is not None:
            q = float(self._q_tensor(q, 1, "cpu")[0])
        # CompressAI's rANS decoder reads past the end of a damaged stream: its payloads keep their check
        return bitstream.StreamContext(self.payload_id, int(grid[0]), int(grid[1]),
                                       None if q is None else int(round(q * 16)), check or self.coder.name == "rans")

    @torch.no_grad()
    def compress(self, f: torch.Tensor, q=None, target_bytes: int | Sequence[int] | None = None,
                 stream: bitstream.StreamContext | None = None, side=None) -> list[bytes]:
        """Features [B, D, H, W] -> one payload per image: self-contained, or the body (and what the
        context leaves to it) of a stream's payload under ``stream`` (:meth:`stream_context`).

        Give a rate point ``q`` (number or [B] tensor, default the highest; a stream with its own
        rate point takes that one) or ``target_bytes`` (per image): then each image gets the
        highest rate point, in 1/16 steps, whose payload fits (the side message included).
        ``side``: one writer per image, ``writer(encoder)``, that codes a side message (a draft)
        after the image's latents in the same entropy-coded message (:attr:`carries_side`).
        """
        if side is not None and len(side) != f.shape[0]:
            raise ShapeError(f"side needs one writer per image ({f.shape[0]}), got {len(side)}")
        self._check_features(f)
        self._tables_ready()
        if stream is not None and stream.q16 is not None:
            if target_bytes is not None:
                raise ConfigError("a stream agreed at one rate point takes no byte budget: agree it with q=None")
            if q is not None and ((self._q_tensor(q, f.shape[0], "cpu") * 16).round().long() != stream.q16).any():
                raise ConfigError(f"the stream was agreed at q={stream.q16 / 16}, not q={q}")
            q = stream.q16 / 16
        if target_bytes is not None:
            return self._compress_to_budget(f, target_bytes, stream, side)
        q16 = (self._q_tensor(q, f.shape[0], f.device) * 16).round().long()
        return self._compress_q16(f, q16, stream, side)

    def _compress_q16(self, f: torch.Tensor, q16: torch.Tensor, stream=None, side=None) -> list[bytes]:
        streams = self._latent_streams(f, q16, side)
        h, w = f.shape[-2:]  # the header holds the feature grid; the latent grid follows from it
        return [bitstream.pack(self.payload_id, int(q16[i]), h, w, streams[i], self.fingerprint, stream)
                for i in range(f.shape[0])]

    def _latent_streams(self, f: torch.Tensor, q16: torch.Tensor, side=None) -> list[bytes]:
        """Grids [B, D, H, W] at rate points ``q16`` [B] -> one entropy-coded body per image."""
        gain, _ = self.gains(q16.float() / 16)
        return self._entropy_compress(self.g_a(pad_grid(self._centre(f), self.step)[0]) * gain, side)

    def _grid_from_body(self, body: bytes, grid: tuple[int, int], q16: int, side=None) -> torch.Tensor:
        """One image's entropy-coded body -> its grid [1, D, H, W] (``grid`` = (H, W))."""
        pad, latent = grid_padding(*grid, self.step)
        y_hat = self._entropy_decompress(body, latent, side)
        _, inv_gain = self.gains(torch.tensor([q16 / 16], device=self.log_inv_gain.device))
        return self._uncentre(crop_grid(self.g_s(y_hat * inv_gain), pad))

    def _compress_to_budget(self, f: torch.Tensor, target_bytes, stream=None, side=None) -> list[bytes]:
        budgets = [int(target_bytes)] * f.shape[0] if isinstance(target_bytes, (int, float)) else list(target_bytes)
        if len(budgets) != f.shape[0]:
            raise ShapeError(f"target_bytes needs one budget per image ({f.shape[0]}), got {len(budgets)}")
        out = []
        top = int(self.max_q * 16)
        for i in range(f.shape[0]):
            x, mine = f[i:i + 1], None if side is None else side[i:i + 1]
            lo, hi = 0, top  # find the largest q16 whose payload fits (rate grows with q)
            best = self._compress_q16(x, torch.tensor([0]), stream, mine)[0]
            while lo < hi:
                mid = (lo + hi + 1) // 2
                payload = self._compress_q16(x, torch.tensor([mid]), stream, mine)[0]
                if len(payload) <= budgets[i]:
                    lo, best = mid, payload
                else:
                    hi = mid - 1
            out.append(best)
        return out

    @torch.no_grad()
    def decompress(self, payloads: Sequence[bytes], expected: tuple[int, int, int] | None = None,
                   stream: bitstream.StreamContext | None = None, side=None) -> torch.Tensor:
        """Payloads -> features [B, D, H, W]. Damaged or foreign payloads raise :class:`BitstreamError`
        (in a stream without a check per payload, damage the link did not catch decodes to something).

        :param expected: the feature shape ``(D, H, W)`` the receiver needs; a payload whose header
            (or stream) declares another feature grid is refused before entropy decoding.
        :param stream: the :class:`~intelliflow.codec.bitstream.StreamContext` the payloads were coded in.
        :param side: ``reader(decoder)``, called for each payload after its latents: it reads the
            side message :meth:`compress` coded there (and keeps what it read).
        """
        payloads = check_batch(payloads, "decompress")
        self._tables_ready()
        outputs = []
        self._check_width(expected)
        for data in payloads:
            packet = self._unpack_checked(data, expected, stream)
            grid = (packet.height, packet.width)
            outputs.append(self._grid_from_body(packet.body, grid, packet.q16, side))
        return torch.cat(outputs)

    def _check_width(self, expected: tuple[int, int, int] | None) -> None:
        """Refuse a receiver whose features are not this codec's width, before any payload."""
        if expected is not None and expected[0] != self.config.in_channels:
            raise ConfigError(f"this codec codes {self.config.in_channels}-wide features, the receiver expects "
                              f"{expected[0]}")

    def _unpack_checked(self, data: bytes, expected: tuple[int, int, int] | None,
                        stream: bitstream.StreamContext | None) -> bitstream.Packet:
        """One payload's checked header: its integrity, a rate point in range and the grid the
        receiver expects (:class:`BitstreamError` otherwise)."""
        packet = bitstream.unpack(data, self.payload_id, self.fingerprint, stream)
        if packet.q16 > self.max_q * 16:
            raise BitstreamError(f"rate point {packet.q} is beyond this codec's maximum {self.max_q}")
        mean_grid = self.config.mean_grid
        if mean_grid is not None and (packet.height, packet.width) != mean_grid:
            raise BitstreamError(f"the payload declares a {packet.height}x{packet.width} grid; this codec codes "
                                 f"only {mean_grid[0]}x{mean_grid[1]}")
        check_expected((packet.height, packet.width), None if expected is None else tuple(expected[1:]),
                       "a feature grid of")
        return packet

    # ------------------------------------------------------------------ per entropy model
    def _entropy_forward(self, y):
        raise NotImplementedError

    def _entropy_compress(self, y, side=None) -> list[bytes]:
        """Latents [B, M, h, w] -> one entropy-coded stream per image (each with its side message)."""
        raise NotImplementedError

    def _entropy_decompress(self, stream: bytes, size, side=None) -> torch.Tensor:
        """One image's stream -> ŷ [1, M, h, w] (its side message read by ``side``)."""
        raise NotImplementedError


@register_codec("factorized", config=FeatureCodecConfig, payload_id=1)
class FactorizedFeatureCodec(FeatureCodec):
    """Factorized prior: ``ŷ`` coded with one learned density per latent channel (``EntropyBottleneck``)."""

    def __init__(self, config: FeatureCodecConfig | None = None):
        super().__init__(config)
        self.entropy_bottleneck = EntropyBottleneck(self.config.latent_channels)

    def _entropy_forward(self, y):
        y_hat, likelihoods = self.entropy_bottleneck(y)
        return y_hat, {"y": likelihoods}

    def _entropy_compress(self, y, side=None):
        eb = self.entropy_bottleneck
        symbols = eb.quantize(y, "symbols", eb._get_medians().detach().reshape(1, -1, 1, 1))
        indexes = eb._build_indexes(symbols.size())
        streams = []
        for i in range(y.shape[0]):
            encoder = self.coder.encoder()
            encoder.encode(symbols[i].reshape(-1).tolist(), indexes[i].reshape(-1).tolist(),
                           self.tables("entropy_bottleneck"))
            if side is not None:
                side[i](encoder)
            streams.append(encoder.finish())
        return streams

    def _entropy_decompress(self, stream, size, side=None):
        eb = self.entropy_bottleneck
        indexes = eb._build_indexes((1, self.config.latent_channels, *size))
        decoder = self.coder.decoder(stream)
        values = decoder.decode(indexes.reshape(-1).tolist(), self.tables("entropy_bottleneck"))
        if side is not None:
            side(decoder)
        symbols = torch.tensor(values, dtype=torch.float32, device=self.log_inv_gain.device).reshape(indexes.shape)
        return eb.dequantize(symbols, eb._get_medians().detach().reshape(1, -1, 1, 1))


@register_codec("hyperprior", config=FeatureCodecConfig, payload_id=2)
class HyperpriorFeatureCodec(FeatureCodec):
    """Mean-scale hyperprior: ``z = h_a(y)`` (``EntropyBottleneck``) gives ``ŷ``'s Gaussian means and scales."""

    def __init__(self, config: FeatureCodecConfig | None = None):
        super().__init__(config)
        c = self.config
        self.h_a = nn.Sequential(conv(c.latent_channels, c.hyper_channels, 3, 1), nn.LeakyReLU(inplace=True),
                                 conv(c.hyper_channels, c.hyper_channels, 3, 1))
        self.h_s = nn.Sequential(conv(c.hyper_channels, c.hyper_channels, 3, 1), nn.LeakyReLU(inplace=True),
                                 conv(c.hyper_channels, 2 * c.latent_channels, 3, 1))
        self.entropy_bottleneck = EntropyBottleneck(c.hyper_channels)
        self.gaussian_conditional = GaussianConditional(None)

    #: coded means are rounded to this grid (exact in float32), so that the last-bit differences
    #: of another device, thread count or batch size cannot reach them
    MEANS_GRID = 2.0 ** -16

    def _params(self, z_hat):
        """Training: ŷ's scales and means from ẑ, on the codec's device, with gradients."""
        scales, means = self.h_s(z_hat).chunk(2, dim=1)
        return nn.functional.softplus(scales), means

    def _coded_params(self, z_hat):
        """Coding: ŷ's scales (float64, CPU) and means (float32, rounded to :attr:`MEANS_GRID`, on the
        codec's device) from ẑ.

        The hyper-synthesis runs on the CPU in float64, whatever device the codec is on, and the
        means are rounded to a grid: encoder and decoder then agree on every CDF index and mean by
        construction, so a payload encoded on a GPU decodes bit-exactly on a CPU and the other way
        round (a float32 convolution on another device, thread count or batch size differs in the
        last bit; in float64 that difference is ~1e-16, far below the grid and the scale table's
        spacing). ẑ is exact on every device: integers plus the medians.
        """
        device = z_hat.device
        z_hat = z_hat.detach().float().to("cpu", torch.float64)   # float32 first: integers + medians, as sent
        out = self._h_s_float64()(z_hat)
        scales, means = out.chunk(2, dim=1)
        means = (torch.round(means / self.MEANS_GRID) * self.MEANS_GRID).to(device, torch.float32)
        return nn.functional.softplus(scales), means

    def _h_s_float64(self) -> nn.Module:
        """A float64 CPU copy of ``h_s`` for :meth:`_coded_params`, rebuilt when its weights change
        (a copy, not a parameter swap: receivers decode in several threads at once)."""
        key = tuple((p.data_ptr(), p._version, str(p.device)) for p in self.h_s.parameters())
        cached = self.__dict__.get("_h_s64")
        if cached is None or cached[0] != key:
            copy64 = copy.deepcopy(self.h_s).to("cpu", torch.float64).requires_grad_(False)
            self.__dict__["_h_s64"] = cached = (key, copy64)
        return cached[1]

    def _entropy_forward(self, y):
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(y))
        if self.training:
            scales, means = self._params(z_hat)
        else:  # the coded path: exactly what compress / decompress use
            scales, means = self._coded_params(z_hat)
            scales = scales.to(y.device, y.dtype)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    # z and y share one entropy-coded stream (as CompressAI's autoregressive models share one rANS
    # stream): one coder termination per image instead of two.
    def _z_medians(self) -> torch.Tensor:
        """The hyper-latent's per-channel medians [1, C, 1, 1], the offset of its symbols."""
        return self.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)

    def _y_entropy_params(self, z_values: list[int], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """ŷ's CDF indexes and means [1, M, h, w] from one image's hyper-latent symbols.

        This is the decoder's computation, and the encoder repeats it image by image on the same
        integers, through :meth:`_coded_params`: a scale that landed on a boundary of the scale
        table would otherwise pick another CDF on each side, and the rANS stream would desynchronise
        and decode to garbage (or, reading past its end, to something different on every call).
        """
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        z_shape = (1, self.config.hyper_channels, *size)
        z_hat = eb.dequantize(torch.tensor(z_values, dtype=torch.float32, device=self.log_inv_gain.device)
                              .reshape(z_shape), self._z_medians())
        scales, means = self._coded_params(z_hat)
        return gc.build_indexes(scales.to(gc.scale_table.device)).to(means.device), means

    def _entropy_compress(self, y, side=None):
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        z_symbols = eb.quantize(self.h_a(y), "symbols", self._z_medians())
        z_indexes = eb._build_indexes(z_symbols.size())
        streams = []
        for i in range(y.shape[0]):
            z_values = z_symbols[i].reshape(-1).int().tolist()
            y_indexes, means = self._y_entropy_params(z_values, tuple(y.shape[-2:]))
            y_symbols = gc.quantize(y[i:i + 1], "symbols", means)
            encoder = self.coder.encoder()
            encoder.encode(z_values, z_indexes[i].reshape(-1).int().tolist(), self.tables("entropy_bottleneck"))
            encoder.encode(y_symbols.reshape(-1).int().tolist(), y_indexes.reshape(-1).int().tolist(),
                           self.tables("gaussian_conditional"))
            if side is not None:
                side[i](encoder)
            streams.append(encoder.finish())
        return streams

    def _entropy_decompress(self, stream, size, side=None):
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        decoder = self.coder.decoder(stream)
        z_indexes = eb._build_indexes((1, self.config.hyper_channels, *size))
        z_values = decoder.decode(z_indexes.reshape(-1).int().tolist(), self.tables("entropy_bottleneck"))
        y_indexes, means = self._y_entropy_params(z_values, size)
        y_values = decoder.decode(y_indexes.reshape(-1).int().tolist(), self.tables("gaussian_conditional"))
        if side is not None:
            side(decoder)
        y_symbols = torch.tensor(y_values, dtype=torch.float32, device=self.log_inv_gain.device).reshape(y_indexes.shape)
        return gc.dequantize(y_symbols, means)
