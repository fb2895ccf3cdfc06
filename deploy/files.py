"""Device and receiver of ``.iflow`` files: split model + codec, no channel (an ideal link).

:class:`FileEncoder` runs the device side (:class:`~intelliflow.flow.Device`) and wraps each
image's payload in an ``.iflow`` container (:mod:`intelliflow.deploy.container`);
:class:`FileDecoder` reads a container, loads the named model and codec (cached) and finishes the
caption with :class:`~intelliflow.flow.Receiver`.
"""

from __future__ import annotations

from typing import Sequence

from intelliflow.codec import resolve_codec
from intelliflow.errors import ConfigError
from intelliflow.flow import Device, Receiver
from intelliflow.models import load_split_model

from .container import pack_iflow, unpack_iflow


def byte_codec(name: str, what: str = "this"):
    """The codec ``name`` resolves to, refused unless it sends bytes (files and HTTP carry bytes)."""
    codec = resolve_codec(name)
    if codec.sends != "bytes":
        raise ConfigError(f"{name} sends channel {codec.sends}, not bytes: {what} carries bytes; "
                          "its symbols go through a radio channel (intelliflow eval --channel ...)")
    return codec


class FileEncoder:
    """Device side: PIL images -> one ``.iflow`` file (bytes) per image.

    :param model: a split model name or folder; :param codec: a codec name (the receiver resolves
        the same name); :param options: the codec's rate knob (e.g. ``q=2.0``).
    """

    def __init__(self, model: str, codec: str, split: int | None = None, **options):
        self.model_name, self.codec_name, self.options = str(model), str(codec), options
        self.model = load_split_model(model, split=split).eval()
        self.device = Device(self.model, byte_codec(codec, "an .iflow file"))

    def encode(self, images: Sequence) -> list[bytes]:
        return [pack_iflow(self.model_name, self.model.split, self.codec_name, payload)
                for payload in self.device.encode(images, **self.options).data]


class FileDecoder:
    """Receiver: ``.iflow`` bytes -> (caption, payload bits). Loaded models and codecs are cached."""

    def __init__(self):
        self._models: dict = {}
        self._codecs: dict = {}

    def receiver(self, model: str, split: int, codec: str) -> Receiver:
        if (model, split) not in self._models:
            self._models[(model, split)] = load_split_model(model, split=split).eval()
        if codec not in self._codecs:
            self._codecs[codec] = byte_codec(codec, "an .iflow file")
        return Receiver(self._models[(model, split)], self._codecs[codec])

    def decode(self, data: bytes) -> tuple[str, int]:
        parsed = unpack_iflow(data)
        receiver = self.receiver(parsed.model, parsed.split, parsed.codec)
        return receiver.captions([parsed.payload])[0], parsed.bits
