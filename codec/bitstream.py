"""The byte layout of one image's digital payload, and its integrity check.

::

    byte 0        0xA_ | codec kind (low nibble: 1 factorized, 2 hyperprior, 3 quantize)
    byte 1        rate point q in 1/16 steps (q = byte / 16)
    byte 2, 3     latent height, latent width
    varint        length of the hyper-latent stream (hyperprior only)
    ...           entropy-coded streams (hyper-latent first)
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
KINDS = {"factorized": 1, "hyperprior": 2, "quantize": 3}
CRC_BYTES = 2


def fingerprint(*parts: bytes | str | torch.Tensor) -> bytes:
    """An 8-byte digest of configuration strings and tensors (entropy-model tables, weights)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous().numpy().tobytes()
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
    """A parsed payload: rate point, latent size and the entropy-coded streams."""

    kind: str
    q16: int
    height: int
    width: int
    streams: tuple[bytes, ...]

    @property
    def q(self) -> float:
        return self.q16 / 16.0


def pack(kind: str, q16: int, height: int, width: int, streams: list[bytes], finger: bytes) -> bytes:
    """Lay out one image's payload (see the module docstring)."""
    if not (0 <= q16 < 256 and 0 < height < 256 and 0 < width < 256):
        raise BitstreamError(f"header field out of range: q16={q16}, latent {height}x{width} (each must fit a byte)")
    body = bytearray([MAGIC | KINDS[kind], q16, height, width])
    for stream in streams[:-1]:
        body += write_varint(len(stream)) + stream
    body += streams[-1]
    return bytes(body) + _crc(finger, bytes(body))


def unpack(data: bytes, kind: str, n_streams: int, finger: bytes) -> Packet:
    """Check and parse a payload written by :func:`pack`; any damage is a :class:`BitstreamError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"a payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 4 + CRC_BYTES:
        raise BitstreamError(f"payload of {len(data)} bytes is too short to hold a header")
    if data[0] >> 4 != MAGIC >> 4:
        raise BitstreamError("not an intelliflow codec payload (bad magic)")
    if data[0] & 0x0F != KINDS[kind]:
        found = {v: k for k, v in KINDS.items()}.get(data[0] & 0x0F, "unknown")
        raise BitstreamError(f"payload was written by a {found} codec, not a {kind} one")
    body, crc = data[:-CRC_BYTES], data[-CRC_BYTES:]
    if _crc(finger, body) != crc:
        raise BitstreamError("payload failed its integrity check: corrupted, truncated, or written by "
                             "another codec (different weights or settings)")
    q16, height, width = body[1], body[2], body[3]
    if height == 0 or width == 0:
        raise BitstreamError("latent size of zero in the header")
    pos, streams = 4, []
    for _ in range(n_streams - 1):
        length, pos = read_varint(body, pos)
        if pos + length > len(body):
            raise BitstreamError("stream length points past the end of the payload")
        streams.append(body[pos:pos + length])
        pos += length
    streams.append(body[pos:])
    return Packet(kind, q16, height, width, tuple(streams))
