"""Digital feature codecs: real bitstreams, bit-exact decoding, rate accounting, variable rate, fuzzing."""

import copy
import random
import time

import pytest
import torch

from intelliflow.codec.digital import FactorizedFeatureCodec, FeatureCodecConfig, HyperpriorFeatureCodec
from intelliflow.codec.entropy_coding import entropy_coder
from intelliflow.errors import BitstreamError, ConfigError, ShapeError

CONFIG = FeatureCodecConfig(in_channels=32, hidden_channels=48, latent_channels=16, hyper_channels=16,
                            downsample=1, rate_points=4)


def features(batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.2, 3.0, CONFIG.in_channels)[None, :, None, None]
    return torch.randn(batch, CONFIG.in_channels, 8, 8, generator=g) * scale


def fitted(cls, steps=60):
    """A codec, optionally fitted for a few steps (rate + MSE + aux loss), with its tables built."""
    torch.manual_seed(0)
    codec = cls(CONFIG)
    main = [p for n, p in codec.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in codec.named_parameters() if n.endswith("quantiles")]
    opt, aux_opt = torch.optim.Adam(main, lr=3e-3), torch.optim.Adam(aux, lr=3e-2)
    for step in range(steps):
        f = features(8, seed=step + 100)
        out = codec(f, q=torch.rand(8) * codec.max_q)
        bits = sum(-torch.log2(l).sum() for l in out["likelihoods"].values()) / 8
        loss = 1e-3 * bits + ((out["f_hat"] - f) ** 2).mean()
        opt.zero_grad(); aux_opt.zero_grad()
        loss.backward(); codec.aux_loss().backward()
        opt.step(); aux_opt.step()
    for _ in range(1500):  # let the quantiles (the coder's support) converge; cheap: no data involved
        aux_opt.zero_grad()
        codec.aux_loss().backward()
        aux_opt.step()
    codec.eval().update()
    return codec


@pytest.fixture(scope="module", params=[FactorizedFeatureCodec, HyperpriorFeatureCodec], ids=["factorized", "hyperprior"])
def codec(request):
    return fitted(request.param)


def test_decoding_is_bit_exact_and_equals_the_eval_forward(codec):
    f = features()
    payloads = codec.compress(f, q=1.5)
    assert len(payloads) == 6 and all(isinstance(p, bytes) for p in payloads)
    decoded = codec.decompress(payloads)
    for i in range(6):  # each image decodes to exactly what the eval forward pass gives
        assert torch.equal(decoded[i:i + 1], codec(f[i:i + 1], q=1.5)["f_hat"])
    assert torch.equal(codec.decompress(payloads), decoded)  # deterministic
    # the quantised latent itself round-trips exactly
    y_hat = codec(f[:1], q=1.5)["y_hat"]
    again = codec.compress(codec.decompress(payloads[:1]), q=1.5)
    assert isinstance(again[0], bytes) and y_hat.abs().sum() > 0


def test_real_bits_match_the_likelihood_estimate(codec):
    """Real bits = estimate within 2 %, plus the fixed part: our 6-byte header and check, and the
    arithmetic coder's termination (under a byte and a half), even for codecs fitted for seconds,
    whose entropy models leave elements far out in their tails: the estimate counts each at most
    16 bits, as the coder's 16-bit tables do (the raw likelihoods, down to 1e-9, overstate it)."""
    f = features(16, seed=7)
    for q in (2.5, 3.0):  # the larger payloads, where the fixed part does not dominate
        real = torch.tensor([8.0 * len(p) for p in codec.compress(f, q=q)])
        estimate = codec.estimate_bits(f, q=q)
        excess = real.sum() - estimate.sum() - 16 * 48
        assert -0.02 * estimate.sum() <= excess <= 0.02 * estimate.sum() + 16 * 12, (q, real, estimate)
        with torch.no_grad():
            unbounded = codec.likelihood_bits(codec(f, q=q)["likelihoods"])
        assert unbounded.sum() >= estimate.sum()


def test_one_codec_covers_many_rates_and_hits_byte_budgets(codec):
    f = features(4, seed=3)
    sizes = [sum(len(p) for p in codec.compress(f, q=q)) for q in (0.0, 1.0, 2.0, 3.0)]
    assert sizes == sorted(sizes) and sizes[-1] > 1.25 * sizes[0]
    errors = [((codec.decompress(codec.compress(f, q=q)) - f) ** 2).mean().item() for q in (0.0, 3.0)]
    assert errors[1] < errors[0]
    budget = (sizes[1] + sizes[2]) // 8  # bytes per image between two rate points
    payloads = codec.compress(f, target_bytes=budget)
    assert all(len(p) <= budget for p in payloads)
    assert sum(len(p) for p in payloads) >= sizes[1] - 4 * 4  # uses the budget, not the lowest point
    interpolated = codec.compress(f, q=1.5)
    assert sizes[1] <= sum(len(p) for p in interpolated) <= sizes[2]


