"""Device and receiver of ``.iflow`` files: split model + codec, no channel (an ideal link).

:class:`FileEncoder` runs the device side (:class:`~intelliflow.flow.Device`) and wraps each
image's payload in an ``.iflow`` container (:mod:`intelliflow.deploy.container`);
:class:`FileDecoder` reads a container, loads the named model and codec (cached) and finishes the
caption with :class:`~intelliflow.flow.Receiver`.
"""

from __future__ import annotations

from typing import Sequence

from intelliflow.codec import resolve_codec
from intelliflow.codec.registry import canonical_name
from intelliflow.errors import ConfigError, PayloadMismatchError, RegistryError
from intelliflow.flow import Device, Receiver
from intelliflow.flow.endpoints import split_for, trained_split
from intelliflow.models import load_split_model, shipped_models
from intelliflow.models.drafter import load_drafter

from intelliflow.codec.bitstream import read_stream_header, stream_header

from .container import identifier, pack_iflow, pack_stream_file, unpack_iflow, unpack_stream_file


def byte_codec(name: str, what: str = "this", folders: bool = True):
    """The codec ``name`` resolves to (``folders``: as :func:`~intelliflow.codec.resolve_codec`),
    refused unless it sends bytes (files and HTTP carry bytes)."""
    codec = resolve_codec(name, folders=folders)
    if codec.sends != "bytes":
        raise ConfigError(f"{name} sends channel {codec.sends}, not bytes: {what} carries bytes; "
                          "its symbols go through a radio channel (intelliflow eval --channel ...)")
    return codec


class FileEncoder:
    """Device side: PIL images -> one ``.iflow`` file (bytes) per image.

    :param model: a split model name or folder; :param codec: a codec name (the receiver resolves
        the same name); :param options: the codec's rate knob (e.g. ``q=2.0``).
    """

    def __init__(self, model: str, codec: str, split: int | None = None, drafter: str | None = None, **options):
        self.model_name, self.codec_name, self.options = str(model), str(codec), options
        codec_object = byte_codec(codec, "an .iflow file")
        drafter_object = load_drafter(drafter) if drafter is not None else None
        split = split_for(codec_object, self.model_name, split)
        if split is None and drafter_object is not None:
            split = drafter_object.config.split
        self.model = load_split_model(model, split=split).eval()
        self.device = Device(self.model, codec_object, drafter_object)
        self.drafter_name = None if drafter is None else str(drafter)

    def encode(self, images: Sequence) -> list[bytes]:
        return [pack_iflow(self.model_name, self.model.split, self.codec_name, payload, self.drafter_name)
                for payload in self.device.encode(images, **self.options).data]

    def encode_stream(self, images: Sequence) -> bytes:
        """PIL images -> one stream file (``.iflows``): the context written once, then each image's
        stream payload (the codec's body). Needs a codec with stream mode (``codec.streams``)."""
        codec = self.device.codec
        if not codec.streams:
            raise ConfigError(f"{self.codec_name} has no per-image header to share: its payloads are self-contained; "
                              "write .iflow files")
        stream = codec.stream_for(self.model.feature_grid, **codec.rate_options(**self.options))
        payloads = self.device.encode(images, stream=stream, **self.options).data
        return pack_stream_file(self.model_name, self.model.split, self.codec_name,
                                stream_header(stream, codec.fingerprint), payloads, self.drafter_name)


