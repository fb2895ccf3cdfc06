"""JPEG 2000 upload: the image as a raw J2K codestream (OpenJPEG through Pillow), no JP2 box
container, so its fixed cost at 64 x 64 is about 1,500 bits against JPEG's 5,800.

The option is the compression ratio against 24-bit RGB (``jp2k-40``: 40:1; larger is smaller),
OpenJPEG's rate control with the irreversible 9/7 wavelet.

>>> from PIL import Image
>>> codec = Jpeg2000Upload(ratio=40)
>>> payload = codec.encode([Image.new("RGB", (64, 64), "red")])[0]
>>> payload[:4] == b"\\xff\\x4f\\xff\\x51", codec.decode([payload])[0].size, codec.name
(True, (64, 64), 'jp2k-40')
"""

from __future__ import annotations

from intelliflow.errors import ConfigError

from .image_upload import ImageUploadCodec
from .registry import register_codec


@register_codec("jp2k", option="ratio")
class Jpeg2000Upload(ImageUploadCodec):
    """JPEG 2000 codestream at a compression ratio (1-1000) against 24-bit RGB."""

    fmt = "JPEG2000"

    def __init__(self, ratio: int = 40):
        if isinstance(ratio, bool) or not 1 <= int(ratio) <= 1000:
            raise ConfigError(f"JPEG 2000 compression ratio must be in 1..1000, got {ratio}")
        self.quality = int(ratio)   # the knob's one attribute, so the name reads jp2k-RATIO

    def save_options(self) -> dict:
        return {"quality_mode": "rates", "quality_layers": [self.quality], "irreversible": True, "no_jp2": True}
