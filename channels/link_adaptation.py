"""Link adaptation as 5G does it: BLER per MCS *and* code-block size from Sionna's PHY
abstraction, the MCS chosen for a payload's actual code blocks, and an outer loop that learns
from HARQ feedback.

Where the block error rates come from:

- **AWGN**: :class:`sionna.sys.PHYAbstraction`, which interpolates BLER tables across SNR and
  code-block size, loaded with ``channels/data/bler_tables.json``: the link's own tables per MCS
  (TS 38.214 Table 5.1.3.1-1, indices 3-28: Sionna's PDSCH MCS table 1) and code-block size
  (56 to 2072 LDPC information bits, CRC included: a DigitalLink block of ``b`` bytes has
  ``8 b + 24``), simulated through :class:`~intelliflow.channels.digital.DigitalLink` by
  ``benchmarks/channels_bler_tables.py`` in Sionna's table format. Sionna ships tables of this
  kind (``sionna/sys/bler_tables``), but Sionna 2's own coded link does not reach them: they are
  0.2-0.5 dB optimistic for long blocks (at MCS 5 and 2000 bits, 8 % BLER where Sionna's
  ``CodedAWGNChannelNR`` and DigitalLink lose 96 % of the blocks), so link adaptation on them would
  aim at 10 % and land at 40-95 %. ``benchmarks/link_adaptation.py`` measures both against
  DigitalLink. Blocks over 2072 bits use the 2072-bit curve.
- **Rayleigh block fading**: Sionna's tables are AWGN tables, and Sionna maps any channel onto
  them through an effective SINR; for a flat fade of power gain ``g`` that SINR is ``g * SNR``.
  The BLER at mean SNR ``s`` is therefore ``E_g[1 - prod_i (1 - BLER_awgn(mcs, k_i, g s))]`` with
  ``g ~ Exp(1)``, averaged here over a fine quadrature. It is exact for one gain per packet with
  perfect CSI (``block_length=None``), pessimistic when a packet spans several fades, and
  optimistic with estimated CSI: the outer loop corrects both from the HARQ feedback.
- **Other channels** (OFDM-TDL): no abstraction; pass an MCS index.

The MCS of a payload is the highest-rate one whose *transport* block error rate (any of its code
blocks failing at the first transmission) stays at or under the target, 10 % by default, as 5G
aims for with HARQ behind it. Sionna's ``InnerLoopLinkAdaptation`` answers another question (the
best MCS for a fixed allocation of resource elements, whose transport block grows with the MCS);
here the payload is fixed and its channel uses follow the MCS, so the choice is made from the
same ``PHYAbstraction.get_bler`` over the payload's own code-block sizes.

The outer loop (:class:`OuterLoop`) is the rule of Sionna's ``OuterLoopLinkAdaptation``
(Pedersen et al.): the SNR used for the choice is lowered by an offset that grows by
``delta_up`` dB after a failed first transmission and shrinks by
``delta_up * target / (1 - target)`` after a good one, so the first-transmission BLER converges to
the target whatever the tables get wrong. A batch of packets sent together at one MCS is one
feedback step, with its fraction of failures (per packet, a batch of 32 failing together would
throw the offset up by 32 dB: the loop is only stable when feedback follows each decision). It
keeps one offset per mean SNR (a sweep's SNR points are separate links). Sionna's class is not
used as it is because its inner loop is the fixed-allocation one above.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from intelliflow.errors import ConfigError

from .mcs import MCS, MCS_TABLE, get_mcs
from .registry import channel_name

__all__ = ["LinkAdaptation", "OuterLoop", "select_mcs", "code_block_bits", "ABSTRACTED_CHANNELS", "CRC_BITS",
           "TABLE_PATH", "shipped_sionna_bler"]

ABSTRACTED_CHANNELS = ("awgn", "rayleigh")
CRC_BITS = 24  # parity bits CRC24A adds to every code block of the link (part of the LDPC information bits)
TABLE_PATH = Path(__file__).resolve().parent / "data" / "bler_tables.json"
TABLE_KEYS = {"category": 1, "table_index": 1}   # PDSCH, MCS table 1 (TS 38.214 Table 5.1.3.1-1)
_CBS_GRID = (24, 2073, 8)          # every 8 b + 24 up to the largest simulated size (then clamped)
_SNR_GRID = (-15.0, 40.01, 0.05)   # dB
# Rayleigh quadrature: g ~ Exp(1) on log-spaced cells (the mass below the first edge fails)
_G_EDGES = np.logspace(-6.0, math.log10(40.0), 601)
_G_MASS = np.exp(-_G_EDGES[:-1]) - np.exp(-_G_EDGES[1:])
_G_DB = 10.0 * np.log10(np.sqrt(_G_EDGES[:-1] * _G_EDGES[1:]))


def code_block_bits(payload_bytes: int) -> int:
    """LDPC information bits of a code block carrying ``payload_bytes`` bytes (its CRC24A included):
    the code-block size Sionna's tables are indexed by."""
    return 8 * int(payload_bytes) + CRC_BITS


