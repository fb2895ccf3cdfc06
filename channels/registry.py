"""Analog channels by name: ``build_channel({"name": "rayleigh", ...})``.

A channel class registers itself where it is defined (``@CHANNELS.register("awgn")``); the
package's modules are imported on the first look-up, so a new channel is one module.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from intelliflow.errors import ConfigError
from intelliflow.registry import Registry

__all__ = ["CHANNELS", "available_channels", "channel_config", "channel_name", "channel_parameters",
           "build_channel"]

#: analog channel classes by name (``none``, ``awgn``, ``rayleigh``, ``ofdm-tdl``, ...)
CHANNELS = Registry("channel", __package__)


def available_channels() -> list[str]:
    """Names :func:`build_channel` accepts."""
    return CHANNELS.names()


def channel_config(channel: Any) -> dict[str, Any]:
    """Any way of naming a channel, as its config dict ``{"name": ..., **options}``.

    The one place that turns what users and callers pass as a channel into a config:

    - a name, ``"awgn"``;
    - the command line's text form ``"NAME:key=value,key=value"``, values read as YAML scalars
      (``"rayleigh:csi=estimated,block_length=32"``);
    - a mapping with a ``name`` key (copied);
    - a channel module (its ``config()``), or any object with a ``name`` attribute.

    The name is not checked against the registered channels (:func:`build_channel` does that; the
    capacity, BER and BLER references accept only the names they know).

    :raises ConfigError: no name can be found, or an option of the text form is not ``key=value``.

    >>> channel_config("rayleigh:csi=estimated,block_length=32")
    {'name': 'rayleigh', 'csi': 'estimated', 'block_length': 32}
    >>> channel_config({"name": "awgn"}), channel_config("none")
    ({'name': 'awgn'}, {'name': 'none'})
    """
    if isinstance(channel, str):
        name, _, options = channel.partition(":")
        config: dict[str, Any] = {"name": name}
        if options:
            import yaml

            for item in filter(None, options.split(",")):
                key, eq, value = item.partition("=")
                if not eq:
                    raise ConfigError(f"channel option {item!r} must be key=value (e.g. rayleigh:csi=estimated)")
                config[key.strip()] = yaml.safe_load(value)
        return config
    if isinstance(channel, Mapping):
        if "name" not in channel:
            raise ConfigError(f"channel config {dict(channel)!r} has no 'name'; allowed names: {available_channels()}")
        return dict(channel)
    if callable(getattr(channel, "config", None)):
        return dict(channel.config())
    name = getattr(channel, "name", None)
    if not isinstance(name, str):
        raise ConfigError(f"a channel must be a name, a mapping with a 'name' key or a channel module, got {channel!r}")
    return {"name": name}


def channel_name(channel: Any) -> str:
    """The name of a channel given in any form :func:`channel_config` takes.

    >>> channel_name("ofdm-tdl:tdl_model=C"), channel_name({"name": "rayleigh", "csi": "estimated"})
    ('ofdm-tdl', 'rayleigh')
    """
    return channel_config(channel)["name"]


def channel_parameters(name: str) -> dict[str, Any]:
    """The parameters of channel ``name`` and their defaults, e.g. ``{"csi": "perfect", ...}``."""
    cls = CHANNELS.get(name)
    signature = inspect.signature(cls.__init__)
    return {p.name: p.default for p in signature.parameters.values() if p.name != "self"}


def build_channel(config: str | Mapping[str, Any]):
    """An analog channel from its name or a config mapping with a ``name`` key.

    :param config: ``"awgn"``, e.g. ``{"name": "rayleigh", "csi": "estimated", "num_pilots": 8}``, or
        the text form ``"rayleigh:csi=estimated,num_pilots=8"`` (see :func:`channel_config`).
    :output channel: :class:`~intelliflow.channels.analog.AnalogChannel`.
    :raises RegistryError: unknown name (the message lists the allowed ones).
    :raises ConfigError: unknown parameter or bad value (the message lists what is allowed).

    .. code-block:: python

        ch = build_channel({"name": "ofdm-tdl", "tdl_model": "C", "max_speed": 30.0})
        out = ch(x, snr_db=torch.tensor([5.0, 15.0]))
    """
    if not isinstance(config, (str, Mapping)):
        raise ConfigError(f"a channel config must be a name or a mapping with a 'name' key, got {config!r}")
    config = channel_config(config)
    params = {k: v for k, v in config.items() if k != "name"}
    name = config["name"]
    allowed = channel_parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"channel {name!r}: unknown parameter(s) {unknown}; allowed: {sorted(allowed) or 'none'}")
    return CHANNELS.get(name)(**params)
