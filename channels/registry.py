"""Build analog channels by name from a config: ``build_channel({"name": "rayleigh", ...})``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from intelliflow.errors import ConfigError, RegistryError

__all__ = ["CHANNEL_NAMES", "available_channels", "channel_parameters", "build_channel"]

CHANNEL_NAMES = ("none", "awgn", "rayleigh", "ofdm-tdl")


def _classes() -> dict[str, type]:
    from .analog import AWGNChannel, NoChannel, OFDMTDLChannel, RayleighChannel

    return {"none": NoChannel, "awgn": AWGNChannel, "rayleigh": RayleighChannel, "ofdm-tdl": OFDMTDLChannel}


def available_channels() -> list[str]:
    """Names :func:`build_channel` accepts."""
    return list(CHANNEL_NAMES)


def _check_name(name: Any) -> str:
    if name not in CHANNEL_NAMES:
        raise RegistryError(f"unknown channel {name!r}; allowed: {list(CHANNEL_NAMES)}")
    return name


def channel_parameters(name: str) -> dict[str, Any]:
    """The parameters of channel ``name`` and their defaults, e.g. ``{"csi": "perfect", ...}``."""
    cls = _classes()[_check_name(name)]
    signature = inspect.signature(cls.__init__)
    return {p.name: p.default for p in signature.parameters.values() if p.name != "self"}


def build_channel(config: str | Mapping[str, Any]):
    """An analog channel from its name or a config mapping with a ``name`` key.

    :param config: ``"awgn"`` or e.g. ``{"name": "rayleigh", "csi": "estimated", "num_pilots": 8}``.
    :output channel: :class:`~intelliflow.channels.analog.AnalogChannel`.
    :raises RegistryError: unknown name (the message lists the allowed ones).
    :raises ConfigError: unknown parameter or bad value (the message lists what is allowed).

    .. code-block:: python

        ch = build_channel({"name": "ofdm-tdl", "tdl_model": "C", "max_speed": 30.0})
        out = ch(x, snr_db=torch.tensor([5.0, 15.0]))
    """
    if isinstance(config, str):
        config = {"name": config}
    if not isinstance(config, Mapping):
        raise ConfigError(f"a channel config must be a name or a mapping with a 'name' key, got {config!r}")
    if "name" not in config:
        raise ConfigError(f"channel config {dict(config)!r} has no 'name'; allowed names: {list(CHANNEL_NAMES)}")
    params = {k: v for k, v in config.items() if k != "name"}
    name = _check_name(config["name"])
    allowed = channel_parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"channel {name!r}: unknown parameter(s) {unknown}; allowed: {sorted(allowed) or 'none'}")
    return _classes()[name](**params)
