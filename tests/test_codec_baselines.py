"""Information-flow baselines and the codec registry."""

import random

import pytest
import torch

from intelliflow.codec import available_codecs, build_codec
from intelliflow.data.shapes import make_sample
from intelliflow.errors import BitstreamError, ConfigError, RegistryError

IMAGES = [make_sample("test", i).image for i in range(3)]


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_image_upload_sizes_fall_with_quality_and_images_come_back(fmt):
    sizes = [sum(map(len, build_codec({"name": fmt, "quality": q}).encode(IMAGES))) for q in (20, 50, 90)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[2]
    codec = build_codec({"name": fmt, "quality": 90})
    decoded = codec.decode(codec.encode(IMAGES))
    assert [im.size for im in decoded] == [im.size for im in IMAGES]
    import numpy as np
    err = np.abs(np.asarray(decoded[0], dtype=float) - np.asarray(IMAGES[0], dtype=float)).mean()
    assert err < 8
    with pytest.raises(BitstreamError):
        codec.decode([b"not an image"])


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_quantize_round_trip_error_is_bounded_by_the_step(bits):
    torch.manual_seed(0)
    f = torch.randn(3, 16, 8, 8) * 3
    codec = build_codec({"name": "quantize", "bits": bits})
    payloads = codec.encode(f)
    decoded = codec.decode(payloads)
    step = (f.flatten(1).max(1).values - f.flatten(1).min(1).values) / (2 ** bits - 1)
    assert ((decoded - f).abs().flatten(1).max(1).values <= step / 2 + 1e-5).all()
    assert len(payloads[0]) < 16 * 64 * bits / 8 + 40  # packed at `bits` per value, header included


def test_quantize_rejects_damage_and_other_bit_depths():
    f = torch.randn(1, 4, 4, 4)
    payload = build_codec({"name": "quantize", "bits": 6}).encode(f)[0]
    with pytest.raises(BitstreamError):
        build_codec({"name": "quantize", "bits": 8}).decode([payload])
    rng = random.Random(1)
    codec = build_codec({"name": "quantize", "bits": 6})
    for _ in range(200):
        mutated = bytearray(payload)
        mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        with pytest.raises(BitstreamError):
            codec.decode([bytes(mutated)])


def test_identity_and_text_are_exact():
    f = torch.randn(2, 8, 4, 4)
    identity = build_codec("identity")
    payloads = identity.encode(f)
    assert torch.equal(identity.decode(payloads), f) and len(payloads[0]) == 4 + 4 * 8 * 16
    text = build_codec("text")
    assert text.decode(text.encode(["a red circle", "ünïcode"])) == ["a red circle", "ünïcode"]
    with pytest.raises(BitstreamError):
        text.decode([b"\xff\xfe"])


def test_registry_names_and_errors():
    assert {"factorized", "hyperprior", "jpeg", "webp", "quantize", "identity", "text"} <= set(available_codecs())
    codec = build_codec({"name": "hyperprior", "in_channels": 32, "latent_channels": 8})
    assert codec.config.in_channels == 32 and codec.registered_name == "hyperprior"
    with pytest.raises(RegistryError, match="registered"):
        build_codec("zip")
    with pytest.raises(ConfigError, match="allowed"):
        build_codec({"name": "jpeg", "qualty": 5})


def test_receivers_refuse_payloads_of_another_shape_before_decoding():
    from intelliflow.codec import resolve_codec

    features = torch.rand(1, 4, 3, 3)
    for name in ("quantize-8", "identity"):
        codec = resolve_codec(name)
        payloads = codec.encode(features)
        assert torch.allclose(codec.decode(payloads, expected=(4, 3, 3)), features, atol=1 / 255)
        with pytest.raises(BitstreamError, match="expects 4x3x4"):
            codec.decode(payloads, expected=(4, 3, 4))
    # a zlib bomb that claims the receiver's shape inflates no further than that shape
    import struct
    import zlib

    from intelliflow.codec import bitstream

    codec = resolve_codec("quantize-8")
    body = struct.pack(">Hff", 4, 0.0, 1.0) + zlib.compress(bytes(50_000_000))
    bomb = bitstream.pack(codec.payload_id, 8, 3, 3, body, codec._finger)
    with pytest.raises(BitstreamError, match="expects 4x3x3"):
        codec.decode([bitstream.pack(codec.payload_id, 8, 200, 200, body, codec._finger)], expected=(4, 3, 3))
    assert codec.decode([bomb], expected=(4, 3, 3)).shape == (1, 4, 3, 3)


def test_an_oversized_picture_is_refused_from_its_header():
    import io

    from PIL import Image

    from intelliflow.codec.image_upload import JpegUpload

    big = io.BytesIO()
    Image.new("RGB", (5000, 4000)).save(big, format="JPEG", quality=10)
    with pytest.raises(BitstreamError, match="over this receiver's limit"):
        JpegUpload().decode([big.getvalue()])