@lru_cache(maxsize=2)
def _abstraction(path: str) -> Any:
    """Sionna's PHYAbstraction on the tables at ``path``, interpolated on an 8-bit code-block grid."""
    from sionna.sys import PHYAbstraction

    if not Path(path).is_file():
        raise ConfigError(f"BLER table {path} does not exist; make it with benchmarks/channels_bler_tables.py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PHYAbstraction(load_bler_tables_from=[path], cbs_interp_min_max_delta=_CBS_GRID,
                              snr_db_interp_min_max_delta=_SNR_GRID, device="cpu", precision="double")


def _awgn_bler(mcs: np.ndarray, cbs: np.ndarray, snr_db: np.ndarray, path: Path = TABLE_PATH) -> np.ndarray:
    """BLER from the tables at ``path`` for broadcast arrays of MCS index, code-block size (bits) and Es/N0 (dB)."""
    mcs, cbs, snr_db = np.broadcast_arrays(np.asarray(mcs), np.asarray(cbs), np.asarray(snr_db, dtype=float))
    pa = _abstraction(str(path))
    snr = torch.from_numpy(np.asarray(np.power(10.0, np.clip(snr_db, _SNR_GRID[0], _SNR_GRID[1]) / 10.0), dtype=np.float64))
    bler = pa.get_bler(torch.from_numpy(mcs.astype(np.int32).copy()), TABLE_KEYS["table_index"],
                       TABLE_KEYS["category"], torch.from_numpy(cbs.astype(np.int32).copy()), snr)
    return bler.numpy()


def shipped_sionna_bler(mcs: int | MCS, block_bits: int, snr_db: float) -> float:
    """The BLER Sionna's own shipped table (``sionna/sys/bler_tables/PDSCH_table1.json``) gives, for comparison."""
    import sionna.sys

    path = Path(os.path.dirname(sionna.sys.__file__)) / "bler_tables" / "PDSCH_table1.json"
    return float(_awgn_bler(np.array(get_mcs(mcs).index), np.array(block_bits), np.array(snr_db), path))