def test_damaged_truncated_and_foreign_payloads_raise_quickly(codec):
    f = features(2)
    payload = codec.compress(f, q=2.0)[0]
    rng = random.Random(0)
    cases = [b"", b"\x00", payload[:3], payload[:-1], payload + b"\x00", bytes(len(payload)),
             bytes(rng.getrandbits(8) for _ in range(len(payload)))]
    for _ in range(300):
        mutated = bytearray(payload)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        if bytes(mutated) != payload:  # two flips of one bit cancel out
            cases.append(bytes(mutated))
    for _ in range(100):
        cases.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 2 * len(payload)))))
    start = time.perf_counter()
    for case in cases:
        with pytest.raises(BitstreamError):
            codec.decompress([case])
    assert time.perf_counter() - start < 10
    other = fitted(type(codec), steps=2)  # same architecture, other weights
    with pytest.raises(BitstreamError, match="another codec"):
        other.decompress([payload])
    with pytest.raises(BitstreamError):
        codec.decompress(payload)  # bytes instead of a list of payloads


@pytest.mark.parametrize("downsample", [1, 2])
@pytest.mark.parametrize("size", [(27, 27), (37, 37), (5, 11)])
def test_any_grid_size_codes_and_decodes_bit_exactly(codec, size, downsample):
    """Grids that are not multiples of the codec's stride (a SigLIP 27 x 27, a 37 x 37) are padded
    inside the codec and cropped back: the payload decodes, alone and batched, to exactly the eval
    forward pass, at the grid's own size, and the header declares that size."""
    from intelliflow.codec import bitstream

    torch.manual_seed(0)
    coder = type(codec)(FeatureCodecConfig(**{**CONFIG.__dict__, "downsample": downsample})).eval()
    coder.update()
    g = torch.Generator().manual_seed(1)
    f = torch.randn(3, CONFIG.in_channels, *size, generator=g)
    payloads = coder.compress(f, q=2)
    packet = bitstream.unpack(payloads[0], coder.payload_id, coder.fingerprint)
    assert (packet.height, packet.width) == size
    decoded = coder.decompress(payloads, expected=(CONFIG.in_channels, *size))
    assert decoded.shape == f.shape
    for i in range(3):
        assert torch.equal(coder.decompress([payloads[i]]), decoded[i:i + 1])
        assert torch.equal(decoded[i:i + 1], coder(f[i:i + 1], q=2)["f_hat"])
    with pytest.raises(BitstreamError, match="declares a feature grid of"):
        coder.decompress(payloads, expected=(CONFIG.in_channels, size[0] + 1, size[1]))


def test_a_payload_decodes_the_same_whatever_precision_or_device_encoded_it(codec):
    """The sender runs its transforms in float64 (another numeric path, as a GPU is): its payloads
    still decode on the float32 receiver without desynchronising, to exactly the sender's quantised
    latent; the CDF indexes and means come from one CPU float64 computation on both sides."""
    import copy

    from intelliflow.codec import bitstream

    sender = copy.deepcopy(codec).double()
    f = features()
    payloads = sender.compress(f.double(), q=1.5)
    assert sender.fingerprint == codec.fingerprint
    for i, data in enumerate(payloads):
        packet = bitstream.unpack(data, codec.payload_id, codec.fingerprint)
        received = codec._entropy_decompress(packet.body, (4, 4))
        with torch.no_grad():
            sent = sender(f[i:i + 1].double(), q=1.5)["y_hat"]
        assert torch.equal(received, sent.float())
    assert codec.decompress(payloads).shape == f.shape


def test_threads_decoding_at_once_get_what_one_thread_gets(codec):
    """Receivers decode in several threads at once (the edge service does): the coding path shares
    no mutable state between them."""
    from concurrent.futures import ThreadPoolExecutor

    payloads = codec.compress(features(), q=2)
    alone = codec.decompress(payloads)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: codec.decompress(payloads), range(32)))
    assert all(torch.equal(r, alone) for r in results)


def test_bad_inputs_are_clear_errors(codec):
    with pytest.raises(ShapeError, match=r"\[B, 32, H, W\]"):
        codec.compress(torch.zeros(1, 31, 8, 8))
    with pytest.raises(ConfigError, match="rate point q"):
        codec.compress(features(1), q=9)
    fresh = type(codec)(CONFIG).eval()
    with pytest.raises(ConfigError, match="update"):
        fresh.compress(features(1))
    with pytest.raises(ConfigError, match="rate_points"):
        FeatureCodecConfig(rate_points=20)


