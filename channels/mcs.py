"""The MCS table (after 3GPP TS 38.214) and adaptive MCS selection from simulated BLER tables.

The table is TS 38.214 Table 5.1.3.1-1 (PDSCH, up to 64-QAM; the same values as Sionna's
``sionna.phy.nr.utils.decode_mcs_index(i, table_index=1, is_pusch=False)``), indexed by the 3GPP
``I_MCS``. Entries 0-2 (QPSK at code rates 120/1024 to 193/1024) are left out: 3GPP reaches
code rates below 1/5 through circular-buffer repetition, which Sionna's ``LDPC5GEncoder`` does not
implement (it rejects ``r < 1/5``). That leaves 26 entries, ``I_MCS`` 3 to 28: QPSK, 16-QAM and
64-QAM.

Adaptive selection picks the highest-rate MCS whose simulated block error rate at the given SNR
and channel stays under a target (default 10 %). The BLER-versus-SNR curves are simulated with
Sionna through :class:`~intelliflow.channels.digital.DigitalLink` by
``benchmarks/channels_bler_tables.py`` and cached in ``channels/data/bler_tables.json`` together
with the command that made them, the block length and the decoder settings.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from intelliflow.errors import ConfigError

from .registry import channel_name

__all__ = ["MCS", "MCS_TABLE", "MCS_INDICES", "get_mcs", "BlerTable", "load_bler_table", "select_mcs",
           "DEFAULT_TABLE_PATH"]

DEFAULT_TABLE_PATH = Path(__file__).resolve().parent / "data" / "bler_tables.json"

# TS 38.214 Table 5.1.3.1-1: I_MCS -> (Q_m, R x 1024)
_TS38214_TABLE1 = {
    0: (2, 120), 1: (2, 157), 2: (2, 193), 3: (2, 251), 4: (2, 308), 5: (2, 379), 6: (2, 449),
    7: (2, 526), 8: (2, 602), 9: (2, 679), 10: (4, 340), 11: (4, 378), 12: (4, 434), 13: (4, 490),
    14: (4, 553), 15: (4, 616), 16: (4, 658), 17: (6, 438), 18: (6, 466), 19: (6, 517), 20: (6, 567),
    21: (6, 616), 22: (6, 666), 23: (6, 719), 24: (6, 772), 25: (6, 822), 26: (6, 873), 27: (6, 910),
    28: (6, 948),
}
_MODULATION_NAMES = {2: "qpsk", 4: "16qam", 6: "64qam"}


@dataclass(frozen=True)
class MCS:
    """One modulation and coding scheme.

    :ivar index: ``I_MCS`` of TS 38.214 Table 5.1.3.1-1.
    :ivar bits_per_symbol: ``Q_m`` (2, 4 or 6).
    :ivar rate_x1024: target code rate times 1024, as tabulated.
    """

    index: int
    bits_per_symbol: int
    rate_x1024: int

    @property
    def modulation(self) -> str:
        """``"qpsk"``, ``"16qam"`` or ``"64qam"``."""
        return _MODULATION_NAMES[self.bits_per_symbol]

    @property
    def code_rate(self) -> float:
        """Target code rate ``R``."""
        return self.rate_x1024 / 1024.0

    @property
    def spectral_efficiency(self) -> float:
        """Nominal ``Q_m * R`` coded-information bits per channel use."""
        return self.bits_per_symbol * self.code_rate


MCS_TABLE: tuple[MCS, ...] = tuple(MCS(i, qm, r) for i, (qm, r) in _TS38214_TABLE1.items() if i >= 3)
MCS_INDICES: tuple[int, ...] = tuple(m.index for m in MCS_TABLE)
_BY_INDEX = {m.index: m for m in MCS_TABLE}


def get_mcs(mcs: int | MCS) -> MCS:
    """The :class:`MCS` with 3GPP index ``mcs`` (an :class:`MCS` passes through)."""
    if isinstance(mcs, MCS):
        return mcs
    if isinstance(mcs, bool) or not isinstance(mcs, (int, np.integer)) or int(mcs) not in _BY_INDEX:
        raise ConfigError(f"unknown MCS {mcs!r}; allowed: 'auto' or an index in {MCS_INDICES[0]}..{MCS_INDICES[-1]} "
                          f"(TS 38.214 Table 5.1.3.1-1 without 0-2, whose rates < 1/5 Sionna's LDPC encoder rejects)")
    return _BY_INDEX[int(mcs)]


class BlerTable:
    """Simulated BLER-versus-SNR curves per channel and MCS, read from the cached JSON file.

    BLER between simulated SNRs is interpolated linearly in log10(BLER) (zero counts as 1e-6);
    each curve is first made non-increasing from the right (a pessimistic clean-up of Monte-Carlo
    noise). Below the first simulated SNR the BLER is 1 (every scan starts at or below the
    Shannon limit of the MCS, where BLER is 1); above the last one it keeps the last value.
    """

    FLOOR = 1e-6

    def __init__(self, data: dict, source: str = "<dict>") -> None:
        self.data = data
        self.source = source
        try:
            self.curves = {
                ch: {int(i): (np.asarray(c["snr_db"], float), np.asarray(c["bler"], float))
                     for i, c in entry["mcs"].items()}
                for ch, entry in data["channels"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"BLER table {source} is malformed: {exc!r}") from exc

    @property
    def channels(self) -> list[str]:
        """Channel keys with tables, e.g. ``["awgn", "rayleigh"]``."""
        return list(self.curves)

    def _channel(self, channel: Any) -> str:
        name = channel_name(channel)
        if name not in self.curves:
            raise ConfigError(f"no BLER table for channel {name!r} in {self.source}; tables exist for "
                              f"{self.channels} (make more with benchmarks/channels_bler_tables.py)")
        return name

    def mcs_indices(self, channel: Any = "awgn") -> list[int]:
        """MCS indices with a curve for ``channel``, in increasing rate order."""
        return sorted(self.curves[self._channel(channel)])

    def bler(self, mcs: int | MCS, snr_db: float, channel: Any = "awgn") -> float:
        """Interpolated BLER of ``mcs`` at ``snr_db`` over ``channel``."""
        name = self._channel(channel)
        index = get_mcs(mcs).index
        if index not in self.curves[name]:
            raise ConfigError(f"BLER table for {name!r} has no MCS {index}; it has {sorted(self.curves[name])}")
        snr, bler = self.curves[name][index]
        bler = np.maximum.accumulate(bler[::-1])[::-1]
        if snr_db < snr[0]:
            return 1.0
        if snr_db >= snr[-1]:
            return float(bler[-1])
        log_b = np.log10(np.maximum(bler, self.FLOOR))
        value = 10.0 ** float(np.interp(snr_db, snr, log_b))
        return 0.0 if value <= self.FLOOR * 1.0000001 else value

    def threshold_db(self, mcs: int | MCS, channel: Any = "awgn", target_bler: float = 0.1) -> float:
        """Lowest SNR (dB) at which the interpolated BLER of ``mcs`` reaches ``target_bler`` (nan if never)."""
        name = self._channel(channel)
        snr, _ = self.curves[name][get_mcs(mcs).index]
        grid = np.arange(snr[0], snr[-1] + 1e-9, 0.01)
        ok = [s for s in grid if self.bler(mcs, s, name) <= target_bler]
        return float(ok[0]) if ok else math.nan


@lru_cache(maxsize=4)
def _load(path: str) -> BlerTable:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"BLER table {p} does not exist; make it with benchmarks/channels_bler_tables.py")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"BLER table {p} is not valid JSON: {exc}") from exc
    return BlerTable(data, source=str(p))


def load_bler_table(path: str | Path | None = None) -> BlerTable:
    """The cached BLER tables (``channels/data/bler_tables.json`` unless ``path`` is given)."""
    return _load(str(Path(path) if path is not None else DEFAULT_TABLE_PATH))


def select_mcs(snr_db: float, channel: Any = "awgn", target_bler: float = 0.1,
               table: BlerTable | None = None) -> MCS | None:
    """The highest-rate MCS whose simulated BLER at ``snr_db`` over ``channel`` is at most ``target_bler``.

    :param snr_db: Es/N0 in dB.
    :param channel: a channel name with a table (``"awgn"``, ``"rayleigh"``), config or module.
    :param target_bler: in (0, 1).
    :output mcs: :class:`MCS`, or ``None`` when no MCS meets the target.

    >>> best = select_mcs(10.0)   # over AWGN, from the cached tables
    >>> best.index, best.modulation, best.rate_x1024
    (18, '64qam', 466)
    >>> select_mcs(-20.0) is None
    True
    """
    if not (isinstance(target_bler, (int, float)) and 0.0 < target_bler < 1.0):
        raise ConfigError(f"target_bler must be in (0, 1), got {target_bler!r}")
    if not math.isfinite(float(snr_db)):
        raise ConfigError(f"snr_db must be finite, got {snr_db!r}")
    table = table or load_bler_table()
    best = None
    for index in table.mcs_indices(channel):
        mcs = get_mcs(index)
        if table.bler(mcs, float(snr_db), channel) <= target_bler:
            if best is None or mcs.spectral_efficiency > best.spectral_efficiency:
                best = mcs
    return best
