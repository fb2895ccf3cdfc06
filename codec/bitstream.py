"""The byte layout of one image's digital payload, and its integrity check.

::

    byte 0        0xA_ | codec kind (low nibble: the codec's ``payload_id`` in the registry,
                  e.g. 1 factorized, 2 hyperprior, 3 quantize)
    byte 1        rate point q in 1/16 steps (q = byte / 16), or the codec's own small setting
    byte 2, 3     feature grid height, width (the codec pads other sizes to its stride and crops back)
    ...           the codec's body (one entropy-coded stream: the hyperprior's z and y share it)
    last 2 bytes  CRC-16/CCITT (inverted) over the codec's fingerprint, the body length and every
                  byte before it

The fingerprint (a hash of the codec's configuration and entropy-model tables) is *not*
transmitted: it enters the CRC only, so a stream written by a different codec, or corrupted,
or truncated, fails the check before any byte reaches the entropy decoder (a false accept has
probability 2^-16), at no cost in rate. Every byte here counts in the rate.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass

import torch

from intelliflow.errors import BitstreamError

MAGIC = 0xA0
CRC_BYTES = 2


def fingerprint(*parts: bytes | str | torch.Tensor) -> bytes:
    """An 8-byte digest of configuration strings and tensors (entropy-model tables, weights)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        if isinstance(part, torch.Tensor):  # float32 bytes whatever the precision or device it lives in
            part = part.detach().cpu()
            part = (part.float() if part.is_floating_point() else part).contiguous().numpy().tobytes()
        elif isinstance(part, str):
            part = part.encode()
        h.update(part)
    return h.digest()


def _crc(finger: bytes, body: bytes) -> bytes:
    # the length enters the check and the register is inverted at the end, so appending or
    # dropping bytes (to which a plain CRC is blind: CRC(m + CRC(m)) is constant) is caught
    value = binascii.crc_hqx(finger + len(body).to_bytes(4, "big") + body, 0xFFFF) ^ 0xFFFF
    return value.to_bytes(2, "big")


def write_varint(n: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 28:
            raise BitstreamError("truncated or malformed length field")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if not byte & 0x80:
            return value, pos


@dataclass(frozen=True)
class Packet:
    """A parsed payload: rate point, feature grid size and the codec's body."""

    kind: int
    q16: int
    height: int
    width: int
    body: bytes

    @property
    def q(self) -> float:
        return self.q16 / 16.0


def pack(kind: int, q16: int, height: int, width: int, body: bytes, finger: bytes) -> bytes:
    """Lay out one image's payload (see the module docstring); ``kind`` is the codec's ``payload_id``."""
    if not (0 <= q16 < 256 and 0 < height < 256 and 0 < width < 256):
        raise BitstreamError(f"header field out of range: q16={q16}, grid {height}x{width} (each must fit a byte)")
    data = bytes([MAGIC | kind, q16, height, width]) + bytes(body)
    return data + _crc(finger, data)


def unpack(data: bytes, kind: int, finger: bytes) -> Packet:
    """Check and parse a payload written by :func:`pack`; any damage is a :class:`BitstreamError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"a payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 4 + CRC_BYTES:
        raise BitstreamError(f"payload of {len(data)} bytes is too short to hold a header")
    if data[0] >> 4 != MAGIC >> 4:
        raise BitstreamError("not an intelliflow codec payload (bad magic)")
    if data[0] & 0x0F != kind:
        from .registry import payload_kind_name

        raise BitstreamError(f"payload was written by a {payload_kind_name(data[0] & 0x0F)} codec, "
                             f"not a {payload_kind_name(kind)} one")
    body, crc = data[:-CRC_BYTES], data[-CRC_BYTES:]
    if _crc(finger, body) != crc:
        raise BitstreamError("payload failed its integrity check: corrupted, truncated, or written by "
                             "another codec (different weights or settings)")
    q16, height, width = body[1], body[2], body[3]
    if height == 0 or width == 0:
        raise BitstreamError("grid size of zero in the header")
    return Packet(kind, q16, height, width, body[4:])
