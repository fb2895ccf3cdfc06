"""Analog deep joint source-channel coding of split features, adaptive to the SNR.

::

    f [B, D, H, W] ─► conv ─► AF(snr) ─► conv↓ ─► AF(snr) ─► conv ─► [B, 2c, h, w]
                   ─► complex symbols x [B, n = c·h·w], mean energy 1 per image ─► channel
    y, noise level per symbol ─► conv ─► AF(snr) ─► conv↑ ─► AF(snr) ─► conv ─► f̂ [B, D, H, W]

``AF`` is the attention-feature module of ADJSCC (Xu et al., 2021): a small network maps the
pooled activations and the SNR to channel-wise scales, so one model serves the whole SNR range.
The decoder also sees the post-equalisation noise level of every symbol (``no_eff`` of
:class:`intelliflow.channels.ChannelOutput`), which is how it knows deep fades on fading channels.
Rate = channel uses per image: ``n`` data symbols (the channel adds pilots where it has them).

It implements :class:`~intelliflow.codec.interface.Codec` (takes features, sends symbols, rate
knob ``symbols``). Decoding is stateless: the receiver names the feature grid it expects.

>>> import torch
>>> from intelliflow.channels import build_channel
>>> codec = JSCCCodec(JSCCConfig(in_channels=16, hidden_channels=8, symbol_channels=4))
>>> features = torch.randn(2, 16, 8, 8)
>>> x = codec.encode(features, snr_db=10.0)               # complex [B, n]
>>> x.shape, x.dtype
(torch.Size([2, 64]), torch.complex64)
>>> out = build_channel("awgn")(x, 10.0)
>>> codec.decode(out.y, 10.0, noise=out.no_eff, grid=(8, 8)).shape
torch.Size([2, 16, 8, 8])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from intelliflow.errors import ConfigError, ShapeError

from .interface import Codec, GridCodecConfig, RateKnob, crop_grid, grid_padding, pad_grid, reduce_layers
from .registry import register_codec


@dataclass
class JSCCConfig(GridCodecConfig):
    """Sizes of a deep JSCC codec; ``symbol_channels`` complex symbols per latent position and the
    SNR range its attention modules are scaled to."""

    hidden_channels: int = 128
    symbol_channels: int = 4
    snr_low_db: float = -5.0
    snr_high_db: float = 25.0

    def __post_init__(self):
        super().__post_init__()
        if self.symbol_channels < 1:
            raise ConfigError("JSCC symbol_channels must be positive")


LOST_LEVEL = 3.0  # log10 noise level the decoder sees for symbols that were not sent


class AttentionFeature(nn.Module):
    """Channel-wise scaling from (pooled features, SNR): [B, C, H, W], [B] -> [B, C, H, W]."""

    def __init__(self, channels: int, extra: int = 1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(channels + extra, channels // 2 + 1), nn.ReLU(),
                                 nn.Linear(channels // 2 + 1, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        scale = self.net(torch.cat([x.mean(dim=(2, 3)), context], dim=1))
        return x * scale[:, :, None, None]


@register_codec("jscc", config=JSCCConfig)
class JSCCCodec(nn.Module, Codec):
    """SNR-adaptive analog codec: ``encode(f, snr_db) -> x``, ``decode(y, snr_db, noise, grid) -> f̂``."""

    takes, sends, learned = "features", "symbols", True
    rate = RateKnob("symbols", 1, None, "symbol channels sent (channel uses = symbols x latent positions)")

    def __init__(self, config: JSCCConfig | None = None):
        super().__init__()
        self.config = c = config or JSCCConfig()
        n, s = c.hidden_channels, c.symbol_channels
        reduce, expand, width = reduce_layers(c)
        self.enc_reduce = reduce if reduce is not None else nn.Identity()
        self.dec_expand = expand if expand is not None else nn.Identity()
        self.enc_in = nn.Conv2d(width, n, 3, padding=1)
        self.enc_down = nn.ModuleList(nn.Conv2d(n, n, 3, stride=2, padding=1) for _ in range(c.downsample))
        self.enc_af = nn.ModuleList(AttentionFeature(n) for _ in range(c.downsample + 1))
        self.enc_out = nn.Conv2d(n, 2 * s, 3, padding=1)
        self.dec_in = nn.Conv2d(3 * s, n, 3, padding=1)  # real, imaginary, log noise level
        self.dec_up = nn.ModuleList(nn.ConvTranspose2d(n, n, 4, stride=2, padding=1) for _ in range(c.downsample))
        self.dec_af = nn.ModuleList(AttentionFeature(n) for _ in range(c.downsample + 1))
        self.dec_out = nn.Conv2d(n, width, 3, padding=1)
        self.act = nn.PReLU()

    def _snr(self, snr_db, batch: int, device) -> torch.Tensor:
        snr = torch.as_tensor(snr_db, dtype=torch.float32, device=device)
        snr = snr.expand(batch) if snr.dim() == 0 else snr
        if snr.shape != (batch,):
            raise ShapeError(f"snr_db must be a number or a tensor [B={batch}], got shape {list(snr.shape)}")
        c = self.config
        return ((snr - c.snr_low_db) / (c.snr_high_db - c.snr_low_db))[:, None]  # about [0, 1]

    def rate_range(self) -> tuple[int, int]:
        return 1, self.config.symbol_channels

    def channel_uses(self, height: int, width: int, symbols: int | None = None) -> int:
        """Complex symbols per image for features on a ``height`` x ``width`` grid, sending the
        first ``symbols`` symbol channels (default all)."""
        h, w = grid_padding(height, width, 2 ** self.config.downsample)[1]
        return self._symbols(symbols) * h * w

    def _symbols(self, symbols: int | None) -> int:
        s = self.config.symbol_channels if symbols is None else int(symbols)
        if not 1 <= s <= self.config.symbol_channels:
            raise ConfigError(f"symbols must be in 1..{self.config.symbol_channels}, got {symbols}")
        return s

    def encode(self, features: torch.Tensor, snr_db, symbols: int | None = None) -> torch.Tensor:
        """features [B, D, H, W] -> complex symbols [B, n] with mean energy 1 per image.

        ``symbols`` (1..``symbol_channels``) sends only the first symbol channels: one trained
        model, several bandwidth ratios (``n = symbols * h * w``); the decoder sees the rest as lost.
        """
        c = self.config
        s = self._symbols(symbols)
        if features.dim() != 4 or features.shape[1] != c.in_channels:
            raise ShapeError(f"JSCC features must be [B, {c.in_channels}, H, W], got {list(features.shape)}")
        snr = self._snr(snr_db, features.shape[0], features.device)
        features, _ = pad_grid(features, 2 ** c.downsample)   # any grid size: padded to the stride, cropped back
        x = self.enc_af[0](self.act(self.enc_in(self.enc_reduce(features))), snr)
        for down, af in zip(self.enc_down, self.enc_af[1:]):
            x = af(self.act(down(x)), snr)
        z = self.enc_out(x)
        real, imag = z.float().chunk(2, dim=1)   # symbols in float32 (complex), under autocast too
        x = torch.complex(real[:, :s], imag[:, :s]).flatten(1)
        power = x.abs().pow(2).mean(dim=1, keepdim=True).clamp_min(1e-12)
        return x / power.sqrt()

    def decode(self, received: torch.Tensor, snr_db, noise: torch.Tensor | None = None,
               grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Received symbols [B, n] (complex) -> features [B, D, H, W].

        :param noise: post-equalisation noise level per symbol [B, n] (or [B, 1]); ``None`` means
            AWGN at ``snr_db``. :param grid: the feature grid (H, W) the receiver expects (required).
        """
        c = self.config
        if not received.is_complex() or received.dim() != 2:
            raise ShapeError(f"received symbols must be complex [B, n], got {received.dtype} {list(received.shape)}")
        b = received.shape[0]
        step = 2 ** c.downsample
        if grid is None:
            raise ShapeError("decode needs the feature grid (grid=(H, W)) the receiver expects")
        pad, hw = grid_padding(grid[0], grid[1], step)
        s, rest = divmod(received.shape[1], hw[0] * hw[1])
        if rest or not 1 <= s <= c.symbol_channels:
            raise ShapeError(f"{received.shape[1]} symbols do not fit 1..{c.symbol_channels} symbol channels "
                             f"x {hw[0]} x {hw[1]}")
        snr = self._snr(snr_db, b, received.device)
        if noise is None:
            level = torch.as_tensor(snr_db, dtype=torch.float32, device=received.device)
            noise = (10 ** (-level / 10)).reshape(-1, 1).expand(b, received.shape[1])
        noise = noise.expand(b, received.shape[1]) if noise.shape[1] == 1 else noise
        shape = (b, s, *hw)
        real, imag = received.real.reshape(shape), received.imag.reshape(shape)
        level = torch.log10(noise.float().clamp_min(1e-6)).reshape(shape)
        if s < c.symbol_channels:  # channels not sent: zeros with a huge noise level
            missing = (b, c.symbol_channels - s, *hw)
            zeros = real.new_zeros(missing)
            real, imag = torch.cat([real, zeros], 1), torch.cat([imag, zeros], 1)
            level = torch.cat([level, level.new_full(missing, LOST_LEVEL)], 1)
        planes = torch.cat([real, imag, level], dim=1)
        x = self.dec_af[0](self.act(self.dec_in(planes)), snr)
        for up, af in zip(self.dec_up, self.dec_af[1:]):
            x = af(self.act(up(x)), snr)
        return crop_grid(self.dec_expand(self.dec_out(x)), pad)
