"""The MCS table (after 3GPP TS 38.214).

The table is TS 38.214 Table 5.1.3.1-1 (PDSCH, up to 64-QAM; the same values as Sionna's
``sionna.phy.nr.utils.decode_mcs_index(i, table_index=1, is_pusch=False)``), indexed by the 3GPP
``I_MCS``. Entries 0-2 (QPSK at code rates 120/1024 to 193/1024) are left out: 3GPP reaches
code rates below 1/5 through circular-buffer repetition, which Sionna's ``LDPC5GEncoder`` does not
implement (it rejects ``r < 1/5``). That leaves 26 entries, ``I_MCS`` 3 to 28: QPSK, 16-QAM and
64-QAM.

Which MCS a payload gets is :mod:`~intelliflow.channels.link_adaptation`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from intelliflow.errors import ConfigError


__all__ = ["MCS", "MCS_TABLE", "MCS_INDICES", "get_mcs"]

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
