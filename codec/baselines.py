"""Information-flow baselines: what a device sends when it does not send task-oriented features.

- :class:`ImageUploadCodec` (``jpeg``, ``webp``): the image itself, compressed by Pillow; the
  server runs the whole captioner on the decoded image. Rate = file bytes.
- :class:`QuantizeCodec` (``quantize``): the split features uniformly quantised to 8, 6 or 4 bits
  per value and deflated with zlib. Rate = bytes, header included.
- :class:`IdentityCodec` (``identity``): the clean float32 features (the quality ceiling).
- :class:`TextCodec` (``text``): the caption computed on the device, sent as UTF-8.

Every payload is self-contained, and a damaged one raises :class:`~intelliflow.errors.BitstreamError`.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from intelliflow.errors import BitstreamError, ConfigError, ShapeError

from . import bitstream


class ImageUploadCodec:
    """Send the image: ``compress(images) -> list[bytes]``, ``decompress(list[bytes]) -> images``.

    :param fmt: ``"jpeg"`` or ``"webp"``; :param quality: Pillow's quality, 1-100.
    """

    def __init__(self, fmt: str = "jpeg", quality: int = 75):
        if fmt not in ("jpeg", "webp"):
            raise ConfigError(f"image format must be 'jpeg' or 'webp', got {fmt!r}")
        if not 1 <= int(quality) <= 100:
            raise ConfigError(f"image quality must be in 1..100, got {quality}")
        self.fmt, self.quality = fmt, int(quality)
        self.name = fmt

    def compress(self, images: Sequence[Image.Image]) -> list[bytes]:
        out = []
        for image in images:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format=self.fmt.upper(), quality=self.quality)
            out.append(buffer.getvalue())
        return out

    def decompress(self, payloads: Sequence[bytes]) -> list[Image.Image]:
        images = []
        for data in payloads:
            try:
                with Image.open(io.BytesIO(bytes(data))) as image:
                    if image.format is None or image.format.lower() != self.fmt:
                        raise BitstreamError(f"payload is a {image.format} file, not {self.fmt}")
                    images.append(image.convert("RGB"))
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise BitstreamError(f"payload is not a readable {self.fmt} image: {exc}") from exc
        return images


class QuantizeCodec:
    """Uniform quantisation of features to ``bits`` per value, then zlib.

    Payload: ``bitstream`` header (kind ``quantize``, bits in the rate byte, grid), the feature
    shape (two uint16), the range (two float32), the deflated packed integers, and the CRC.

    :input features: [B, C, H, W] float -> list of B payloads.
    """

    kind = "quantize"

    def __init__(self, bits: int = 8, level: int = 9):
        if bits not in (2, 4, 6, 8):
            raise ConfigError(f"quantize bits must be one of 2, 4, 6, 8, got {bits}")
        self.bits, self.level = bits, level
        self.name = f"quantize-{bits}"
        self._finger = bitstream.fingerprint("quantize", str(bits))

    def compress(self, features: torch.Tensor) -> list[bytes]:
        if features.dim() != 4:
            raise ShapeError(f"quantize takes features [B, C, H, W], got {list(features.shape)}")
        b, c, h, w = features.shape
        if not (c < 65536 and h < 256 and w < 256):
            raise ShapeError(f"feature shape {list(features.shape)} too large for the quantize header")
        levels = 2 ** self.bits - 1
        out = []
        for x in features.detach().float().cpu().numpy():
            lo, hi = float(x.min()), float(x.max())
            scale = (hi - lo) / levels if hi > lo else 1.0
            q = np.rint((x - lo) / scale).astype(np.uint8)
            packed = np.packbits(np.unpackbits(q.reshape(-1, 1), axis=1)[:, 8 - self.bits:]).tobytes()
            body = struct.pack(">Hff", c, lo, hi) + zlib.compress(packed, self.level)
            out.append(bitstream.pack(self.kind, self.bits, h, w, [body], self._finger))
        return out

    def decompress(self, payloads: Sequence[bytes]) -> torch.Tensor:
        if isinstance(payloads, (bytes, bytearray)) or not len(payloads):
            raise BitstreamError("decompress takes a non-empty list of payloads, one per image")
        out = []
        for data in payloads:
            packet = bitstream.unpack(data, self.kind, 1, self._finger)
            if packet.q16 != self.bits:
                raise BitstreamError(f"payload holds {packet.q16}-bit values, this codec reads {self.bits}-bit")
            body = packet.streams[0]
            if len(body) < 10:
                raise BitstreamError("quantize payload too short for its shape and range")
            c, lo, hi = struct.unpack(">Hff", body[:10])
            n = c * packet.height * packet.width
            try:
                packed = zlib.decompressobj().decompress(body[10:], (n * self.bits + 7) // 8 + 1)
            except zlib.error as exc:
                raise BitstreamError(f"quantize payload does not inflate: {exc}") from exc
            bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[: n * self.bits]
            if bits.size != n * self.bits:
                raise BitstreamError("quantize payload holds fewer values than its shape says")
            q = np.packbits(np.concatenate([np.zeros((n, 8 - self.bits), np.uint8), bits.reshape(n, self.bits)],
                                           axis=1), axis=1).reshape(c, packet.height, packet.width)
            scale = (hi - lo) / (2 ** self.bits - 1) if hi > lo else 1.0
            out.append(torch.from_numpy(q.astype(np.float32) * scale + lo))
        return torch.stack(out)


class IdentityCodec:
    """The clean features as raw float32 (plus a 4-byte shape header): the ceiling, and its rate."""

    name = "identity"

    def compress(self, features: torch.Tensor) -> list[bytes]:
        if features.dim() != 4:
            raise ShapeError(f"identity takes features [B, C, H, W], got {list(features.shape)}")
        _, c, h, w = features.shape
        header = struct.pack(">HBB", c, h, w)
        return [header + x.astype("<f4").tobytes() for x in features.detach().float().cpu().numpy()]

    def decompress(self, payloads: Sequence[bytes]) -> torch.Tensor:
        out = []
        for data in payloads:
            if len(data) < 4:
                raise BitstreamError("identity payload too short for its header")
            c, h, w = struct.unpack(">HBB", data[:4])
            if len(data) != 4 + 4 * c * h * w:
                raise BitstreamError(f"identity payload of {len(data)} bytes does not hold {c}x{h}x{w} float32")
            out.append(torch.from_numpy(np.frombuffer(data[4:], dtype="<f4").reshape(c, h, w).copy()))
        return torch.stack(out)


class TextCodec:
    """The device captions the image itself and sends the UTF-8 text (full on-device inference)."""

    name = "text"

    def compress(self, captions: Sequence[str]) -> list[bytes]:
        return [c.encode("utf-8") for c in captions]

    def decompress(self, payloads: Sequence[bytes]) -> list[str]:
        try:
            return [bytes(p).decode("utf-8") for p in payloads]
        except UnicodeDecodeError as exc:
            raise BitstreamError(f"text payload is not UTF-8: {exc}") from exc