class LinkAdaptation:
    """Block error rates per MCS, code-block size and SNR, and the MCS for a payload.

    :param channel: ``"awgn"`` or ``"rayleigh"`` (a name, config or channel module).
    :param target_bler: first-transmission transport-block error rate the MCS aims at, in (0, 1).

    >>> la = LinkAdaptation("awgn")
    >>> la.select([code_block_bits(24)], snr_db=10.0).index          # a 24-byte payload: one 216-bit block
    16
    >>> la.select([code_block_bits(256)], snr_db=10.0).index         # a 2072-bit block: a steeper waterfall
    18
    >>> la.packet_bler(18, [code_block_bits(24)], 10.0) > 0.1 >= la.packet_bler(18, [code_block_bits(256)], 10.0)
    True
    """

    def __init__(self, channel: Any = "awgn", target_bler: float = 0.1) -> None:
        name = channel_name(channel)
        if name not in ABSTRACTED_CHANNELS:
            raise ConfigError(f"no BLER abstraction for channel {name!r}: Sionna's tables cover "
                              f"{list(ABSTRACTED_CHANNELS)} (AWGN, and Rayleigh through its effective SNR); "
                              f"pass an MCS index (3..28) instead of 'auto'")
        if isinstance(target_bler, bool) or not isinstance(target_bler, (int, float)) \
                or not 0.0 < target_bler < 1.0:
            raise ConfigError(f"target_bler must be in (0, 1), got {target_bler!r}")
        self.channel = name
        self.target_bler = float(target_bler)
        self._indices = np.array([m.index for m in MCS_TABLE])

    def _packet_blers(self, mcs: np.ndarray, block_bits: Sequence[int], snr_db: float) -> np.ndarray:
        """Transport BLER for each MCS in ``mcs`` (1-D), all blocks of the packet at one SNR."""
        counts = Counter(int(k) for k in block_bits)
        if not counts:
            return np.zeros(len(mcs))
        sizes = np.array(sorted(counts))
        reps = np.array([counts[s] for s in sizes], dtype=float)
        if self.channel == "awgn":
            b = _awgn_bler(mcs[:, None], sizes[None, :], np.full((1, 1), snr_db))       # [M, S]
            return 1.0 - np.prod((1.0 - b) ** reps[None, :], axis=1)
        # one fade per packet: average the packet's success over g
        b = _awgn_bler(mcs[:, None, None], sizes[None, :, None], snr_db + _G_DB[None, None, :])   # [M, S, G]
        success = np.prod((1.0 - b) ** reps[None, :, None], axis=1)                              # [M, G]
        return 1.0 - success @ _G_MASS

    def block_bler(self, mcs: int | MCS, block_bits: int, snr_db: float) -> float:
        """BLER of one code block of ``block_bits`` information bits (CRC included) at ``snr_db``."""
        return self.packet_bler(mcs, [block_bits], snr_db)

    def packet_bler(self, mcs: int | MCS, block_bits: Sequence[int], snr_db: float) -> float:
        """Probability that a packet made of code blocks of ``block_bits`` bits fails its first transmission."""
        return float(self._packet_blers(np.array([get_mcs(mcs).index]), block_bits, float(snr_db))[0])

    def select(self, block_bits: Sequence[int], snr_db: float) -> MCS | None:
        """The highest-rate MCS whose packet BLER at ``snr_db`` is at most the target (``None`` if none)."""
        _check_snr(snr_db)
        return _select(self.channel, self.target_bler, tuple(sorted(int(k) for k in block_bits)),
                       round(float(snr_db), 4))

    def threshold_db(self, mcs: int | MCS, block_bits: Sequence[int], target_bler: float | None = None,
                     step_db: float = 0.05) -> float:
        """Lowest SNR (dB, on a ``step_db`` grid) at which the packet BLER of ``mcs`` meets the target."""
        target = self.target_bler if target_bler is None else float(target_bler)
        grid = np.arange(_SNR_GRID[0], _SNR_GRID[1] + 30.0, step_db)
        index = np.array([get_mcs(mcs).index])
        for snr in grid:
            if self._packet_blers(index, block_bits, float(snr))[0] <= target:
                return float(snr)
        return math.nan


@lru_cache(maxsize=4096)
def _select(channel: str, target: float, block_bits: tuple[int, ...], snr_db: float) -> MCS | None:
    la = LinkAdaptation(channel, target)
    blers = la._packet_blers(la._indices, block_bits, snr_db)
    ok = [get_mcs(int(i)) for i, b in zip(la._indices, blers) if b <= target]
    return max(ok, key=lambda m: m.spectral_efficiency) if ok else None


def _check_snr(snr_db: Any) -> None:
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float, np.floating)) or not math.isfinite(snr_db):
        raise ConfigError(f"snr_db must be a finite number, got {snr_db!r}")


