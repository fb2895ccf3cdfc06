"""Codecs by name: ``build_codec({"name": "hyperprior", ...})``.

Unknown names fail with the registered ones; unknown parameters with the allowed ones.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any, Mapping

from intelliflow.errors import ConfigError, RegistryError

from .baselines import IdentityCodec, ImageUploadCodec, QuantizeCodec, TextCodec
from .digital import FactorizedFeatureCodec, FeatureCodecConfig, HyperpriorFeatureCodec
from .jscc import JSCCCodec, JSCCConfig


def _digital(cls):
    def build(**params):
        return cls(FeatureCodecConfig(**params))
    build.allowed = [f.name for f in fields(FeatureCodecConfig)]
    return build


def _jscc(**params):
    return JSCCCodec(JSCCConfig(**params))


_jscc.allowed = [f.name for f in fields(JSCCConfig)]


def _plain(factory, **fixed):
    def build(**params):
        return factory(**fixed, **params)
    build.allowed = [p for p in inspect.signature(factory).parameters if p not in fixed and p != "self"]
    return build


CODECS = {
    "factorized": _digital(FactorizedFeatureCodec),
    "hyperprior": _digital(HyperpriorFeatureCodec),
    "jscc": _jscc,
    "jpeg": _plain(ImageUploadCodec, fmt="jpeg"),
    "webp": _plain(ImageUploadCodec, fmt="webp"),
    "quantize": _plain(QuantizeCodec),
    "identity": _plain(IdentityCodec),
    "text": _plain(TextCodec),
}


def available_codecs() -> list[str]:
    """Registered codec names (``mse-codec`` is the shipped MSE-trained hyperprior)."""
    return sorted([*CODECS, "mse-codec"])


def build_codec(config: str | Mapping[str, Any]):
    """Build a codec from its name or a mapping ``{"name": ..., **parameters}``."""
    if isinstance(config, str):
        config = {"name": config}
    params = dict(config)
    name = params.pop("name", None)
    if name == "mse-codec":
        from .persistence import codec_folder, load_codec

        folder = codec_folder(name)
        if folder is None:
            raise RegistryError("the mse-codec checkpoint is not in this installation; train it with "
                                "intelliflow train recipes/shapes/mse_codec.yaml")
        if params:
            raise ConfigError(f"mse-codec is a trained checkpoint; it takes no parameters, got {sorted(params)}")
        return load_codec(folder)
    if name not in CODECS:
        raise RegistryError(f"unknown codec {name!r}; registered: {available_codecs()}")
    build = CODECS[name]
    unknown = sorted(set(params) - set(build.allowed))
    if unknown:
        raise ConfigError(f"codec {name!r} has no parameter(s) {unknown}; allowed: {build.allowed}")
    return build(**params)
