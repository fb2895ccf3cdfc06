"""Analog channels on Sionna 2: ``none``, ``awgn``, ``rayleigh`` and ``ofdm-tdl``.

Every channel is a :class:`torch.nn.Module` that carries complex symbols and is differentiable
with respect to them, so it can sit inside a training loop::

    x [B, n] complex, E|x|^2 = 1 ──► channel(x, snr_db) ──► ChannelOutput(y, no_eff, csi, channel_uses)

``snr_db`` is Es/N0 in dB per data symbol (unit mean symbol energy, so the noise variance per
complex symbol is ``no = 10^(-snr_db/10)``, computed with Sionna's ``ebnodb2no``). It is a float,
or a tensor with one value per example so one batch can mix SNRs.

The receiver's view comes back as a :class:`ChannelOutput`: the equalised symbols ``y``, the
post-equalisation noise variance ``no_eff`` per symbol, the channel state the receiver used
``csi`` (the true gain with perfect CSI, the estimate otherwise), and the channel uses spent per
example, pilots and cyclic prefix included (the rate unit of the project).

The Sionna blocks (``AWGN``, ``RayleighBlockFading``, ``OFDMChannel`` with ``tr38901.TDL``,
``ResourceGridMapper``, ``LSChannelEstimator``, ``LMMSEEqualizer``/``ZFEqualizer``,
``sionna.phy.mimo`` equalisers) are bound to a device when they are built, so each channel builds
them lazily, once per (device, precision) of the symbols it is given: the same module works on
CPU and CUDA. Their random numbers come from ``sionna.phy.config`` (seed it with
``intelliflow.seeding.seed_everything(seed, sionna=True)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from intelliflow.devices import device_string
from intelliflow.errors import ConfigError, ShapeError

from .registry import CHANNELS

__all__ = [
    "ChannelOutput",
    "AnalogChannel",
    "NoChannel",
    "AWGNChannel",
    "RayleighChannel",
    "OFDMTDLChannel",
    "snr_db_to_no",
]

CSI_MODES = ("perfect", "estimated")
EQUALIZERS = ("mmse", "zf")
TDL_MODELS = ("A", "B", "C", "D", "E", "A10", "A30", "B100", "C60", "C300", "D10", "D30")
INTERPOLATIONS = ("nn", "lin", "lin_time_avg")


@dataclass
class ChannelOutput:
    """What the receiver of an analog channel has.

    :ivar y: [B, n], ``torch.complex``. Equalised symbols, estimates of the sent ``x``.
        With ``biased=False`` (zero-forcing, AWGN) ``y = x + e``; with ``biased=True`` (MMSE)
        ``y`` is the linear MMSE (Wiener) estimate of ``x``.
    :ivar no_eff: [B, n], ``torch.float``. Post-equalisation noise level per symbol: the mean
        squared error ``E|y - x|^2`` given the receiver's channel knowledge (channel-estimation
        error included).
    :ivar csi: [B, n], ``torch.complex``. Channel gain per symbol as the receiver knows it (the true
        gain with perfect CSI, the pilot-based estimate otherwise; ones for ``awgn``/``none``).
    :ivar channel_uses: ``int``. Complex channel uses spent per example, pilots and cyclic prefix
        included.
    :ivar biased: ``bool``. True when ``y`` is a (biased) MMSE estimate; see :meth:`unbiased`.
    """

    y: torch.Tensor
    no_eff: torch.Tensor
    csi: torch.Tensor
    channel_uses: int
    biased: bool = False

    def unbiased(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The unbiased estimate ``x + e`` and its noise variance, as a demapper wants them.

        For an MMSE output with mean squared error ``m`` the Wiener gain is ``1 - m``, so
        ``x_u = y / (1 - m)`` with noise variance ``m / (1 - m)``.

        :output x_u: [B, n], ``torch.complex``.
        :output no_u: [B, n], ``torch.float``.
        """
        if not self.biased:
            return self.y, self.no_eff
        gain = (1.0 - self.no_eff).clamp_min(torch.finfo(self.no_eff.dtype).tiny)
        return self.y / gain, self.no_eff / gain