def test_saved_codec_decodes_payloads_of_the_original(codec, tmp_path):
    from intelliflow.codec.persistence import load_codec, save_codec

    f = features(3)
    payloads = codec.compress(f, q=2.0)
    save_codec(codec, tmp_path / "codec", trained_for="tests")
    loaded = load_codec(tmp_path / "codec")
    assert torch.equal(loaded.decompress(payloads), codec.decompress(payloads))
    assert loaded.compress(f, q=2.0) == payloads


def test_shipped_hyperprior_real_bits_match_its_estimate_on_real_features():
    """The shipped, trained hyperprior on the shipped captioner's features: real bits = estimate
    + our 48-bit header + the entropy coder's termination, within 2 % of the estimate: the arithmetic
    coder (the default) ends within a byte or so of the information, constriction's range coder seals
    with at most one 32-bit word over it, CompressAI's rANS flushes a 64-bit state of which up to
    about 32 bits carry data, plus word alignment."""
    from intelliflow.codec.persistence import load_codec
    from intelliflow.codec.registry import checkpoint_folder
    from intelliflow.data.shapes import make_sample
    from intelliflow.models import load_split_model, tokens_to_grid

    codec = load_codec(checkpoint_folder("shapes-hyperprior"))
    model = load_split_model("shapes-captioner")
    with torch.no_grad():
        tokens = model.head(model.preprocess([make_sample("test", i).image for i in range(64)]))
    f, _ = tokens_to_grid(tokens, model.feature_grid)
    assert codec.coder.name == "arithmetic"
    coders = [codec]
    for name in ("range", "rans"):
        coders.append(copy.deepcopy(codec))
        coders[-1].coder = entropy_coder(name)
    for q in (1.0, 4.0, 5.0):
        estimate = codec.estimate_bits(f, q=q).mean().item()
        excess = {}
        for coder in coders:
            real = torch.tensor([8.0 * len(p) for p in coder.compress(f, q=q)]).mean().item()
            excess[coder.coder.name] = real - estimate - 48
        assert -0.02 * estimate - 4 <= excess["arithmetic"] <= 8 + 0.02 * estimate, (q, excess, estimate)
        assert -0.02 * estimate <= excess["range"] <= 32 + 0.02 * estimate, (q, excess, estimate)
        assert 32 - 0.02 * estimate <= excess["rans"] <= 64 + 0.02 * estimate, (q, excess, estimate)


def test_a_batch_encoded_payload_decodes_alone_to_what_was_coded():
    """The encoder computes ŷ's entropy parameters exactly as the decoder does, image by image. When
    it took them from the batch's convolution, the shipped mse-codec indexed another CDF than its
    decoder for 2-4 images in 1000 per rate point; image 128 of shapes:test, coded in a batch of 100
    at q=2, then decoded to garbage that changed from one call to the next."""
    from intelliflow.codec import resolve_codec
    from intelliflow.data.datasets import open_dataset
    from intelliflow.flow import Device
    from intelliflow.models import load_split_model

    test = open_dataset("shapes:test", limit=200)
    model, codec = load_split_model("shapes-captioner"), resolve_codec("mse-codec")
    grid, _ = Device(model, codec).codec_input([test[i].image for i in range(100, 200)])
    payloads = codec.encode(grid, q=2.0)
    decoded = [codec.decode(payloads[28:29]) for _ in range(3)]
    assert torch.equal(decoded[0], decoded[1]) and torch.equal(decoded[0], decoded[2])
    with torch.no_grad():
        coded = codec(grid[28:29], q=2.0)["f_hat"]               # the eval forward of the image alone
    assert torch.allclose(decoded[0], coded, atol=1e-4)


@pytest.mark.parametrize("shipped,change,expected", [
    ("shapes-hyperprior", {"hidden_channels": 100_000}, r"describes a model of \d+\.\d GB"),
    ("shapes-jscc-awgn", {"hidden_channels": 50_000}, r"describes a model of \d+\.\d GB"),
    ("shapes-hyperprior", {"hidden_channels": -4}, "must be a positive integer"),
    ("shapes-hyperprior", None, "not a codec checkpoint"),
])
def test_a_crafted_codec_folder_is_refused_before_it_is_built(tmp_path, shipped, change, expected):
    """A codec folder's config is checked against its weights with shapes only: a config asking
    for gigabytes is one line, in well under a second of extra work and no memory to speak of."""
    import json
    import resource
    import shutil
    import time

    from intelliflow.codec.persistence import load_codec, shipped_codecs
    from intelliflow.errors import IntelliflowError

    folder = tmp_path / "codec"
    shutil.copytree(shipped_codecs()[shipped], folder)
    config = json.loads((folder / "config.json").read_text())
    if change is None:
        del config["params"]
    else:
        config["params"].update(change)
    (folder / "config.json").write_text(json.dumps(config))
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    with pytest.raises(IntelliflowError, match=expected) as info:
        load_codec(folder)
    assert "\n" not in str(info.value) and time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000   # kB


