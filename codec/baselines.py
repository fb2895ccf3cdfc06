"""Information-flow baselines: what a device sends when it does not send task-oriented features.

(The image uploads, ``jpeg``/``webp``/``avif``, are in :mod:`intelliflow.codec.image_upload` and
beside it.)

- :class:`QuantizeCodec` (``quantize``): the split features uniformly quantised to 8, 6 or 4 bits
  per value and deflated with zlib. Rate = bytes, header included.
- :class:`IdentityCodec` (``identity``): the clean float32 features (the quality ceiling).
- :class:`TextCodec` (``text``): the caption computed on the device, sent as UTF-8.

Every payload is self-contained, and a damaged one raises :class:`~intelliflow.errors.BitstreamError`.
"""

from __future__ import annotations

import struct
import zlib
from typing import Sequence

import numpy as np
import torch

from intelliflow.errors import BitstreamError, ConfigError, ShapeError

from . import bitstream
from .interface import Codec, check_batch, check_expected
from .registry import register_codec


@register_codec("quantize", option="bits", payload_id=3)
class QuantizeCodec(Codec):
    """Uniform quantisation of features to ``bits`` per value, then zlib.

    Payload: ``bitstream`` header (kind ``quantize``, bits in the rate byte, grid), the feature
    shape (two uint16), the range (two float32), the deflated packed integers, and the CRC.

    :input features: [B, C, H, W] float -> list of B payloads.

    >>> import torch
    >>> codec = QuantizeCodec(bits=6)
    >>> payloads = codec.encode(torch.rand(2, 4, 3, 3))
    >>> codec.decode(payloads).shape, codec.name
    (torch.Size([2, 4, 3, 3]), 'quantize-6')
    """

    takes, sends = "features", "bytes"

    def __init__(self, bits: int = 8, level: int = 9):
        if bits not in (2, 4, 6, 8):
            raise ConfigError(f"quantize bits must be one of 2, 4, 6, 8, got {bits}")
        self.bits, self.level = bits, level
        self._finger = bitstream.fingerprint("quantize", str(bits))

    @property
    def name(self) -> str:
        return f"quantize-{self.bits}"

    @property
    def fingerprint(self) -> bytes:
        """Digest of the settings; keys every payload's check (as a feature codec's does)."""
        return self._finger

    def encode(self, features: torch.Tensor) -> list[bytes]:
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
            out.append(bitstream.pack(self.payload_id, self.bits, h, w, body, self._finger))
        return out

    def decode(self, payloads: Sequence[bytes], expected: tuple[int, int, int] | None = None, **_) -> torch.Tensor:
        """Payloads -> features [B, C, H, W] (float32); ``expected=(C, H, W)`` refuses other shapes
        before inflating."""
        out = []
        for data in check_batch(payloads):
            packet = bitstream.unpack(data, self.payload_id, self._finger)
            if packet.q16 != self.bits:
                raise BitstreamError(f"payload holds {packet.q16}-bit values, this codec reads {self.bits}-bit")
            body = packet.body
            if len(body) < 10:
                raise BitstreamError("quantize payload too short for its shape and range")
            c, lo, hi = struct.unpack(">Hff", body[:10])
            check_expected((c, packet.height, packet.width), expected, "features of")
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


@register_codec("identity")
class IdentityCodec(Codec):
    """The clean features as raw float32 (plus a 4-byte shape header): the ceiling, and its rate.

    Decoding is exact, so the receiver's caption is the unsplit model's. Results label it
    ``identity``; it is meant for an ideal link (raw float32 features over the LDPC link would
    take minutes per image).
    """

    takes, sends = "features", "bytes"
    ideal_link_only = True

    @property
    def family(self) -> str:
        return "identity"

    def encode(self, features: torch.Tensor) -> list[bytes]:
        if features.dim() != 4:
            raise ShapeError(f"identity takes features [B, C, H, W], got {list(features.shape)}")
        _, c, h, w = features.shape
        header = struct.pack(">HBB", c, h, w)
        return [header + x.astype("<f4").tobytes() for x in features.detach().float().cpu().numpy()]

    def decode(self, payloads: Sequence[bytes], expected: tuple[int, int, int] | None = None, **_) -> torch.Tensor:
        """Payloads -> features [B, C, H, W], bit-exact; ``expected=(C, H, W)`` refuses other shapes."""
        out = []
        for data in check_batch(payloads):
            if len(data) < 4:
                raise BitstreamError("identity payload too short for its header")
            c, h, w = struct.unpack(">HBB", data[:4])
            check_expected((c, h, w), expected, "features of")
            if len(data) != 4 + 4 * c * h * w:
                raise BitstreamError(f"identity payload of {len(data)} bytes does not hold {c}x{h}x{w} float32")
            out.append(torch.from_numpy(np.frombuffer(data[4:], dtype="<f4").reshape(c, h, w).copy()))
        return torch.stack(out)


@register_codec("text")
class TextCodec(Codec):
    """The device captions the image itself and sends the UTF-8 text (full on-device inference)."""

    takes, sends = "caption", "bytes"

    def encode(self, captions: Sequence[str]) -> list[bytes]:
        return [c.encode("utf-8") for c in captions]

    def decode(self, payloads: Sequence[bytes], **_) -> list[str]:
        try:
            return [bytes(p).decode("utf-8") for p in check_batch(payloads)]
        except UnicodeDecodeError as exc:
            raise BitstreamError(f"text payload is not UTF-8: {exc}") from exc
