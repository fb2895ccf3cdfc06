"""The AVIF upload baseline: registered by name, real AVIF files whose size follows the quality,
images that come back close to the original, damaged or foreign files refused."""

import io

import numpy as np
import pytest

from intelliflow.codec import resolve_codec
from intelliflow.codec.avif import AvifUpload
from intelliflow.data.shapes import make_sample
from intelliflow.errors import BitstreamError, ConfigError

IMAGES = [make_sample("test", i).image for i in range(3)]


def test_avif_files_shrink_with_quality_and_decode_close_to_the_image():
    sizes = [sum(map(len, resolve_codec(f"avif-{q}").encode(IMAGES))) for q in (10, 50, 90)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[2]
    codec = resolve_codec("avif-90")
    payloads = codec.encode(IMAGES)
    assert all(p[4:12] == b"ftypavif" for p in payloads)          # an ISO-BMFF AVIF file, not something else
    decoded = codec.decode(payloads)
    assert [im.size for im in decoded] == [im.size for im in IMAGES]
    err = np.abs(np.asarray(decoded[0], dtype=float) - np.asarray(IMAGES[0], dtype=float)).mean()
    assert err < 8
    assert (codec.takes, codec.sends, codec.family, codec.name) == ("image", "bytes", "bytes", "avif-90")


def test_avif_refuses_bad_options_and_foreign_payloads():
    with pytest.raises(ConfigError, match="quality"):
        resolve_codec("avif-x")
    with pytest.raises(ConfigError, match="1..100"):
        AvifUpload(quality=0)
    jpeg = io.BytesIO()
    IMAGES[0].save(jpeg, format="JPEG")
    for bad in (b"not an image", jpeg.getvalue(), AvifUpload(50).encode(IMAGES[:1])[0][:40]):
        with pytest.raises(BitstreamError):
            AvifUpload(50).decode([bad])


def test_the_receiver_captions_an_avif_upload_with_the_whole_model():
    from intelliflow.flow import Flow
    from intelliflow.models import load_split_model

    model = load_split_model("shapes-captioner")
    result = Flow(model, "avif-90").caption(IMAGES[:2])
    assert result.captions == model.caption([AvifUpload(90).decode(AvifUpload(90).encode([im]))[0] for im in IMAGES[:2]])
    assert result.payload_bits == [8 * len(p) for p in AvifUpload(90).encode(IMAGES[:2])]