@pytest.mark.parametrize("name", ["hyperprior", "factorized", "jscc"])
def test_a_1x1_reduction_makes_wide_features_cheaper_and_still_codes_exactly(name):
    """``reduce_channels`` puts a 1x1 layer before the 3x3 stages and after them: at D = 512 the
    codec has several times fewer parameters, keeps the grid, and a byte codec still decodes
    bit-exactly; with it off (the default) a codec's weights keep their names."""
    from intelliflow.codec import build_codec

    base = {"name": name, "in_channels": 512, "hidden_channels": 64}
    base.update({"latent_channels": 16, "hyper_channels": 16} if name != "jscc" else {"symbol_channels": 4})
    torch.manual_seed(0)
    wide, reduced = build_codec(base), build_codec({**base, "reduce_channels": 32})
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(wide) > 3 * count(reduced)
    assert not any("reduce" in k or "expand" in k for k in wide.state_dict())
    f = torch.randn(2, 512, 27, 27)
    if name == "jscc":
        assert reduced.decode(reduced.encode(f, 10.0), 10.0, grid=(27, 27)).shape == f.shape
        return
    reduced.eval().update()
    payloads = reduced.compress(f, q=1)
    assert torch.equal(reduced.decompress(payloads, expected=(512, 27, 27)),
                       torch.cat([reduced(f[i:i + 1], q=1)["f_hat"] for i in range(2)]))


def test_a_mean_grid_codec_sends_only_what_differs_from_the_training_features_mean(tmp_path):
    from dataclasses import replace

    from intelliflow.codec.bitstream import pack
    from intelliflow.codec.persistence import load_codec, save_codec

    shared = 5.0 * torch.randn(CONFIG.in_channels, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = HyperpriorFeatureCodec(CONFIG).eval()
    torch.manual_seed(0)
    centred = HyperpriorFeatureCodec(replace(CONFIG, mean_grid=[8, 8])).eval()
    assert centred.config.mean_grid == (8, 8)
    centred.load_state_dict({**plain.state_dict(), "feature_mean": centred.feature_mean}, strict=True)
    f = features() + shared                               # a large part every image shares
    centred.set_feature_mean(f)
    assert torch.allclose(centred.feature_mean, f.mean(0), atol=1e-5)
    plain.update(), centred.update()
    # the same (untrained) transforms code the differences, and the mean comes back at decoding
    payloads = centred.encode(f, q=1.0)
    decoded = centred.decode(payloads)
    assert torch.allclose(decoded, centred(f, q=1.0)["f_hat"], atol=1e-4)   # coding = the eval forward
    assert (decoded - f).pow(2).mean() < 0.2 * (plain.decode(plain.encode(f, q=1.0)) - f).pow(2).mean()
    # the mean is part of the weights: saved, loaded, and in the fingerprint
    save_codec(centred, tmp_path / "c")
    loaded = load_codec(tmp_path / "c")
    assert torch.equal(loaded.feature_mean, centred.feature_mean) and loaded.fingerprint == centred.fingerprint
    assert torch.equal(loaded.decode(payloads), decoded)
    other = copy.deepcopy(centred)
    other.set_feature_mean(f + 1.0)
    assert other.fingerprint != centred.fingerprint
    # only its grid: features or a (re-checked) payload on another grid are refused
    with pytest.raises(ShapeError, match="8x8 grid, got a 4x4"):
        centred.encode(features()[..., :4, :4])
    body = bitstream_body(payloads[0])
    with pytest.raises(BitstreamError, match="4x4 grid"):
        centred.decode([pack(centred.payload_id, 16, 4, 4, body, centred.fingerprint)])
    with pytest.raises(ConfigError, match="mean_grid"):
        plain.set_feature_mean(f)
    with pytest.raises(ConfigError, match="mean_grid must be"):
        FeatureCodecConfig(mean_grid=[8])


def bitstream_body(payload):
    return payload[4:-2]      # a self-contained payload: 4-byte header, body, CRC-16
