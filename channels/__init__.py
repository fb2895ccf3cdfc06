"""intelliflow.channels: Sionna-based channels, the digital link and capacity references.

- Analog channels (``torch.nn.Module``, differentiable): ``build_channel({"name": ...})`` with
  ``none``, ``awgn``, ``rayleigh``, ``ofdm-tdl``; ``channel(x, snr_db) -> ChannelOutput``.
- The digital link: ``DigitalLink(channel).transmit(payload_bytes, snr_db, mcs)``; the MCS table
  after 3GPP TS 38.214 (``MCS_TABLE``); link adaptation from Sionna's PHY abstraction (BLER per MCS
  and code-block size, ``LinkAdaptation``, ``select_mcs``) with an outer loop (``OuterLoop``).
- References: ``shannon_channel_uses``, ``capacity``, ``ber_theory``, ``simulate_ber``.

Names are imported lazily, so ``import intelliflow.channels`` does not import Sionna (seconds)
until a channel or the link is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ChannelOutput": "analog", "AnalogChannel": "analog", "NoChannel": "analog", "AWGNChannel": "analog",
    "RayleighChannel": "analog", "OFDMTDLChannel": "analog", "snr_db_to_no": "analog",
    "build_channel": "registry", "available_channels": "registry", "channel_parameters": "registry",
    "CHANNELS": "registry", "channel_config": "registry", "channel_name": "registry",
    "DigitalLink": "digital", "LinkResult": "digital", "CRC_BITS": "digital", "DEFAULT_BLOCK_BYTES": "digital",
    "DEFAULT_BLOCK_BITS": "digital",
    "MCS": "mcs", "MCS_TABLE": "mcs", "MCS_INDICES": "mcs", "get_mcs": "mcs",
    "LinkAdaptation": "link_adaptation", "OuterLoop": "link_adaptation", "select_mcs": "link_adaptation",
    "code_block_bits": "link_adaptation", "ABSTRACTED_CHANNELS": "link_adaptation",
    "capacity": "capacity", "shannon_channel_uses": "capacity", "shannon_limit_db": "capacity",
    "MODULATIONS": "ber", "ber_theory": "ber", "simulate_ber": "ber", "has_ber_theory": "ber",
    "BerEstimate": "ber",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'intelliflow.channels' has no attribute {name!r}")
    found = importlib.import_module(f".{module}", __name__)
    if _EXPORTS.get(module) == module:
        # importing a submodule binds its name on the package: where the package exports a function of
        # that name (``capacity`` in ``capacity.py``), the name must stay the function
        globals()[module] = getattr(found, module)
    value = getattr(found, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
