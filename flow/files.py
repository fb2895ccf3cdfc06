"""Device and receiver of ``.iflow`` files: split model + codec, no channel (an ideal link).

``encode_images`` runs the device side (preprocess, head, codec) and wraps each image's payload
in an ``.iflow`` container; ``FileDecoder`` reads a container, loads the named model tail and
codec (cached), and finishes the caption. Image-upload codecs (``jpeg``, ``webp``) send the
image and the receiver runs the whole model; ``text`` sends the device's own caption.
"""

from __future__ import annotations

from pathlib import Path

import torch

from intelliflow.codec.baselines import ImageUploadCodec, TextCodec
from intelliflow.codec.container import pack_iflow, unpack_iflow
from intelliflow.codec.registry import CODECS, build_codec
from intelliflow.errors import ConfigError, RegistryError
from intelliflow.models import grid_to_tokens, load_split_model, tokens_to_grid

LEARNED = ("factorized", "hyperprior", "jscc")


def resolve_codec(name: str):
    """A codec from a registered baseline name (``quantize-6`` picks 6 bits), or a checkpoint folder."""
    base, _, option = name.partition("-")
    if base in CODECS and base not in LEARNED:
        if base == "quantize":
            return build_codec({"name": "quantize", "bits": int(option or 8)})
        if base in ("jpeg", "webp"):
            return build_codec({"name": base, "quality": int(option or 75)})
        return build_codec(base)
    if base in LEARNED and not Path(name).exists():
        raise ConfigError(f"codec {name!r} needs trained weights: give its checkpoint folder instead")
    if Path(name).is_dir():
        from intelliflow.codec.persistence import load_codec

        return load_codec(name)
    raise RegistryError(f"unknown codec {name!r}: not a registered baseline ({sorted(set(CODECS) - set(LEARNED))}) "
                        "and not a checkpoint folder")


def _feature_grid(model, features: torch.Tensor) -> torch.Tensor:
    if model.prefix_tokens:
        raise ConfigError(f"feature codecs do not carry {model.prefix_tokens} prefix token(s) yet; "
                          "use a model whose features all lie on the grid")
    grid, _ = tokens_to_grid(features, model.feature_grid, 0)
    return grid


@torch.no_grad()
def device_payloads(model, codec, images, codec_name: str = "codec") -> list[bytes]:
    """Device side: PIL images -> one codec payload (bytes) per image."""
    if isinstance(codec, ImageUploadCodec):
        return codec.compress(images)
    if isinstance(codec, TextCodec):
        return codec.compress(model.caption(images))
    if hasattr(codec, "encode") and not hasattr(codec, "compress"):
        raise ConfigError(f"{codec_name} is an analog codec: its symbols go through a channel, not into bytes")
    return codec.compress(_feature_grid(model, model.head(model.preprocess(images))))


@torch.no_grad()
def receiver_captions(model, codec, payloads: list[bytes], **generation) -> list[str]:
    """Receiver side: payloads -> captions (the whole model for image uploads, the text for ``text``)."""
    if isinstance(codec, TextCodec):
        return codec.decompress(payloads)
    if isinstance(codec, ImageUploadCodec):
        with torch.no_grad():
            return model.full_generate(model.preprocess(codec.decompress(payloads)), **generation)
    grid = codec.decompress(payloads)
    return model.tail_generate(grid_to_tokens(grid.to(next(model.parameters()).device)), **generation)


def encode_images(model, codec, codec_name: str, images, model_name: str) -> list[bytes]:
    """Device side: PIL images -> one ``.iflow`` file (bytes) per image."""
    return [pack_iflow(model_name, model.split, codec_name, p)
            for p in device_payloads(model, codec, images, codec_name)]


class FileDecoder:
    """Receiver: ``.iflow`` bytes -> (caption, payload bits). Loaded models and codecs are cached."""

    def __init__(self):
        self._models: dict = {}
        self._codecs: dict = {}

    def model(self, name: str, split: int):
        if (name, split) not in self._models:
            self._models[(name, split)] = load_split_model(name, split=split)
        return self._models[(name, split)]

    def codec(self, name: str):
        if name not in self._codecs:
            self._codecs[name] = resolve_codec(name)
        return self._codecs[name]

    @torch.no_grad()
    def decode(self, data: bytes) -> tuple[str, int]:
        parsed = unpack_iflow(data)
        codec = self.codec(parsed.codec)
        model = self.model(parsed.model, parsed.split)
        return receiver_captions(model, codec, [parsed.payload])[0], parsed.bits