class FileDecoder:
    """Receiver: ``.iflow`` bytes -> (caption, payload bits). Loaded models and codecs are cached.

    :param model, codec: what this receiver's operator configured (names or folders). A file names
        models and codecs by identifier only; an identifier loads the configured model or codec it
        stands for, a shipped model, a shipped codec or a fixed codec (``jpeg-30``). A file never
        makes the receiver load a folder: anything else is a :class:`PayloadMismatchError`.
    """

    def __init__(self, model: str | None = None, codec: str | None = None, drafter: str | None = None):
        self.configured_model, self.configured_codec, self.configured_drafter = model, codec, drafter
        self._models: dict = {}
        self._codecs: dict = {}
        self._drafters: dict = {}

    def _drafter(self, ident: str | None):
        """The drafter a file's drafts were made with: the configured one or a shipped one."""
        from intelliflow.models.drafter import SHIPPED_DRAFTERS

        if ident is None:
            return None
        if ident not in self._drafters:
            if self.configured_drafter is not None and identifier(self.configured_drafter) == ident:
                name = self.configured_drafter
            elif ident in SHIPPED_DRAFTERS:
                name = ident
            else:
                raise PayloadMismatchError(f"the file carries drafts of drafter {ident!r}, which this receiver was "
                                           f"not configured with (shipped: {sorted(SHIPPED_DRAFTERS)}; give --draft)")
            self._drafters[ident] = load_drafter(name)
        return self._drafters[ident]

    def _model(self, ident: str, split: int):
        if (ident, split) not in self._models:
            if self.configured_model is not None and identifier(self.configured_model) == ident:
                name = self.configured_model
            elif ident in shipped_models():
                name = ident
            else:
                raise PayloadMismatchError(f"the file is for model {ident!r}, which this receiver was not configured "
                                           f"with (shipped: {sorted(shipped_models())}; give --model)")
            self._models[(ident, split)] = load_split_model(name, split=split).eval()
        return self._models[(ident, split)]

    def _codec(self, ident: str):
        if ident not in self._codecs:
            if self.configured_codec is not None and canonical_name(self.configured_codec) == canonical_name(ident):
                name, folders = (self.configured_codec, True) if identifier(self.configured_codec) == ident \
                    else (ident, False)
            else:
                name, folders = ident, False
            try:
                self._codecs[ident] = byte_codec(name, "an .iflow file", folders=folders)
            except (RegistryError, ConfigError) as exc:
                raise PayloadMismatchError(f"the file's codec {ident!r} is not one this receiver serves: {exc}") from exc
        return self._codecs[ident]

    def receiver(self, model: str, split: int, codec: str, drafter: str | None = None) -> Receiver:
        resolved = self._codec(codec)
        trained = trained_split(resolved)
        if trained is not None and trained != split:  # a learned codec codes one split point's features
            raise PayloadMismatchError(f"the file says split {split}, but codec {codec!r} was trained for split "
                                       f"{trained}")
        try:
            return Receiver(self._model(model, split), resolved, self._drafter(drafter))
        except ConfigError as exc:   # a drafter for another split or model than the file's
            raise PayloadMismatchError(f"the file's drafter {drafter!r} does not draft for {model!r} at split "
                                       f"{split}: {exc}") from exc

    def decode(self, data: bytes) -> tuple[str, int]:
        parsed = unpack_iflow(data)
        receiver = self.receiver(parsed.model, parsed.split, parsed.codec, parsed.drafter)
        return receiver.captions([parsed.payload])[0], parsed.bits

    def decode_stream(self, data: bytes) -> list[tuple[str, int]]:
        """A stream file -> (caption, payload bits) per image; a header for another codec (or its
        other weights) is a :class:`~intelliflow.errors.PayloadMismatchError` before any image."""
        from intelliflow.errors import BitstreamError

        parsed = unpack_stream_file(data)
        receiver = self.receiver(parsed.model, parsed.split, parsed.codec, parsed.drafter)
        codec = receiver.codec
        if not codec.streams:
            raise PayloadMismatchError(f"codec {parsed.codec!r} has no stream mode: this is not its stream file")
        try:
            stream = read_stream_header(parsed.header, codec.payload_id, codec.fingerprint)
        except BitstreamError as exc:
            raise PayloadMismatchError(f"the stream was not written by this receiver's {parsed.codec!r}: {exc}") from exc
        captions = receiver.captions(parsed.payloads, stream=stream)
        return list(zip(captions, parsed.bits))
