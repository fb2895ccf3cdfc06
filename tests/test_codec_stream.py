"""Stream mode: the context (codec, grid, rate point) agreed once, each payload only its body;
the same features come back as from the self-contained payload, and damage is refused or bounded."""

import copy
import random

import pytest
import torch

from intelliflow.codec import bitstream
from intelliflow.codec.entropy_coding import entropy_coder
from intelliflow.errors import BitstreamError, ConfigError

from test_codec_digital import features, fitted
from intelliflow.codec.digital import FactorizedFeatureCodec, HyperpriorFeatureCodec


@pytest.fixture(scope="module", params=[FactorizedFeatureCodec, HyperpriorFeatureCodec], ids=["factorized", "hyperprior"])
def codec(request):
    return fitted(request.param, steps=30)


def test_a_stream_payload_is_the_body_and_decodes_to_the_self_contained_ones_features(codec):
    f = features()
    files = codec.encode(f, q=2.0)
    fixed = codec.stream_context((8, 8), q=2.0)
    assert fixed.q16 == 32 and not fixed.check and fixed.overhead_bits == 0
    bodies = codec.encode(f, q=2.0, stream=fixed)
    # the file's 4-byte header and 2-byte check are all that the stream leaves out
    assert [len(p) for p in bodies] == [len(p) - 6 for p in files]
    assert [p[4:-2] for p in files] == bodies
    assert torch.equal(codec.decode(bodies, stream=fixed), codec.decode(files))
    per_image = codec.stream_context((8, 8), check=True)
    assert per_image.overhead_bits == 24
    mixed = codec.encode(f, q=torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0]), stream=per_image)
    assert [p[0] for p in mixed] == [0, 8, 16, 24, 32, 48]
    assert torch.equal(codec.decode(mixed, stream=per_image),
                       codec.decode(codec.encode(f, q=torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0]))))


def test_a_stream_budget_counts_the_streams_own_bytes(codec):
    f = features()
    stream = codec.stream_context((8, 8))
    budgets = [max(len(a), len(b)) for a, b in zip(codec.encode(f, q=0.0, stream=codec.stream_context((8, 8), q=0.0)),
                                                   codec.encode(f, q=1.0, stream=codec.stream_context((8, 8), q=1.0)))]
    fitted_payloads = codec.encode(f, target_bytes=[b + 1 for b in budgets], stream=stream)
    assert all(len(p) <= b + 1 for p, b in zip(fitted_payloads, budgets))
    assert max(p[0] for p in fitted_payloads) >= 16          # the rate point byte counts in the budget
    q = torch.tensor([p[0] / 16 for p in fitted_payloads])
    assert torch.equal(codec.decode(fitted_payloads, stream=stream), codec.decode(codec.encode(f, q=q)))
    with pytest.raises(ConfigError, match="no byte budget"):
        codec.encode(f, target_bytes=40, stream=codec.stream_context((8, 8), q=1.0))
    with pytest.raises(ConfigError, match="agreed at q=1.0"):
        codec.encode(f, q=2.0, stream=codec.stream_context((8, 8), q=1.0))


def test_the_stream_header_travels_once_and_refuses_another_codec(codec):
    stream = codec.stream_context((8, 8), q=2.5, check=True)
    header = bitstream.stream_header(stream, codec.fingerprint)
    assert len(header) == bitstream.STREAM_HEADER_BYTES
    assert bitstream.read_stream_header(header, codec.payload_id, codec.fingerprint) == stream
    other = copy.deepcopy(codec)
    with torch.no_grad():
        other.g_s[-1].bias.add_(1e-3)
    other._fingerprint = None
    with pytest.raises(BitstreamError, match="another codec"):
        bitstream.read_stream_header(header, codec.payload_id, other.fingerprint)
    with pytest.raises(BitstreamError):
        bitstream.read_stream_header(header[:-1] + bytes([header[-1] ^ 1]), codec.payload_id, codec.fingerprint)
    with pytest.raises(BitstreamError, match="grid"):
        codec.encode(features(), stream=codec.stream_context((4, 4)))


def test_damaged_stream_payloads_are_refused_or_decode_to_features_of_the_agreed_shape(codec):
    f = features(3)
    unchecked, checked = codec.stream_context((8, 8), q=2.0), codec.stream_context((8, 8), q=2.0, check=True)
    rng = random.Random(0)
    for stream in (unchecked, checked):
        good = codec.encode(f, stream=stream)
        for _ in range(40):
            data = bytearray(rng.choice(good))
            cut = rng.randrange(len(data) + 1)
            damaged = bytes(data[:cut]) + bytes(rng.randrange(256) for _ in range(rng.randrange(6)))
            try:
                out = codec.decode([damaged], stream=stream, expected=(32, 8, 8))
            except BitstreamError:
                continue
            assert not stream.check or damaged in good    # a checked stream lets nothing damaged through
            assert out.shape == (1, 32, 8, 8) and torch.isfinite(out).all()


def test_compressais_rans_keeps_a_check_in_a_stream(codec):
    rans = copy.deepcopy(codec)
    rans.coder = entropy_coder("rans")
    assert rans.stream_context((8, 8), q=1.0).check


def test_the_sender_default_context_is_decided_in_one_place(codec):
    top = codec.rate_range()[1]
    assert codec.stream_for((8, 8)).q16 == round(16 * top)                       # no option: the highest point
    assert codec.stream_for((8, 8), q=1.5).q16 == 24
    assert codec.stream_for((8, 8), target_bytes=40).q16 is None                  # a budget: q per payload
    assert codec.stream_for((8, 8), q=torch.tensor([0.0, 1.0])).q16 is None       # a q per image too
    assert codec.stream_for((8, 8), q=torch.tensor(1.0)).q16 == 16                # a 0-d tensor is one point
    f = features()
    budget = 1 + max(len(p) for p in codec.encode(f, q=1.0, stream=codec.stream_for((8, 8), q=1.0)))
    per_image = codec.stream_for((8, 8), target_bytes=budget)
    budgeted = codec.encode(f, target_bytes=budget, stream=per_image)
    assert all(len(p) <= budget for p in budgeted) and all(p[0] >= 16 for p in budgeted)   # q >= 1 in 1/16 steps
    assert torch.equal(codec.decode(budgeted, stream=per_image), codec.decode(codec.encode(f, target_bytes=budget + 5)))  # file: 4-byte header + CRC-16, stream: 1 byte of q
    from intelliflow.codec.baselines import QuantizeCodec

    assert QuantizeCodec(bits=8).stream_for((8, 8)) is None                      # self-contained payloads only
