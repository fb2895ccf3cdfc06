"""AVIF upload: the image sent as an AV1 still picture (Pillow 13 encodes AVIF through libavif).

>>> from PIL import Image
>>> codec = AvifUpload(quality=50)
>>> payload = codec.encode([Image.new("RGB", (64, 64), "red")])[0]
>>> codec.decode([payload])[0].size, codec.name
((64, 64), 'avif-50')
"""

from __future__ import annotations

from .image_upload import ImageUploadCodec
from .registry import register_codec


@register_codec("avif", option="quality")
class AvifUpload(ImageUploadCodec):
    """AVIF, lossy, at Pillow's quality scale (1-100)."""

    fmt = "AVIF"
