"""Image uploads: the information-flow baseline that sends the image itself, compressed by Pillow.

The device sends the file; the receiver decodes it and runs the whole captioner. Rate = the
file's bytes, every header included. Each format is one small subclass; ``avif`` lives in its own
module (:mod:`intelliflow.codec.avif`) to show what adding a codec takes.
"""

from __future__ import annotations

import io
from typing import ClassVar, Sequence

from PIL import Image, UnidentifiedImageError

from intelliflow.errors import BitstreamError, ConfigError

from .interface import Codec, check_batch
from .registry import register_codec


class ImageUploadCodec(Codec):
    """Send the image: ``encode(images) -> list[bytes]``, ``decode(list[bytes]) -> images``.

    Subclasses set ``fmt`` (Pillow's format name). :param quality: Pillow's quality, 1-100.
    """

    takes, sends = "image", "bytes"
    fmt: ClassVar[str] = ""
    #: the largest picture a receiver decodes (its header is read first): bounds the memory a payload costs
    max_pixels: ClassVar[int] = 4096 * 4096

    def __init__(self, quality: int = 75):
        if not 1 <= int(quality) <= 100:
            raise ConfigError(f"image quality must be in 1..100, got {quality}")
        self.quality = int(quality)

    @property
    def name(self) -> str:
        return f"{self.registered_name}-{self.quality}"

    def save_options(self) -> dict:
        """Pillow ``save`` options besides the format (override per format)."""
        return {"quality": self.quality}

    def encode(self, images: Sequence[Image.Image]) -> list[bytes]:
        out = []
        for image in images:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format=self.fmt, **self.save_options())
            out.append(buffer.getvalue())
        return out

    def decode(self, payloads: Sequence[bytes], **_) -> list[Image.Image]:
        images = []
        for data in check_batch(payloads):
            try:
                with Image.open(io.BytesIO(bytes(data))) as image:
                    if image.format is None or image.format.upper() != self.fmt:
                        raise BitstreamError(f"payload is a {image.format} file, not {self.fmt}")
                    if image.width * image.height > self.max_pixels:
                        raise BitstreamError(f"payload is a {image.width}x{image.height} picture, over this "
                                             f"receiver's limit of {self.max_pixels} pixels")
                    images.append(image.convert("RGB"))
            except BitstreamError:
                raise
            except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
                raise BitstreamError(f"payload is not a readable {self.fmt} image: {exc}") from exc
        return images


@register_codec("jpeg", option="quality")
class JpegUpload(ImageUploadCodec):
    """JPEG (libjpeg through Pillow)."""

    fmt = "JPEG"


@register_codec("webp", option="quality")
class WebpUpload(ImageUploadCodec):
    """WebP (libwebp through Pillow), lossy."""

    fmt = "WEBP"