def select_mcs(snr_db: float, channel: Any = "awgn", target_bler: float = 0.1,
               block_bits: Sequence[int] = (code_block_bits(256),)) -> MCS | None:
    """The highest-rate MCS whose first-transmission BLER for code blocks of ``block_bits`` bits
    (default: one 256-byte block) at ``snr_db`` over ``channel`` is at most ``target_bler``.

    :param snr_db: Es/N0 in dB.
    :param channel: ``"awgn"`` or ``"rayleigh"`` (name, config or module).
    :output mcs: :class:`~intelliflow.channels.mcs.MCS`, or ``None`` when no MCS meets the target.

    >>> best = select_mcs(10.0)
    >>> best.index, best.modulation, best.rate_x1024
    (18, '64qam', 466)
    >>> select_mcs(-20.0) is None
    True
    """
    return LinkAdaptation(channel, target_bler).select(block_bits, snr_db)


class OuterLoop:
    """Outer-loop link adaptation: an SNR offset per link learnt from first-transmission ACK/NACK.

    The rule of Sionna's ``OuterLoopLinkAdaptation``: a NACK raises the offset by ``delta_up`` dB,
    an ACK lowers it by ``delta_up * target / (1 - target)``, clamped to ``[offset_min, offset_max]``;
    the MCS is then chosen at ``snr - offset``. Feedback for packets sent together counts as one
    step, weighted by their fraction of NACKs.

    >>> loop = OuterLoop(target_bler=0.1, delta_up=1.0)
    >>> loop.update(12.0, [True] * 9 + [False])     # a batch at the target: the offset stays
    >>> abs(loop.offset(12.0)) < 1e-9
    True
    >>> loop.update(12.0, [False])                  # a NACK
    >>> loop.update(12.0, [True] * 4)               # then a batch of ACKs
    >>> round(loop.offset(12.0), 3), loop.offset(5.0)
    (0.889, 0.0)
    """

    def __init__(self, target_bler: float = 0.1, delta_up: float = 1.0, offset_min: float = -20.0,
                 offset_max: float = 20.0) -> None:
        if not 0.0 < float(target_bler) < 1.0:
            raise ConfigError(f"target_bler must be in (0, 1), got {target_bler!r}")
        if not float(delta_up) > 0.0:
            raise ConfigError(f"the outer loop's delta_up must be positive, got {delta_up!r}")
        self.target_bler = float(target_bler)
        self.delta_up = float(delta_up)
        self.delta_down = self.delta_up * self.target_bler / (1.0 - self.target_bler)
        self.offset_min, self.offset_max = float(offset_min), float(offset_max)
        self._offsets: dict[float, float] = {}
        #: when set, feedback is ignored and the offsets stay as they are (a measurement of a settled link)
        self.frozen = False

    @staticmethod
    def _key(snr_db: float) -> float:
        return round(float(snr_db), 3)

    def offset(self, snr_db: float) -> float:
        """The current offset (dB) of the link at mean SNR ``snr_db``."""
        return self._offsets.get(self._key(snr_db), 0.0)

    def update(self, snr_db: float, acks: Iterable[bool]) -> None:
        """Apply the first-transmission feedback of packets sent together (``True``: ACK)."""
        acks = [bool(a) for a in acks]
        if not acks or self.frozen:
            return
        nack = 1.0 - sum(acks) / len(acks)
        key = self._key(snr_db)
        value = self._offsets.get(key, 0.0) + nack * self.delta_up - (1.0 - nack) * self.delta_down
        self._offsets[key] = min(self.offset_max, max(self.offset_min, value))

    def reset(self, snr_db: float) -> None:
        """Forget what the link at mean SNR ``snr_db`` learnt."""
        self._offsets.pop(self._key(snr_db), None)

    def state(self) -> dict[float, float]:
        """Offsets per mean SNR (a copy)."""
        return dict(self._offsets)
