"""Device and receiver of ``.iflow`` files: split model + codec, no channel (an ideal link).

``encode_images`` runs the device side (preprocess, head, codec) and wraps each image's payload
in an ``.iflow`` container; ``FileDecoder`` reads a container, loads the named model tail and
codec (cached), and finishes the caption. Image-upload codecs (``jpeg``, ``webp``) send the
image and the receiver runs the whole model; ``text`` sends the device's own caption.
"""

from __future__ import annotations

from pathlib import Path

import torch

from intelliflow.codec.baselines import ImageUploadCodec, QuantizeCodec, TextCodec
from intelliflow.codec.bitstream import read_varint, write_varint
from intelliflow.codec.container import pack_iflow, unpack_iflow
from intelliflow.codec.registry import CODECS, build_codec
from intelliflow.errors import BitstreamError, ConfigError, RegistryError
from intelliflow.models import grid_to_tokens, load_split_model, tokens_to_grid

LEARNED = ("factorized", "hyperprior", "jscc")


def resolve_codec(name: str):
    """A codec from a registered baseline name (``quantize-6`` picks 6 bits), a shipped codec's
    name (``intelliflow codecs`` lists them; ``mse-codec`` is the shipped MSE-trained codec), or a
    checkpoint folder."""
    from intelliflow.codec.persistence import codec_folder, load_codec, shipped_codecs

    folder = codec_folder(name)
    if folder is not None:
        return load_codec(folder)
    base, _, option = name.partition("-")
    if base in CODECS and base not in LEARNED:
        if base == "quantize":
            return build_codec({"name": "quantize", "bits": int(option or 8)})
        if base in ("jpeg", "webp"):
            return build_codec({"name": base, "quality": int(option or 75)})
        return build_codec(base)
    if base in LEARNED or name == "mse-codec":
        raise ConfigError(f"codec {name!r} needs trained weights: give a shipped codec "
                          f"({sorted(shipped_codecs())}) or a checkpoint folder")
    if Path(name).is_dir():
        return load_codec(name)
    raise RegistryError(f"unknown codec {name!r}: not a registered baseline ({sorted(set(CODECS) - set(LEARNED))}), "
                        f"not a shipped codec ({sorted(shipped_codecs())}) and not a checkpoint folder")


def codec_metadata(name: str) -> dict:
    """What trained a learned codec (its checkpoint's JSON), or ``{}`` for baselines."""
    from intelliflow.codec.persistence import codec_folder, codec_info

    folder = codec_folder(name)
    return codec_info(folder) if folder is not None else {}


# Prefix tokens (CLS and the like) are not on the grid a feature codec sees: they travel beside
# it, quantised to 8 bits: payload = varint(len(prefix part)) + prefix part + codec payload.
_PREFIX_CODEC = QuantizeCodec(bits=8)


def features_to_payloads(model, codec, features: torch.Tensor, compress_options: dict | None = None) -> list[bytes]:
    """Head features [B, N, D] -> one payload (bytes) per image: the grid through ``codec``, prefix
    tokens beside it at 8 bits."""
    grid, prefix = tokens_to_grid(features, model.feature_grid, model.prefix_tokens)
    options = {k: v for k, v in (compress_options or {}).items() if v is not None}
    if not model.prefix_tokens:
        return codec.compress(grid, **options)
    prefix_parts = [write_varint(len(pp)) + pp
                    for pp in _PREFIX_CODEC.compress(prefix.transpose(1, 2).unsqueeze(-1))]  # [B, D, P, 1]
    if "target_bytes" in options:  # the budget covers the prefix part too
        budgets = options["target_bytes"]
        budgets = [budgets] * len(prefix_parts) if isinstance(budgets, (int, float)) else budgets
        options["target_bytes"] = [max(1, int(t) - len(pp)) for t, pp in zip(budgets, prefix_parts)]
    return [pp + p for pp, p in zip(prefix_parts, codec.compress(grid, **options))]


def payloads_to_features(model, codec, payloads: list[bytes]) -> torch.Tensor:
    """Payloads -> features [B, N, D] for the tail (the inverse of :func:`features_to_payloads`)."""
    prefix = None
    if model.prefix_tokens:
        parts, rest = [], []
        for data in payloads:
            length, pos = read_varint(bytes(data), 0)
            if pos + length > len(data):
                raise BitstreamError("the prefix-token part runs past the end of the payload")
            parts.append(bytes(data[pos:pos + length]))
            rest.append(bytes(data[pos + length:]))
        prefix = _PREFIX_CODEC.decompress(parts).squeeze(-1).transpose(1, 2)  # [B, P, D]
        payloads = rest
    grid = codec.decompress(payloads)
    device = next(model.parameters()).device
    return grid_to_tokens(grid.to(device), None if prefix is None else prefix.to(device))


@torch.no_grad()
def device_payloads(model, codec, images, codec_name: str = "codec",
                    compress_options: dict | None = None) -> list[bytes]:
    """Device side: PIL images -> one codec payload (bytes) per image.

    ``compress_options`` go to a learned codec's ``compress`` (``q``, ``target_bytes``)."""
    if isinstance(codec, ImageUploadCodec):
        return codec.compress(images)
    if isinstance(codec, TextCodec):
        return codec.compress(model.caption(images))
    if hasattr(codec, "encode") and not hasattr(codec, "compress"):
        raise ConfigError(f"{codec_name} is an analog codec: its symbols go through a channel, not into bytes")
    if not hasattr(codec, "log_gain"):  # fixed baselines take no rate options
        compress_options = None
    return features_to_payloads(model, codec, model.head(model.preprocess(images)), compress_options)


@torch.no_grad()
def receiver_captions(model, codec, payloads: list[bytes], **generation) -> list[str]:
    """Receiver side: payloads -> captions (the whole model for image uploads, the text for ``text``)."""
    if isinstance(codec, TextCodec):
        return codec.decompress(payloads)
    if isinstance(codec, ImageUploadCodec):
        with torch.no_grad():
            return model.full_generate(model.preprocess(codec.decompress(payloads)), **generation)
    return model.tail_generate(payloads_to_features(model, codec, payloads), **generation)


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
