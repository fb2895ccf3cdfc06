"""``.iflow`` files: one image's payload behind a small header naming what decodes it.

::

    bytes 0-1   b"IF"
    byte 2      format version (1)
    varint + UTF-8   model name (e.g. "shapes-captioner", or a local folder)
    varint           split point k
    varint + UTF-8   codec name (a registered baseline, a shipped codec, or a checkpoint folder)
    ...              the codec's payload (its own header and integrity check included)

The receiver needs nothing else: the names tell it which model tail and codec to load.
"""

from __future__ import annotations

from dataclasses import dataclass

from intelliflow.errors import BitstreamError

from intelliflow.codec.bitstream import read_varint, write_varint

MAGIC = b"IF"
VERSION = 1
MAX_NAME = 4096


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
    """Header + payload (see the module docstring)."""
    def name(text: str) -> bytes:
        raw = text.encode("utf-8")
        return write_varint(len(raw)) + raw

    return MAGIC + bytes([VERSION]) + name(model) + write_varint(int(split)) + name(codec) + bytes(payload)


def unpack_iflow(data: bytes) -> IflowFile:
    """Parse an ``.iflow`` file; anything malformed is a :class:`BitstreamError`."""
    data = bytes(data)
    if data[:2] != MAGIC:
        raise BitstreamError("not an .iflow file (missing the 'IF' magic)")
    if len(data) < 3 or data[2] != VERSION:
        raise BitstreamError(f"unsupported .iflow version {data[2] if len(data) > 2 else 'none'}; this reader knows {VERSION}")
    pos = 3

    def name(pos):
        length, pos = read_varint(data, pos)
        if length > MAX_NAME or pos + length > len(data):
            raise BitstreamError("truncated .iflow header (a name runs past the end)")
        try:
            return data[pos:pos + length].decode("utf-8"), pos + length
        except UnicodeDecodeError as exc:
            raise BitstreamError(f"a name in the .iflow header is not UTF-8: {exc}") from exc

    model, pos = name(pos)
    split, pos = read_varint(data, pos)
    codec, pos = name(pos)
    if pos >= len(data):
        raise BitstreamError(".iflow file has a header but no payload")
    return IflowFile(model, split, codec, data[pos:])
