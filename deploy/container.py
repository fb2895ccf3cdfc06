"""``.iflow`` files: one image's payload behind a small header naming what decodes it.

::

    bytes 0-1        b"IF"
    byte 2           format version (2)
    varint + ASCII   model identifier (a shipped name, or the name of the model's folder)
    varint           split point k
    varint + ASCII   codec identifier (a fixed codec such as jpeg-30, a shipped codec, or the name
                     of a checkpoint folder)
    ...              the codec's payload (its own header and check included)
    last 4 bytes     CRC-32 of every byte before it, the header included

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
VERSION = 2
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

    @property
    def bits(self) -> int:
        """Payload bits (what crosses the link for the image), header excluded."""
        return 8 * len(self.payload)


def pack_iflow(model: str, split: int, codec: str, payload: bytes) -> bytes:
    """Header + payload + check (see the module docstring); names become identifiers."""
    def name(text: str) -> bytes:
        raw = identifier(text).encode("ascii")
        return write_varint(len(raw)) + raw

    data = MAGIC + bytes([VERSION]) + name(model) + write_varint(int(split)) + name(codec) + bytes(payload)
    return data + zlib.crc32(data).to_bytes(CHECK_BYTES, "big")


def unpack_iflow(data: bytes) -> IflowFile:
    """Parse an ``.iflow`` file; anything malformed is a :class:`BitstreamError`."""
    data = bytes(data)
    if data[:2] != MAGIC:
        raise BitstreamError("not an .iflow file (missing the 'IF' magic)")
    if len(data) < 3 or data[2] != VERSION:
        raise BitstreamError(f"unsupported .iflow version {data[2] if len(data) > 2 else 'none'}; this reader knows "
                             f"{VERSION} (re-encode the image)")
    if len(data) < 3 + CHECK_BYTES or zlib.crc32(data[:-CHECK_BYTES]).to_bytes(CHECK_BYTES, "big") != data[-CHECK_BYTES:]:
        raise BitstreamError(".iflow file failed its integrity check (CRC-32): damaged or truncated, header or payload")
    data = data[:-CHECK_BYTES]
    pos = 3

    def name(pos):
        length, pos = read_varint(data, pos)
        if length > MAX_NAME or pos + length > len(data):
            raise BitstreamError("truncated .iflow header (a name runs past the end)")
        text = data[pos:pos + length].decode("ascii", errors="replace")
        if not IDENTIFIER.fullmatch(text):
            raise BitstreamError(f"a name in the .iflow header is not an identifier: {text[:40]!r}")
        return text, pos + length

    model, pos = name(pos)
    split, pos = read_varint(data, pos)
    codec, pos = name(pos)
    if pos >= len(data):
        raise BitstreamError(".iflow file has a header but no payload")
    return IflowFile(model, split, codec, data[pos:])
