"""The JPEG 2000 upload baseline: raw J2K codestreams whose size follows the ratio, with a far
smaller fixed cost than JPEG at 64 x 64, images that come back close, bad payloads refused."""

import io

import numpy as np
import pytest

from intelliflow.codec import resolve_codec
from intelliflow.codec.jpeg2000 import Jpeg2000Upload
from intelliflow.data.shapes import make_sample
from intelliflow.errors import BitstreamError, ConfigError

IMAGES = [make_sample("test", i).image for i in range(3)]


def test_codestreams_shrink_with_the_ratio_and_cost_less_than_jpeg_at_the_bottom():
    sizes = [sum(map(len, resolve_codec(f"jp2k-{r}").encode(IMAGES))) for r in (100, 40, 10)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[2]
    smallest_jpeg = min(len(p) for p in resolve_codec("jpeg-1").encode(IMAGES))
    assert max(len(p) for p in resolve_codec("jp2k-100").encode(IMAGES)) < smallest_jpeg / 2
    codec = resolve_codec("jp2k-10")
    payloads = codec.encode(IMAGES)
    assert all(p[:4] == b"\xff\x4f\xff\x51" for p in payloads)      # SOC + SIZ: a bare codestream, no JP2 boxes
    decoded = codec.decode(payloads)
    err = np.abs(np.asarray(decoded[0], dtype=float) - np.asarray(IMAGES[0], dtype=float)).mean()
    assert [im.size for im in decoded] == [im.size for im in IMAGES] and err < 10
    assert (codec.takes, codec.sends, codec.family, codec.name) == ("image", "bytes", "bytes", "jp2k-10")


def test_bad_ratios_and_foreign_or_damaged_payloads_are_refused():
    for bad in ("jp2k-x", "jp2k-0", "jp2k-5000"):
        with pytest.raises(ConfigError):
            resolve_codec(bad)
    jpeg = io.BytesIO()
    IMAGES[0].save(jpeg, format="JPEG")
    for payload in (b"not an image", jpeg.getvalue(), Jpeg2000Upload(10).encode(IMAGES[:1])[0][:30]):
        with pytest.raises(BitstreamError):
            Jpeg2000Upload(10).decode([payload])
