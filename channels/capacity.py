"""Capacity references: the fewest channel uses any scheme could spend on a payload.

- ``awgn``: ``C = log2(1 + snr)`` bits per channel use.
- ``rayleigh``: the ergodic capacity with channel knowledge at the receiver,
  ``C = E_g[log2(1 + g snr)]`` with ``g ~ Exp(1)`` (``|h|^2`` of a unit-power Rayleigh gain),
  integrated numerically with scipy.
- ``none``: noiseless, unbounded capacity (zero channel uses).

``snr_db`` is Es/N0 in dB per channel use, as everywhere in :mod:`intelliflow.channels`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from intelliflow.errors import ConfigError

from .registry import channel_name

__all__ = ["CAPACITY_CHANNELS", "capacity", "shannon_channel_uses", "shannon_limit_db"]

CAPACITY_CHANNELS = ("awgn", "rayleigh", "none")


def _channel_name(channel: Any) -> str:
    """The capacity family of ``channel``, in any form :func:`~intelliflow.channels.registry.channel_config` takes."""
    name = channel_name(channel)
    if name not in CAPACITY_CHANNELS:
        raise ConfigError(f"no capacity reference for channel {name!r}; allowed: {list(CAPACITY_CHANNELS)}")
    return name


def _rayleigh_ergodic(snr: float) -> float:
    from scipy import integrate

    if snr <= 0.0:
        return 0.0

    def integrand(g: float) -> float:
        return math.log2(1.0 + g * snr) * math.exp(-g)

    # The exponential weight makes the integrand negligible beyond g ~ 50.
    value, _ = integrate.quad(integrand, 0.0, np.inf, limit=200, epsabs=1e-12, epsrel=1e-10)
    return value


def capacity(snr_db: float | np.ndarray, channel: Any = "awgn") -> float | np.ndarray:
    """Capacity in bits per complex channel use at Es/N0 ``snr_db``.

    :param snr_db: float or array of SNRs in dB.
    :param channel: ``"awgn"``, ``"rayleigh"`` (ergodic, numerically with scipy) or ``"none"`` (inf).
    :output c: same shape as ``snr_db``, float.
    """
    name = _channel_name(channel)
    snr = 10.0 ** (np.asarray(snr_db, dtype=float) / 10.0)
    if name == "awgn":
        out = np.log2(1.0 + snr)
    elif name == "rayleigh":
        out = np.vectorize(_rayleigh_ergodic, otypes=[float])(snr)
    else:
        out = np.full(snr.shape, np.inf)
    return float(out) if np.ndim(out) == 0 else out


def shannon_channel_uses(bits: float | np.ndarray, snr_db: float | np.ndarray,
                         channel: Any = "awgn") -> float | np.ndarray:
    """The least number of channel uses that could carry ``bits`` information bits: ``bits / C``.

    :param bits: payload size in bits (float or array).
    :param snr_db: Es/N0 in dB (float or array, broadcast against ``bits``).
    :param channel: ``"awgn"``, ``"rayleigh"`` (ergodic capacity) or ``"none"`` (0 uses).
    :output uses: float or array.

    >>> shannon_channel_uses(1000, 0.0)   # 0 dB over AWGN: 1 bit per channel use
    1000.0
    """
    c = np.asarray(capacity(snr_db, channel), dtype=float)
    bits = np.asarray(bits, dtype=float)
    if np.any(bits < 0):
        raise ConfigError(f"bits must be >= 0, got {bits.tolist()}")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(bits == 0, 0.0, bits / c)
    return float(out) if np.ndim(out) == 0 else out


def shannon_limit_db(spectral_efficiency: float, channel: Any = "awgn") -> float:
    """The lowest Es/N0 in dB at which ``capacity`` reaches ``spectral_efficiency`` bits per use."""
    name = _channel_name(channel)
    if spectral_efficiency <= 0:
        return -math.inf
    if name == "none":
        return -math.inf
    if name == "awgn":
        return 10.0 * math.log10(2.0 ** spectral_efficiency - 1.0)
    from scipy.optimize import brentq

    lo = 10.0 * math.log10(2.0 ** spectral_efficiency - 1.0)  # AWGN needs less (Jensen)
    hi = lo + 10.0
    while capacity(hi, "rayleigh") < spectral_efficiency:
        hi += 10.0
    return brentq(lambda s: capacity(s, "rayleigh") - spectral_efficiency, lo, hi, xtol=1e-6)
