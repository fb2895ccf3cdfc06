"""``.iflow`` files: one image's payload behind a small header naming what decodes it.

::

    bytes 0-1        b"IF"
    byte 2           format version (3)
    varint + ASCII   model identifier (a shipped name, or the name of the model's folder)
    varint           split point k
    varint + ASCII   codec identifier (a fixed codec such as jpeg-30, a shipped codec, or the name
                     of a checkpoint folder)
    varint + ASCII   drafter identifier, empty for none: with a drafter the payload starts with
                     the device's draft (speculative captioning, :class:`~intelliflow.flow.endpoints.DraftTokens`)
    ...              the payload (the draft, then the codec's payload with its own header and check)
    last 4 bytes     CRC-32 of every byte before it, the header included

Version 2 files (no drafter field) are still read.

A **stream file** (``.iflows``) holds many images of one stream (:mod:`intelliflow.codec.bitstream`,
stream mode): what every image shares is written once, each image carries only its payload::

    bytes 0-1        b"IS"
    byte 2           format version (2; version 1 without the drafter is still read)
    varint + ASCII   model identifier; varint split point k; varint + ASCII codec identifier;
                     varint + ASCII drafter identifier (empty for none)
    varint + bytes   the codec's stream header (kind, rate point, grid, flags, its own CRC-16
                     keyed by the codec's fingerprint: another codec refuses the whole file)
    per image        varint length + the stream payload (the codec's body, nothing repeated)
    last 4 bytes     CRC-32 of every byte before it

Names are identifiers, never paths: a folder travels as its last component, and the receiver
maps identifiers to what its operator configured (or to shipped names); it never loads a
folder a file names. The CRC-32 catches accidents (bit errors, truncation, a spliced header) so
that a damaged header cannot select another split point or codec and yield a wrong caption; it
does not authenticate the sender, which anyone with the format can forge (the edge service's
optional shared secret does that).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import PurePath

from intelliflow.codec.bitstream import read_varint, write_varint
from intelliflow.errors import BitstreamError, ConfigError

MAGIC = b"IF"
VERSION = 3
STREAM_MAGIC = b"IS"
STREAM_VERSION = 2
_READS = {MAGIC: (2, 3), STREAM_MAGIC: (1, 2)}   # versions read; the older one has no drafter field
MAX_NAME = 128
CHECK_BYTES = 4
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def identifier(name: str) -> str:
    """What a model or codec name travels as: the name itself, or a folder path's last component.

    >>> identifier("shapes-captioner"), identifier("runs/my-blip/"), identifier("jpeg-30")
    ('shapes-captioner', 'my-blip', 'jpeg-30')
    """
    ident = PurePath(str(name)).name or str(name)
    if not IDENTIFIER.fullmatch(ident):
        raise ConfigError(f"{str(name)[:60]!r} cannot travel as an identifier: use letters, digits and . _ + - "
                          f"(at most {MAX_NAME} characters)")
    return ident


@dataclass(frozen=True)
class IflowFile:
    """A parsed ``.iflow`` file."""

    model: str
    split: int
    codec: str
    payload: bytes
    drafter: str | None = None

    @property
    def bits(self) -> int:
        """Payload bits (what crosses the link for the image), header excluded."""
        return 8 * len(self.payload)


@dataclass(frozen=True)
class IflowStream:
    """A parsed stream file: what decodes it, the codec's stream header, one payload per image."""

    model: str
    split: int
    codec: str
    header: bytes
    payloads: list[bytes]
    drafter: str | None = None

    @property
    def bits(self) -> list[int]:
        """Payload bits per image (what crosses the link for it in the stream)."""
        return [8 * len(p) for p in self.payloads]


def _names(model: str, split: int, codec: str, drafter: str | None) -> bytes:
    def name(text: str) -> bytes:
        raw = identifier(text).encode("ascii") if text else b""
        return write_varint(len(raw)) + raw

    return name(model) + write_varint(int(split)) + name(codec) + name(drafter or "")


