"""The learned image codec (CompressAI's bmshj2018 scale hyperprior): payloads, damage, training, shipped weights."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from intelliflow.codec import build_codec, resolve_codec
from intelliflow.codec.learned_image import LearnedImageCodec, LearnedImageConfig, to_images, to_tensor
from intelliflow.data.shapes import ShapesDataset
from intelliflow.errors import BitstreamError, ConfigError


def pictures(n=3, split="test"):
    data = ShapesDataset(split, limit=n)
    return [data[i].image for i in range(n)]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    codec = LearnedImageCodec(LearnedImageConfig(N=16, M=16)).eval()
    codec.update()
    return codec


def psnr(a, b):
    mse = float(((to_tensor([a]) - to_tensor([b])) ** 2).mean())
    return -10 * np.log10(max(mse, 1e-10))


def test_decoding_is_the_eval_forward_and_any_size_comes_back(tiny):
    images = pictures(2)
    payloads = tiny.encode(images)
    decoded = tiny.decode(payloads)
    x, _ = tiny.pad(to_tensor(images))
    expected = to_images(tiny(x)["x_hat"][..., :64, :64])
    assert [np.asarray(a).tolist() for a in decoded] == [np.asarray(b).tolist() for b in expected]
    assert tiny.decode(payloads)[0].tobytes() == decoded[0].tobytes()      # deterministic
    odd = Image.new("RGB", (70, 33), "navy")
    assert tiny.decode(tiny.encode([odd]))[0].size == (70, 33)            # padded inside, cropped back
    assert tiny.family == "bytes" and tiny.takes == "image" and tiny.sends == "bytes"


def test_damaged_and_foreign_payloads_are_refused(tiny):
    payload = tiny.encode(pictures(1))[0]
    for bad in (payload[:-1], payload[:3], payload[:5] + bytes([payload[5] ^ 1]) + payload[6:], b""):
        with pytest.raises(BitstreamError):
            tiny.decode([bad])
    jpeg = io.BytesIO()
    pictures(1)[0].save(jpeg, format="JPEG")
    with pytest.raises(BitstreamError):
        tiny.decode([jpeg.getvalue()])
    other = LearnedImageCodec(LearnedImageConfig(N=16, M=16)).eval()
    other.update()
    with pytest.raises(BitstreamError, match="integrity"):
        other.decode([payload])                              # written by other weights
    with pytest.raises(ConfigError, match="byte budget"):
        tiny.encode(pictures(1), target_bytes=100)
    with pytest.raises(ConfigError, match="lmbda"):
        LearnedImageConfig(lmbda=0.0)


def test_training_lowers_the_rate_distortion_loss_and_saves_a_codec_that_resolves(tmp_path):
    from intelliflow.training.image_codec import recipe_from_dict, train_image_codec

    recipe = recipe_from_dict({"task": "image-codec", "codec": {"name": "bmshj2018", "N": 16, "M": 16, "lmbda": 0.05},
                               "train": {"steps": 60, "batch_size": 8, "lr": 2e-3, "warmup_steps": 5},
                               "eval": {"every": 30, "images": 8}, "log_every": 10, "checkpoint_every": 0})
    folder = train_image_codec(recipe, output=tmp_path)
    log = (tmp_path / "train_log.csv").read_text().splitlines()
    psnrs = [float(line.split(",")[3]) for line in log[1:]]
    assert psnrs[-1] > psnrs[0] + 3.0                       # it learns to draw the pictures
    evals = (tmp_path / "eval_log.csv").read_text().splitlines()
    assert evals[0].startswith("step,payload_bits,psnr_db") and len(evals) == 3
    codec = resolve_codec(str(folder))
    assert isinstance(codec, LearnedImageCodec) and codec.config.lmbda == 0.05
    images = pictures(4, "val")
    assert all(psnr(a, b) > 14 for a, b in zip(images, codec.decode(codec.encode(images))))
    assert "RateDistortionLoss" in (folder / "README.md").read_text()
    with pytest.raises(ConfigError, match="learned image codec"):
        train_image_codec(recipe_from_dict({"task": "image-codec", "codec": {"name": "hyperprior"}}),
                          output=tmp_path / "x")


def test_an_untrained_architecture_is_built_but_not_resolved_by_name():
    assert isinstance(build_codec({"name": "bmshj2018", "N": 8, "M": 8}), LearnedImageCodec)
    with pytest.raises(ConfigError, match="trained weights"):
        resolve_codec("bmshj2018")


def test_the_shipped_codecs_beat_jpeg_2000_and_trade_bits_for_quality():
    images = pictures(8)

    def measure(name):
        codec = resolve_codec(name)
        payloads = codec.encode(images)
        return np.mean([8 * len(p) for p in payloads]), np.mean([psnr(a, b) for a, b in zip(images, codec.decode(payloads))])

    jp2k_bits, jp2k_psnr = measure("jp2k-40")             # about 2,600 bits, 24 dB on these pictures
    bits, quality = measure("shapes-bmshj2018-3")
    assert bits < jp2k_bits and quality > jp2k_psnr + 1.0   # fewer bits and a better picture
    low_bits, low_quality = measure("shapes-bmshj2018-1")
    assert low_bits < bits and low_quality < quality       # a smaller lambda: fewer bits, a worse picture