def snr_db_to_no(snr_db: float | torch.Tensor, batch_size: int, *, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
    """Noise variance per complex symbol for an Es/N0 in dB, one row per example.

    Uses Sionna's ``ebnodb2no`` with one bit per symbol and rate one, i.e. ``no = 10^(-snr/10)``
    for unit-energy symbols.

    :param snr_db: a float, or a tensor with 1 or ``batch_size`` values.
    :output no: [batch_size, 1], real ``dtype``.
    """
    from sionna.phy.utils import ebnodb2no

    if isinstance(snr_db, torch.Tensor):
        snr = snr_db.detach().to(device=device, dtype=dtype).reshape(-1)
        if snr.numel() not in (1, batch_size):
            raise ShapeError(f"snr_db has {snr.numel()} values for a batch of {batch_size} examples; "
                             f"give a float, one value, or one value per example")
    else:
        try:
            snr = torch.full((1,), float(snr_db), dtype=dtype, device=device)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"snr_db must be a number or a tensor, got {snr_db!r}") from exc
    if not torch.isfinite(snr).all():
        raise ConfigError(f"snr_db must be finite, got {snr_db!r}")
    precision = "double" if dtype == torch.float64 else "single"
    no = ebnodb2no(snr, num_bits_per_symbol=1, coderate=1.0, precision=precision, device=device_string(device))
    return no.to(device=device).reshape(-1, 1).expand(batch_size, 1)


def _precision(x: torch.Tensor) -> str:
    return "double" if x.dtype == torch.complex128 else "single"


def _check_choice(channel: str, key: str, value: Any, allowed: Sequence) -> Any:
    if value not in allowed:
        raise ConfigError(f"channel {channel!r}: {key}={value!r} is not allowed; allowed: {list(allowed)}")
    return value