def pack_iflow(model: str, split: int, codec: str, payload: bytes, drafter: str | None = None) -> bytes:
    """Header + payload + check (see the module docstring); names become identifiers. With
    ``drafter``, the payload starts with that drafter's draft."""
    data = MAGIC + bytes([VERSION]) + _names(model, split, codec, drafter) + bytes(payload)
    return data + zlib.crc32(data).to_bytes(CHECK_BYTES, "big")


def pack_stream_file(model: str, split: int, codec: str, header: bytes, payloads: list[bytes],
                     drafter: str | None = None) -> bytes:
    """A stream file (see the module docstring): ``header`` is the codec's stream header
    (:func:`intelliflow.codec.bitstream.stream_header`), ``payloads`` its stream payloads (each
    starting with its draft, with ``drafter``)."""
    data = STREAM_MAGIC + bytes([STREAM_VERSION]) + _names(model, split, codec, drafter) + \
        write_varint(len(header)) + header
    data += b"".join(write_varint(len(p)) + bytes(p) for p in payloads)
    return data + zlib.crc32(data).to_bytes(CHECK_BYTES, "big")


def _checked(data: bytes, magic: bytes, what: str) -> bytes:
    if data[:2] != magic:
        raise BitstreamError(f"not an {what} file (missing the {magic.decode()!r} magic)")
    if len(data) < 3 or data[2] not in _READS[magic]:
        raise BitstreamError(f"unsupported {what} version {data[2] if len(data) > 2 else 'none'}; this reader knows "
                             f"{' and '.join(map(str, _READS[magic]))} (re-encode the images)")
    if len(data) < 3 + CHECK_BYTES or zlib.crc32(data[:-CHECK_BYTES]).to_bytes(CHECK_BYTES, "big") != data[-CHECK_BYTES:]:
        raise BitstreamError(f"{what} file failed its integrity check (CRC-32): damaged or truncated, header or payload")
    return data[:-CHECK_BYTES]


def _read_names(data: bytes, pos: int, what: str) -> tuple[str, int, str, str | None, int]:
    def name(pos, empty=False):
        length, pos = read_varint(data, pos)
        if length > MAX_NAME or pos + length > len(data):
            raise BitstreamError(f"truncated {what} header (a name runs past the end)")
        text = data[pos:pos + length].decode("ascii", errors="replace")
        if not IDENTIFIER.fullmatch(text) and not (empty and not text):
            raise BitstreamError(f"a name in the {what} header is not an identifier: {text[:40]!r}")
        return text, pos + length

    model, pos = name(pos)
    split, pos = read_varint(data, pos)
    codec, pos = name(pos)
    drafter = None
    if data[2] == (VERSION if data[:2] == MAGIC else STREAM_VERSION):
        drafter, pos = name(pos, empty=True)
    return model, split, codec, drafter or None, pos


def unpack_iflow(data: bytes) -> IflowFile:
    """Parse an ``.iflow`` file; anything malformed is a :class:`BitstreamError`."""
    data = _checked(bytes(data), MAGIC, ".iflow")
    model, split, codec, drafter, pos = _read_names(data, 3, ".iflow")
    if pos >= len(data):
        raise BitstreamError(".iflow file has a header but no payload")
    return IflowFile(model, split, codec, data[pos:], drafter)


def unpack_stream_file(data: bytes) -> IflowStream:
    """Parse a stream file (``.iflows``; with no payload, the edge service's stream handshake);
    anything malformed is a :class:`BitstreamError`."""
    data = _checked(bytes(data), STREAM_MAGIC, ".iflows")
    model, split, codec, drafter, pos = _read_names(data, 3, ".iflows")
    length, pos = read_varint(data, pos)
    if pos + length > len(data):
        raise BitstreamError("truncated .iflows file: the stream header runs past the end")
    header, pos = data[pos:pos + length], pos + length
    payloads = []
    while pos < len(data):
        length, pos = read_varint(data, pos)
        if pos + length > len(data):
            raise BitstreamError(f"truncated .iflows file: payload {len(payloads)} runs past the end")
        payloads.append(data[pos:pos + length])
        pos += length
    return IflowStream(model, split, codec, header, payloads, drafter)
