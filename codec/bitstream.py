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

**Stream mode.** Where sender and receiver agree on the context once (per connection of the edge
service, per stream file), a :class:`StreamContext` holds what the header would repeat: the codec
(kind and fingerprint), the feature grid, the rate point (or "per image") and whether each payload
carries its own check. Each image's payload then carries only what changes::

    [rate point byte, only when the context says "per image"]  body  [CRC-16, only with check]

Over the 5G link every code block has its CRC-24A (a failed block is retransmitted or the payload
lost), so a stream over a link needs no second check; an ideal link loses nothing. The context
itself travels once, as a :func:`stream_header` with its own CRC over the codec's fingerprint, so
a receiver with another codec refuses the stream at the handshake, not image by image.
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


def pack(kind: int, q16: int, height: int, width: int, body: bytes, finger: bytes,
         stream: "StreamContext | None" = None) -> bytes:
    """Lay out one image's payload (see the module docstring); ``kind`` is the codec's ``payload_id``.
    Under ``stream`` (:class:`StreamContext`), the stream's payload (:func:`pack_stream`)."""
    if stream is not None:
        if (height, width) != (stream.height, stream.width) or kind != stream.kind:
            raise BitstreamError(f"the stream was agreed for a {stream.height}x{stream.width} grid of kind "
                                 f"{stream.kind}, not {height}x{width} of kind {kind}")
        return pack_stream(stream, q16, body, finger)
    if not (0 <= q16 < 256 and 0 < height < 256 and 0 < width < 256):
        raise BitstreamError(f"header field out of range: q16={q16}, grid {height}x{width} (each must fit a byte)")
    data = bytes([MAGIC | kind, q16, height, width]) + bytes(body)
    return data + _crc(finger, data)


def unpack(data: bytes, kind: int, finger: bytes, stream: "StreamContext | None" = None) -> Packet:
    """Check and parse a payload written by :func:`pack` (or :func:`pack_stream` under ``stream``);
    any damage is a :class:`BitstreamError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"a payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if stream is not None:
        return unpack_stream(data, stream, kind, finger)
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


#: the rate-point byte of a stream header that says "each payload carries its own"
PER_IMAGE = 0xFF
STREAM_HEADER_BYTES = 5 + CRC_BYTES


@dataclass(frozen=True)
class StreamContext:
    """What both ends of a stream agree once, so that payloads carry only their body.

    :ivar kind: the codec's ``payload_id``; the codec's fingerprint is checked by the stream header.
    :ivar height, width: the feature grid every image of the stream has.
    :ivar q16: the rate point in 1/16 steps for every image, or ``None``: each payload starts with
        its own (a byte budget picks a rate point per image).
    :ivar check: each payload ends with a CRC-16 (over the fingerprint, its length and bytes); off
        where the link checks (the 5G link's CRC-24A per code block) or loses nothing.
    """

    kind: int
    height: int
    width: int
    q16: int | None = None
    check: bool = False

    def __post_init__(self):
        if not (0 < self.height < 256 and 0 < self.width < 256) or not (self.q16 is None or 0 <= self.q16 < PER_IMAGE):
            raise BitstreamError(f"stream context out of range: grid {self.height}x{self.width}, q16={self.q16}")

    @property
    def overhead_bits(self) -> int:
        """Bits each payload spends beyond its body: the rate-point byte and the check, where present."""
        return 8 * ((self.q16 is None) + CRC_BYTES * self.check)


def pack_stream(stream: StreamContext, q16: int, body: bytes, finger: bytes) -> bytes:
    """One image's payload in ``stream`` (see the module docstring)."""
    if stream.q16 is not None and q16 != stream.q16:
        raise BitstreamError(f"the stream's rate point is q16={stream.q16}; this payload was coded at q16={q16}")
    data = (bytes([q16]) if stream.q16 is None else b"") + bytes(body)
    return data + _crc(finger, data) if stream.check else data


def unpack_stream(data: bytes, stream: StreamContext, kind: int, finger: bytes) -> Packet:
    """Parse one payload of ``stream`` (checked where the stream says so)."""
    if stream.kind != kind:
        raise BitstreamError(f"the stream was agreed for codec kind {stream.kind}, not {kind}")
    data = bytes(data)
    if stream.check:
        if len(data) < CRC_BYTES or _crc(finger, data[:-CRC_BYTES]) != data[-CRC_BYTES:]:
            raise BitstreamError("payload failed its integrity check: corrupted, truncated, or written by "
                                 "another codec (different weights or settings)")
        data = data[:-CRC_BYTES]
    if stream.q16 is None:
        if not data:
            raise BitstreamError("an empty payload in a stream whose payloads start with their rate point")
        return Packet(kind, data[0], stream.height, stream.width, data[1:])
    return Packet(kind, stream.q16, stream.height, stream.width, data)


def stream_header(stream: StreamContext, finger: bytes) -> bytes:
    """The stream's context, sent once (the edge service's handshake, a stream file's first bytes):
    kind, rate point (or 0xFF), grid, flags, and a CRC-16 over the fingerprint and these bytes."""
    data = bytes([MAGIC | stream.kind, PER_IMAGE if stream.q16 is None else stream.q16, stream.height,
                  stream.width, int(stream.check)])
    return data + _crc(finger, data)


def read_stream_header(data: bytes, kind: int, finger: bytes) -> StreamContext:
    """Parse and check a :func:`stream_header` (its first :data:`STREAM_HEADER_BYTES` bytes); a header
    written by another codec, or damaged, is a :class:`BitstreamError`."""
    data = bytes(data[:STREAM_HEADER_BYTES])
    if len(data) < STREAM_HEADER_BYTES or data[0] >> 4 != MAGIC >> 4:
        raise BitstreamError("not an intelliflow stream header")
    if data[0] & 0x0F != kind:
        from .registry import payload_kind_name

        raise BitstreamError(f"the stream was written by a {payload_kind_name(data[0] & 0x0F)} codec, "
                             f"not a {payload_kind_name(kind)} one")
    if _crc(finger, data[:-CRC_BYTES]) != data[-CRC_BYTES:]:
        raise BitstreamError("the stream header failed its check: damaged, or written by another codec "
                             "(different weights or settings)")
    if data[4] > 1:
        raise BitstreamError(f"unknown stream flags {data[4]}")
    return StreamContext(kind, data[2], data[3], None if data[1] == PER_IMAGE else data[1], bool(data[4]))