def _check_int(channel: str, key: str, value: Any, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        more = " or null" if allow_none else ""
        raise ConfigError(f"channel {channel!r}: {key} must be an integer >= {minimum}{more}, got {value!r}")
    return value


def _check_float(channel: str, key: str, value: Any, minimum: float = 0.0, allow_none: bool = False,
                 strict: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < minimum or (strict and value == minimum):
        rel = ">" if strict else ">="
        raise ConfigError(f"channel {channel!r}: {key} must be a number {rel} {minimum}, got {value!r}")
    return float(value)


class AnalogChannel(torch.nn.Module):
    """Base class of the analog channels: ``forward(x, snr_db) -> ChannelOutput``.

    :input x: [B, n], ``torch.complex``. Channel symbols with unit mean energy.
    :input snr_db: ``float`` or [B] ``torch.float``. Es/N0 in dB.
    :output out: :class:`ChannelOutput`.
    """

    name: str = ""

    def __init__(self) -> None:
        super().__init__()
        self._blocks_cache: dict[tuple[str, str], Any] = {}

    # -- subclasses implement
    def channel_uses(self, n: int) -> int:
        """Channel uses (complex symbols, overhead included) to carry ``n`` data symbols."""
        raise NotImplementedError

    def config(self) -> dict:
        """The config dict that :func:`intelliflow.channels.build_channel` turns back into this channel."""
        raise NotImplementedError

    def _build_blocks(self, device: str, precision: str) -> Any:
        return None

    def _forward(self, x: torch.Tensor, no: torch.Tensor, blocks: Any) -> ChannelOutput:
        raise NotImplementedError

    # -- shared
    def _blocks(self, x: torch.Tensor) -> Any:
        key = (device_string(x.device), _precision(x))
        if key not in self._blocks_cache:
            self._blocks_cache[key] = self._build_blocks(*key)
        return self._blocks_cache[key]

    def forward(self, x: torch.Tensor, snr_db: float | torch.Tensor) -> ChannelOutput:
        if not isinstance(x, torch.Tensor) or not x.is_complex() or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            dtype = x.dtype if isinstance(x, torch.Tensor) else ""
            raise ShapeError(f"channel {self.name!r} expects complex symbols of shape [B, n]; "
                             f"got {shape} {dtype}")
        if x.shape[1] == 0:
            raise ShapeError(f"channel {self.name!r}: no symbols to send (shape {tuple(x.shape)})")
        real = torch.float64 if x.dtype == torch.complex128 else torch.float32
        no = snr_db_to_no(snr_db, x.shape[0], dtype=real, device=x.device)
        return self._forward(x, no, self._blocks(x))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")


@CHANNELS.register("none")
class NoChannel(AnalogChannel):
    """The identity channel, for clean baselines: ``y = x``, ``no_eff = 0``; ``snr_db`` is ignored.

    >>> x = torch.ones(2, 8, dtype=torch.complex64)
    >>> out = NoChannel()(x, 10.0)
    >>> torch.equal(out.y, x), out.channel_uses
    (True, 8)
    """

    name = "none"

    def channel_uses(self, n: int) -> int:
        return int(n)

    def config(self) -> dict:
        return {"name": self.name}

    def forward(self, x: torch.Tensor, snr_db: float | torch.Tensor | None = None) -> ChannelOutput:
        if not isinstance(x, torch.Tensor) or not x.is_complex() or x.dim() != 2:
            raise ShapeError(f"channel 'none' expects complex symbols of shape [B, n]; got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return ChannelOutput(y=x, no_eff=torch.zeros(x.shape, dtype=x.real.dtype, device=x.device),
                             csi=torch.ones_like(x), channel_uses=self.channel_uses(x.shape[1]))


@CHANNELS.register("awgn")
class AWGNChannel(AnalogChannel):
    """Additive white Gaussian noise through Sionna's ``AWGN``: ``y = x + n``, ``n ~ CN(0, no)``.

    :input x: [B, n], ``torch.complex``.
    :input snr_db: ``float`` or [B] ``torch.float``.
    :output out: :class:`ChannelOutput` with ``no_eff = no`` and ``csi = 1``; ``channel_uses = n``.

    .. code-block:: python

        ch = build_channel({"name": "awgn"})
        out = ch(torch.ones(4, 16, dtype=torch.complex64), 10.0)
        out.y.shape  # torch.Size([4, 16])
    """

    name = "awgn"

    def channel_uses(self, n: int) -> int:
        return int(n)

    def config(self) -> dict:
        return {"name": self.name}

    def _build_blocks(self, device: str, precision: str) -> Any:
        from sionna.phy.channel import AWGN

        return AWGN(precision=precision, device=device)

    def _forward(self, x: torch.Tensor, no: torch.Tensor, awgn: Any) -> ChannelOutput:
        y = awgn(x, no)
        return ChannelOutput(y=y, no_eff=no.expand(x.shape), csi=torch.ones_like(x),
                             channel_uses=self.channel_uses(x.shape[1]))


def _equalize(equalizer: str, y: torch.Tensor, h: torch.Tensor, s: torch.Tensor,
              precision: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Per-symbol SISO equalisation with Sionna's MIMO equalisers (M = K = 1).

    :input y, h: [...], complex. :input s: [...], real (noise + estimation-error variance).
    :output x_hat, no_eff, biased.
    """
    from sionna.phy.mimo import lmmse_equalizer, zf_equalizer

    s = s.to(y.dtype)
    args = (y.unsqueeze(-1), h.unsqueeze(-1).unsqueeze(-1), s.unsqueeze(-1).unsqueeze(-1))
    if equalizer == "zf":
        x_hat, no_eff = zf_equalizer(*args, precision=precision)
        return x_hat.squeeze(-1), no_eff.squeeze(-1), False
    x_hat, no_eff = lmmse_equalizer(*args, whiten_interference=False, precision=precision)
    return _to_wiener(x_hat.squeeze(-1), no_eff.squeeze(-1))


def _to_wiener(x_u: torch.Tensor, no_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Sionna's LMMSE equalisers return the unbiased estimate ``x + e`` (``E|e|^2 = no_u``); scale it
    to the MMSE (Wiener) estimate ``x_u / (1 + no_u)``, whose mean squared error is ``no_u / (1 + no_u)``."""
    scale = 1.0 / (1.0 + no_u)
    return x_u * scale, no_u * scale, True


@CHANNELS.register("rayleigh")
class RayleighChannel(AnalogChannel):
    """Flat Rayleigh block fading (Sionna's ``RayleighBlockFading``) plus AWGN, then equalisation.

    Data flow per fading block of ``block_length`` symbols (``None``: one gain per example, e.g.
    per image)::

        x ──► [pilots | x_blk] ──► h·(.) + n ──► LS estimate ĥ from the pilots (or the true h) ──► ZF/MMSE ──► y

    :param block_length: data symbols per fading block (coherence length); ``None``: the whole example.
    :param csi: ``"perfect"`` (the receiver knows h) or ``"estimated"`` (least-squares estimate
        from ``num_pilots`` unit pilots sent before every block; their channel uses are counted).
        The estimation error variance ``no / num_pilots`` enters the equaliser's noise covariance.
    :param num_pilots: pilots per fading block when ``csi="estimated"``.
    :param equalizer: ``"mmse"`` (Wiener estimate, ``no_eff`` its MSE; bounded in deep fades) or
        ``"zf"`` (``y = x + e``). Both use ``sionna.phy.mimo`` equalisers.

    :input x: [B, n], ``torch.complex``.
    :input snr_db: ``float`` or [B] ``torch.float``. Average Es/N0 (E|h|^2 = 1).
    :output out: :class:`ChannelOutput`; ``channel_uses = n + ceil(n / block_length) * num_pilots``
        with estimated CSI, ``n`` with perfect CSI.

    >>> from intelliflow.channels import build_channel
    >>> ch = build_channel({"name": "rayleigh", "block_length": 64, "csi": "estimated", "num_pilots": 4})
    >>> ch.channel_uses(256)                      # 4 blocks of 64 symbols, 4 pilots each: 256 + 4 * 4
    272

    .. code-block:: python

        out = ch(x, torch.tensor([0.0, 10.0]))   # x: [2, 256] complex; out.channel_uses == 272
    """

    name = "rayleigh"

    def __init__(self, block_length: int | None = None, csi: str = "perfect", num_pilots: int = 4,
                 equalizer: str = "mmse") -> None:
        super().__init__()
        self.block_length = _check_int(self.name, "block_length", block_length, 1, allow_none=True)
        self.csi = _check_choice(self.name, "csi", csi, CSI_MODES)
        self.num_pilots = _check_int(self.name, "num_pilots", num_pilots, 1)
        self.equalizer = _check_choice(self.name, "equalizer", equalizer, EQUALIZERS)

    def num_blocks(self, n: int) -> int:
        """Fading blocks needed for ``n`` data symbols."""
        return 1 if self.block_length is None else -(-int(n) // self.block_length)

    def channel_uses(self, n: int) -> int:
        pilots = self.num_blocks(n) * self.num_pilots if self.csi == "estimated" else 0
        return int(n) + pilots

    def config(self) -> dict:
        return {"name": self.name, "block_length": self.block_length, "csi": self.csi,
                "num_pilots": self.num_pilots, "equalizer": self.equalizer}

    def _build_blocks(self, device: str, precision: str) -> Any:
        from sionna.phy.channel import AWGN, RayleighBlockFading

        return {"fading": RayleighBlockFading(1, 1, 1, 1, precision=precision, device=device),
                "awgn": AWGN(precision=precision, device=device), "precision": precision}

    def _forward(self, x: torch.Tensor, no: torch.Tensor, blocks: Any) -> ChannelOutput:
        batch, n = x.shape
        length = self.block_length or n
        nb = self.num_blocks(n)
        xb = torch.nn.functional.pad(x, (0, nb * length - n)).reshape(batch, nb, length)
        h, _ = blocks["fading"](batch_size=batch * nb, num_time_steps=1)
        h = h.reshape(batch, nb, 1).to(x.dtype)
        no3 = no.reshape(batch, 1, 1)
        if self.csi == "estimated":
            pilots = torch.ones(batch, nb, self.num_pilots, dtype=x.dtype, device=x.device)
            received = blocks["awgn"](h * torch.cat([pilots, xb], dim=-1), no3)
            y_pilots, y_data = received[..., :self.num_pilots], received[..., self.num_pilots:]
            # Least-squares estimate over the block's pilots (p = 1): h_ls = mean(y_p p*) / |p|^2
            h_rx = (y_pilots * pilots.conj()).mean(dim=-1, keepdim=True)
            err_var = no3 / self.num_pilots
        else:
            y_data = blocks["awgn"](h * xb, no3)
            h_rx = h
            err_var = torch.zeros_like(no3)
        s = (no3 + err_var).expand(batch, nb, length)
        x_hat, no_eff, biased = _equalize(self.equalizer, y_data, h_rx.expand(batch, nb, length), s,
                                          blocks["precision"])
        csi = h_rx.expand(batch, nb, length)
        return ChannelOutput(y=x_hat.reshape(batch, -1)[:, :n], no_eff=no_eff.reshape(batch, -1)[:, :n],
                             csi=csi.reshape(batch, -1)[:, :n], channel_uses=self.channel_uses(n),
                             biased=biased)


@CHANNELS.register("ofdm-tdl")
class OFDMTDLChannel(AnalogChannel):
    """OFDM over a 3GPP TDL channel: Sionna's ``ResourceGrid`` + ``OFDMChannel`` + ``tr38901.TDL``,
    pilots with ``LSChannelEstimator`` and ``LMMSEEqualizer`` (or ``ZFEqualizer``).

    Data flow, per slot of ``num_ofdm_symbols`` OFDM symbols × ``fft_size`` subcarriers::

        x ──► ResourceGridMapper (data REs; Kronecker pilots on ``pilot_ofdm_symbol_indices``)
          ──► OFDMChannel(TDL) + AWGN ──► LSChannelEstimator (or the true h) ──► LMMSEEqualizer ──► y

    An example of ``n`` symbols fills ``ceil(n / data_symbols_per_slot)`` slots (the last one
    zero-padded), each with its own TDL realisation; a slot costs
    ``num_ofdm_symbols * (fft_size + cyclic_prefix_length)`` channel uses, so pilot and cyclic-prefix
    overhead are counted. The frequency-domain channel assumes the cyclic prefix covers the delay
    spread (no ISI/ICI).

    :param tdl_model: TDL profile, ``"A"``-``"E"`` (scaled by ``delay_spread``) or a fixed one
        such as ``"A30"``, ``"C300"``.
    :param delay_spread: RMS delay spread in seconds (scalable profiles).
    :param carrier_frequency: carrier frequency in Hz.
    :param min_speed, max_speed: terminal speed range in m/s (``max_speed=None``: ``min_speed``).
    :param fft_size, num_ofdm_symbols, subcarrier_spacing, cyclic_prefix_length: the resource grid.
    :param pilot_ofdm_symbol_indices: OFDM symbols carrying pilots (Sionna's Kronecker pattern).
    :param csi: ``"estimated"`` (LS at the pilots, interpolated) or ``"perfect"``.
    :param interpolation: LS interpolation, ``"nn"``, ``"lin"`` or ``"lin_time_avg"``.
    :param equalizer: ``"mmse"`` (Sionna's LMMSE, output scaled to the Wiener estimate) or ``"zf"``.

    :input x: [B, n], ``torch.complex``.
    :input snr_db: ``float`` or [B] ``torch.float``. Es/N0 per resource element.
    :output out: :class:`ChannelOutput`.

    >>> from intelliflow.channels import build_channel
    >>> ch = build_channel({"name": "ofdm-tdl", "tdl_model": "C", "delay_spread": 300e-9})
    >>> ch.data_symbols_per_slot, ch.channel_uses(864)   # one slot: 14 * (72 + 5) = 1078
    (864, 1078)
    """

    name = "ofdm-tdl"

    def __init__(self, tdl_model: str = "A", delay_spread: float = 100e-9, carrier_frequency: float = 3.5e9,
                 min_speed: float = 0.0, max_speed: float | None = None, fft_size: int = 72,
                 num_ofdm_symbols: int = 14, subcarrier_spacing: float = 30e3, cyclic_prefix_length: int = 5,
                 pilot_ofdm_symbol_indices: Sequence[int] = (2, 11), csi: str = "estimated",
                 interpolation: str = "lin", equalizer: str = "mmse") -> None:
        super().__init__()
        name = self.name
        self.tdl_model = _check_choice(name, "tdl_model", tdl_model, TDL_MODELS)
        self.delay_spread = _check_float(name, "delay_spread", delay_spread, 0.0, strict=True)
        self.carrier_frequency = _check_float(name, "carrier_frequency", carrier_frequency, 0.0, strict=True)
        self.min_speed = _check_float(name, "min_speed", min_speed, 0.0)
        self.max_speed = _check_float(name, "max_speed", max_speed, self.min_speed, allow_none=True)
        self.fft_size = _check_int(name, "fft_size", fft_size, 1)
        self.num_ofdm_symbols = _check_int(name, "num_ofdm_symbols", num_ofdm_symbols, 2)
        self.subcarrier_spacing = _check_float(name, "subcarrier_spacing", subcarrier_spacing, 0.0, strict=True)
        self.cyclic_prefix_length = _check_int(name, "cyclic_prefix_length", cyclic_prefix_length, 0)
        if self.cyclic_prefix_length > self.fft_size:
            raise ConfigError(f"channel {name!r}: cyclic_prefix_length ({cyclic_prefix_length}) must not "
                              f"exceed fft_size ({fft_size})")
        indices = list(pilot_ofdm_symbol_indices) if isinstance(pilot_ofdm_symbol_indices, (list, tuple)) else None
        if (not indices or any(isinstance(i, bool) or not isinstance(i, int) for i in indices)
                or len(set(indices)) != len(indices)
                or not all(0 <= i < self.num_ofdm_symbols for i in indices)
                or len(indices) >= self.num_ofdm_symbols):
            raise ConfigError(f"channel {name!r}: pilot_ofdm_symbol_indices must be a non-empty list of distinct "
                              f"OFDM symbol indices in [0, {self.num_ofdm_symbols - 1}] leaving room for data, "
                              f"got {pilot_ofdm_symbol_indices!r}")
        self.pilot_ofdm_symbol_indices = tuple(indices)
        self.csi = _check_choice(name, "csi", csi, CSI_MODES)
        self.interpolation = _check_choice(name, "interpolation", interpolation, INTERPOLATIONS)
        self.equalizer = _check_choice(name, "equalizer", equalizer, EQUALIZERS)

    @property
    def data_symbols_per_slot(self) -> int:
        """Data resource elements per slot (all subcarriers of the non-pilot OFDM symbols)."""
        return (self.num_ofdm_symbols - len(self.pilot_ofdm_symbol_indices)) * self.fft_size

    @property
    def channel_uses_per_slot(self) -> int:
        """Time-domain samples per slot, cyclic prefixes included."""
        return self.num_ofdm_symbols * (self.fft_size + self.cyclic_prefix_length)

    def num_slots(self, n: int) -> int:
        """Slots needed for ``n`` data symbols."""
        return max(1, -(-int(n) // self.data_symbols_per_slot))

    def channel_uses(self, n: int) -> int:
        return self.num_slots(n) * self.channel_uses_per_slot

    def config(self) -> dict:
        return {"name": self.name, "tdl_model": self.tdl_model, "delay_spread": self.delay_spread,
                "carrier_frequency": self.carrier_frequency, "min_speed": self.min_speed,
                "max_speed": self.max_speed, "fft_size": self.fft_size,
                "num_ofdm_symbols": self.num_ofdm_symbols, "subcarrier_spacing": self.subcarrier_spacing,
                "cyclic_prefix_length": self.cyclic_prefix_length,
                "pilot_ofdm_symbol_indices": list(self.pilot_ofdm_symbol_indices), "csi": self.csi,
                "interpolation": self.interpolation, "equalizer": self.equalizer}

    def _build_blocks(self, device: str, precision: str) -> Any:
        import numpy as np
        from sionna.phy.channel import OFDMChannel
        from sionna.phy.channel.tr38901 import TDL
        from sionna.phy.mimo import StreamManagement
        from sionna.phy.ofdm import (LMMSEEqualizer, LSChannelEstimator, ResourceGrid, ResourceGridDemapper,
                                     ResourceGridMapper, ZFEqualizer)

        kw = {"precision": precision, "device": device}
        grid = ResourceGrid(num_ofdm_symbols=self.num_ofdm_symbols, fft_size=self.fft_size,
                            subcarrier_spacing=self.subcarrier_spacing, num_tx=1, num_streams_per_tx=1,
                            cyclic_prefix_length=self.cyclic_prefix_length, pilot_pattern="kronecker",
                            pilot_ofdm_symbol_indices=list(self.pilot_ofdm_symbol_indices), **kw)
        fixed_profile = self.tdl_model not in ("A", "B", "C", "D", "E")
        tdl = TDL(self.tdl_model, delay_spread=None if fixed_profile else self.delay_spread,
                  carrier_frequency=self.carrier_frequency, min_speed=self.min_speed,
                  max_speed=self.max_speed, **kw)
        streams = StreamManagement(np.ones([1, 1], int), 1)
        equalizer = (LMMSEEqualizer(grid, streams, **kw) if self.equalizer == "mmse"
                     else ZFEqualizer(grid, streams, **kw))
        return {"grid": grid, "mapper": ResourceGridMapper(grid, **kw),
                "channel": OFDMChannel(tdl, grid, return_channel=True, **kw),
                "estimator": LSChannelEstimator(grid, interpolation_type=self.interpolation, **kw),
                "equalizer": equalizer, "demapper": ResourceGridDemapper(grid, streams, **kw)}

    def _forward(self, x: torch.Tensor, no: torch.Tensor, blocks: Any) -> ChannelOutput:
        batch, n = x.shape
        per_slot = self.data_symbols_per_slot
        slots = self.num_slots(n)
        xs = torch.nn.functional.pad(x, (0, slots * per_slot - n)).reshape(batch * slots, 1, 1, per_slot)
        no_s = no.reshape(batch).repeat_interleave(slots)                       # [B*S]
        x_rg = blocks["mapper"](xs)                                             # [B*S, 1, 1, T, F]
        y, h_freq = blocks["channel"](x_rg, no_s)                               # [B*S, 1, 1, T, F]
        if self.csi == "estimated":
            h_hat, err_var = blocks["estimator"](y, no_s)                       # [B*S, 1, 1, 1, 1, T, F]
        else:
            h_hat, err_var = h_freq, torch.zeros((), dtype=no.dtype, device=x.device)
        x_hat, no_eff = blocks["equalizer"](y, h_hat, err_var, no_s)          # [B*S, 1, 1, per_slot]
        biased = False
        if self.equalizer == "mmse":
            x_hat, no_eff, biased = _to_wiener(x_hat, no_eff)
        csi = blocks["demapper"](h_hat.reshape(batch * slots, 1, 1, self.num_ofdm_symbols, self.fft_size))
        return ChannelOutput(y=x_hat.reshape(batch, -1)[:, :n], no_eff=no_eff.reshape(batch, -1)[:, :n],
                             csi=csi.reshape(batch, -1)[:, :n], channel_uses=self.channel_uses(n), biased=biased)
