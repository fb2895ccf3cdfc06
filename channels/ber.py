"""Uncoded bit error rate: simulated through any analog channel, and in closed form.

Modulations are Sionna's Gray-mapped, unit-energy constellations: ``bpsk`` (PAM-2), ``qpsk``,
``16qam``, ``64qam``. Detection is hard, symbol by symbol, on the equalised symbols (Sionna's
max-log demapper with ``hard_out=True``, i.e. the bits of the nearest constellation point).

Closed forms (``snr`` = Es/N0, linear):

- AWGN, BPSK: ``Q(sqrt(2 snr))``; square M-QAM with Gray labels: the exact expression of
  Cho & Yoon (IEEE Trans. Commun. 2002), e.g. QPSK ``Q(sqrt(snr))`` and
  16-QAM ``(3 Q(a) + 2 Q(3a) - Q(5a)) / 4`` with ``a = sqrt(snr / 5)``.
- Rayleigh with perfect CSI: the AWGN expression averaged over ``|h|^2 ~ Exp(1)``; for BPSK
  ``0.5 (1 - sqrt(snr / (1 + snr)))``, for the others numerically with scipy.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

from intelliflow.devices import device_string
from intelliflow.errors import ConfigError

from .registry import channel_config

__all__ = ["MODULATIONS", "BerEstimate", "bits_per_symbol", "ber_theory", "has_ber_theory", "independent_row_length",
           "simulate_ber"]

# name -> (Sionna constellation type, bits per symbol)
MODULATIONS = {"bpsk": ("pam", 1), "qpsk": ("qam", 2), "16qam": ("qam", 4), "64qam": ("qam", 6)}


def _check_modulation(modulation: str) -> str:
    key = str(modulation).lower()
    if key not in MODULATIONS:
        raise ConfigError(f"unknown modulation {modulation!r}; allowed: {list(MODULATIONS)}")
    return key


def bits_per_symbol(modulation: str) -> int:
    """Bits per constellation symbol of ``modulation``."""
    return MODULATIONS[_check_modulation(modulation)][1]


def _q(x):
    from scipy.special import erfc

    return 0.5 * erfc(np.asarray(x, dtype=float) / math.sqrt(2.0))


def _ber_awgn(modulation: str, snr) -> np.ndarray:
    snr = np.asarray(snr, dtype=float)
    if modulation == "bpsk":
        return _q(np.sqrt(2.0 * snr))
    m = 2 ** MODULATIONS[modulation][1]
    sqrt_m = int(round(math.sqrt(m)))
    levels = int(round(math.log2(sqrt_m)))
    arg = np.sqrt(3.0 * snr / (m - 1.0))
    total = np.zeros_like(snr)
    for k in range(1, levels + 1):
        pk = np.zeros_like(snr)
        for i in range(int((1 - 2.0 ** -k) * sqrt_m)):
            w = (-1) ** math.floor(i * 2 ** (k - 1) / sqrt_m) * (
                2 ** (k - 1) - math.floor(i * 2 ** (k - 1) / sqrt_m + 0.5))
            pk = pk + w * 2.0 * _q((2 * i + 1) * arg)
        total = total + pk / sqrt_m
    return total / levels


def _ber_rayleigh(modulation: str, snr) -> np.ndarray:
    snr = np.asarray(snr, dtype=float)
    if modulation == "bpsk":
        return 0.5 * (1.0 - np.sqrt(snr / (1.0 + snr)))
    from scipy import integrate

    def one(s: float) -> float:
        value, _ = integrate.quad(lambda g: float(_ber_awgn(modulation, g * s)) * math.exp(-g), 0.0, np.inf,
                                  limit=200, epsabs=1e-13)
        return value

    return np.vectorize(one, otypes=[float])(snr)


def _theory_channel(channel: Any) -> str | None:
    """The closed-form family that applies to ``channel`` (a name, config dict or module), or None."""
    try:
        config = channel_config(channel)
    except ConfigError:
        return None
    name, csi = config["name"], config.get("csi", "perfect")
    if name in ("awgn", "none") or (name == "rayleigh" and csi == "perfect"):
        return name
    return None


def has_ber_theory(channel: Any) -> bool:
    """True for ``awgn``, ``none`` and ``rayleigh`` with perfect CSI."""
    return _theory_channel(channel) is not None


def ber_theory(modulation: str, snr_db: float | np.ndarray, channel: Any = "awgn") -> float | np.ndarray:
    """Closed-form uncoded BER of Gray-mapped ``modulation`` at Es/N0 ``snr_db``.

    :param modulation: ``"bpsk"``, ``"qpsk"``, ``"16qam"`` or ``"64qam"``.
    :param snr_db: float or array, dB.
    :param channel: ``"awgn"``, ``"rayleigh"`` (perfect CSI) or ``"none"`` (0), as a name, config or module.
    :output ber: same shape as ``snr_db``.
    """
    modulation = _check_modulation(modulation)
    family = _theory_channel(channel)
    if family is None:
        raise ConfigError(f"no closed-form BER for channel {channel!r}; allowed: 'awgn', 'none', "
                          f"'rayleigh' with csi='perfect'")
    snr = 10.0 ** (np.asarray(snr_db, dtype=float) / 10.0)
    if family == "none":
        out = np.zeros_like(snr)
    elif family == "awgn":
        out = _ber_awgn(modulation, snr)
    else:
        out = _ber_rayleigh(modulation, snr)
    return float(out) if np.ndim(out) == 0 else out


class BerEstimate(NamedTuple):
    """A Monte-Carlo BER with its 95 % confidence interval.

    :ivar ber: errors / bits. :ivar bits: bits simulated. :ivar low, high: the 95 % interval, from
    the spread of the error rate over ``rows`` independent rows (each one fading block, or one
    symbol where a channel fades once per example), so correlated errors within a fade are not
    counted as independent evidence; with no error at all, ``high`` is the rule of three, 3 / rows
    of bits. :ivar rows: independent rows (fades).
    """

    ber: float
    bits: int
    low: float
    high: float
    rows: int


def independent_row_length(channel) -> int:
    """Symbols per simulated row: one fading block of a block-fading ``channel`` (its ``block_length``;
    one symbol where it fades once per example, so that every symbol sees its own gain), or 1024
    for a channel without fading blocks."""
    if hasattr(channel, "block_length"):
        return channel.block_length or 1
    return 1024


@torch.no_grad()
def simulate_ber(channel, modulation: str, snr_db: float, num_bits: int = 1_000_000,
                 symbols_per_row: int | None = None, max_bits_per_batch: int = 1 << 20,
                 device: str | torch.device = "cpu") -> BerEstimate:
    """Monte-Carlo uncoded BER through an analog channel with Sionna's source, mapper and demapper.

    :param channel: an :class:`~intelliflow.channels.analog.AnalogChannel`.
    :param modulation: ``"bpsk"``, ``"qpsk"``, ``"16qam"`` or ``"64qam"``.
    :param snr_db: Es/N0 in dB.
    :param num_bits: bits to simulate (rounded up to whole rows).
    :param symbols_per_row: symbols per independent row (default :func:`independent_row_length`:
        a Rayleigh channel that fades once per example gets one symbol per row, so a million bits
        see a million fades, not a thousand).
    :output estimate: :class:`BerEstimate` (``ber, bits, low, high, rows``).
    """
    from sionna.phy.mapping import BinarySource, Demapper, Mapper

    modulation = _check_modulation(modulation)
    if isinstance(num_bits, bool) or not isinstance(num_bits, int) or num_bits <= 0:
        raise ConfigError(f"num_bits must be a positive integer, got {num_bits!r}")
    kind, m = MODULATIONS[modulation]
    dev_str = device_string(device)
    source = BinarySource(device=dev_str)
    mapper = Mapper(kind, m, device=dev_str)
    demapper = Demapper("maxlog", kind, m, hard_out=True, device=dev_str)
    row_bits = (symbols_per_row or independent_row_length(channel)) * m
    rows_total = -(-num_bits // row_bits)
    rows_per_batch = max(1, max_bits_per_batch // row_bits)
    errors = squares = 0.0
    done = 0
    while done < rows_total:
        rows = min(rows_per_batch, rows_total - done)
        bits = source([rows, row_bits])
        out = channel(mapper(bits), float(snr_db))
        y, no = out.unbiased()
        per_row = (demapper(y, no) != bits).sum(-1).double()   # errors of each independent row
        errors += float(per_row.sum())
        squares += float(per_row.pow(2).sum())
        done += rows
    simulated = rows_total * row_bits
    ber = errors / simulated
    if errors == 0:
        return BerEstimate(0.0, simulated, 0.0, min(1.0, 3.0 / simulated), rows_total)
    mean = errors / rows_total                                  # errors per row
    var = max(0.0, squares / rows_total - mean * mean) * rows_total / max(1, rows_total - 1)
    half = 1.96 * math.sqrt(var / rows_total) / row_bits
    return BerEstimate(ber, simulated, max(0.0, ber - half), min(1.0, ber + half), rows_total)
